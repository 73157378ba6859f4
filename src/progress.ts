/**
 * What long work prints while it runs, on stderr (results go to stdout): a step line from the first second (the
 * database starting, the services loading), then a progress bar with rate and time left on a terminal
 * (cli-progress), or off a terminal (a pipe, a log file) a plain line at most every few seconds, never the same line
 * twice, and a last line with the time taken. Used by the CLI commands and the demo seeding of `npm start`.
 */
import cliProgress from 'cli-progress';

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

/** A step: one line at once, on a terminal and off it. */
export function step(message: string, stream: ProgressStream = process.stderr): void {
  stream.write(`${message}\n`);
}

export interface Progress {
  /** `done` of `total` units (total unknown: undefined); `detail` is shown after the rate. */
  update(done: number, total: number | undefined, detail: string): void;
  /** The last state, with the time taken, as a final line; the bar closed. Idempotent. */
  stop(detail?: string): void;
}

export interface ProgressOptions {
  /** A count as text, e.g. bytes as megabytes (default: the number). */
  format?: (n: number) => string;
  /** After the counts and the rate: ' MB', ' patients'. */
  unit?: string;
  stream?: ProgressStream;
  clock?: () => number;
}

/** Plain lines off a terminal: at most one every PLAIN_INTERVAL_MS. */
const PLAIN_INTERVAL_MS = 5000;

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  return m < 60
    ? `${m}m${String(s % 60).padStart(2, '0')}s`
    : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/**
 * A progress display for `label`. On a terminal:
 * `import [█████░░░░░] 42% | 12.5/30.0 MB | 1.8 MB/s | ETA 10s | 1200 created, …`; off one:
 * `import: 12.5/30.0 MB (42%), 1.8 MB/s, ETA 10s; 1200 created, …`.
 */
export function progress(label: string, options: ProgressOptions = {}): Progress {
  const { format = String, unit = '', stream = process.stderr, clock = Date.now } = options;
  const started = clock();
  const rate = (done: number) => {
    const seconds = (clock() - started) / 1000;
    return seconds > 0 ? done / seconds : 0;
  };
  const rateText = (done: number) => `${format(rate(done))}${unit}/s`;
  let stopped = false;

  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label} [{bar}] {percentage}% | {done}/{all}${unit} | {rate} | ETA {eta_formatted} | {detail}`,
        stream: stream as NodeJS.WritableStream,
        etaBuffer: 50,
        fps: 5,
        clearOnComplete: false,
      },
      cliProgress.Presets.shades_classic,
    );
    let running = false;
    let last = { done: 0, total: undefined as number | undefined };
    const payload = (done: number, total: number | undefined, detail: string) => ({
      done: format(done),
      all: total === undefined ? '?' : format(total),
      rate: rateText(done),
      detail,
    });
    return {
      update(done, total, detail) {
        last = { done, total };
        if (!running) {
          bar.start(total ?? Math.max(done, 1), done, payload(done, total, detail));
          running = true;
          return;
        }
        if (total !== undefined) bar.setTotal(total);
        bar.update(done, payload(done, total, detail));
      },
      stop(detail) {
        if (stopped || !running) return;
        stopped = true;
        if (detail !== undefined) bar.update(last.done, payload(last.done, last.total, detail));
        bar.stop();
        stream.write(`${label}: done in ${formatDuration(clock() - started)}\n`);
      },
    };
  }

  let lastAt = started;
  let lastLine = '';
  let state: { done: number; total: number | undefined; detail: string } | undefined;
  const line = (s: NonNullable<typeof state>, final: boolean) => {
    const of = s.total === undefined ? '' : `/${format(s.total)}`;
    const pct = s.total ? ` (${Math.floor(Math.min(s.done / s.total, 1) * 100)}%)` : '';
    const r = rate(s.done);
    const eta =
      final || s.total === undefined
        ? ''
        : `, ETA ${s.done >= s.total ? '0s' : formatDuration(r > 0 ? ((s.total - s.done) / r) * 1000 : Infinity)}`;
    const took = final ? ` (${formatDuration(clock() - started)})` : '';
    return `${label}: ${format(s.done)}${of}${unit}${pct}, ${rateText(s.done)}${eta}; ${s.detail}${took}`;
  };
  const print = (text: string) => {
    if (text === lastLine) return;
    stream.write(`${text}\n`);
    lastLine = text;
  };
  return {
    update(done, total, detail) {
      state = { done, total, detail };
      if (clock() - lastAt < PLAIN_INTERVAL_MS) return;
      lastAt = clock();
      print(line(state, false));
    },
    stop(detail) {
      if (stopped || !state) return;
      stopped = true;
      if (detail !== undefined) state.detail = detail;
      print(line(state, true));
    },
  };
}

/** Bytes as megabytes with one decimal. */
export const megabytes = (n: number) => (n / 1024 ** 2).toFixed(1);

/** A progress over `total` units counted as they are done: `tick(n)` adds n (demo seeding, bench loading). */
export function countingProgress(
  label: string,
  total: number,
  options: ProgressOptions = {},
): { tick(n: number, detail?: string): void; finish(detail?: string): void } {
  const p = progress(label, options);
  let done = 0;
  let last = '';
  return {
    tick(n, detail) {
      done += n;
      if (detail !== undefined) last = detail;
      p.update(done, total, last);
    },
    finish(detail) {
      if (done === 0) p.update(0, total, detail ?? last);
      p.stop(detail);
    },
  };
}
