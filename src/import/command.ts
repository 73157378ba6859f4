import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { AppDeps } from '../app.js';
import { loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import { createServices } from '../services.js';
import { startDatabase } from '../store/database.js';
import { importPath } from './import.js';
import type { IngestCounts } from './ingest.js';

/**
 * The broker's services for a command-line run against its database (MONGODB_URI, else the embedded database in
 * HUREN_DATA_DIR, which must not be in use by a running broker). Logs go to stderr, as JSON.
 */
export async function openServices(): Promise<{ deps: AppDeps; close: () => Promise<void> }> {
  const config = loadConfig();
  const log = createLogger({ level: process.env.HUREN_LOG_LEVEL ?? 'warn', stream: process.stderr });
  const db = await startDatabase({ uri: config.mongodbUri, dataDir: config.dataDir });
  const deps = await createServices(config, log, db.uri, process.env.HUREN_DB_NAME ?? 'huren');
  return {
    deps,
    close: async () => {
      await deps.connection.close();
      await db.stop();
    },
  };
}

/** A one-line progress bar on stderr, redrawn at most every 200 ms (a plain line per update when not a terminal). */
export function progressBar(label: string): { update: (fraction: number, detail: string) => void; done: () => void } {
  let last = 0;
  const tty = process.stderr.isTTY;
  const draw = (fraction: number, detail: string) => {
    const f = Math.max(0, Math.min(1, fraction));
    const width = 30;
    const bar = '#'.repeat(Math.round(f * width)).padEnd(width, '.');
    const text = `${label} [${bar}] ${(f * 100).toFixed(0).padStart(3)}% ${detail}`;
    process.stderr.write(tty ? `\r${text}\x1b[K` : `${text}\n`);
  };
  let pending: [number, string] | undefined;
  return {
    update: (fraction, detail) => {
      pending = [fraction, detail];
      const now = Date.now();
      if (now - last < (tty ? 200 : 2000)) return;
      last = now;
      draw(fraction, detail);
      pending = undefined;
    },
    done: () => {
      if (pending) draw(...pending);
      if (tty) process.stderr.write('\n');
    },
  };
}

export const describeCounts = (c: IngestCounts) =>
  `${c.created} created, ${c.updated} updated, ${c.unchanged} unchanged, ${c.older} older skipped, ${c.rejected} rejected`;

/** `huren import FILE|DIR [--rejects FILE] [--owner Organization/ID] [--page-size N]` */
export async function importCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { rejects: { type: 'string' }, owner: { type: 'string' }, 'page-size': { type: 'string' } },
  });
  if (positionals.length !== 1) throw new UsageError('usage: huren import FILE|DIR [--rejects FILE] [--owner ORG]');
  const target = path.resolve(positionals[0]);
  if (!fs.existsSync(target)) throw new UsageError(`${positionals[0]} does not exist`);
  const owner = values.owner ? `Organization/${values.owner.replace(/^Organization\//, '')}` : undefined;
  const pageSize = values['page-size'] ? Number(values['page-size']) : undefined;
  if (pageSize !== undefined && !(Number.isInteger(pageSize) && pageSize >= 1 && pageSize <= 1000)) {
    throw new UsageError('--page-size must be an integer from 1 to 1000');
  }
  const rejectsFile = path.resolve(values.rejects ?? 'huren-import-rejects.ndjson');
  const { deps, close } = await openServices();
  const bar = progressBar('import');
  try {
    const summary = await importPath(deps, target, {
      owner,
      rejectsFile,
      pageSize,
      onProgress: (p) => bar.update(p.totalBytes ? p.bytes / p.totalBytes : 1, describeCounts(p.counts)),
    });
    bar.done();
    deps.log.info('Import finished', { files: summary.files.length, ...summary.counts, ms: summary.ms });
    say(
      `Imported ${summary.files.length} file(s) in ${(summary.ms / 1000).toFixed(1)} s: ${describeCounts(summary.counts)}`,
    );
    if (summary.counts.rejected) say(`Refused resources, with their line and OperationOutcome: ${rejectsFile}`);
    return summary.counts.rejected ? 2 : 0;
  } finally {
    await close();
  }
}

/** A command-line mistake: printed as is, without a stack. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A result line on stdout (progress and logs go to stderr). */
function say(line: string): void {
  process.stdout.write(`${line}\n`);
}
