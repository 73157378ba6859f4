/**
 * `npm run bench [-- --quick] [-- --results N] [-- --ledger N] [-- --db postgresql|sqlite] [-- --seconds S]`
 *
 * Loads a synthetic city (bench/load.ts) into ONE database, then measures on it, in this one run:
 * - reuse-core: `runReuseCheck` in-process (1 and 5 items) against the floor, the bare driver query of a patient's
 *   facts (the lookup the check makes);
 * - reuse-http: `POST /fhir/$reuse-check` with autocannon against the real broker listening in its own process
 *   (bench/server.ts), 1 and 5 items, c = 1, 8, 64, a different patient per request; the floor again; the generic
 *   way (one FHIR search per item plus client-side rules, bench/generic.ts); the broker's RSS under c = 64;
 * - ingest: transaction Bundles of 1, 10, 100 new resources through HTTP vs a bare insertMany of the same documents;
 * - reports: a year of the decisions ledger by month × organization through HTTP vs the bare aggregation;
 * - summary: every ratio against the targets, memory, and the query plans (explain) of the hot queries.
 * Each benchmark prints its JSON summary and writes bench/results/<name>-<date>.json.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import type { Parameters } from 'fhir/r4';
import type { AppDeps } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { decideReuse } from '../src/recognition/engine.js';
import { localDate } from '../src/recognition/time.js';
import { createServices } from '../src/services.js';
import { runReuseCheck } from '../src/fhir/reuse-check.js';
import { startBroker, type Broker } from './broker.js';
import { startBenchDatabase } from './database.js';
import { createGenericClient, hurenAnswer } from './generic.js';
import { bundleOf, ingestStream } from './ingest.js';
import { documentsOf, loadCity, loadLedger, type SamplePatient } from './load.js';
import {
  cannon,
  cpuMsPer,
  cpuSeconds,
  measure,
  peakRss,
  rate,
  ratio,
  rssMb,
  withCpu,
  type Throughput,
} from './measure.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    results: { type: 'string' },
    ledger: { type: 'string', default: '60000' },
    db: { type: 'string', default: 'postgresql' },
    seconds: { type: 'string', default: '5' },
    only: { type: 'string' },
  },
});
/** `--only reuse-core,reuse-http,ingest,reports`: some benchmarks (the summary then has only what ran). */
const only = new Set(values.only?.split(',') ?? ['reuse-core', 'reuse-http', 'ingest', 'reports']);
/** `--quick`: 100 k results (the size); the full run is 1 M. */
const QUICK_RESULTS = 100_000;
/** Up to this size the slow generic way is measured more thoroughly (it scans on FerretDB, see below). */
const SMALL_RESULTS = 20_000;
const results = Number(values.results ?? (values.quick ? QUICK_RESULTS : 1_000_000));
const ledgerEntries = Number(values.ledger);
const seconds = Number(values.seconds);
const here = path.dirname(fileURLToPath(import.meta.url));
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-bench-'));
const SECRET = 'huren-bench-patient-key-secret-0001';
const DB_NAME = 'huren_bench';
const DAY = 86400_000;
const REQUESTER = 'Organization/demo-hospital-b';
const HIS_B = 'demo-his-hospital-b';
const CLINICIAN_B = 'demo-clinician-hospital-b';
const BUREAU = 'demo-bureau';
/**
 * Where the generic way is measured. On FerretDB 1.24 every search condition on a nested field (`sp.patient`,
 * `sp.code`, `sp.date`) is filtered in Go over every DiagnosticReport (only `type` and `deleted` reach PostgreSQL),
 * so one search costs seconds at 20 k results and 64 of them in flight take minutes: measured at c = 1 and 8 only.
 */
const GENERIC_PLAN: Record<number, (1 | 5)[]> = results <= SMALL_RESULTS ? { 1: [1, 5], 8: [1] } : { 1: [1] };
/** Sample patients on which the generic answer is compared with Huren's (each costs a generic search). */
const AGREEMENT_SAMPLES = results <= SMALL_RESULTS ? 5 : results <= QUICK_RESULTS ? 2 : 1;
const TARGETS = { reuseVsFloor: 0.7, reuseVsGeneric: 3, ingestVsInsertMany: 0.5, yearReportMs: 2000 };

