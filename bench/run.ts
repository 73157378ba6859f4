/**
 * `npm run bench [-- --quick | --scaling 10000,100000 | --results N] [-- --only a,b] [-- --seconds S]
 *  [-- --row-seconds S] [-- --mixed-seconds S] [-- --ledger-per-result R]`
 *
 * Loads a synthetic city (bench/load.ts) into ONE database step by step and measures on it, in this one run:
 * - scaling: at every size of the run (default 10 k, 100 k, 1 M results; `--quick` 10 k and 100 k; `--scaling a,b,…`
 *   any sizes; `--results N` N alone) the same single-client requests (bench/scaling.ts: FHIR searches, conditional
 *   writes, a transaction, `$reuse-check`, the year report), median and p99 and the growth per 10× data; the data
 *   is loaded up to the next size between two measurements;
 * then at the largest size:
 * - reuse-core: `runReuseCheck` in process (1 and 5 items) against the replay of the database operations it
 *   performs (bench/replay.ts), c = 1, 8, 64;
 * - reuse-http: `POST /fhir/$reuse-check` with autocannon against the real broker listening in its own process
 *   (bench/server.ts), 1 and 5 items, c = 1, 8, 64, a different patient per request, against the replay of every
 *   database operation of such a check from the bench process (the floor) and against the generic way (one indexed
 *   FHIR search per item plus client-side rules, bench/generic.ts); the broker's RSS under c = 64;
 * - ingest: transaction Bundles of 1, 10, 100 new resources through HTTP vs a bare insertMany of the same documents;
 * - reports: a year of the decisions ledger by month × organization through HTTP (cold and warm) vs the bare
 *   aggregation;
 * - mixed: reuse checks, searches, reads and writes from 32 loops for `--mixed-seconds` (default 120): errors,
 *   p50/p99, throughput, broker and database memory over time (bench/mixed.ts);
 * - summary: every figure against the targets, memory, and the query plans (explain) of the hot queries.
 * Each benchmark prints its JSON summary and writes bench/results/<name>-<largest size>-<date>.json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import type { Parameters } from 'fhir/r4';
import type { AppDeps } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { searchToken } from '../src/fhir/search/extract.js';
import { createLogger } from '../src/log.js';
import { decideReuse } from '../src/recognition/engine.js';
import { localDate } from '../src/recognition/time.js';
import { createServices } from '../src/services.js';
import type { CurrentDoc, HistoryDoc } from '../src/store/models.js';
import { runReuseCheck } from '../src/fhir/reuse-check.js';
import { startBroker, type Broker } from './broker.js';
import { startBenchDatabase } from './database.js';
import { createGenericClient, hurenAnswer } from './generic.js';
import { bundleOf, ingestStream } from './ingest.js';
import {
  createCityLoader,
  createLedgerLoader,
  documentsOf,
  type LedgerSummary,
  type LoadSummary,
  type SamplePatient,
} from './load.js';
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
import { mixedLoad, type MixedResult } from './mixed.js';
import { createReplay, type AuditTemplate } from './replay.js';
import { BUREAU, CLINICIAN_B, HIS_B, REQUESTER, checkBody, createRequests } from './requests.js';
import { formatScaling, measureScaling, scalingTable, type RowFigures, type ScalingTable } from './scaling.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    results: { type: 'string' },
    scaling: { type: 'string' },
    'ledger-per-result': { type: 'string', default: '0.6' },
    seconds: { type: 'string', default: '5' },
    'row-seconds': { type: 'string', default: '5' },
    'mixed-seconds': { type: 'string', default: '120' },
    concurrency: { type: 'string', default: '32' },
    only: { type: 'string' },
  },
});
const ALL = ['scaling', 'reuse-core', 'reuse-http', 'ingest', 'reports', 'mixed'];
/** `--only scaling,reuse-core,reuse-http,ingest,reports,mixed`: some benchmarks (the summary has only what ran). */
const only = new Set(values.only?.split(',') ?? ALL);
for (const name of only) if (!ALL.includes(name)) throw new Error(`--only takes ${ALL.join(',')}, not ${name}`);
/** `--quick`: up to 100 k results (the size); the full run goes on to 1 M. */
const QUICK_SIZES = [10_000, 100_000];
const FULL_SIZES = [10_000, 100_000, 1_000_000];
const sizes = (
  values.scaling
    ? values.scaling.split(',').map(Number)
    : values.results
      ? [Number(values.results)]
      : values.quick
        ? QUICK_SIZES
        : FULL_SIZES
).sort((a, b) => a - b);
if (sizes.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error(`sizes must be positive integers: ${sizes}`);
const results = sizes[sizes.length - 1]!;
/** Ledger entries per loaded result (60 k for 100 k results): a bigger city asks more checks. */
const ledgerPerResult = Number(values['ledger-per-result']);
const seconds = Number(values.seconds);
const rowSeconds = Number(values['row-seconds']);
const mixedSeconds = Number(values['mixed-seconds']);
const mixedConcurrency = Number(values.concurrency);
const here = path.dirname(fileURLToPath(import.meta.url));
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-bench-'));
const SECRET = 'huren-bench-patient-key-secret-0001';
const DB_NAME = 'huren_bench';
const DAY = 86400_000;
/** Sample patients on which the generic answer is compared with Huren's. */
const AGREEMENT_SAMPLES = 20;
const TARGETS = {
  reuseVsFloor: 0.7,
  reuseVsGeneric: 3,
  ingestVsInsertMany: 0.5,
  yearReportMs: 2000,
  growthPer10x: 1.5,
  searchMedianMsAt1M: 50,
  mixed: { errors: 0, p99Ms: 1000 },
};

const started = new Date();
const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGb: Math.round(os.totalmem() / 1024 ** 3) };

