/**
 * What the doctor's view shows for one patient: the recognisable results across institutions, grouped by category,
 * each with the engine's verdict for the doctor's institution (a reuse check, so the view's decisions go to the
 * ledger like any other), values with units, reference ranges and flags, and a trend for repeated analytes.
 */
import type { CodeableConcept, DiagnosticReport, Observation, Quantity, Resource } from 'fhir/r4';
import { corroborateRecords, describeConflicts } from '../recognition/identity.js';
import type { FhirDeps } from '../fhir/interactions.js';
import { runReuseCheck } from '../fhir/reuse-check.js';
import type { RecognitionFact } from '../recognition/facts.js';
import type { ReuseOutcome } from '../recognition/engine.js';
import type { ReuseCheckDoc } from '../recognition/reuse-checks.js';
import { CORRECTION_WINDOW_MS, finalDecisions, type LedgerEntry } from '../recognition/ledger.js';
import { LEVEL_EN, SYSTEMS } from '../recognition/vocabulary.js';
import { reportDetail } from './report-detail.js';
import type {
  CategoryView,
  ItemView,
  PriorResultsView,
  RecordedDecision,
  TrendPoint,
  ValueView,
} from './view-types.js';

/** Most results (and their observations) a view loads: a year of a chronic patient's tests fits easily. */
const MAX_SOURCES = 300;
const DAY_MS = 86400_000;

function display(concept: CodeableConcept | undefined): { code: string; display: string; displayEn?: string } {
  const coding = concept?.coding?.[0];
  const shown = concept?.text ?? coding?.display ?? coding?.code ?? '';
  // A coding's display (LOINC's English name) serves English readers when the text is Chinese.
  const en = concept?.coding?.find((c) => c.display && !/[\u3400-\u9fff]/.test(c.display))?.display;
  return { code: coding?.code ?? '', display: shown, ...(en && en !== shown ? { displayEn: en } : {}) };
}

function quantityOf(q: Quantity | undefined): { value?: number; unit?: string } {
  if (!q || typeof q.value !== 'number') return {};
  return { value: q.value, ...(q.unit || q.code ? { unit: q.unit ?? q.code } : {}) };
}

export function valueOf(o: Observation): ValueView {
  const { code, display: name, displayEn } = display(o.code);
  const range = o.referenceRange?.[0];
  const flag = o.interpretation?.[0]?.coding?.[0]?.code;
  const view: ValueView = { code, display: name, ...(displayEn ? { displayEn } : {}), ...quantityOf(o.valueQuantity) };
  if (o.valueString) view.text = o.valueString;
  if (o.valueCodeableConcept) view.text = display(o.valueCodeableConcept).display;
  if (typeof range?.low?.value === 'number') view.low = range.low.value;
  if (typeof range?.high?.value === 'number') view.high = range.high.value;
  if (range?.text) view.rangeText = range.text;
  if (flag) view.flag = flag;
  return view;
}

/** The observations of a result: the report's `result` references, or the observation itself. */
function observationsOf(source: Resource | undefined, byRef: Map<string, Resource>): Observation[] {
  if (!source) return [];
  if (source.resourceType === 'Observation') return [source as Observation];
  const report = source as DiagnosticReport;
  return (report.result ?? [])
    .map((r) => byRef.get(r.reference ?? ''))
    .filter((r): r is Observation => r?.resourceType === 'Observation');
}

function effectiveOf(o: Observation): string | undefined {
  return o.effectiveDateTime ?? o.effectivePeriod?.start ?? o.issued;
}

/** The catalogue items to ask about: every item the patient has a fact of, analytes only without their panel. */
export function itemsToCheck(
  facts: readonly RecognitionFact[],
  panelsOf: ReadonlyMap<string, readonly string[]>,
): string[] {
  const present = new Set(facts.map((f) => f.item));
  return [...present].filter((item) => !(panelsOf.get(item) ?? []).some((panel) => present.has(panel))).sort();
}

/** Current versions by reference, each read by its _id (an `$in` over _id scans on FerretDB 1.24). */
async function readAll(deps: FhirDeps, refs: string[]): Promise<Map<string, Resource>> {
  const out = new Map<string, Resource>();
  await Promise.all(
    refs.map(async (ref) => {
      const [type, id] = ref.split('/');
      if (!type || !id) return;
      const doc = await deps.store.findCurrent(type, id);
      if (doc && !doc.deleted) out.set(ref, doc.resource as Resource);
    }),
  );
  return out;
}

