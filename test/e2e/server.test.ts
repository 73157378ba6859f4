import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { MongoClient } from 'mongodb';
import { afterEach, describe, expect, inject, test } from 'vitest';
import { requestToken } from '../../src/auth/assertion.js';
import { readDemoClients } from '../../src/auth/demo-clients.js';
import { TEST_DATA_DIR } from '../support/app.js';
import { startServer } from '../support/server-process.js';

/** The real process as `npm start` runs it: config → database → app → listen, and graceful shutdown. */
describe('server process', () => {
  let child: ChildProcessWithoutNullStreams | undefined;
  afterEach(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
  });

  async function start(
    env: Record<string, string>,
  ): Promise<{ base: string; exited: Promise<number | null>; output: () => string }> {
    const server = await startServer({
      HUREN_DATA_DIR: TEST_DATA_DIR,
      HUREN_DB_NAME: `t_server_${randomBytes(4).toString('hex')}`,
      ...env,
    });
    child = server.child;
    return server;
  }

  test('serves the CapabilityStatement, then finishes an in-flight transaction on SIGTERM and exits cleanly', async () => {
    // A generous grace: on FerretDB (the test database) 150 creates take several seconds.
    const server = await start({ MONGODB_URI: inject('mongoUri'), HUREN_SHUTDOWN_GRACE_MS: '60000' });
    const meta = await fetch(`${server.base}/metadata`);
    expect(meta.status).toBe(200);
    expect(((await meta.json()) as { fhirVersion: string }).fhirVersion).toBe('4.0.1');

    // A hospital system's token, obtained as it would: a signed assertion posted to the token endpoint.
    const his = readDemoClients(TEST_DATA_DIR).find((c) => c.clientId === 'demo-his-hospital-a')!;
    const tokenUrl = server.base.replace(/\/fhir$/, '/auth/token');
    const { status, body } = await requestToken(tokenUrl, his.clientId, his.privateJwk, 'system/Patient.c');
    expect(status, JSON.stringify(body)).toBe(200);
    const token = body.access_token!;

    // Enough creates to be in flight for a while when SIGTERM arrives (each Patient also updates the patient index).
    const entries = Array.from({ length: 60 }, (_, i) => ({
      resource: {
        resourceType: 'Patient',
        identifier: [{ system: 'urn:huren:test', value: `shutdown-${i}` }],
        managingOrganization: { reference: his.organization },
      },
      request: { method: 'POST', url: 'Patient' },
    }));
    const inFlight = fetch(`${server.base}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/fhir+json', Prefer: 'return=minimal', Authorization: `Bearer ${token}` },
      body: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: entries }),
    });
    await new Promise((r) => setTimeout(r, 100));
    child!.kill('SIGTERM');
    const res = await inFlight;
    expect(res.status).toBe(200);
    const bundle = (await res.json()) as { entry: { response: { status: string } }[] };
    expect(bundle.entry.filter((e) => e.response.status === '201 Created')).toHaveLength(60);
    expect(await server.exited).toBe(0);
    expect(server.output()).toContain('Stopped');
  }, 120_000);

  test('a configuration error stops the start with a message that says what to fix', async () => {
    await expect(start({ PORT: 'eighty' })).rejects.toThrow(/PORT must be an integer/);
  });

  test('a process killed with SIGKILL after accepting a transaction applies all of it at the next start', async () => {
    const dbName = `t_kill_${randomBytes(4).toString('hex')}`;
    const env = { MONGODB_URI: inject('mongoUri'), HUREN_DB_NAME: dbName };
    const first = await start(env);
    const his = readDemoClients(TEST_DATA_DIR).find((c) => c.clientId === 'demo-his-hospital-a')!;
    const tokenUrl = first.base.replace(/\/fhir$/, '/auth/token');
    const token = (await requestToken(tokenUrl, his.clientId, his.privateJwk, 'system/Patient.crs')).body.access_token!;
    const entries = Array.from({ length: 120 }, (_, i) => ({
      resource: {
        resourceType: 'Patient',
        identifier: [{ system: 'urn:huren:test:kill', value: `kill-${i}` }],
        managingOrganization: { reference: his.organization },
      },
      request: { method: 'POST', url: 'Patient' },
    }));
    const answer = fetch(first.base, {
      method: 'POST',
      headers: { 'Content-Type': 'application/fhir+json', Prefer: 'return=minimal', Authorization: `Bearer ${token}` },
      body: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: entries }),
    }).catch(() => 'connection lost');

    // Kill the moment the transaction is accepted (its ingest-log entry exists), before it is fully projected: on
    // FerretDB, the test database, projecting 120 resources takes seconds, so the kill always lands in between.
    const db = await MongoClient.connect(inject('mongoUri'));
    const log = db.db(dbName).collection('ingest_log');
    for (let i = 0; i < 2000 && (await log.countDocuments({})) === 0; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    child!.kill('SIGKILL');
    expect(await answer).toBe('connection lost'); // the client never heard back…
    const projected = await db.db(dbName).collection('resources').countDocuments({ type: 'Patient' });
    expect(projected).toBeLessThan(120); // …and the crash left the bundle half projected,

    const second = await start(env); // until the restart replays it: all of it, once.
    const res = await fetch(`${second.base}/Patient?identifier=urn:huren:test:kill|&_summary=count`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    expect(((await res.json()) as { total: number }).total).toBe(120);
    expect(await db.db(dbName).collection('history').countDocuments({ type: 'Patient' })).toBe(120);
    expect(await log.countDocuments()).toBe(0);
    expect(second.output()).toContain('Replayed unfinished ingest-log entries');
    await db.close();
  }, 120_000);

  test('metrics on their own listener without a token, on the API port only with one; limits answered as OperationOutcomes', async () => {
    const free = net.createServer().listen(0, '127.0.0.1');
    await once(free, 'listening');
    const metricsPort = (free.address() as net.AddressInfo).port;
    await new Promise((resolve) => free.close(resolve));
    const server = await start({ MONGODB_URI: inject('mongoUri'), HUREN_METRICS_PORT: String(metricsPort) });
    const scraped = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toContain('huren_http_requests_total');
    const origin = server.base.replace(/\/fhir$/, '');
    const anonymous = await fetch(`${origin}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { resourceType: string }).resourceType).toBe('OperationOutcome');
    const longUrl = await fetch(`${server.base}/Patient?name:contains=${'a'.repeat(20_000)}`);
    expect(longUrl.status).toBe(414);
    expect(((await longUrl.json()) as { resourceType: string }).resourceType).toBe('OperationOutcome');
  }, 120_000);
});
