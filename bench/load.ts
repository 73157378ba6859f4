/**
 * Loads a synthetic city into the store FAST and honestly: the documents the store itself writes for each resource
 * (`resources` with search values and owners, `history` with every version, amended results as two versions) and the
 * recognition facts the projection hook derives, built with the store's own index function and `projectFacts`.
 * Only the write path is skipped (one ingest-log entry and half a dozen round trips per resource): the ingest
 * benchmark measures that path separately. `verifySample` proves the loaded data answers `$reuse-check` like data
 * pushed through the API.
 */
import { randomUUID } from 'node:crypto';
import type { DiagnosticReport, Resource } from 'fhir/r4';
import type { AnyBulkWriteOperation, Collection } from 'mongodb';
import type { AppDeps } from '../src/app.js';
import { ownersOf } from '../src/auth/policy.js';
import { generateDemoPatients, type DemoPatient } from '../src/demo/generator.js';
import { createProgress } from '../src/demo/progress.js';
import { extractSearchValues } from '../src/fhir/search/index.js';
import type { FactDoc } from '../src/recognition/fact-store.js';
import { lookupCoding, type CodeIndex } from '../src/recognition/catalogue.js';
import { projectFacts, type RecognitionFact } from '../src/recognition/facts.js';
import { patientKeysOf } from '../src/recognition/identity.js';
import type { LedgerEntry } from '../src/recognition/ledger.js';
import { recordOf } from '../src/recognition/patient-index.js';
import { demoHistory } from '../src/demo/generator.js';
import type { CurrentDoc, HistoryDoc } from '../src/store/models.js';

export type LoadDeps = Pick<AppDeps, 'store' | 'facts' | 'registry' | 'validator' | 'connection'>;

/** A loaded patient the benchmarks ask about: its identifier, server id and the codes of its results. */
export interface SamplePatient {
  id: string;
  system: string;
  value: string;
  key: string;
  /**
   * The identifying code (LOINC or catalogue) of each of its DiagnosticReports that has one, newest last. An imaging
   * exam without a LOINC code is known only by modality, body part and method: Huren maps it, but a one-search
   * generic client cannot ask for it, so the benchmarks do not ask about it.
   */
  codes: { system: string; code: string }[];
  /** Its facts as the projection made them (for checking answers). */
  facts: RecognitionFact[];
}

export interface LoadSummary {
  results: number;
  patients: number;
  resources: number;
  historyVersions: number;
  amended: number;
  facts: number;
  ms: number;
  resultsPerSecond: number;
  documentsPerSecond: number;
}

const BATCH_PATIENTS = 200;
const SAMPLE_SIZE = 2000;

/** The first coding of a report that names a catalogue item by itself (no local code map, no imaging facets). */
function identifyingCoding(index: CodeIndex, r: DiagnosticReport): { system: string; code: string }[] {
  const c = r.code.coding?.find((x) => lookupCoding(index, x).length > 0);
  return c ? [{ system: c.system!, code: c.code! }] : [];
}

const collections = (deps: LoadDeps) => {
  const db = deps.connection.db!;
  return {
    current: db.collection<CurrentDoc>('resources'),
    history: db.collection<HistoryDoc>('history'),
    facts: deps.facts!.facts.collection,
    patientIndex: deps.facts!.patients.index,
    patientKeys: deps.facts!.patients.keys,
  };
};

/** The resource with server meta, as the store stores a version. */
function versioned(resource: Resource, vid: number, at: Date): Resource {
  return { ...resource, meta: { ...resource.meta, versionId: String(vid), lastUpdated: at.toISOString() } } as Resource;
}

export function documentsOf(
  deps: LoadDeps,
  resource: Resource & { id: string },
  versions: Resource[],
  at: Date,
  txn: string,
) {
  const type = resource.resourceType;
  const history: HistoryDoc[] = versions.map((r, i) => ({
    _id: `${type}/${resource.id}/${i + 1}`,
    type,
    id: resource.id,
    vid: i + 1,
    // Amendments come later than the first issue: one millisecond apart keeps versions in time order.
    lastUpdated: new Date(at.getTime() + i),
    method: i === 0 ? 'POST' : 'PUT',
    resource: versioned(r, i + 1, new Date(at.getTime() + i)),
    txn,
  }));
  const last = history[history.length - 1]!;
  const { sp, so, tk } = extractSearchValues(deps.registry, last.resource!);
  const current: CurrentDoc = {
    _id: `${type}/${resource.id}`,
    type,
    id: resource.id,
    vid: last.vid,
    lastUpdated: last.lastUpdated,
    deleted: false,
    resource: last.resource,
    sp,
    so,
    tk,
    owner: ownersOf(last.resource!),
    txn,
  };
  return { current, history };
}

