/**
 * Loads a synthetic city into the store FAST and honestly: the documents the store itself writes for each resource
 * (`resources` with search values and owners, `history` with every version, amended results as two versions) and the
 * recognition facts the projection hook derives, built with the store's own index function and `projectFacts`.
 * Only the write path is skipped (one ingest-log entry and half a dozen round trips per resource): the ingest
 * benchmark measures that path separately. `verifySample` proves the loaded data answers `$reuse-check` like data
 * pushed through the API.
 */
import { randomUUID } from 'node:crypto';
import type { DiagnosticReport, Observation, Resource } from 'fhir/r4';
import type { AnyBulkWriteOperation, Collection } from 'mongodb';
import type { AppDeps } from '../src/app.js';
import { ownersOf } from '../src/auth/policy.js';
import { generateDemoPatients, type DemoPatient } from '../src/demo/generator.js';
import { countingProgress as createProgress } from '../src/progress.js';
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
   * The identifying codes (LOINC or catalogue) of its DiagnosticReports that have one, each once, newest last. An
   * imaging exam without a LOINC code is known only by modality, body part and method: Huren maps it, but a one-search
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
    // As the store keeps it: with its id (the search values' scan buckets derive from it).
    resource: versioned({ ...r, id: resource.id } as Resource, i + 1, new Date(at.getTime() + i)),
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

/** A loaded Observation of demo-hospital-b, which that hospital's system may update by its identifier. */
export interface UpdateTarget {
  system: string;
  value: string;
  resource: Observation & { id: string };
}

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32): the same run picks the same samples. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A uniform sample of at most `size` of the items offered so far (reservoir sampling, algorithm R): after every
 * load step the benchmarks ask about patients spread over all the data, not only the first loaded.
 */
class Reservoir<T> {
  readonly items: T[] = [];
  private seen = 0;
  private readonly random: () => number;

  constructor(
    private readonly size: number,
    seed: number,
  ) {
    this.random = seededRandom(seed);
  }

  offer(make: () => T): void {
    this.seen++;
    if (this.items.length < this.size) this.items.push(make());
    else {
      const j = Math.floor(this.random() * this.seen);
      if (j < this.size) this.items[j] = make();
    }
  }
}

export interface CityLoader {
  /** Generates and loads more patients until `results` DiagnosticReports are stored in all; the totals so far. */
  loadTo(results: number): Promise<LoadSummary>;
  /** Up to 2 000 patients with an identifying result code, uniform over everything loaded so far. */
  sample(): SamplePatient[];
  /** Up to 2 000 Observations of demo-hospital-b with their identifier, uniform over everything loaded so far. */
  targets(): UpdateTarget[];
}

const UPDATING_HOSPITAL = 'Organization/demo-hospital-b';

/**
 * Loads the synthetic city of `seed` step by step: the generator continues where the last step stopped, so that a
 * run measures at 10 k results, loads up to 100 k, measures again, and so on.
 */