/** The decision in force and whether the item was viewed, from a check's ledger entries. */
function recorded(
  entries: readonly LedgerEntry[],
  check: string,
  item: string,
): { recorded?: RecordedDecision; viewed?: boolean } {
  const mine = entries.filter((e) => e.check === check && e.item === item);
  const final = finalDecisions(mine).get(item);
  const viewed = mine.some((e) => e.event === 'viewed');
  if (!final) return viewed ? { viewed } : {};
  const at = new Date(final.recordedAt);
  return {
    ...(viewed ? { viewed } : {}),
    recorded: {
      decision: final.event as RecordedDecision['decision'],
      ...(final.reason ? { reason: final.reason } : {}),
      ...(final.reasonText ? { reasonText: final.reasonText } : {}),
      saving: final.saving,
      recordedAt: at.toISOString(),
      ...(final.supersedes
        ? { corrected: true }
        : { correctableUntil: new Date(at.getTime() + CORRECTION_WINDOW_MS).toISOString() }),
    },
  };
}

/** Most results of other brokers opened for one view. */
const MAX_REMOTE_RESULTS = 10;

/**
 * The results of other brokers the outcomes name (absolute references), read through the federation for this
 * doctor: each report keyed by its absolute reference, its Observations by theirs (a report's `result` references
 * are made absolute, so that no Observation of another broker is taken for one of this broker's). A result that
 * cannot be read is left out: the view still shows the outcome, without values.
 */
