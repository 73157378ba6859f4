/**
 * The database a benchmark run uses, one for every side of every ratio:
 * - `MONGODB_URI` when set (production runs MongoDB);
 * - else the embedded database of `npm start` and the tests (src/store/database.ts): FerretDB 1.24 over a PostgreSQL
 *   cluster Huren starts itself, here a throw-away one without fsync (benchmark data may be lost). It goes on /dev/shm
 *   when twice its expected size fits there (it is memory), else on disk in the system's temporary directory.
 *
 * FerretDB pushes equality on any path down to PostgreSQL, and our build gives every index a GIN companion on the
 * expressions of that pushdown (db/ferretdb/patches.json), so the bench needs no index of its own: every side runs on
 * the indexes the application creates, as on MongoDB.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Db } from 'mongodb';
import { startDatabase } from '../src/store/database.js';

export interface BenchDatabase {
  uri: string;
  description: string;
  /**
   * The database's processes by name (for the RSS and CPU figures; a process's CPU includes its children's, such as
   * PostgreSQL's backends).
   */
  processes: Record<string, number>;
  /** Bytes the database takes on disk (data, indexes and write-ahead log), where the bench can tell. */
  sizeBytes(): number | null;
  /**
   * After a bulk load: what PostgreSQL's autovacuum does a minute or so after one, at once, so that a measurement
   * does not depend on when it comes (see `settle`). Returns the collections settled and the seconds it took.
   */
  settle(db: Db): Promise<{ collections: number; seconds: number } | null>;
  stop(): Promise<void>;
}

/**
 * What one loaded result costs the PostgreSQL cluster (resources with their token list, history, facts, the patient
 * index, a ledger of 0.6 entries per result, every index with its GIN companion), rounded up from the summaries'
 * `databaseMb / results`. The cluster goes on /dev/shm only when twice that fits there.
 */
const PG_BYTES_PER_RESULT = 60_000;

function throwAwayDir(results: number): string {
  const shm = '/dev/shm';
  if (!fs.existsSync(shm)) return os.tmpdir();
  const { bavail, bsize } = fs.statfsSync(shm);
  return bavail * bsize > 2 * results * PG_BYTES_PER_RESULT ? shm : os.tmpdir();
}

/** Allocated bytes of every file under `dir` (what `du -s` counts). */
function diskUsage(dir: string): number {
  let bytes = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    try {
      if (entry.isDirectory()) bytes += diskUsage(full);
      else if (entry.isFile()) bytes += fs.statSync(full).blocks * 512;
    } catch {
      // removed meanwhile (a temporary file of PostgreSQL)
    }
  }
  return bytes;
}

/**
 * `compact` on every collection, which FerretDB 1.24 runs as `VACUUM ANALYZE` of its table. Right after a bulk load
 * PostgreSQL has no statistics of the new rows and every GIN index holds them in its pending list (GIN's fast
 * update), which each lookup reads through and the planner prices in: measured at 9 k resources, the planner then
 * chose a scan of the `type` index or of the whole table (every document de-TOASTed and filtered: 120-160 ms for one
 * patient's Observations) over the `tk` index (0.5 ms once vacuumed). Autovacuum does the same on its own within a
 * minute or so of a load (inserts past its threshold); the bench does not wait for it.
 */
async function settle(db: Db): Promise<{ collections: number; seconds: number }> {
  const started = performance.now();
  const names = (await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name);
  for (const name of names) await db.command({ compact: name });
  return { collections: names.length, seconds: Number(((performance.now() - started) / 1000).toFixed(1)) };
}

/**
 * `BENCH_POSTGRES_SETTINGS="name=value,…"`: PostgreSQL settings to try on the embedded database (an experiment: the
 * figures are then not those of `npm start`, and the results name the settings), e.g.
 * `gin_pending_list_limit=64kB`.
 */
function experimentSettings(): Record<string, string> {
  const raw = process.env.BENCH_POSTGRES_SETTINGS?.trim();
  if (!raw) return {};
  return Object.fromEntries(
    raw.split(',').map((pair) => {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new Error(`BENCH_POSTGRES_SETTINGS: '${pair}' is not name=value`);
      return [pair.slice(0, eq).trim(), pair.slice(eq + 1).trim()];
    }),
  );
}

/** `results`: the largest size the run loads (decides where the cluster goes). */
export async function startBenchDatabase(dataDir: string, results: number): Promise<BenchDatabase> {
  if (process.env.MONGODB_URI) {
    const db = await startDatabase({ uri: process.env.MONGODB_URI, dataDir });
    return {
      uri: db.uri,
      description: 'MongoDB at MONGODB_URI',
      processes: db.processes,
      sizeBytes: () => null,
      // MongoDB keeps its indexes and statistics current as it writes.
      settle: async () => null,
      stop: () => db.stop(),
    };
  }
  const experiment = experimentSettings();
  const db = await startDatabase({
    dataDir,
    memory: true,
    durable: false,
    throwAwayDir: throwAwayDir(results),
    // More cache than the default 256 MB: the loader writes the whole city at once.
    postgresSettings: { shared_buffers: '512MB', ...experiment },
    onProgress: (m) => process.stderr.write(`${m}\n`),
  });
  const cluster = db.postgres;
  const extra = Object.entries(experiment).map(([k, v]) => `${k}=${v}`);
  return {
    uri: db.uri,
    description: `${db.description}${extra.length ? `; experiment: ${extra.join(', ')}` : ''}`,
    processes: db.processes,
    sizeBytes: () => (cluster ? diskUsage(path.join(cluster.dir, 'data')) : null),
    settle: (mongo) => (cluster ? settle(mongo) : Promise.resolve(null)),
    stop: () => db.stop(),
  };
}