export function createCityLoader(deps: LoadDeps, options: { seed: number; now: Date }): CityLoader {
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
  const sample = new Reservoir<SamplePatient>(SAMPLE_SIZE, options.seed);
  const targets = new Reservoir<UpdateTarget>(SAMPLE_SIZE, options.seed + 1);
  const generator = generateDemoPatients(rules, {
    seed: options.seed,
    count: Number.MAX_SAFE_INTEGER,
    now: options.now,
  });
  let validated = false;
  /** DiagnosticReports generated (written or being written). */
  let planned = 0;

  /** The documents of some patients, with the samples offered (CPU only). */
  const build = (demos: DemoPatient[]) => {
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
    let amended = 0;
    for (const demo of demos) {
      const docs = patientDocuments(deps, demo, at, txn);
      current.push(...docs.current);
      history.push(...docs.history);
      facts.push(...docs.facts);
      index.push(...docs.index);
      patientKeys.push(docs.patientKeys);
      const reports = demo.results.filter((r) => r.resourceType === 'DiagnosticReport');
      results += reports.length;
      amended += demo.originals.length;
      // Each code once (its newest report last): a check names every item once, as the generic client asks.
      const all = reports.flatMap((r) => identifyingCoding(rules.index, r as DiagnosticReport));
      const codes = all.filter((c, k) => !all.slice(k + 1).some((d) => d.system === c.system && d.code === c.code));
      if (codes.length) {
        const id = demo.patient.identifier![0]!;
        sample.offer(() => ({
          id: demo.patient.id,
          system: id.system!,
          value: id.value!,
          key: docs.keys[0]!,
          codes,
          facts: docs.facts.map(({ _id: _i, effectiveAt: _e, ...f }) => f),
        }));
      }
      for (const r of demo.results) {
        if (r.resourceType !== 'Observation' || r.performer?.[0]?.reference !== UPDATING_HOSPITAL) continue;
        const identifier = r.identifier?.[0];
        if (!identifier?.system || !identifier.value) continue;
        targets.offer(() => ({
          system: identifier.system!,
          value: identifier.value!,
          resource: r as Observation & { id: string },
        }));
      }
    }
    return { patients: demos.length, current, history, facts, index, patientKeys, results, amended };
  };

  const write = async (docs: ReturnType<typeof build>) => {
    const { current, history, facts, index, patientKeys, results, amended } = docs;
    await Promise.all([
      insertAll(col.current, current),
      insertAll(col.history, history),
      insertAll(col.facts, facts),
      insertAll(col.patientIndex, index),
      insertAll(col.patientKeys, patientKeys),
    ]);
    summary.results += results;
    summary.patients += docs.patients;
    summary.amended += amended;
    summary.resources += current.length;
    summary.historyVersions += history.length;
    summary.facts += facts.length;
    return results;
  };

  return {
    async loadTo(target) {
      const started = Date.now();
      const progress = createProgress('Loading results', Math.max(0, target - planned));
      let inFlight: Promise<void> = Promise.resolve();
      let batch: DemoPatient[] = [];
      const send = async () => {
        const docs = build(batch);
        batch = [];
        await inFlight;
        // One batch writes while the next is generated: generation and the database overlap on two cores.
        inFlight = write(docs).then((n) => progress.tick(n, `${summary.resources} resources, ${summary.facts} facts`));
      };
      while (planned < target) {
        const demo = generator.next().value as DemoPatient;
        batch.push(demo);
        planned += demo.results.filter((r) => r.resourceType === 'DiagnosticReport').length;
        if (batch.length >= BATCH_PATIENTS) await send();
      }
      if (batch.length) await send();
      await inFlight;
      summary.ms += Date.now() - started;
      summary.resultsPerSecond = Math.round((summary.results / summary.ms) * 1000);
      summary.documentsPerSecond = Math.round(
        ((summary.resources + summary.historyVersions + summary.facts) / summary.ms) * 1000,
      );
      progress.finish(`${summary.resources} resources, ${summary.facts} facts`);
      return { ...summary };
    },
    sample: () => sample.items,
    targets: () => targets.items,
  };
}

/** What the ledger holds after a load step. */
export interface LedgerSummary {
  entries: number;
  checks: number;
  ms: number;
  /** First and last day of the entries. */
  from: string;
  to: string;
}

/**
 * A year of the decisions ledger for the demo city: the checks other institutions asked about generated patients
 * and what their doctors did, built by the ledger's own pure functions (`promptEntries`, `decisionEntry`, through
 * the demo history generator), written in bulk. `loadTo(n)` adds entries until about n are stored in all,
 * continuing the generator where the last step stopped.
 */
export function createLedgerLoader(
  deps: LoadDeps & Pick<AppDeps, 'ledger'>,
  options: { seed: number; now: Date; secret: string },
): { loadTo(entries: number): Promise<LedgerSummary> } {
  const rules = deps.facts!.rules;
  const generator = generateDemoPatients(rules, {
    seed: options.seed,
    count: Number.MAX_SAFE_INTEGER,
    now: options.now,
  });
  const summary: LedgerSummary = { entries: 0, checks: 0, ms: 0, from: '9999', to: '0000' };
  return {
    async loadTo(target) {
      const started = Date.now();
      const progress = createProgress('Loading ledger', Math.max(0, target - summary.entries));
      let batch: LedgerEntry[] = [];
      const write = async () => {
        await insertAll(deps.ledger!.collection, batch);
        // The reports count prompts (one per institution, patient, item and day), folded from the entries as the
        // broker's own history seeding does.
        for (let i = 0; i < batch.length; i += 1000) await deps.ledger!.foldIntoPrompts(batch.slice(i, i + 1000));
        summary.entries += batch.length;
        progress.tick(batch.length, `${summary.checks} checks`);
        batch = [];
      };
      while (summary.entries + batch.length < target) {
        const demo = generator.next().value as DemoPatient;
        const history = demoHistory(rules, demo, { seed: options.seed, now: options.now, secret: options.secret });
        summary.checks += history.checks.length;
        for (const e of history.entries) {
          // Ids derive from the patient id, as in the demo seed: prefixed so that a load in a seeded database adds.
          batch.push({ ...e, _id: `bench-${options.seed}-${e._id}` });
          if (e.day < summary.from) summary.from = e.day;
          if (e.day > summary.to) summary.to = e.day;
        }
        if (batch.length >= 5000) await write();
      }
      if (batch.length) await write();
      summary.ms += Date.now() - started;
      progress.finish(`${summary.checks} checks`);
      return { ...summary };
    },
  };
}
