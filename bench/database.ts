/**
 * The database a benchmark run uses, one for every side of every ratio:
 * - `MONGODB_URI` when set (production runs MongoDB);
 * - else `--db postgresql` (default): a throw-away PostgreSQL cluster (in /dev/shm where it fits) behind our FerretDB 1.24 launcher,
 *   because FerretDB pushes equality filters down to PostgreSQL, while on SQLite every filter other than `_id` scans
 *   the collection in Go (measured: 0.9 s for one patient's facts among 10 k, 7.5 s for a Patient by identifier
 *   among 14 k resources), which no benchmark at 100 k results can wait for;
 * - `--db sqlite`: the embedded FerretDB-SQLite of development (small --results only).
 *
 * FerretDB 1.24 on PostgreSQL filters equality as `_jsonb->'field' @> value` but creates btree indexes, which `@>`
 * cannot use: every lookup, `_id` included, is a sequential scan (FerretDB issue 4646, whose workaround is a GIN
 * index on the same expression). `tune` adds that GIN index for `_id` and for every top-level field that leads one
 * of the app's indexes, so each side of every ratio runs on a database whose indexes work, as on MongoDB. FerretDB
 * pushes down no nested field (`sp.patient`) and no range, which stay filtered in FerretDB itself.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ensureFerretDb, startDatabase } from '../src/store/database.js';

export interface BenchDatabase {
  uri: string;
  description: string;
  /**
   * The database's processes by name (for the RSS and CPU figures; a process's CPU includes its children's, such as
   * PostgreSQL's backends).
   */
  processes: Record<string, number>;
  /**
   * Makes the indexes of database `dbName` usable where the database needs help (FerretDB on PostgreSQL, below);
   * returns what it created. Call it once the collections and their indexes exist.
   */
  tune(dbName: string): Promise<string[]>;
  /** Bytes the database takes on disk (data and indexes), where the database can tell. */
  sizeBytes(): Promise<number | null>;
  stop(): Promise<void>;
}

/**
 * What one loaded result costs the PostgreSQL cluster, with history, facts and the GIN indexes of `tune`, rounded up
 * from the summaries' `databaseMb / results`. The cluster goes on /dev/shm only when twice that fits there (it is
 * memory); a full run (1 M) goes on disk, still without fsync.
 */
const PG_BYTES_PER_RESULT = 40_000;

function clusterBase(results: number): string {
  const shm = '/dev/shm';
  if (!fs.existsSync(shm)) return os.tmpdir();
  const { bavail, bsize } = fs.statfsSync(shm);
  return bavail * bsize > 2 * results * PG_BYTES_PER_RESULT ? shm : os.tmpdir();
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  const dir = versions.map((v) => path.join(root, v, 'bin')).find((d) => fs.existsSync(path.join(d, 'initdb')));
  if (!dir) throw new Error('PostgreSQL is not installed (apt-get install postgresql), or pass --db sqlite');
  return dir;
}

/** initdb refuses to run as root: run the cluster as the `postgres` system user then. */
function asClusterUser(command: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
}

function waitForLine(child: ChildProcess, line: RegExp, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what} not ready after 60 s: ${out.slice(-500)}`)), 60000);
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      if (line.test(out)) {
        clearTimeout(timer);
        child.stdout?.removeAllListeners('data');
        child.stdout?.resume();
        resolve();
      }
    });
    child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}): ${out.slice(-500)}`)));
  });
}

