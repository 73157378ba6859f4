import path from 'node:path';
import { UsageError } from './cli/errors.js';
import { loadConfig } from './config.js';
import { createSearchRegistry } from './fhir/search/index.js';
import { resourceIndex } from './services.js';
import { LEGACY_SQLITE_DIR, legacySqliteData } from './store/database.js';
import { migrateSqlite } from './store/migrate-sqlite.js';

/**
 * `npm run cli -- migrate-sqlite [--batch-size N]`: converts a data directory of the earlier SQLite default into the
 * database `npm start` uses now (src/store/migrate-sqlite.ts), with progress on stderr from the first second.
 */
export async function migrateSqliteCommand(options: { batchSize?: string }): Promise<number> {
  const out = (line: string) => process.stderr.write(`${line}\n`);
  const batchSize = options.batchSize === undefined ? undefined : Number(options.batchSize);
  if (batchSize !== undefined && !(Number.isInteger(batchSize) && batchSize > 0)) {
    throw new UsageError('--batch-size must be a positive whole number');
  }
  const config = loadConfig();
  const legacyDir = path.join(config.dataDir, LEGACY_SQLITE_DIR);
  if (!legacySqliteData(config.dataDir)) {
    out(`Nothing to migrate: ${legacyDir} holds no SQLite database (or it was migrated already).`);
    return 0;
  }
  // Ctrl-C stops between two batches and stops the databases cleanly. The same signal again within a second is the
  // one `tsx` (npm run cli) relays and is ignored; a later one quits at once.
  const abort = new AbortController();
  let signalled = 0;
  const onSignal = () => {
    if (signalled === 0) {
      signalled = Date.now();
      out('Stopping after the current batch… (run the command again later: it resumes where it stopped)');
      abort.abort();
    } else if (Date.now() - signalled > 1000) {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const started = Date.now();
  let last = 0;
  try {
    const result = await migrateSqlite({
      dataDir: config.dataDir,
      uri: config.mongodbUri,
      index: resourceIndex(createSearchRegistry({ defaultTimeZone: config.defaultTimeZone })),
      batchSize,
      signal: abort.signal,
      onMessage: out,
      onProgress: (p) => {
        // A line when a collection starts and ends, and at most one a second in between.
        const now = Date.now();
        if (p.copied > 0 && !p.done && now - last < 1000) return;
        last = now;
        const of = p.estimated === undefined ? '' : ` of ~${p.estimated}`;
        const state = p.done ? `${p.copied} copied` : `${p.copied}${of} copied…`;
        out(`[${p.index}/${p.collections}] ${p.database}.${p.collection}: ${state}`);
      },
    });
    if (!result) return 0;
    const seconds = Math.round((Date.now() - started) / 1000);
    out(
      `Migrated ${result.documents} documents in ${result.collections.length} collections in ${seconds} s; ` +
        'every count matches. `npm start` now runs on the new database.',
    );
    return 0;
  } catch (err) {
    out(
      `huren: the migration stopped: ${(err as Error).message}\n` +
        `Nothing was renamed: ${legacyDir} is untouched and \`npm start\` keeps ` +
        'refusing it. Run the command again: it copies what is missing and skips what is already there.',
    );
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