/** Documents of one generated patient: its Patient, its results (amended ones in two versions) and their facts. */
function patientDocuments(deps: LoadDeps, demo: DemoPatient, at: Date, txn: string) {
  const rules = deps.facts!.rules;
  const keys = patientKeysOf(deps.facts!.secret, demo.patient.identifier);
  const originals = new Map(demo.originals.map((r) => [r.id, r]));
  const current: CurrentDoc[] = [];
  const history: HistoryDoc[] = [];
  const facts: FactDoc[] = [];
  const add = (r: Resource & { id: string }, versions: Resource[]) => {
    const docs = documentsOf(deps, r, versions, at, txn);
    current.push(docs.current);
    history.push(...docs.history);
  };
  add(demo.patient, [demo.patient]);
  // The patient index entries the version hook writes for a new Patient (src/recognition/patient-index.ts).
  const ref = `Patient/${demo.patient.id}`;
  const record = recordOf(current[0]!);
  const index = keys.map((key) => ({ _id: key, patients: { [ref.replace(/\./g, '~')]: record } }));
  const patientKeys = { _id: ref, keys };
  for (const r of demo.results) {
    const original = originals.get(r.id);
    add(r, original ? [original, r] : [r]);
    // The projection hook projects the stored version (with meta), as here.
    const stored = current[current.length - 1]!.resource as DiagnosticReport;
    const projection = projectFacts(stored, {
      index: rules.index,
      resolvePatientKeys: () => keys,
      timeZone: rules.catalogue.timeZone,
    });
    facts.push(...projection.facts.map((f) => ({ _id: f.id, ...f, effectiveAt: new Date(f.effective) })));
  }
  return { current, history, facts, keys, index, patientKeys };
}

async function insertAll<T extends { _id: string }>(collection: Collection<T>, docs: T[]): Promise<void> {
  if (docs.length === 0) return;
  const ops = docs.map((document) => ({ insertOne: { document } }) as AnyBulkWriteOperation<T>);
  await collection.bulkWrite(ops, { ordered: false });
}