/** Progress on stderr: stdout carries the JSON summaries. */
const step = (what: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${what}\n`);

const sizeName = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}M` : `${Math.round(n / 1000)}k`);

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
  /** Start of the facts window the check reads (longest validity + the check's margin). */
  from: Date;
  database: string;
  /** The database's processes by name, for the CPU per request of each (`withCpu`). */
  dbProcesses: Record<string, number>;
}

/** The facts window `$reuse-check` reads at `now`: the longest validity window plus 2 days (reuse-check.ts). */
function factsFrom(deps: AppDeps, now: Date): Date {
  const longest = Math.max(...deps.facts.rules.catalogue.items.map((i) => i.validityDays));
  return new Date(now.getTime() - (longest + 2) * DAY);
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
  const replay = (items: 1 | 5) =>
    createReplay({ deps, sample, requester: 'demo-hospital-b', at: now, from, items, scope: 'check' });
  const out: Record<string, Record<string, Throughput>> = {};
  // Everything runs in this process (no broker): its CPU and the database's.
  const cpu = (work: () => Promise<Throughput>) => withCpu({ bench: process.pid, ...ctx.dbProcesses }, work);
  for (const c of [1, 8, 64]) {
    step(`reuse-core c=${c}`);
    out[`c${c}`] = {
      replay1: await cpu(() => measure(seconds, c, replay(1))),
      core1: await cpu(() => measure(seconds, c, core(1))),
      replay5: await cpu(() => measure(seconds, c, replay(5))),
      core5: await cpu(() => measure(seconds, c, core(5))),
    };
  }
  const ratios = Object.fromEntries(
    Object.entries(out).map(([c, r]) => [
      c,
      {
        core1VsReplay: ratio(r.core1!.perSecond, r.replay1!.perSecond),
        core5VsReplay: ratio(r.core5!.perSecond, r.replay5!.perSecond),
      },
    ]),
  );
  write('reuse-core', {
    database: ctx.database,
    load,
    verifiedSamples: verified,
    measureSeconds: seconds,
    notes: [
      'core: runReuseCheck in the bench process (no HTTP, token, patient index or audit): facts read, engine, check and prompts stored (group commit)',
      'replay: the database operations runReuseCheck performs, bare, from the same process: facts find, then the check and its prompts inserted (bench/replay.ts)',
    ],
    results: out,
    ratios,
  });
  return ratios;
}

/**
 * The documents of the AuditEvent the broker wrote for the last `$reuse-check` about `s` (the replay's template):
 * found by its entity token, the newest one.
 */
