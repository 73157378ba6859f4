/**
 * `npm run bench [-- --quick] [-- --results N] [-- --db postgresql|sqlite] [-- --seconds S]`
 *
 * Loads a synthetic city (bench/load.ts), then measures on that one database, in this one run:
 * - floor: the bare driver query of a patient's facts (`$in` as the fact store sends it, and plain equality);
 * - core: `runReuseCheck` in-process (facts lookup + engine + stored check + ledger prompts), 1 and 5 items;
 * - identity: the Patient-by-identifier lookup `$reuse-check` makes for its audit trail;
 * - query plans (explain) of those queries, and the resident set sizes.
 * Prints a JSON summary and writes bench/results/<name>-<date>.json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { decideReuse } from '../src/recognition/engine.js';
import { createServices } from '../src/services.js';
import { runReuseCheck } from '../src/fhir/reuse-check.js';
import { startBenchDatabase } from './database.js';
import { loadCity, type SamplePatient } from './load.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    results: { type: 'string' },
    db: { type: 'string', default: 'postgresql' },
    seconds: { type: 'string', default: '5' },
  },
});
const results = Number(values.results ?? (values.quick ? 100_000 : 1_000_000));
const seconds = Number(values.seconds);
const here = path.dirname(fileURLToPath(import.meta.url));
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-bench-'));
const SECRET = 'huren-bench-patient-key-secret-0001';
const DAY = 86400_000;

function rssMb(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : undefined;
  } catch {
    return undefined;
  }
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return Number(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!.toFixed(2));
}

/** Runs `task` from `concurrency` loops for `seconds` (at least one call each); throughput and latency. */
async function measure(concurrency: number, task: (i: number) => Promise<unknown>) {
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      do {
        const t0 = performance.now();
        await task(n++);
        latencies.push(performance.now() - t0);
      } while (performance.now() < end);
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    concurrency,
    requests: latencies.length,
    perSecond: Number((latencies.length / elapsed).toFixed(1)),
    p50ms: percentile(latencies, 50),
    p99ms: percentile(latencies, 99),
  };
}

async function main(): Promise<void> {
  const db = await startBenchDatabase(values.db!, dataDir);
  const config = loadConfig({ HUREN_DATA_DIR: dataDir, HUREN_PATIENT_KEY_SECRET: SECRET, HUREN_LOG_LEVEL: 'error' });
  const log = createLogger({ level: 'error' });
  const deps = await createServices(config, log, db.uri, 'huren_bench');
  try {
    const now = new Date();
    const { summary: load, sample } = await loadCity(deps, { results, seed: 1, now });
    const rules = deps.facts!.rules;
    const factCol = deps.facts!.facts.collection;
    const longest = Math.max(...rules.catalogue.items.map((i) => i.validityDays));
    const from = new Date(now.getTime() - (longest + 1) * DAY);
    const pick = (i: number): SamplePatient => sample[i % sample.length]!;

    // The loaded data answers like pushed data: the stored facts of a sample give the engine's answer on them.
    let verified = 0;
    for (const s of sample.slice(0, 50)) {
      const stored = await deps.facts!.facts.findForPatient([s.key], from, now);
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

    const floorIn = (i: number) =>
      factCol.find({ patientKeys: { $in: [pick(i).key] }, effectiveAt: { $gte: from, $lte: now } }).toArray();
    const floorEq = (i: number) =>
      factCol.find({ patientKeys: pick(i).key, effectiveAt: { $gte: from, $lte: now } }).toArray();
    const core = (items: number) => (i: number) => {
      const s = pick(i);
      return runReuseCheck(deps, {
        requester: 'demo-hospital-b',
        patientKeys: [s.key],
        items: s.codes.slice(-items).map((c) => ({ coding: [c] })),
        context: 'routine',
        at: now,
      });
    };
    const resources = deps.connection.db!.collection('resources');
    const identity = (i: number) =>
      resources
        .find({ type: 'Patient', deleted: false, 'sp.identifier': { $in: [`${pick(i).system}|${pick(i).value}`] } })
        .toArray();

    const out: Record<string, unknown> = {};
    for (const c of [1, 8, 64]) {
      out[`c${c}`] = {
        // `$in` is not pushed down by FerretDB: one slow loop is enough to show it.
        ...(c === 1 ? { floorIn: await measure(c, floorIn) } : {}),
        floorEq: await measure(c, floorEq),
        core1: await measure(c, core(1)),
        core5: await measure(c, core(5)),
      };
    }
    const identityLookup = await measure(1, identity);
    const s0 = sample[0]!;
    const plan = async (name: string, cursor: { explain(): Promise<unknown> }) =>
      [name, await cursor.explain()] as const;
    const plans = Object.fromEntries([
      await plan('facts $in', factCol.find({ patientKeys: { $in: [s0.key] }, effectiveAt: { $gte: from, $lte: now } })),
      await plan('facts eq', factCol.find({ patientKeys: s0.key, effectiveAt: { $gte: from, $lte: now } })),
      await plan(
        'patient by identifier',
        resources.find({ type: 'Patient', deleted: false, 'sp.identifier': { $in: [`${s0.system}|${s0.value}`] } }),
      ),
    ]);
    const summary = {
      name: 'reuse-core',
      date: new Date().toISOString(),
      database: db.description,
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGb: Math.round(os.totalmem() / 1024 ** 3) },
      load,
      verifiedSamples: verified,
      measureSeconds: seconds,
      results: out,
      identityLookup,
      ratios: Object.fromEntries(
        [1, 8, 64].map((c) => {
          const r = out[`c${c}`] as Record<string, { perSecond: number }>;
          return [
            `c${c}`,
            {
              core1VsFloor: Number((r.core1!.perSecond / r.floorEq!.perSecond).toFixed(3)),
              core5VsFloor: Number((r.core5!.perSecond / r.floorEq!.perSecond).toFixed(3)),
            },
          ];
        }),
      ),
      rssMb: { bench: rssMb(process.pid), database: db.pids.map(rssMb) },
      plans: Object.fromEntries(Object.entries(plans).map(([k, v]) => [k, summarisePlan(v)])),
    };
    const json = JSON.stringify(summary, null, 2);
    console.log(json);
    fs.mkdirSync(path.join(here, 'results'), { recursive: true });
    fs.writeFileSync(path.join(here, 'results', `reuse-core-${summary.date.slice(0, 10)}.json`), `${json}\n`);
  } finally {
    await deps.connection.close();
    await db.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/** What an explain says about pushdown and the scan kind, without the bulk. */
function summarisePlan(explain: unknown): unknown {
  const e = explain as Record<string, unknown>;
  const text = JSON.stringify(e.queryPlanner ?? e);
  return {
    filterPushdown: e.filterPushdown,
    scan: /Seq Scan|SCAN|COLLSCAN/.exec(text)?.[0] ?? /Index Scan|IXSCAN|SEARCH/.exec(text)?.[0],
    sqlFilter: /"Filter":"([^"]*(?:\\"[^"]*)*)"/.exec(text)?.[1]?.slice(0, 200),
  };
}

await main();
