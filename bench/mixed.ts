/**
 * A mixed load at a fixed concurrency for a fixed time (issue 17: concurrency 32 for 2 minutes against the loaded
 * city): reuse checks, searches, reads and writes from `concurrency` closed loops, each request the next kind of a
 * fixed weighted cycle. Reports errors (by kind and status), latency (p50/p99, overall and by kind), throughput, and
 * the resident memory of the broker and the database sampled every few seconds: flat after warm-up or not.
 */
import fs from 'node:fs';
import { cpuMsPer, cpuSeconds, percentile, rate, rssMb } from './measure.js';
import { RequestFailed, type Requests } from './requests.js';

/** The kinds of request and their weights (out of 20). */
const MIX: [kind: string, weight: number, run: (r: Requests, i: number, own: number) => Promise<void>][] = [
  ['$reuse-check (1-5 items)', 6, (r, i) => r.reuseCheck(i, 1 + (i % 5))],
  ['search patient+code+date', 3, (r, i) => r.searchPatientCodeDate(i)],
  ['search by patient', 2, (r, i) => r.searchByPatient(i)],
  ['search by identifier', 2, (r, i) => r.searchByIdentifier(i)],
  ['read by id', 3, (r, i) => r.read(i)],
  ['transaction of 10 new results', 2, (r) => r.transaction(10)],
  // Each loop updates its own Observations (`own`): two updates of one resource at once would race, as in no HIS.
  ['conditional update', 2, (r, _i, own) => r.conditionalUpdate(own)],
];
const CYCLE = MIX.flatMap(([kind, weight, run]) => Array.from({ length: weight }, () => ({ kind, run })));

