/**
 * Loads the demo data through the real store, so that every resource gets its search values, history and
 * recognition facts exactly as if a hospital had sent it, and the decisions history through the ledger's
 * collections. Idempotent: ids are fixed, unchanged resources are not rewritten and existing ledger entries are
 * kept, so seeding again with the same seed and size changes nothing.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Resource } from 'fhir/r4';
import type { Collection, OptionalUnlessRequiredId } from 'mongodb';
import type { AppDeps } from '../app.js';
import { stripMeta, type ResourceStore } from '../store/resource-store.js';
import type { WriteOp } from '../store/models.js';
import type { ReuseCheckDoc } from '../recognition/reuse-checks.js';
import {
  DEFAULT_DEMO_SEED,
  demoHistory,
  generateDemoPatients,
  showcasePatient,
  type DemoPatient,
} from './generator.js';
import { progress as createProgress, type ProgressStream } from '../progress.js';
import { secretsOf } from '../recognition/identity.js';

/** Patients written per store commit (one ingest-log document each). */
const BATCH_PATIENTS = 5;

export const DEMO_MARKER_COLLECTION = 'demo_seed';
const MARKER_ID = 'demo';

/** Marks what was seeded; `anchor` is the `now` the data was generated for, kept so re-seeding reproduces it. */
export interface DemoMarker {
  _id: string;
  anchor: Date;
  seed: number;
  patients: number;
  state: 'seeding' | 'done';
  updatedAt: Date;
}

export type SeedDeps = Pick<AppDeps, 'store' | 'facts' | 'validator' | 'connection' | 'log'> &
  Required<Pick<AppDeps, 'ledger' | 'reuseChecks'>>;

export interface SeedOptions {
  patients: number;
  seed?: number;
  /** Where the progress bar goes (stderr by default); `null` for none. */
  progress?: ProgressStream | null;
  clock?: () => Date;
}

export interface WriteCounts {
  created: number;
  updated: number;
  unchanged: number;
}

export interface SeedSummary extends WriteCounts {
  patients: number;
  seed: number;
  anchor: Date;
  checks: number;
  ledgerEntries: number;
  ms: number;
}

/** The seeding view of the app's services (the recognition ledger is always configured by createServices). */
export function seedDepsOf(deps: AppDeps): SeedDeps {
  if (!deps.ledger || !deps.reuseChecks) throw new Error('The decisions ledger is not configured');
  return { ...deps, ledger: deps.ledger, reuseChecks: deps.reuseChecks };
}

function markers(deps: SeedDeps): Collection<DemoMarker> {
  return deps.connection.db!.collection<DemoMarker>(DEMO_MARKER_COLLECTION);
}

export async function readDemoMarker(deps: SeedDeps): Promise<DemoMarker | null> {
  return markers(deps).findOne({ _id: MARKER_ID });
}

/** Generated resources are checked like any pushed resource: a generator bug must not reach the store. */
function assertValid(deps: SeedDeps, resources: Resource[]): void {
  for (const r of resources) {
    const errors = deps.validator.validate(r).filter((i) => i.severity === 'error' || i.severity === 'fatal');
    if (errors.length) {
      throw new Error(`Demo ${r.resourceType}/${r.id} is not valid: ${errors.map((e) => e.diagnostics).join('; ')}`);
    }
  }
}

/** Resources of some patients, first versions of amended results first; unchanged ones are skipped. */
async function writePatients(store: ResourceStore, demos: DemoPatient[]): Promise<WriteCounts> {
  const counts: WriteCounts = { created: 0, updated: 0, unchanged: 0 };
  const resources: (Resource & { id: string })[] = demos.flatMap((d) => [d.patient, ...d.results]);
  const ids = resources.map((r) => `${r.resourceType}/${r.id}`);
  const existing = new Map((await store.findByRefs(ids)).map((d) => [d._id, d]));
  const originals = new Map(demos.flatMap((d) => d.originals).map((r) => [`${r.resourceType}/${r.id}`, r]));

  // First commit: new resources (an amended result as first issued); the Patients before the results naming them.
  const first: WriteOp[] = [];
  const later: Resource[] = [];
  for (const r of resources) {
    const key = `${r.resourceType}/${r.id}`;
    const cur = existing.get(key);
    if (!cur) {
      const original = originals.get(key);
      const plan = store.planCreate(original ?? r, r.id);
      if ('op' in plan) first.push(plan.op);
      if (original) later.push(r);
      counts.created++;
    } else if (cur.resource && isDeepStrictEqual(stripMeta(cur.resource, r.id), stripMeta(r, r.id))) {
      counts.unchanged++;
    } else {
      later.push(r);
      counts.updated++;
    }
  }
  await store.commit(first);
  // Then updates: amendments of what was just created, and resources whose content changed.
  const second: WriteOp[] = [];
  for (const r of later) {
    const plan = await store.planUpdate(r, r.id!);
    if ('op' in plan) second.push(plan.op);
  }
  await store.commit(second);
  return counts;
}