async function remoteResults(
  deps: FhirDeps,
  outcomes: readonly ReuseOutcome[],
  district: string | undefined,
): Promise<Map<string, Resource>> {
  const out = new Map<string, Resource>();
  const refs = [
    ...new Set(outcomes.flatMap((o) => (o.fact && /^https?:\/\//.test(o.fact.source) ? [o.fact.source] : []))),
  ].slice(0, MAX_REMOTE_RESULTS);
  if (!refs.length || !deps.federationPort || !deps.access || !district) return out;
  const bundles = await Promise.all(
    refs.map((ref) => deps.federationPort!.readResult(deps.access!, ref, district).catch(() => undefined)),
  );
  for (const entry of bundles.flatMap((b) => b?.entry ?? [])) {
    const { fullUrl, resource } = entry;
    if (!fullUrl || !resource) continue;
    const base = fullUrl.replace(/\/[A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/, '');
    if (resource.resourceType === 'DiagnosticReport') {
      const report = resource as DiagnosticReport;
      out.set(fullUrl, {
        ...report,
        ...(report.result
          ? { result: report.result.map((r) => ({ ...r, reference: `${base}/${r.reference ?? ''}` })) }
          : {}),
      });
    } else out.set(fullUrl, resource);
  }
  return out;
}

/**
 * The patient's facts held by other brokers of the federation (docs/federation.md), of any catalogue item, within the
 * longest window and in HR scope for this doctor's institution: asked once per view, so that the list shows the
 * items of other regions as it shows local ones (the checks that follow decide on them). Empty when no broker is
 * configured or none answered in time: the list is then this broker's, as the checks' federation note says.
 */
async function federatedFacts(
  deps: FhirDeps,
  organization: string,
  patientKeys: string[],
  from: Date,
  until: Date,
): Promise<RecognitionFact[]> {
  const port = deps.federationPort;
  const rules = deps.facts!.rules;
  const requester = rules.directory.byId.get(organization);
  if (!port || !requester || !(await port.isConfigured())) return [];
  const answer = await port.ask({
    patientKeys,
    items: rules.catalogue.items.map((i) => i.code),
    from,
    until,
    requester: { district: requester.district.code, level: requester.level },
  });
  return answer.facts;
}

/** The view and, for the audit trail, the resources it shows. */
export async function priorResults(
  deps: FhirDeps,
  input: {
    organization: string;
    patientKeys: string[];
    clientId: string;
    now: Date;
    /**
     * Checks already asked for this launch, first match wins: the CDS card's that launched the view, then the view's
     * own earlier one. Their items keep their check (and prompts); only items new since are asked in a new check.
     */
    earlier?: ReuseCheckDoc[];
    highlight?: string;
  },
): Promise<Omit<PriorResultsView, 'banner'> & { resources: string[] }> {
  const rules = deps.facts!.rules;
  const index = rules.index;
  const longest = Math.max(...rules.catalogue.items.map((i) => i.validityDays));
  const from = new Date(input.now.getTime() - (longest + 2) * DAY_MS);
  // The patient's records are read with the facts: they must agree before anything is reused.
  const [facts, records, remote] = await Promise.all([
    deps.facts!.facts.findForPatient(input.patientKeys, from, input.now),
    deps.facts!.patients.lookup(input.patientKeys),
    federatedFacts(deps, input.organization, input.patientKeys, from, input.now),
  ]);
  const identity = corroborateRecords(records);
  const asked = new Map<string, ReuseCheckDoc>();
  for (const check of input.earlier ?? []) {
    for (const o of check.outcomes) if (o.item && !asked.has(o.item)) asked.set(o.item, check);
  }
  const items = [...new Set([...itemsToCheck([...facts, ...remote], index.panelsOf), ...asked.keys()])];
  const fresh = items.filter((i) => !asked.has(i));
  const ask = (codes: string[], record: boolean) =>
    runReuseCheck(deps, {
      requester: input.organization,
      patientKeys: input.patientKeys,
      items: codes.map((code) => ({ coding: [{ system: SYSTEMS.catalogue, code }] })),
      context: input.earlier?.[0]?.context ?? 'routine',
      at: input.now,
      clientId: input.clientId,
      record,
    });
  // Items not asked before get a check of their own (stored, prompted); the others are decided again for display.
  const created = fresh.length ? await ask(fresh, true) : undefined;
  if (created) for (const item of fresh) asked.set(item, created.doc);
  const { outcomes, federation } = created && fresh.length === items.length ? created : await ask(items, false);
  const checkId = created?.checkId ?? input.earlier?.[input.earlier.length - 1]?._id ?? '';

  // Every source the patient has (for values and trends), bounded.
  const sources = [...new Set(facts.map((f) => f.source))].slice(0, MAX_SOURCES);
  const byRef = await readAll(deps, sources);
  const memberRefs = [...byRef.values()].flatMap((r) =>
    r.resourceType === 'DiagnosticReport' ? ((r as DiagnosticReport).result ?? []).map((x) => x.reference ?? '') : [],
  );
  for (const [ref, r] of await readAll(
    deps,
    [...new Set(memberRefs)].filter((x) => !byRef.has(x)),
  ))
    byRef.set(ref, r);
  for (const [ref, r] of await remoteResults(
    deps,
    outcomes,
    rules.directory.byId.get(input.organization)?.district.code,
  ))
    byRef.set(ref, r);
  const performerOfSource = new Map(facts.map((f) => [f.source, f.performer]));

  // Trends: every observation value of the patient by analyte code, oldest first.
  const series = new Map<string, TrendPoint[]>();
  const seen = new Set<string>();
  for (const ref of sources) {
    for (const o of observationsOf(byRef.get(ref), byRef)) {
      const key = `Observation/${o.id}`;
      const v = valueOf(o);
      const at = effectiveOf(o);
      if (seen.has(key) || v.value === undefined || !at || !v.code) continue;
      seen.add(key);
      const performer = performerOfSource.get(ref);
      series.set(v.code, [
        ...(series.get(v.code) ?? []),
        { effective: at, value: v.value, ...(performer ? { performer } : {}) },
      ]);
    }
  }
  for (const points of series.values()) points.sort((a, b) => Date.parse(a.effective) - Date.parse(b.effective));

  // What the doctor already recorded, read back from the ledger (by check: an indexed lookup per check).
  const checkIds = [...new Set([...asked.values()].map((c) => c._id))];
  const entries = (await Promise.all(checkIds.map((id) => deps.ledger?.forCheck(id) ?? []))).flat();
  const recordedOf = (check: string, item: string) => recorded(entries, check, item);

  const today = Date.parse(input.now.toISOString().slice(0, 10));
  const shown = new Set<string>();
  const views: ItemView[] = [];
  for (const o of outcomes) {
    if (!o.item?.code || !o.fact) continue;
    const check = asked.get(o.item.code);
    const stored = check?.outcomes.find((x) => x.item === o.item!.code);
    const item = index.items.get(o.item.code)!;
    const source = byRef.get(o.fact.source);
    const observations = observationsOf(source, byRef);
    // The findings narrative is shown as the report's findings, not as a value.
    const report = reportDetail(source, observations);
    const values = observations.filter((x) => !report?.findings || x.valueString !== report.findings).map(valueOf);
    const trends: Record<string, TrendPoint[]> = {};
    for (const v of values) {
      const points = series.get(v.code);
      if (points && points.length > 1) trends[v.code] = points;
    }
    // An institution of this broker, or of the broker of the federation that holds the result.
    const performer = o.performer
      ? (rules.directory.byId.get(o.performer) ?? federation?.institutions.get(o.performer))
      : undefined;
    shown.add(o.fact.source);
    for (const v of values) if (v.code) shown.add(v.code);
    views.push({
      item: item.code,
      name: item.name,
      // A prior result exists, so the verdict is one of reusable, reference-only, expired.
      decision: (stored?.decision ?? o.decision) as ItemView['decision'],
      reason: o.reason,
      summary: o.summary,
      rulePath: o.path.map((step) => ({ zh: step.zh, en: step.en, passed: step.passed })),
      ...(report ? { report } : {}),
      check: check?._id ?? checkId,
      result: o.fact.source,
      ...(performer
        ? {
            performer: {
              id: performer.id,
              name: performer.name,
              level: { zh: performer.level, en: LEVEL_EN[performer.level] },
            },
          }
        : {}),
      ...(o.effective ? { effective: o.effective } : {}),
      ...(o.validUntil ? { validUntil: o.validUntil } : {}),
      ...(o.lastValidDay ? { daysLeft: Math.round((Date.parse(o.lastValidDay) - today) / DAY_MS) } : {}),
      ...((o.fact.hrMark ?? item.scope) ? { hrScope: o.fact.hrMark ?? item.scope } : {}),
      saving: stored?.saving ?? o.saving.value,
      retestJustified: o.retestJustified,
      ...((source as DiagnosticReport | undefined)?.conclusion
        ? { conclusion: (source as DiagnosticReport).conclusion }
        : {}),
      values,
      trends,
      ...(input.highlight === item.code ? { highlighted: true } : {}),
      ...recordedOf(check?._id ?? checkId, item.code),
    });
  }

  const categories: CategoryView[] = [];
  for (const [code, def] of index.categories) {
    const inCategory = views.filter((v) => index.items.get(v.item)?.category === code);
    if (inCategory.length) {
      categories.push({
        code,
        name: def.name,
        items: inCategory.sort((a, b) => Date.parse(b.effective ?? '') - Date.parse(a.effective ?? '')),
      });
    }
  }
  const org = rules.directory.byId.get(input.organization);
  const ordered = input.highlight ? index.items.get(input.highlight) : undefined;
  return {
    check: checkId,
    ...(ordered ? { ordered: { item: ordered.code, name: ordered.name } } : {}),
    organization: { id: input.organization, ...(org ? { name: org.name } : {}) },
    generatedAt: input.now.toISOString(),
    categories,
    // "Other (explain)" last: the listed reasons first, the free-text one when none fits.
    declineReasons: [...rules.declineReasons.reasons]
      .sort((a, b) => Number(a.requiresText) - Number(b.requiresText))
      .map((r) => ({
        code: r.code,
        name: r.display,
        countsAsDecline: r.countsAsDecline,
        requiresText: r.requiresText,
      })),
    ...(identity.consistent
      ? {}
      : {
          identityConflicts: describeConflicts(identity, {
            nameOf: (id) => rules.directory.byId.get(id)?.name.en,
          }).map((en, i) => ({
            en,
            zh: describeConflicts(identity, {
              lang: 'zh',
              nameOf: (id) => rules.directory.byId.get(id)?.name.zh,
            })[i]!,
          })),
        }),
    resources: [...shown].filter((r) => r.includes('/')),
  };
}