async function auditTemplate(ctx: Context, s: SamplePatient): Promise<AuditTemplate> {
  const db = ctx.deps.connection.db!;
  const docs = await db
    .collection<CurrentDoc>('resources')
    .find({ tk: searchToken('AuditEvent', 'entity', `Patient/${s.id}`), type: 'AuditEvent' })
    .toArray();
  const checks = docs.filter((d) =>
    (d.resource as { subtype?: { code?: string }[] } | null)?.subtype?.some((c) => c.code === 'operation'),
  );
  checks.sort((a, b) => new Date(b.lastUpdated).getTime() - new Date(a.lastUpdated).getTime());
  const current = checks[0];
  if (!current) throw new Error(`no AuditEvent of a $reuse-check about Patient/${s.id} found`);
  const history = await db.collection<HistoryDoc>('history').findOne({ _id: `${current._id}/1` });
  if (!history) throw new Error(`no history document of ${current._id}`);
  return { current, history };
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
  const check = async (s: SamplePatient, items: 1 | 5) => {
    const res = await fetch(url, { method: 'POST', headers: await headers(), body: checkBody(s, items) });
    if (res.status !== 200) throw new Error(`$reuse-check answered ${res.status}: ${await res.text()}`);
    return hurenAnswer((await res.json()) as Parameters);
  };
  // Does the generic client answer the same question? Compare its pick with Huren's proposed result.
  const agreement = { compared: 0, same: 0 };
  step(`reuse-http: generic vs Huren answers on ${AGREEMENT_SAMPLES} patients`);
  for (const s of sample.slice(0, AGREEMENT_SAMPLES)) {
    const huren = await check(s, 5);
    const picked = await generic.answer(await broker.token(CLINICIAN_B), s, 5);
    for (let k = 0; k < huren.length; k++) {
      agreement.compared++;
      if (huren[k] === picked[k]) agreement.same++;
    }
  }
  // The replay's AuditEvents: copies of the ones the broker writes for a check of 1 and of 5 items.
  const templates = {} as Record<1 | 5, AuditTemplate>;
  for (const items of [1, 5] as const) {
    await check(sample[0]!, items);
    templates[items] = await auditTemplate(ctx, sample[0]!);
  }
  const replay = (items: 1 | 5) =>
    createReplay({
      deps: ctx.deps,
      sample,
      requester: REQUESTER.replace('Organization/', ''),
      at: ctx.now,
      from: ctx.from,
      items,
      scope: 'http',
      audit: templates[items],
    });
  const out: Record<string, Record<string, Throughput>> = {};
  let rssUnderLoadMb = 0;
  for (const c of [1, 8, 64]) {
    const processes = { bench: process.pid, broker: broker.pid, ...ctx.dbProcesses };
    const run = async (items: 1 | 5) => {
      const h = await headers();
      step(`reuse-http c=${c}: Huren, ${items} item(s)`);
      return withCpu(processes, () => cannon({ url, seconds, concurrency: c, headers: h, bodies: bodies[items] }));
    };
    const row: Record<string, Throughput> = {};
    for (const items of [1, 5] as const) {
      step(`reuse-http c=${c}: replay, ${items} item(s)`);
      row[`replay${items}`] = await withCpu(processes, () => measure(seconds, c, replay(items)));
      if (c === 64 && items === 1) {
        const { value, peakMb } = await peakRss(broker.pid, () => run(1));
        row.huren1 = value;
        rssUnderLoadMb = peakMb;
      } else {
        row[`huren${items}`] = await run(items);
      }
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
        huren1VsReplay: ratio(r.huren1!.perSecond, r.replay1!.perSecond),
        huren5VsReplay: ratio(r.huren5!.perSecond, r.replay5!.perSecond),
        huren1VsGeneric1: ratio(r.huren1!.perSecond, r.generic1!.perSecond),
        huren5VsGeneric5: ratio(r.huren5!.perSecond, r.generic5!.perSecond),
      },
    ]),
  );
  const summary = {
    database: ctx.database,
    measureSeconds: seconds,
    patients: sample.length,
    notes: [
      'huren: autocannon POST /fhir/$reuse-check as demo-his-hospital-b, one body per sample patient, rotating',
      "replay (the floor): every database operation of such a check, bare, from the bench process: the facts find and the patient index findOne together, then the check and its prompts inserted together, then the AuditEvent's history and current documents inserted together (bench/replay.ts); documents built before the timing; no group commit",
      'generic: one GET /fhir/DiagnosticReport?patient&code&date=ge search per item, one after the other, as demo-clinician-hospital-b (a his client only reads its own institution), then the newest final result from a qualified institution within the window, client-side',
    ],
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

/** What the warm report reads besides the open days: the rollups (numbers per institution, category and item). */
async function rollupSize(ctx: Context) {
  const docs = await ctx.deps.rollups!.collection.find({}).toArray();
  return {
    documents: docs.length,
    cells: docs.reduce((n, d) => n + d.cells.length, 0),
    jsonMb: Number((docs.reduce((n, d) => n + JSON.stringify(d).length, 0) / 1024 ** 2).toFixed(2)),
  };
}

async function reports(ctx: Context, broker: Broker, ledger: LedgerSummary) {
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
  const bare = await times(async () => {
    await col.aggregate(pipeline).toArray();
    return undefined;
  }, 3);
  const summary = {
    database: ctx.database,
    ledger,
    period: { from, to },
    entriesInPeriod: inYear,
    rollups: await rollupSize(ctx),
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
    scan: /Seq Scan|COLLSCAN|Bitmap Heap Scan|Index Only Scan|Index Scan|IXSCAN|IDHACK|EXPRESS_IXSCAN/.exec(text)?.[0],
    // Which index: PostgreSQL's names end with the key (`…_tk___47b0805c_gin`); MongoDB's are the key pattern.
    indexes: [...new Set([...text.matchAll(/"(?:Index Name|indexName)":"([^"]+)"/g)].map((m) => m[1]))],
    sqlFilter: /"Filter":"((?:[^"\\]|\\.)*)"/.exec(text)?.[1]?.slice(0, 240),
  };
}

