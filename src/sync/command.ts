import { EXIT, UsageError } from '../cli/errors.js';
import { progress } from '../progress.js';
import { openServices } from '../cli/services.js';
import { describeCounts } from '../import/command.js';
import type { PullProgress } from './pull.js';

/** `huren sync [--hospital ID]…`: one pull of every enabled hospital (or the named ones), with a progress bar. */
export async function syncCommand(options: { hospital?: string[] }): Promise<number> {
  const values = options;
  const { deps, close } = await openServices();
  try {
    const known = (await deps.sync.endpoints()).map((e) => e._id);
    const unknown = (values.hospital ?? []).filter((id) => !known.includes(id));
    if (unknown.length) {
      throw new UsageError(`No sync endpoint ${unknown.join(', ')}; registered: ${known.join(', ') || '(none)'}`);
    }
    const bar = progress('sync', { unit: ' reports' });
    const pulls = new Map<string, PullProgress>();
    const onProgress = (id: string, p: PullProgress) => {
      pulls.set(id, p);
      const all = [...pulls.values()];
      const total = all.reduce((s, x) => s + (x.total ?? x.reports), 0);
      const done = all.reduce((s, x) => s + x.reports, 0);
      bar.update(done, total || undefined, `${pulls.size} hospital(s); ${describeCounts(sumCounts(all))}`);
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
    bar.stop();
    for (const r of results) {
      const line = `${r.endpoint}: ${r.outcome}, ${r.reports} reports read; ${describeCounts(r.counts)}`;
      say(r.error ? `${line}; error: ${r.error}` : line);
    }
    if (results.some((r) => r.outcome !== 'success')) return EXIT.failed;
    return results.some((r) => r.counts.rejected > 0) ? EXIT.refused : EXIT.ok;
  } finally {
    await close();
  }
}

function sumCounts(all: PullProgress[]): PullProgress['counts'] {
  const sum = { ...all[0]!.counts };
  for (const p of all.slice(1)) {
    for (const k of Object.keys(sum) as (keyof typeof sum)[]) sum[k] += p.counts[k];
  }
  return sum;
}

/** A result line on stdout (progress and logs go to stderr). */
function say(line: string): void {
  process.stdout.write(`${line}\n`);
}
