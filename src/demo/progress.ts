/**
 * A progress bar on stderr: redrawn in place on a terminal, a line every few seconds otherwise (CI logs, pipes).
 * Shows done/total, the rate and the time left.
 */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

export interface Progress {
  /** `done` units more; `detail` is shown after the counts (e.g. "16,021 resources"). */
  tick(done: number, detail?: string): void;
  finish(detail?: string): void;
}

const WIDTH = 28;
const LINE_EVERY_MS = 5000;

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  return m < 60
    ? `${m}m${String(s % 60).padStart(2, '0')}s`
    : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export function createProgress(
  label: string,
  total: number,
  stream: ProgressStream = process.stderr,
  clock: () => number = Date.now,
): Progress {
  const started = clock();
  let done = 0;
  let lastLine = started;
  let detail = '';

  const render = (): string => {
    const elapsed = clock() - started;
    const fraction = total > 0 ? Math.min(done / total, 1) : 1;
    const rate = elapsed > 0 ? (done / elapsed) * 1000 : 0;
    const eta = rate > 0 ? ((total - done) / rate) * 1000 : Infinity;
    const filled = Math.round(fraction * WIDTH);
    const bar = `${'█'.repeat(filled)}${'░'.repeat(WIDTH - filled)}`;
    const extra = detail ? `, ${detail}` : '';
    return (
      `${label} ${bar} ${String(Math.floor(fraction * 100)).padStart(3)}% ${done}/${total}${extra} ` +
      `${rate.toFixed(rate < 10 ? 1 : 0)}/s ETA ${done >= total ? '0s' : formatDuration(eta)}`
    );
  };

  return {
    tick(n, d) {
      done += n;
      if (d !== undefined) detail = d;
      if (stream.isTTY) {
        stream.write(`\r${render()}\u001b[K`);
      } else if (clock() - lastLine >= LINE_EVERY_MS) {
        lastLine = clock();
        stream.write(`${render()}\n`);
      }
    },
    finish(d) {
      if (d !== undefined) detail = d;
      const took = formatDuration(clock() - started);
      stream.write(`${stream.isTTY ? '\r' : ''}${render()} (${took})${stream.isTTY ? '\u001b[K' : ''}\n`);
    },
  };
}