async function plans(ctx: Context, ledgerPeriod: { from: string; to: string }) {
  const db = ctx.deps.connection.db!;
  const s0 = ctx.sample[0]!;
  const report = await db
    .collection<CurrentDoc>('resources')
    .findOne({ tk: searchToken('DiagnosticReport', 'patient', `Patient/${s0.id}`), type: 'DiagnosticReport' });
  const attempt = async (cursor: () => { explain(): Promise<unknown> }) => {
    try {
      return summarisePlan(await cursor().explain());
    } catch (e) {
      return { error: (e as Error).message };
    }
  };
  const resources = db.collection('resources');
  const code = s0.codes[0]!;
  return {
    'facts of a patient (reuse check)': await attempt(() =>
      ctx.deps.facts.facts.collection.find({ patientKeys: s0.key, effectiveAt: { $gte: ctx.from, $lte: ctx.now } }),
    ),
    'patient index by key (reuse check: audit, identity)': await attempt(() =>
      db.collection('patient_index').find({ _id: s0.key as never }),
    ),
    'DiagnosticReport?patient&code (search anchored on the patient token)': await attempt(() =>
      resources.find({
        tk: searchToken('DiagnosticReport', 'patient', `Patient/${s0.id}`),
        type: 'DiagnosticReport',
        deleted: false,
        'sp.code': `${code.system}|${code.code}`,
      }),
    ),
    'Patient?identifier (search anchored on the identifier token)': await attempt(() =>
      resources.find({
        tk: searchToken('Patient', 'identifier', `${s0.system}|${s0.value}`),
        type: 'Patient',
        deleted: false,
      }),
    ),
    'resource by id (every write, read)': await attempt(() =>
      resources.find({ _id: `DiagnosticReport/${report?.id ?? ''}` as never }),
    ),
    'report rollup of a closed month by id (report)': await attempt(() =>
      ctx.deps.rollups!.collection.find({ _id: `month:${ledgerPeriod.from.slice(0, 7)}` }),
    ),
    "prompts of an open day (report: today's part)": await attempt(() =>
      ctx.deps.ledger!.prompts.find({ day: ledgerPeriod.to }),
    ),
    'ledger year by month × organization (bare aggregation)': await attempt(() =>
      ctx.deps.ledger!.collection.aggregate([
        { $match: { day: { $gte: ledgerPeriod.from, $lte: ledgerPeriod.to } } },
        { $group: { _id: { month: '$month', institution: '$institution' }, n: { $sum: 1 } } },
      ]),
    ),
  };
}

/** The mixed load's figures as the summary prints them. */
function mixedSummary(m: MixedResult) {
  return {
    concurrency: m.concurrency,
    seconds: m.seconds,
    requests: m.requests,
    errors: m.errors,
    perSecond: m.perSecond,
    p50ms: m.p50ms,
    p99ms: m.p99ms,
    cpuMsPerRequest: m.cpuMsPerRequest,
    memoryTrend: m.memoryTrend,
    met: { errors: m.errors <= TARGETS.mixed.errors, p99: m.p99ms < TARGETS.mixed.p99Ms },
  };
}