/** Proportional set size of a process and its descendants in MB (PostgreSQL's backends share their buffers). */
function treePssMb(root: number): number | undefined {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(fs.readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ').pop()!.split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  let kb = 0;
  let found = false;
  for (const stack = [root]; stack.length > 0;) {
    const pid = stack.pop()!;
    try {
      const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
      kb += Number(m?.[1] ?? 0);
      found = true;
    } catch {
      // gone, or not readable
    }
    stack.push(...(children.get(pid) ?? []));
  }
  return found ? Math.round(kb / 1024) : undefined;
}

export interface MixedOptions {
  requests: Requests;
  seconds: number;
  concurrency: number;
  brokerPid: number;
  /** The database's processes by name (PostgreSQL with its backends, as PSS). */
  dbProcesses: Record<string, number>;
  /** Seconds between memory samples. */
  sampleEvery?: number;
}

export async function mixedLoad(options: MixedOptions) {
  const { requests, seconds, concurrency } = options;
  const every = options.sampleEvery ?? Math.max(1, Math.min(10, Math.round(seconds / 24)));
  const latencies = new Map<string, number[]>(MIX.map(([kind]) => [kind, []]));
  const errors: Record<string, Record<string, number>> = {};
  const firstErrors: string[] = [];
  const memory: { s: number; brokerMb?: number; ferretdbMb?: number; postgresqlPssMb?: number }[] = [];
  const started = performance.now();
  const sample = () => {
    const row: (typeof memory)[number] = { s: Math.round((performance.now() - started) / 1000) };
    row.brokerMb = rssMb(options.brokerPid);
    for (const [name, pid] of Object.entries(options.dbProcesses)) {
      if (name === 'postgresql') row.postgresqlPssMb = treePssMb(pid);
      else if (name === 'ferretdb') row.ferretdbMb = rssMb(pid);
    }
    memory.push(row);
  };
  sample();
  const timer = setInterval(sample, every * 1000);
  const processes = { bench: process.pid, broker: options.brokerPid, ...options.dbProcesses };
  const cpuBefore = cpuSeconds(processes);
  const end = started + seconds * 1000;
  let next = 0;
  const targets = requests.targetCount();
  const perWorker = Math.floor(targets / concurrency);
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async (_, worker) => {
        let k = 0;
        while (performance.now() < end) {
          const i = next++;
          const { kind, run } = CYCLE[i % CYCLE.length]!;
          // Target worker, worker + c, worker + 2c … of the update targets (all loops share them when too few).
          const own = perWorker > 0 ? worker + concurrency * (k++ % perWorker) : i;
          const t0 = performance.now();
          try {
            await run(requests, Math.floor(i / CYCLE.length), own);
            latencies.get(kind)!.push(performance.now() - t0);
          } catch (e) {
            // fetch's network errors say what happened in `cause` (a reset, a closed keep-alive socket …).
            const cause = (e as { cause?: { code?: string; message?: string } }).cause;
            const status =
              e instanceof RequestFailed ? String(e.status) : (cause?.code ?? cause?.message ?? (e as Error).name);
            errors[kind] = { ...errors[kind], [status]: (errors[kind]?.[status] ?? 0) + 1 };
            if (firstErrors.length < 5) {
              const at = Math.round((performance.now() - started) / 1000);
              firstErrors.push(`${at} s, ${kind}: ${(e as Error).message.slice(0, 300)} (${cause?.message ?? ''})`);
            }
          }
        }
      }),
    );
  } finally {
    clearInterval(timer);
  }
  sample();
  const elapsed = (performance.now() - started) / 1000;
  const all = [...latencies.values()].flat().sort((a, b) => a - b);
  const cpuMsPerRequest = cpuMsPer(processes, cpuBefore, all.length);
  const errorCount = Object.values(errors).reduce((n, e) => n + Object.values(e).reduce((a, b) => a + b, 0), 0);
  const byKind = Object.fromEntries(
    [...latencies].map(([kind, ms]) => {
      ms.sort((a, b) => a - b);
      const failed = Object.values(errors[kind] ?? {}).reduce((a, b) => a + b, 0);
      return [
        kind,
        {
          ok: ms.length,
          errors: failed,
          perSecond: rate(ms.length, elapsed),
          p50ms: percentile(ms, 50),
          p99ms: percentile(ms, 99),
        },
      ];
    }),
  );
  // Warm-up: the first quarter of the run. A garbage-collected process's RSS saws up and down, so the peaks are
  // compared: flat when the highest sample of the second half after warm-up is within 10 % (or 50 MB) of the highest
  // of the first half.
  const warm = memory.filter((m) => m.s >= seconds / 4);
  const trend = (key: 'brokerMb' | 'ferretdbMb' | 'postgresqlPssMb') => {
    const values = warm.map((m) => m[key]).filter((v): v is number => v !== undefined);
    if (values.length < 4) return undefined;
    const half = Math.floor(values.length / 2);
    const [firstPeak, lastPeak] = [Math.max(...values.slice(0, half)), Math.max(...values.slice(half))];
    return {
      afterWarmUpMb: values[0]!,
      lastMb: values[values.length - 1]!,
      firstHalfPeakMb: firstPeak,
      secondHalfPeakMb: lastPeak,
      flat: lastPeak - firstPeak <= Math.max(50, firstPeak * 0.1),
    };
  };
  return {
    concurrency,
    seconds: Number(elapsed.toFixed(1)),
    mix: Object.fromEntries(MIX.map(([kind, weight]) => [kind, `${weight}/${CYCLE.length}`])),
    requests: all.length + errorCount,
    ok: all.length,
    errors: errorCount,
    errorsByKind: errors,
    firstErrors,
    perSecond: rate(all.length, elapsed),
    p50ms: percentile(all, 50),
    p99ms: percentile(all, 99),
    /** CPU each process spent per answered request (ms): where the two cores went. */
    cpuMsPerRequest,
    byKind,
    memoryEverySeconds: every,
    memory,
    memoryTrend: { broker: trend('brokerMb'), ferretdb: trend('ferretdbMb'), postgresql: trend('postgresqlPssMb') },
  };
}

export type MixedResult = Awaited<ReturnType<typeof mixedLoad>>;
