import { parseArgs } from 'node:util';
import { describeCounts, openServices, progressBar, UsageError } from '../import/command.js';
import type { PullProgress } from './pull.js';

/** `huren sync [--hospital ID]…`: one pull of every enabled hospital (or the named ones), with a progress bar. */
export async function syncCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { hospital: { type: 'string', multiple: true } } });
  const { deps, close } = await openServices();
  try {
    const known = (await deps.sync.endpoints()).map((e) => e._id);
    const unknown = (values.hospital ?? []).filter((id) => !known.includes(id));
    if (unknown.length) {
      throw new UsageError(`No sync endpoint ${unknown.join(', ')}; registered: ${known.join(', ') || '(none)'}`);
    }
    const bar = progressBar('sync');
    const progress = new Map<string, PullProgress>();
    const onProgress = (id: string, p: PullProgress) => {
      progress.set(id, p);
      const all = [...progress.values()];
      const total = all.reduce((s, x) => s + (x.total ?? x.reports), 0);
      const done = all.reduce((s, x) => s + x.reports, 0);
      bar.update(total ? done / total : 0, `${done} reports from ${progress.size} hospital(s)`);
    };
    let results = await deps.sync.syncAll(values.hospital, onProgress);
    // A hospital leased by another process: wait for that pull (or, after a crash, its lease) to end, then run once.
    const busy = results.filter((r) => r.outcome === 'busy');
    if (busy.length) {
      const until = Math.max(...busy.map((r) => r.busyUntil?.getTime() ?? 0));
      console.error(
        `huren: ${busy.map((r) => r.endpoint).join(', ')} being pulled elsewhere; waiting until ${new Date(until).toISOString()}`,
      );
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, until - Date.now()) + 100));
      const again = await deps.sync.syncAll(
        busy.map((r) => r.endpoint),
        onProgress,
      );
      results = results.map((r) => again.find((a) => a.endpoint === r.endpoint) ?? r);
    }
    bar.done();
    for (const r of results) {
      const line = `${r.endpoint}: ${r.outcome}, ${r.reports} reports read; ${describeCounts(r.counts)}`;
      say(r.error ? `${line}; error: ${r.error}` : line);
    }
    return results.some((r) => r.outcome !== 'success') ? 1 : 0;
  } finally {
    await close();
  }
}

/** A result line on stdout (progress and logs go to stderr). */
function say(line: string): void {
  process.stdout.write(`${line}\n`);
}
