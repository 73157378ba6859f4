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
import type { ReuseCheckDoc } from '../recognition/reuse-checks.js';
import { SYSTEMS } from '../recognition/vocabulary.js';
import type { CategoryView, ItemView, PriorResultsView, TrendPoint, ValueView } from './view-types.js';

/** Most results (and their observations) a view loads: a year of a chronic patient's tests fits easily. */
const MAX_SOURCES = 300;
const DAY_MS = 86400_000;

function display(concept: CodeableConcept | undefined): { code: string; display: string } {
  const coding = concept?.coding?.[0];
  return { code: coding?.code ?? '', display: concept?.text ?? coding?.display ?? coding?.code ?? '' };
}

function quantityOf(q: Quantity | undefined): { value?: number; unit?: string } {
  if (!q || typeof q.value !== 'number') return {};
  return { value: q.value, ...(q.unit || q.code ? { unit: q.unit ?? q.code } : {}) };
}

export function valueOf(o: Observation): ValueView {
  const { code, display: name } = display(o.code);
  const range = o.referenceRange?.[0];
  const flag = o.interpretation?.[0]?.coding?.[0]?.code;
  const view: ValueView = { code, display: name, ...quantityOf(o.valueQuantity) };
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
): Promise<PriorResultsView & { resources: string[] }> {
  const rules = deps.facts!.rules;
  const index = rules.index;
  const longest = Math.max(...rules.catalogue.items.map((i) => i.validityDays));
  // The patient's records are read with the facts: they must agree before anything is reused.
  const [facts, records] = await Promise.all([
    deps.facts!.facts.findForPatient(
      input.patientKeys,
      new Date(input.now.getTime() - (longest + 2) * DAY_MS),
      input.now,
    ),
    deps.facts!.patients.lookup(input.patientKeys),
  ]);
  const identity = corroborateRecords(records);
  const asked = new Map<string, ReuseCheckDoc>();
  for (const check of input.earlier ?? []) {
    for (const o of check.outcomes) if (o.item && !asked.has(o.item)) asked.set(o.item, check);
  }
  const items = [...new Set([...itemsToCheck(facts, index.panelsOf), ...asked.keys()])];
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
  const { outcomes } = created && fresh.length === items.length ? created : await ask(items, false);
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

  const today = Date.parse(input.now.toISOString().slice(0, 10));
  const shown = new Set<string>();
  const views: ItemView[] = [];
  for (const o of outcomes) {
    if (!o.item?.code || !o.fact) continue;
    const check = asked.get(o.item.code);
    const stored = check?.outcomes.find((x) => x.item === o.item!.code);
    const item = index.items.get(o.item.code)!;
    const source = byRef.get(o.fact.source);
    const values = observationsOf(source, byRef).map(valueOf);
    const trends: Record<string, TrendPoint[]> = {};
    for (const v of values) {
      const points = series.get(v.code);
      if (points && points.length > 1) trends[v.code] = points;
    }
    const performer = o.performer ? rules.directory.byId.get(o.performer) : undefined;
    shown.add(o.fact.source);
    for (const v of values) if (v.code) shown.add(v.code);
    views.push({
      item: item.code,
      name: item.name,
      // A prior result exists, so the verdict is one of reusable, reference-only, expired.
      decision: (stored?.decision ?? o.decision) as ItemView['decision'],
      reason: o.reason,
      check: check?._id ?? checkId,
      result: o.fact.source,
      ...(performer ? { performer: { id: performer.id, name: performer.name, level: performer.level } } : {}),
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
  return {
    check: checkId,
    organization: { id: input.organization, ...(org ? { name: org.name } : {}) },
    generatedAt: input.now.toISOString(),
    categories,
    declineReasons: rules.declineReasons.reasons.map((r) => ({
      code: r.code,
      name: r.display,
      countsAsDecline: r.countsAsDecline,
      requiresText: r.requiresText,
    })),
    ...(identity.consistent
      ? {}
      : {
          identityConflicts: describeConflicts(identity).map((en, i) => ({
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
