/**
 * What a command prints while it works, on stderr (results go to stdout): a step line from the first second (the
 * database starting, the services loading), then a progress bar with rate and ETA on a terminal (cli-progress), or
 * on a pipe or log file plain lines at most every few seconds, never the same line twice.
 */
import cliProgress from 'cli-progress';

/** A step: one line at once, on a terminal and off it. */
export function step(message: string): void {
  process.stderr.write(`${message}\n`);
}

export interface Progress {
  /** `done` of `total` units (total unknown: undefined); `detail` is shown after the rate. */
  update(done: number, total: number | undefined, detail: string): void;
  /** The last state as a final line (off a terminal) and the bar closed (on one). */
  stop(): void;
}

/** Plain lines off a terminal: at most one every PLAIN_INTERVAL_MS. */
const PLAIN_INTERVAL_MS = 5000;

/**
 * A progress display for `label`, counting `unit`s (`format` turns a count into text, e.g. bytes into MB).
 * On a terminal: `import [█████░░░░░] 42% | 12.5/30.0 MB | 1.8 MB/s | ETA 10s | 1200 created, …`.
 */
export function progress(label: string, format: (n: number) => string = String, unit = ''): Progress {
  const started = Date.now();
  const rateOf = (done: number) => {
    const seconds = (Date.now() - started) / 1000;
    return seconds > 0 ? `${format(done / seconds)}${unit}/s` : '';
  };
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label} [{bar}] {percentage}% | {done}/{all}${unit} | {rate} | ETA {eta_formatted} | {detail}`,
        stream: process.stderr,
        etaBuffer: 50,
        fps: 5,
        hideCursor: true,
        clearOnComplete: false,
      },
      cliProgress.Presets.shades_classic,
    );
    let running = false;
    return {
      update(done, total, detail) {
        const payload = {
          done: format(done),
          all: total === undefined ? '?' : format(total),
          rate: rateOf(done),
          detail,
        };
        if (!running) {
          bar.start(total ?? Math.max(done, 1), done, payload);
          running = true;
        } else {
          if (total !== undefined) bar.setTotal(total);
          bar.update(done, payload);
        }
      },
      stop() {
        if (running) bar.stop();
      },
    };
  }
  let last = 0;
  let lastLine = '';
  let pending = '';
  const line = (done: number, total: number | undefined, detail: string) => {
    const of = total === undefined ? '' : `/${format(total)}`;
    const pct = total ? ` (${Math.floor((done / total) * 100)}%)` : '';
    return `${label}: ${format(done)}${of}${unit}${pct}, ${rateOf(done)}; ${detail}`;
  };
  const print = (text: string) => {
    if (text === lastLine) return;
    process.stderr.write(`${text}\n`);
    lastLine = text;
  };
  return {
    update(done, total, detail) {
      pending = line(done, total, detail);
      if (Date.now() - last < PLAIN_INTERVAL_MS) return;
      last = Date.now();
      print(pending);
    },
    stop() {
      if (pending) print(pending);
    },
  };
}

/** Bytes as megabytes with one decimal. */
export const megabytes = (n: number) => (n / 1024 ** 2).toFixed(1);
