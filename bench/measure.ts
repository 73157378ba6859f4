/** Timing helpers shared by the benchmarks: closed-loop runs, autocannon runs, process memory. */
import fs from 'node:fs';
import autocannon from 'autocannon';

export interface Throughput {
  concurrency: number;
  requests: number;
  perSecond: number;
  p50ms: number;
  p99ms: number;
  /** Failed calls (non-2xx or network errors); a figure with failures is not a throughput. */
  failures?: number;
  /** CPU per request of each process while it ran (`withCpu`), in ms. */
  cpuMsPerRequest?: Record<string, number | null>;
}

/** Resident set size of a process in MB (undefined when it is gone). */
export function rssMb(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : undefined;
  } catch {
    return undefined;
  }
}

/** The highest RSS of `pid` seen while `work` runs (sampled every 200 ms). */
export async function peakRss<T>(pid: number, work: () => Promise<T>): Promise<{ value: T; peakMb: number }> {
  let peak = rssMb(pid) ?? 0;
  const timer = setInterval(() => (peak = Math.max(peak, rssMb(pid) ?? 0)), 200);
  try {
    return { value: await work(), peakMb: peak };
  } finally {
    clearInterval(timer);
  }
}

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ: 100 on Linux for every architecture the kernel exports it to

/** pid → [parent pid, CPU seconds (user + system)] of every process now running, from /proc. */
function processTable(): Map<number, [number, number]> {
  const table = new Map<number, [number, number]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Fields after the command name, which may itself contain spaces and parentheses (proc(5)).
      const fields = fs.readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ').pop()!.split(' ');
      table.set(Number(entry), [Number(fields[1]), (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND]);
    } catch {
      // gone meanwhile
    }
  }
  return table;
}

/**
 * CPU seconds used so far by each named process and its descendants (a PostgreSQL postmaster's backends), except
 * descendants that are named themselves.
 */
export function cpuSeconds(processes: Record<string, number>): Record<string, number> {
  const table = processTable();
  const children = new Map<number, number[]>();
  for (const [pid, [ppid]] of table) {
    const siblings = children.get(ppid);
    if (siblings) siblings.push(pid);
    else children.set(ppid, [pid]);
  }
  const out: Record<string, number> = {};
  const roots = new Set(Object.values(processes));
  for (const [name, root] of Object.entries(processes)) {
    let sum = 0;
    for (const stack = [root]; stack.length > 0;) {
      const pid = stack.pop()!;
      sum += table.get(pid)?.[1] ?? 0;
      // A named process started by another (the broker and the database by the bench) counts only for itself.
      stack.push(...(children.get(pid) ?? []).filter((child) => !roots.has(child)));
    }
    out[name] = sum;
  }
  return out;
}

/**
 * Runs a throughput measurement and adds the CPU each process spent per request meanwhile (ms): where a ratio's
 * difference goes when the processes share the machine's cores.
 */
export async function withCpu(processes: Record<string, number>, work: () => Promise<Throughput>): Promise<Throughput> {
  const before = cpuSeconds(processes);
  const result = await work();
  return { ...result, cpuMsPerRequest: cpuMsPer(processes, before, result.requests) };
}

/** CPU ms per unit of work of each process since `before` (a `cpuSeconds` reading). */
export function cpuMsPer(
  processes: Record<string, number>,
  before: Record<string, number>,
  units: number,
): Record<string, number | null> {
  const after = cpuSeconds(processes);
  return Object.fromEntries(
    Object.keys(processes).map((name) => [
      name,
      units > 0 ? Number(((((after[name] ?? 0) - (before[name] ?? 0)) * 1000) / units).toFixed(2)) : null,
    ]),
  );
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return Number(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!.toFixed(2));
}

/** A rate with three significant digits: a generic check that takes 44 s is 0.0226/s, not 0. */
export const rate = (n: number, seconds: number) => Number((n / seconds).toPrecision(3));

export const ratio = (a: number, b: number) => (b > 0 ? Number((a / b).toPrecision(3)) : null);

/** Runs `task` from `concurrency` loops for `seconds` (at least one call each); throughput and latency. */
export async function measure(
  seconds: number,
  concurrency: number,
  task: (i: number) => Promise<unknown>,
): Promise<Throughput> {
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
    perSecond: rate(latencies.length, elapsed),
    p50ms: percentile(latencies, 50),
    p99ms: percentile(latencies, 99),
  };
}

/**
 * autocannon against a listening server, `concurrency` connections for `seconds`, one request body after another
 * from `bodies` (rotating across all connections), so that every request asks about another patient.
 */
export async function cannon(options: {
  url: string;
  seconds: number;
  concurrency: number;
  headers: Record<string, string>;
  bodies: string[];
}): Promise<Throughput> {
  let next = 0;
  const result = await autocannon({
    url: options.url,
    connections: options.concurrency,
    duration: options.seconds,
    timeout: 120,
    method: 'POST',
    headers: options.headers,
    requests: [{ setupRequest: (req) => ({ ...req, body: options.bodies[next++ % options.bodies.length] }) }],
  });
  const ok = result['2xx'];
  return {
    concurrency: options.concurrency,
    requests: ok,
    perSecond: rate(ok, result.duration),
    p50ms: result.latency.p50,
    p99ms: result.latency.p99,
    failures: result.non2xx + result.errors + result.timeouts,
  };
}