/** Inserts documents, keeping those already there (their ids are fixed): a re-seed adds nothing. */
async function insertNew<T extends { _id: string }>(collection: Collection<T>, docs: T[]): Promise<void> {
  if (docs.length === 0) return;
  try {
    await collection.insertMany(docs as unknown as OptionalUnlessRequiredId<T>[], { ordered: false });
  } catch (e) {
    const writeErrors = (e as { writeErrors?: { code?: number }[] }).writeErrors;
    const code = (e as { code?: number }).code;
    const onlyDuplicates = writeErrors?.length ? writeErrors.every((w) => w.code === 11000) : code === 11000;
    if (!onlyDuplicates) throw e;
  }
}

/**
 * Seeds `patients` synthetic patients with their results and the decisions history of the past year. The data is
 * generated for the anchor time of the first seed of this database, so running it again reproduces the same data
 * (and a larger `patients` only adds patients).
 */
export async function seedDemo(deps: SeedDeps, options: SeedOptions): Promise<SeedSummary> {
  const started = Date.now();
  const seed = options.seed ?? DEFAULT_DEMO_SEED;
  const now = (options.clock ?? (() => new Date()))();
  const prior = await readDemoMarker(deps);
  const anchor = prior?.anchor ?? now;
  await markers(deps).updateOne(
    { _id: MARKER_ID },
    {
      $set: { seed, patients: Math.max(prior?.patients ?? 0, options.patients), state: 'seeding', updatedAt: now },
      $setOnInsert: { anchor },
    },
    { upsert: true },
  );
  const rules = deps.facts.rules;
  const stream = options.progress === undefined ? process.stderr : options.progress;
  const progress = stream
    ? createProgress('Seeding demo patients', {
        stream,
        unit: ' patients',
        format: (n) => n.toFixed(n < 10 && n % 1 ? 1 : 0),
      })
    : undefined;
  let seeded = 0;
  const summary: SeedSummary = {
    patients: options.patients,
    seed,
    anchor,
    created: 0,
    updated: 0,
    unchanged: 0,
    checks: 0,
    ledgerEntries: 0,
    ms: 0,
  };

  const seedBatch = async (demos: DemoPatient[]) => {
    assertValid(
      deps,
      demos.flatMap((d) => [d.patient, ...d.results, ...d.originals]),
    );
    const counts = await writePatients(deps.store, demos);
    const histories = demos.map((d) =>
      demoHistory(rules, d, { seed, now: anchor, secret: secretsOf(deps.facts.secret)[0]! }),
    );
    const checks: ReuseCheckDoc[] = histories.flatMap((h) => h.checks);
    const entries = histories.flatMap((h) => h.entries);
    await insertNew(deps.reuseChecks.collection, checks);
    await deps.ledger.recordHistory(entries);
    summary.created += counts.created;
    summary.updated += counts.updated;
    summary.unchanged += counts.unchanged;
    summary.checks += checks.length;
    summary.ledgerEntries += entries.length;
    seeded += demos.length;
    progress?.update(seeded, options.patients, `${summary.created + summary.updated + summary.unchanged} resources`);
  };

  // One batch at a time: parallel commits only contend for the database's single writer (measured slower).
  let batch: DemoPatient[] = [];
  for (const demo of generateDemoPatients(rules, { seed, count: options.patients, now: anchor })) {
    batch.push(demo);
    if (batch.length < BATCH_PATIENTS) continue;
    await seedBatch(batch);
    batch = [];
  }
  if (batch.length) await seedBatch(batch);

  await markers(deps).updateOne({ _id: MARKER_ID }, { $set: { state: 'done', updatedAt: new Date() } });
  summary.ms = Date.now() - started;
  progress?.stop(`${summary.created} created, ${summary.updated} updated, ${summary.unchanged} unchanged`);
  deps.log.info('Demo data seeded', {
    patients: summary.patients,
    created: summary.created,
    updated: summary.updated,
    unchanged: summary.unchanged,
    checks: summary.checks,
    ledgerEntries: summary.ledgerEntries,
    ms: summary.ms,
  });
  return summary;
}

/**
 * Writes the showcase patient's results relative to `now` (same ids: an update when the day has changed, nothing
 * when it has not), so that a check right after start returns every decision kind.
 */
export async function refreshShowcase(deps: SeedDeps, now: Date = new Date()): Promise<WriteCounts> {
  const showcase = showcasePatient(deps.facts.rules, now);
  assertValid(deps, [showcase.patient, ...showcase.results]);
  return writePatients(deps.store, [showcase]);
}

/**
 * Demo mode at start-up: seeds `patients` demo patients unless a finished seed is recorded (a restart adds nothing
 * and stays fast); an interrupted seed is resumed with its own anchor, seed and size.
 */
export async function seedDemoIfNeeded(
  deps: SeedDeps,
  options: { patients: number; progress?: ProgressStream | null; clock?: () => Date },
): Promise<SeedSummary | undefined> {
  const marker = await readDemoMarker(deps);
  if (marker?.state === 'done' || (!marker && options.patients === 0)) return undefined;
  return seedDemo(deps, {
    ...options,
    patients: marker?.patients ?? options.patients,
    seed: marker?.seed ?? DEFAULT_DEMO_SEED,
  });
}