const started = new Date();
const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGb: Math.round(os.totalmem() / 1024 ** 3) };

/** Progress on stderr: stdout carries the JSON summaries. */
const step = (what: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${what}\n`);

function write(name: string, summary: Record<string, unknown>): void {
  const json = JSON.stringify({ name, date: new Date().toISOString(), machine, ...summary }, null, 2);
  console.log(json);
  fs.mkdirSync(path.join(here, 'results'), { recursive: true });
  const file = `${name}-${Math.round(results / 1000)}k-${started.toISOString().slice(0, 10)}.json`;
  fs.writeFileSync(path.join(here, 'results', file), `${json}\n`);
}

interface Context {
  deps: AppDeps;
  sample: SamplePatient[];
  now: Date;
  /** Start of the facts window the check reads (longest validity + margin). */
  from: Date;
  database: string;
  /** Makes the database's indexes usable (bench/database.ts); again after the benchmark creates collections. */
  tune: () => Promise<string[]>;
  /** The database's processes by name, for the CPU per request of each (`withCpu`). */
  dbProcesses: Record<string, number>;
}

/** The bare driver query of a patient's facts: the lookup `$reuse-check` makes, nothing else. */
function floorQuery(ctx: Context) {
  const factCol = ctx.deps.facts.facts.collection;
  return (i: number) =>
    factCol
      .find({ patientKeys: ctx.sample[i % ctx.sample.length]!.key, effectiveAt: { $gte: ctx.from, $lte: ctx.now } })
      .toArray();
}

async function reuseCore(ctx: Context, load: unknown) {
  const { deps, sample, now, from } = ctx;
  const rules = deps.facts.rules;
  // The loaded data answers like pushed data: the stored facts of a sample give the engine's answer on them.
  let verified = 0;
  for (const s of sample.slice(0, 50)) {
    const stored = await deps.facts.facts.findForPatient([s.key], from, now);
    const items = s.codes.slice(-5).map((c) => ({ coding: [c] }));
    const ask = (facts: typeof stored) =>
      decideReuse(
        { patientKeys: [s.key], requester: 'demo-hospital-b', items, context: 'routine' },
        facts,
        rules.directory,
        rules.index,
        rules.matrix,
        now,
      ).map((o) => `${o.decision}:${o.fact?.id ?? ''}`);
    const inWindow = s.facts.filter((f) => Date.parse(f.effective) >= from.getTime());
    if (JSON.stringify(ask(stored)) !== JSON.stringify(ask(inWindow))) throw new Error(`Sample ${s.id} differs`);
    verified++;
  }
  const core = (items: number) => (i: number) => {
    const s = sample[i % sample.length]!;
    return runReuseCheck(deps, {
      requester: 'demo-hospital-b',
      patientKeys: [s.key],
      items: s.codes.slice(-items).map((c) => ({ coding: [c] })),
      context: 'routine',
      at: now,
    });
  };
  const out: Record<string, Record<string, Throughput>> = {};
  // Everything runs in this process (no broker): its CPU and the database's.
  const cpu = (work: () => Promise<Throughput>) => withCpu({ bench: process.pid, ...ctx.dbProcesses }, work);
  for (const c of [1, 8, 64]) {
    out[`c${c}`] = {
      floor: await cpu(() => measure(seconds, c, floorQuery(ctx))),
      core1: await cpu(() => measure(seconds, c, core(1))),
      core5: await cpu(() => measure(seconds, c, core(5))),
    };
  }
  write('reuse-core', {
    database: ctx.database,
    load,
    verifiedSamples: verified,
    measureSeconds: seconds,
    results: out,
    ratios: Object.fromEntries(
      Object.entries(out).map(([c, r]) => [
        c,
        {
          core1VsFloor: ratio(r.core1!.perSecond, r.floor!.perSecond),
          core5VsFloor: ratio(r.core5!.perSecond, r.floor!.perSecond),
        },
      ]),
    ),
  });
}

/** The `$reuse-check` Parameters asking about a sample patient's newest `items` result codes. */
function checkBody(s: SamplePatient, items: number): string {
  return JSON.stringify({
    resourceType: 'Parameters',
    parameter: [
      { name: 'patient', valueIdentifier: { system: s.system, value: s.value } },
      ...s.codes.slice(-items).map((c) => ({ name: 'code', valueCoding: c })),
      { name: 'requester', valueReference: { reference: REQUESTER } },
    ],
  });
}

async function reuseHttp(ctx: Context, broker: Broker) {
  const { sample } = ctx;
  const url = `${broker.origin}/fhir/$reuse-check`;
  const bodies = { 1: sample.map((s) => checkBody(s, 1)), 5: sample.map((s) => checkBody(s, 5)) };
  const headers = async () => ({
    Authorization: `Bearer ${await broker.token(HIS_B)}`,
    'Content-Type': 'application/fhir+json',
  });
  const generic = createGenericClient(ctx.deps.facts.rules, broker.origin, ctx.now);
  // Does the generic client answer the same question? Compare its pick with Huren's proposed result.
  const agreement = { compared: 0, same: 0 };
  step(`reuse-http: generic vs Huren answers on ${AGREEMENT_SAMPLES} patients`);
  {
    for (const s of sample.slice(0, AGREEMENT_SAMPLES)) {
      const res = await fetch(url, { method: 'POST', headers: await headers(), body: checkBody(s, 1) });
      if (res.status !== 200) throw new Error(`$reuse-check answered ${res.status}: ${await res.text()}`);
      const huren = hurenAnswer((await res.json()) as Parameters);
      const picked = await generic.answer(await broker.token(CLINICIAN_B), s, 1);
      agreement.compared++;
      if (huren[0] === picked[0]) agreement.same++;
    }
  }
  const out: Record<string, Record<string, Throughput>> = {};
  let rssUnderLoadMb = 0;
  for (const c of [1, 8, 64]) {
    step(`reuse-http c=${c}: floor`);
    const processes = { bench: process.pid, broker: broker.pid, ...ctx.dbProcesses };
    const run = async (items: 1 | 5) => {
      const h = await headers();
      step(`reuse-http c=${c}: Huren, ${items} item(s)`);
      return withCpu(processes, () => cannon({ url, seconds, concurrency: c, headers: h, bodies: bodies[items] }));
    };
    const row: Record<string, Throughput> = {
      floor: await withCpu(processes, () => measure(seconds, c, floorQuery(ctx))),
    };
    if (c === 64) {
      const { value, peakMb } = await peakRss(broker.pid, () => run(1));
      row.huren1 = value;
      rssUnderLoadMb = peakMb;
    } else {
      row.huren1 = await run(1);
    }
    row.huren5 = await run(5);
    for (const items of GENERIC_PLAN[c] ?? []) {
      step(`reuse-http c=${c}: generic, ${items} item(s)`);
      const token = await broker.token(CLINICIAN_B);
      row[`generic${items}`] = await withCpu(processes, () =>
        measure(seconds, c, (i) => generic.answer(token, sample[i % sample.length]!, items)),
      );
    }
    out[`c${c}`] = row;
  }
  const ratios = Object.fromEntries(
    Object.entries(out).map(([c, r]) => [
      c,
      {
        huren1VsFloor: ratio(r.huren1!.perSecond, r.floor!.perSecond),
        huren5VsFloor: ratio(r.huren5!.perSecond, r.floor!.perSecond),
        huren1VsGeneric1: r.generic1 ? ratio(r.huren1!.perSecond, r.generic1.perSecond) : null,
        huren5VsGeneric5: r.generic5 ? ratio(r.huren5!.perSecond, r.generic5.perSecond) : null,
      },
    ]),
  );
  const summary = {
    database: ctx.database,
    measureSeconds: seconds,
    patients: sample.length,
    notes: [
      'huren: autocannon POST /fhir/$reuse-check as demo-his-hospital-b, one body per sample patient, rotating',
      'floor: bare driver find of the patient facts by key and window, from the bench process (no HTTP)',
      'generic: one GET /fhir/DiagnosticReport?patient&code&date=ge search per item as demo-clinician-hospital-b (a his client only reads its own institution), then newest final result from a qualified institution within the window, client-side',
    ],
    genericMeasuredAt: GENERIC_PLAN,
    genericAgreement: agreement,
    results: out,
    ratios,
    rssMb: { brokerUnderC64: rssUnderLoadMb },
  };
  write('reuse-http', summary);
  return { ratios, rssUnderLoadMb };
}

async function ingest(ctx: Context, broker: Broker) {
  const scratch = {
    current: ctx.deps.connection.db!.collection('bench_scratch_resources'),
    history: ctx.deps.connection.db!.collection('bench_scratch_history'),
  };
  type CpuMs = Record<string, number | null>;
  const out: Record<
    string,
    {
      http: Throughput & { resourcesPerSecond: number; cpuMsPerResource: CpuMs };
      insertMany: { resourcesPerSecond: number; resources: number; cpuMsPerResource: CpuMs };
    }
  > = {};
  // The bare side writes into collections indexed like the store's: index maintenance is part of every write.
  for (const [name, col] of [
    ['resources', scratch.current],
    ['history', scratch.history],
  ] as const) {
    for (const index of await ctx.deps.connection.db!.collection(name).indexes()) {
      if (index.name !== '_id_') await col.createIndex(index.key, { name: index.name, unique: index.unique ?? false });
    }
  }
  await ctx.tune();
  const tag = randomUUID().slice(0, 8);
  const skipped: Record<string, string> = {};
  let msPerResource = 0;
  for (const size of [1, 10, 100]) {
    // A bundle the last size predicts to take over 4 minutes is not sent: it would outlast the HTTP timeout (5 min).
    if (msPerResource * size > 240_000) {
      skipped[`bundle${size}`] =
        `not sent: ${Math.round((msPerResource * size) / 1000)} s predicted per bundle (${Math.round(msPerResource)} ms per resource at the previous size)`;
      continue;
    }
    step(`ingest: bundles of ${size}`);
    // Both sides take the same resources in the same order; each measures only its writes.
    const httpStream = ingestStream(ctx.deps.facts.rules, ctx.sample, ctx.now, `${tag}-${size}`);
    const bareStream = ingestStream(ctx.deps.facts.rules, ctx.sample, ctx.now, `${tag}-${size}`);
    const token = await broker.token(HIS_B);
    // CPU per resource of the broker and the database on each side (the bench's own work of building bundles and
    // documents is left out: it is outside both timings).
    const serving = { broker: broker.pid, ...ctx.dbProcesses };
    let cpuBefore = cpuSeconds(serving);
    let httpResources = 0;
    const latencies: number[] = [];
    let spent = 0;
    while (spent < seconds * 1000) {
      const bundle = JSON.stringify(bundleOf(httpStream, size));
      const t0 = performance.now();
      const res = await fetch(`${broker.origin}/fhir`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/fhir+json' },
        body: bundle,
      });
      const text = await res.text();
      const ms = performance.now() - t0;
      if (res.status !== 200) throw new Error(`transaction of ${size} answered ${res.status}: ${text.slice(0, 500)}`);
      spent += ms;
      latencies.push(ms);
      httpResources += size;
    }
    const httpCpu = cpuMsPer(serving, cpuBefore, httpResources);
    cpuBefore = cpuSeconds(serving);
    let bareResources = 0;
    let bareSpent = 0;
    while (bareSpent < seconds * 1000) {
      const txn = randomUUID();
      const at = new Date();
      const docs = bundleOf(bareStream, size).entry!.map((e) =>
        documentsOf(ctx.deps, e.resource as never, [e.resource!], at, txn),
      );
      const t0 = performance.now();
      await Promise.all([
        scratch.current.insertMany(docs.map((d) => d.current) as never[]),
        scratch.history.insertMany(docs.flatMap((d) => d.history) as never[]),
      ]);
      bareSpent += performance.now() - t0;
      bareResources += size;
    }
    const bareCpu = cpuMsPer(serving, cpuBefore, bareResources);
    latencies.sort((a, b) => a - b);
    const httpRate = rate(httpResources, spent / 1000);
    msPerResource = spent / httpResources;
    out[`bundle${size}`] = {
      http: {
        concurrency: 1,
        requests: latencies.length,
        perSecond: rate(latencies.length, spent / 1000),
        p50ms: latencies[Math.floor(latencies.length / 2)]!,
        p99ms: latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))]!,
        resourcesPerSecond: httpRate,
        cpuMsPerResource: httpCpu,
      },
      insertMany: {
        resources: bareResources,
        resourcesPerSecond: rate(bareResources, bareSpent / 1000),
        cpuMsPerResource: bareCpu,
      },
    };
  }
  await scratch.current.drop();
  await scratch.history.drop();
  const ratios = Object.fromEntries(
    Object.entries(out).map(([k, v]) => [k, ratio(v.http.resourcesPerSecond, v.insertMany.resourcesPerSecond)]),
  );
  write('ingest', {
    database: ctx.database,
    measureSeconds: seconds,
    notes: [
      'http: POST /fhir transaction Bundles of new DiagnosticReports and Observations (PUT to fresh ids) as demo-his-hospital-b, one bundle at a time; time = sum of request times',
      'insertMany: the same resources as the documents the store keeps (resources + history, with search values), two insertMany per bundle into scratch collections; time = sum of insert times (documents built outside the timing)',
      'the HTTP side also writes the ingest log, facts, patient index lookups and an AuditEvent per bundle: that is the overhead measured',
    ],
    results: out,
    skipped,
    ratios,
  });
  return ratios;
}

async function reports(ctx: Context, broker: Broker, ledger: Awaited<ReturnType<typeof loadLedger>>) {
  const tz = ctx.deps.facts.rules.catalogue.timeZone;
  const to = localDate(ctx.now.getTime(), tz);
  const from = localDate(ctx.now.getTime() - 364 * DAY, tz);
  const col = ctx.deps.ledger!.collection;
  const inYear = await col.countDocuments({ day: { $gte: from, $lte: to } });
  const token = await broker.token(BUREAU);
  const url = `${broker.origin}/reports/savings?from=${from}&to=${to}&by=month,organization`;
  /** Up to 5 timed runs; a run that fails (the report's 30-s limit answers 503) or takes over 10 s ends the series. */
  const times = async (task: () => Promise<string | undefined>, runs = 5) => {
    const ms: number[] = [];
    let failure: string | undefined;
    for (let i = 0; i < runs && !failure; i++) {
      const t0 = performance.now();
      failure = await task();
      ms.push(Number((performance.now() - t0).toFixed(1)));
      if (ms[i]! > 10_000) break;
    }
    const sorted = [...ms].sort((a, b) => a - b);
    return { runsMs: ms, medianMs: sorted[Math.floor(sorted.length / 2)]!, ...(failure ? { failure } : {}) };
  };
  let rows = 0;
  const ask = async () => {
    const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
    if (res.status !== 200) return `${res.status}: ${(await res.text()).slice(0, 300)}`;
    rows = ((await res.json()) as { rows: unknown[] }).rows.length;
    return undefined;
  };
  // Cold: no rollup yet (the first report after loading; the broker builds them ahead in its maintenance).
  await ctx.deps.rollups!.clear();
  const cold = await times(ask, 1);
  // Warm: the closed months and days read from their rollups, the open days from the ledger.
  const http = await times(ask);
  const pipeline = [
    { $match: { day: { $gte: from, $lte: to } } },
    { $group: { _id: { month: '$month', institution: '$institution' }, n: { $sum: 1 } } },
  ];
  const bare = await times(
    async () => {
      await col.aggregate(pipeline).toArray();
      return undefined;
    },
    results <= SMALL_RESULTS ? 5 : 3,
  );
  const summary = {
    database: ctx.database,
    ledger,
    period: { from, to },
    entriesInPeriod: inYear,
    rows,
    notes: [
      'cold: GET /reports/savings?by=month,organization as demo-bureau with no rollup stored (each month of entries read once, rollups written)',
      'http: the same, warm (median of 5): closed months and days read from their rollups by _id, today and yesterday from the ledger',
      'bare: one $match on day + $group by {month, institution} with $sum over the ledger, through the driver (the naive report, one figure only)',
    ],
    cold,
    http,
    bare,
    ratio: ratio(bare.medianMs, http.medianMs),
  };
  write('reports', summary);
  return summary;
}

/** What an explain says about pushdown and the scan kind, without the bulk. */
function summarisePlan(explain: unknown): unknown {
  const e = explain as Record<string, unknown>;
  const text = JSON.stringify(e.queryPlanner ?? e);
  return {
    filterPushdown: e.filterPushdown,
    sortPushdown: e.sortPushdown,
    scan: /Seq Scan|SCAN|COLLSCAN|Index Scan|IXSCAN|IDHACK|SEARCH|Bitmap Heap Scan/.exec(text)?.[0],
    sqlFilter: /"Filter":"((?:[^"\\]|\\.)*)"/.exec(text)?.[1]?.slice(0, 240),
  };
}

async function plans(ctx: Context, ledgerPeriod: { from: string; to: string }) {
  const db = ctx.deps.connection.db!;
  const s0 = ctx.sample[0]!;
  const report = await db
    .collection('resources')
    .findOne({ type: 'DiagnosticReport', 'resource.subject.reference': `Patient/${s0.id}` });
  const sp = (report?.sp ?? {}) as Record<string, unknown>;
  const first = (v: unknown) => (Array.isArray(v) ? v[0] : v);
  const attempt = async (cursor: () => { explain(): Promise<unknown> }) => {
    try {
      return summarisePlan(await cursor().explain());
    } catch (e) {
      return { error: (e as Error).message };
    }
  };
  return {
    'facts of a patient (reuse check, floor)': await attempt(() =>
      ctx.deps.facts.facts.collection.find({ patientKeys: s0.key, effectiveAt: { $gte: ctx.from, $lte: ctx.now } }),
    ),
    'patient index by key (reuse check audit)': await attempt(() =>
      db.collection('patient_index').find({ _id: s0.key as never }),
    ),
    'DiagnosticReport by patient and code (generic search)': await attempt(() =>
      db.collection('resources').find({
        type: 'DiagnosticReport',
        deleted: false,
        'sp.patient': first(sp.patient),
        'sp.code': first(sp.code),
      }),
    ),
    'report rollup of a closed month by id (report)': await attempt(() =>
      ctx.deps.rollups!.collection.find({ _id: `month:${ledgerPeriod.from.slice(0, 7)}` }),
    ),
    "ledger entries of an open day (report: today's part)": await attempt(() =>
      ctx.deps.ledger!.collection.find({ day: ledgerPeriod.to }),
    ),
    'ledger year by month × organization (bare aggregation)': await attempt(() =>
      ctx.deps.ledger!.collection.aggregate([
        { $match: { day: { $gte: ledgerPeriod.from, $lte: ledgerPeriod.to } } },
        { $group: { _id: { month: '$month', institution: '$institution' }, n: { $sum: 1 } } },
      ]),
    ),
    'resource by id (ingest update check)': await attempt(() =>
      db.collection('resources').find({ _id: `DiagnosticReport/${report?.id ?? ''}` as never }),
    ),
  };
}

async function main(): Promise<void> {
  const db = await startBenchDatabase(values.db!, dataDir, results);
  const env = {
    HUREN_DATA_DIR: dataDir,
    HUREN_PATIENT_KEY_SECRET: SECRET,
    HUREN_LOG_LEVEL: 'error',
    // One client sends every benchmark request: the per-client limit (1200/min) would measure the limiter.
    HUREN_RATE_LIMIT: '1000000',
    HUREN_DEMO_PATIENTS: '0',
  };
  const config = loadConfig(env);
  const deps = await createServices(config, createLogger({ level: 'error' }), db.uri, DB_NAME);
  let broker: Broker | undefined;
  const cleanUp = async () => {
    await broker?.stop();
    await deps.connection.close();
    await db.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  // An interrupted run leaves no database cluster, broker or /dev/shm directory behind.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      step(`${signal}: cleaning up`);
      void cleanUp().finally(() => process.exit(130));
    });
  }
  try {
    const now = new Date();
    const { summary: load, sample } = await loadCity(deps, { results, seed: 1, now });
    const rules = deps.facts.rules;
    const longest = Math.max(...rules.catalogue.items.map((i) => i.validityDays));
    const ledger = await loadLedger(deps, { entries: ledgerEntries, seed: 1, now, secret: SECRET });
    const benchRssAfterLoad = rssMb(process.pid);
    step('tuning the database indexes');
    const tuned = await db.tune(DB_NAME);
    const databaseBytes = await db.sizeBytes();
    const ctx: Context = {
      deps,
      sample,
      now,
      from: new Date(now.getTime() - (longest + 1) * DAY),
      database: db.description,
      tune: () => db.tune(DB_NAME),
      dbProcesses: db.processes,
    };
    if (only.has('reuse-core')) {
      step('reuse-core');
      await reuseCore(ctx, load);
    }
    step('starting the broker');
    broker = await startBroker({ ...env, BENCH_DB_URI: db.uri, BENCH_DB_NAME: DB_NAME }, dataDir);
    const brokerAfterStart = rssMb(broker.pid);
    const http = only.has('reuse-http') ? await reuseHttp(ctx, broker) : undefined;
    step('ingest');
    const ingestRatios = only.has('ingest') ? await ingest(ctx, broker) : undefined;
    step('reports');
    const report = only.has('reports') ? await reports(ctx, broker, ledger) : undefined;
    const worst = (key: string) =>
      http ? Math.min(...Object.values(http.ratios).map((r) => (r as Record<string, number>)[key] ?? Infinity)) : null;
    const tz = rules.catalogue.timeZone;
    write('summary', {
      database: db.description,
      results,
      benchmarks: [...only],
      ledgerEntries: ledger.entries,
      load,
      databaseMb: databaseBytes === null ? null : Math.round(databaseBytes / 1024 ** 2),
      tunedIndexes: tuned,
      targets: TARGETS,
      met: {
        reuseVsFloor: {
          worst: Math.min(worst('huren1VsFloor') ?? NaN, worst('huren5VsFloor') ?? NaN),
          target: TARGETS.reuseVsFloor,
        },
        reuseVsGeneric: {
          worst: Math.min(worst('huren1VsGeneric1') ?? NaN, worst('huren5VsGeneric5') ?? NaN),
          target: TARGETS.reuseVsGeneric,
        },
        ingestVsInsertMany: { byBundle: ingestRatios, target: TARGETS.ingestVsInsertMany },
        yearReport: { medianMs: report?.http.medianMs, coldMs: report?.cold.medianMs, target: TARGETS.yearReportMs },
      },
      reuseRatios: http?.ratios,
      rssMb: {
        brokerAfterStartOnLoadedData: brokerAfterStart,
        brokerUnderC64: http?.rssUnderLoadMb,
        benchLoaderAfterLoad: benchRssAfterLoad,
        database: Object.fromEntries(Object.entries(db.processes).map(([name, pid]) => [name, rssMb(pid)])),
      },
      plans: await plans(ctx, {
        from: localDate(now.getTime() - 364 * DAY, tz),
        to: localDate(now.getTime(), tz),
      }),
      wallMinutes: Number(((Date.now() - started.getTime()) / 60000).toFixed(1)),
    });
  } finally {
    await cleanUp();
  }
}

await main();