/** Generates and loads patients until `results` DiagnosticReports are stored. */
export async function loadCity(
  deps: LoadDeps,
  options: { results: number; seed: number; now: Date },
): Promise<{ summary: LoadSummary; sample: SamplePatient[] }> {
  const started = Date.now();
  const col = collections(deps);
  const rules = deps.facts!.rules;
  const summary: LoadSummary = {
    results: 0,
    patients: 0,
    resources: 0,
    historyVersions: 0,
    amended: 0,
    facts: 0,
    ms: 0,
    resultsPerSecond: 0,
    documentsPerSecond: 0,
  };
  const sample: SamplePatient[] = [];
  const progress = createProgress('Loading results', options.results);
  let validated = false;
  let batch: DemoPatient[] = [];
  let inFlight: Promise<void> = Promise.resolve();

  const flush = async (demos: DemoPatient[]) => {
    if (!validated) {
      // The generator's output is checked like any pushed resource once: a generator bug must not reach the store.
      for (const r of demos.flatMap((d) => [d.patient, ...d.results, ...d.originals])) {
        const errors = deps.validator.validate(r).filter((i) => i.severity === 'error' || i.severity === 'fatal');
        if (errors.length) throw new Error(`${r.resourceType}/${r.id} is not valid: ${errors[0]!.diagnostics}`);
      }
      validated = true;
    }
    const txn = randomUUID();
    const at = new Date();
    const current: CurrentDoc[] = [];
    const history: HistoryDoc[] = [];
    const facts: FactDoc[] = [];
    const index: { _id: string; patients: Record<string, ReturnType<typeof recordOf>> }[] = [];
    const patientKeys: { _id: string; keys: string[] }[] = [];
    let results = 0;
    for (const demo of demos) {
      const docs = patientDocuments(deps, demo, at, txn);
      current.push(...docs.current);
      history.push(...docs.history);
      facts.push(...docs.facts);
      index.push(...docs.index);
      patientKeys.push(docs.patientKeys);
      const reports = demo.results.filter((r) => r.resourceType === 'DiagnosticReport');
      results += reports.length;
      summary.amended += demo.originals.length;
      // Reservoir-free sample: every k-th patient, enough for the benchmarks to spread over the data.
      const codes = reports.flatMap((r) => identifyingCoding(rules.index, r as DiagnosticReport));
      if (summary.patients % 7 === 0 && sample.length < SAMPLE_SIZE && codes.length) {
        const id = demo.patient.identifier![0]!;
        sample.push({
          id: demo.patient.id,
          system: id.system!,
          value: id.value!,
          key: docs.keys[0]!,
          codes,
          facts: docs.facts.map(({ _id: _i, effectiveAt: _e, ...f }) => f),
        });
      }
      summary.patients++;
    }
    await inFlight;
    // One batch writes while the next is generated: generation and the database overlap on two cores.
    inFlight = Promise.all([
      insertAll(col.current, current),
      insertAll(col.history, history),
      insertAll(col.facts, facts),
      insertAll(col.patientIndex, index),
      insertAll(col.patientKeys, patientKeys),
    ]).then(() => {
      summary.results += results;
      summary.resources += current.length;
      summary.historyVersions += history.length;
      summary.facts += facts.length;
      progress.tick(results, `${summary.resources} resources, ${summary.facts} facts`);
    });
  };

  let planned = 0;
  for (const demo of generateDemoPatients(rules, {
    seed: options.seed,
    count: Number.MAX_SAFE_INTEGER,
    now: options.now,
  })) {
    batch.push(demo);
    planned += demo.results.filter((r) => r.resourceType === 'DiagnosticReport').length;
    if (planned >= options.results) break;
    if (batch.length < BATCH_PATIENTS) continue;
    await flush(batch);
    batch = [];
  }
  if (batch.length) await flush(batch);
  await inFlight;
  summary.ms = Date.now() - started;
  summary.resultsPerSecond = Math.round((summary.results / summary.ms) * 1000);
  summary.documentsPerSecond = Math.round(
    ((summary.resources + summary.historyVersions + summary.facts) / summary.ms) * 1000,
  );
  progress.finish(`${summary.resources} resources, ${summary.facts} facts`);
  return { summary, sample };
}

/**
 * A year of the decisions ledger for the demo city: the checks other institutions asked about generated patients
 * and what their doctors did, built by the ledger's own pure functions (`promptEntries`, `decisionEntry`, through
 * the demo history generator), written in bulk until about `entries` entries are stored.
 */
export async function loadLedger(
  deps: LoadDeps & Pick<AppDeps, 'ledger'>,
  options: { entries: number; seed: number; now: Date; secret: string },
): Promise<{ entries: number; checks: number; ms: number; from: string; to: string }> {
  const started = Date.now();
  const rules = deps.facts!.rules;
  const progress = createProgress('Loading ledger', options.entries);
  let batch: LedgerEntry[] = [];
  let entries = 0;
  let checks = 0;
  let days = { from: '9999', to: '0000' };
  const write = async () => {
    await insertAll(deps.ledger!.collection, batch);
    entries += batch.length;
    progress.tick(batch.length, `${checks} checks`);
    batch = [];
  };
  for (const demo of generateDemoPatients(rules, {
    seed: options.seed,
    count: Number.MAX_SAFE_INTEGER,
    now: options.now,
  })) {
    const history = demoHistory(rules, demo, { seed: options.seed, now: options.now, secret: options.secret });
    checks += history.checks.length;
    for (const e of history.entries) {
      // Ids derive from the patient id, as in the demo seed: prefixed so a second load in one database adds entries.
      batch.push({ ...e, _id: `bench-${options.seed}-${e._id}` });
      if (e.day < days.from) days = { ...days, from: e.day };
      if (e.day > days.to) days = { ...days, to: e.day };
    }
    if (batch.length >= 5000) await write();
    if (entries + batch.length >= options.entries) break;
  }
  if (batch.length) await write();
  progress.finish(`${checks} checks`);
  return { entries, checks, ms: Date.now() - started, ...days };
}
