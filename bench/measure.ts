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