async function main(): Promise<void> {
  const db = await startBenchDatabase(dataDir, results);
  step(`database: ${db.description}`);
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
    const tz = deps.facts.rules.catalogue.timeZone;
    const city = createCityLoader(deps, { seed: 1, now });
    const ledgerLoader = createLedgerLoader(deps, { seed: 1, now, secret: SECRET });
    const steps: {
      results: number;
      load: LoadSummary;
      ledger: LedgerSummary;
      databaseMb: number | null;
      settled: { collections: number; seconds: number } | null;
      rows?: Record<string, RowFigures>;
      coldReportMs?: number;
    }[] = [];
    let load: LoadSummary | undefined;
    let ledger: LedgerSummary | undefined;
    let benchRssAfterLoad: number | undefined;
    let brokerAfterStart: number | undefined;
    const measured = new Map<number, Record<string, RowFigures>>();
    const tag = randomUUID().slice(0, 8);
    for (const size of sizes) {
      step(`loading up to ${size} results`);
      load = await city.loadTo(size);
      ledger = await ledgerLoader.loadTo(Math.round(ledgerPerResult * size));
      benchRssAfterLoad = rssMb(process.pid);
      if (!broker) {
        step('starting the broker');
        broker = await startBroker({ ...env, BENCH_DB_URI: db.uri, BENCH_DB_NAME: DB_NAME }, dataDir);
        brokerAfterStart = rssMb(broker.pid);
      }
      const b = broker;
      const requests = createRequests({
        origin: b.origin,
        token: (client) => b.token(client),
        rules: deps.facts.rules,
        now,
        sample: city.sample(),
        targets: city.targets(),
        tag: `${tag}-s${size}`,
      });
      if (only.has('scaling') && measured.size === 0) {
        // A broker just started runs its first requests slower (JIT, caches): without a pass first, the smallest
        // size would look slower than the next and the growth per 10× better than it is.
        step('scaling: a warm-up pass of every row (not counted)');
        await measureScaling(requests, { seconds: 2, minRequests: 10 });
      }
      // Every size is measured on a settled database: the writes of the warm-up pass (or of the last size's rows)
      // would otherwise wait in the GIN pending lists that every search reads through (docs/scale.md).
      step('settling the database (VACUUM ANALYZE, as autovacuum would after a bulk load)');
      const settled = await db.settle(deps.connection.db!);
      const bytes = db.sizeBytes();
      const databaseMb = bytes === null ? null : Math.round(bytes / 1024 ** 2);
      step(`${load.results} results, ${load.resources} resources, ${ledger.entries} ledger entries, ${databaseMb} MB`);
      const entry: (typeof steps)[number] = { results: load.results, load, ledger, databaseMb, settled };
      steps.push(entry);
      if (!only.has('scaling')) continue;
      // The ledger grew: rollups built before would be stale. The first report builds them (cold), as after loading.
      await deps.rollups!.clear();
      const t0 = performance.now();
      await requests.yearReport();
      entry.coldReportMs = Number((performance.now() - t0).toFixed(1));
      const rows = await measureScaling(requests, {
        seconds: rowSeconds,
        minRequests: 20,
        onRow: (name) => step(`scaling at ${sizeName(size)}: ${name}`),
      });
      entry.rows = rows;
      measured.set(size, rows);
      process.stderr.write(`${formatScaling(scalingTable(measured))}\n`);
    }
    const table: ScalingTable | undefined = measured.size ? scalingTable(measured) : undefined;
    if (table) {
      write('scaling', {
        database: db.description,
        sizes,
        ledgerPerResult,
        rowSeconds,
        notes: [
          'one request at a time from the bench process to the broker in its own process; each row for --row-seconds (at least 20 requests) after 3 not counted, and before the first size a 2-s pass of every row not counted (the broker warms up); the data is loaded up to the next size between two measurements, and the database settled (VACUUM ANALYZE) before each',
          'searches and reads as demo-clinician-hospital-b, writes and $reuse-check as demo-his-hospital-b, the report as demo-bureau; every request is audited (an AuditEvent written before the answer)',
          'patients: a uniform sample (reservoir) of 2 000 patients over everything loaded; update targets: 2 000 Observations of demo-hospital-b likewise',
          'the ledger grows with the data (--ledger-per-result); the rollups are cleared after each load step and the first report (coldReportMs) rebuilds them',
          'growthPer10x: (median at the larger size / median at the smaller)^(1 / log10 of the size ratio)',
        ],
        steps,
        table,
        text: formatScaling(table),
      });
    }
    const sample = city.sample();
    const ctx: Context = {
      deps,
      sample,
      now,
      from: factsFrom(deps, now),
      database: db.description,
      dbProcesses: db.processes,
    };
    const reuseCoreRatios = only.has('reuse-core') ? (step('reuse-core'), await reuseCore(ctx, load)) : undefined;
    const http = only.has('reuse-http') ? await reuseHttp(ctx, broker!) : undefined;
    const ingestRatios = only.has('ingest') ? (step('ingest'), await ingest(ctx, broker!)) : undefined;
    const report = only.has('reports') ? (step('reports'), await reports(ctx, broker!, ledger!)) : undefined;
    let mixed: MixedResult | undefined;
    if (only.has('mixed')) {
      step(`mixed load: c=${mixedConcurrency} for ${mixedSeconds} s`);
      const b = broker!;
      mixed = await mixedLoad({
        requests: createRequests({
          origin: b.origin,
          token: (client) => b.token(client),
          rules: deps.facts.rules,
          now,
          sample,
          targets: city.targets(),
          tag: `${tag}-mixed`,
        }),
        seconds: mixedSeconds,
        concurrency: mixedConcurrency,
        brokerPid: b.pid,
        dbProcesses: db.processes,
      });
      write('mixed', { database: db.description, results, ...mixed });
    }
    const bytes = db.sizeBytes();
    const worst = (key: string) =>
      http ? Math.min(...Object.values(http.ratios).map((r) => (r as Record<string, number>)[key] ?? Infinity)) : null;
    const largest = String(sizes[sizes.length - 1]);
    write('summary', {
      database: db.description,
      results,
      sizes,
      benchmarks: [...only],
      load,
      ledger,
      databaseMb: bytes === null ? null : Math.round(bytes / 1024 ** 2),
      targets: TARGETS,
      scaling: table
        ? {
            text: formatScaling(table),
            worstGrowthPer10x: Math.max(...table.rows.flatMap((r) => Object.values(r.growthPer10x))),
            searchMediansAtLargestMs: Object.fromEntries(
              table.rows.filter((r) => r.search).map((r) => [r.name, r.bySize[largest]!.medianMs]),
            ),
          }
        : undefined,
      met: {
        scalingGrowth: table
          ? Object.fromEntries(
              table.rows.map((r) => [r.name, Object.values(r.growthPer10x).every((g) => g <= TARGETS.growthPer10x)]),
            )
          : undefined,
        searchMedianAt1M:
          table && results >= 1_000_000
            ? table.rows.filter((r) => r.search).every((r) => r.bySize[largest]!.medianMs < TARGETS.searchMedianMsAt1M)
            : 'not measured (no 1 M step)',
        reuseVsFloor: {
          worst: Math.min(worst('huren1VsReplay') ?? NaN, worst('huren5VsReplay') ?? NaN),
          target: TARGETS.reuseVsFloor,
        },
        reuseVsGeneric: {
          worst: Math.min(worst('huren1VsGeneric1') ?? NaN, worst('huren5VsGeneric5') ?? NaN),
          worst5Items: worst('huren5VsGeneric5'),
          target: TARGETS.reuseVsGeneric,
        },
        ingestVsInsertMany: { byBundle: ingestRatios, target: TARGETS.ingestVsInsertMany },
        yearReport: { medianMs: report?.http.medianMs, coldMs: report?.cold.medianMs, target: TARGETS.yearReportMs },
        mixed: mixed ? mixedSummary(mixed).met : undefined,
      },
      reuseRatios: http?.ratios,
      reuseCoreRatios,
      mixed: mixed ? mixedSummary(mixed) : undefined,
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
    if (table)
      process.stderr.write(
        `\nScaling (median and p99 in ms, growth of the median per 10× data):\n${formatScaling(table)}\n`,
      );
    if (mixed) {
      const m = mixedSummary(mixed);
      process.stderr.write(
        `\nMixed load, c=${m.concurrency} for ${m.seconds} s: ${m.requests} requests, ${m.errors} errors, ` +
          `${m.perSecond}/s, p50 ${m.p50ms} ms, p99 ${m.p99ms} ms; memory after warm-up: ${JSON.stringify(m.memoryTrend)}\n`,
      );
    }
  } finally {
    await cleanUp();
  }
}

await main();