async function startPostgresFerret(results: number): Promise<BenchDatabase> {
  const bin = binDir();
  const base = clusterBase(results);
  const dir = fs.mkdtempSync(path.join(base, 'huren-bench-pg-'));
  fs.chmodSync(dir, 0o777);
  const data = path.join(dir, 'data');
  const pgPort = await freePort();
  const run = (cmd: string, args: string[]) => {
    const [c, a] = asClusterUser(path.join(bin, cmd), args);
    execFileSync(c, a, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'ferretdb', '--no-sync']);
  run('pg_ctl', [
    '-D',
    data,
    '-l',
    path.join(dir, 'postgres.log'),
    '-w',
    '-o',
    `-p ${pgPort} -k ${dir} -c listen_addresses=127.0.0.1 -c shared_buffers=512MB -c synchronous_commit=off -c fsync=off -c full_page_writes=off -c wal_level=minimal -c max_wal_senders=0`,
    'start',
  ]);
  const [c, a] = asClusterUser(path.join(bin, 'createdb'), [
    '-h',
    '127.0.0.1',
    '-p',
    String(pgPort),
    '-U',
    'ferretdb',
    'ferretdb',
  ]);
  execFileSync(c, a);
  const pgPid = Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);

  const binary = await ensureFerretDb((m) => process.stderr.write(`${m}\n`));
  const port = await freePort();
  const ferret = spawn(
    binary,
    [
      '-listen',
      `127.0.0.1:${port}`,
      '-log-level',
      'error',
      '-postgresql-url',
      `postgres://ferretdb@127.0.0.1:${pgPort}/ferretdb`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  await waitForLine(ferret, /^ready /m, 'FerretDB (PostgreSQL)');
  const psql = (sql: string) => {
    const [c, a] = asClusterUser(path.join(bin, 'psql'), [
      ...['-h', '127.0.0.1', '-p', String(pgPort), '-U', 'ferretdb', '-d', 'ferretdb'],
      ...['-At', '-v', 'ON_ERROR_STOP=1', '-c', sql],
    ]);
    return execFileSync(c, a, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  };
  return {
    uri: `mongodb://127.0.0.1:${port}/`,
    description: `FerretDB 1.24 (PostgreSQL ${path.basename(path.dirname(bin))} backend, throw-away cluster on ${base} without durability (fsync, synchronous_commit off), GIN indexes for FerretDB's equality pushdown)`,
    processes: { ferretdb: ferret.pid!, postgresql: pgPid },
    tune: async (dbName) => {
      const rows = psql(
        `SELECT tablename || '|' || indexdef FROM pg_indexes WHERE schemaname = '${dbName.replace(/'/g, "''")}'`,
      );
      const wanted = new Map<string, Set<string>>();
      for (const line of rows.split('\n').filter(Boolean)) {
        const [table, def] = [line.slice(0, line.indexOf('|')), line.slice(line.indexOf('|') + 1)];
        if (table.startsWith('_ferretdb_') || !def.includes('USING btree')) continue;
        const fields = wanted.get(table) ?? new Set<string>(['_id']);
        // Top-level keys only: `((_jsonb -> 'sp'::text) -> 'patient'::text)` is nested (not pushed down).
        for (const m of def.matchAll(/\(\(_jsonb -> '([^']+)'::text\)\)/g)) fields.add(m[1]!);
        wanted.set(table, fields);
      }
      const created: string[] = [];
      for (const [table, fields] of wanted) {
        for (const field of fields) {
          const name = `${table.slice(0, 40)}_${createHash('sha256').update(field).digest('hex').slice(0, 8)}_gin`;
          psql(
            `CREATE INDEX IF NOT EXISTS "${name}" ON "${dbName}"."${table}" USING gin ((_jsonb -> '${field}') jsonb_path_ops)`,
          );
          created.push(`${table}.${field}`);
        }
      }
      psql(`ANALYZE`);
      return created;
    },
    sizeBytes: async () => Number(psql(`SELECT pg_database_size('ferretdb')`).trim()),
    stop: async () => {
      ferret.kill('SIGTERM');
      await new Promise((r) => ferret.once('exit', r));
      run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function startBenchDatabase(kind: string, dataDir: string, results: number): Promise<BenchDatabase> {
  if (process.env.MONGODB_URI) {
    const db = await startDatabase({ uri: process.env.MONGODB_URI, dataDir });
    return {
      uri: db.uri,
      description: 'MongoDB at MONGODB_URI',
      processes: {},
      tune: async () => [],
      sizeBytes: async () => null,
      stop: () => db.stop(),
    };
  }
  if (kind === 'postgresql') return startPostgresFerret(results);
  if (kind !== 'sqlite') throw new Error(`--db must be postgresql or sqlite, not ${kind}`);
  const db = await startDatabase({ dataDir, memory: true });
  // The launcher is the only process: its pid is found by its port.
  return {
    uri: db.uri,
    description: db.description,
    processes: Object.fromEntries(pidsListening(new URL(db.uri).port).map((pid) => ['ferretdb', pid])),
    // The launcher's patch (db/ferretdb/patches.json) makes `_id` lookups use the index; nothing else is pushed down.
    tune: async () => [],
    sizeBytes: async () => null,
    stop: () => db.stop(),
  };
}

function pidsListening(port: string): number[] {
  try {
    const out = execFileSync('ss', ['-ltnpH', `sport = :${port}`], { encoding: 'utf8' });
    return [...out.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
  } catch {
    return [];
  }
}
