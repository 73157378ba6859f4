import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { DiagnosticReport } from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readDemoClients } from '../../src/auth/demo-clients.js';
import { ingestPage } from '../../src/import/ingest.js';
import { createMetrics } from '../../src/ops/metrics.js';
import { SyncService } from '../../src/sync/service.js';
import { HOSPITAL_A, reportOf, resultsOf } from '../fixtures/connectors.js';
import { createTestApp, TEST_DATA_DIR, type TestApp } from '../support/app.js';

/**
 * Pull sync between two Huren instances on loopback: one plays hospital A's FHIR server, the other is the broker.
 * Plus hospital servers that fail (500), hang, or answer with something that is not a Bundle.
 */

/**
 * Results on the hospital (a report and an observation each, plus one patient). FerretDB writes ~25 resources a
 * second on the test machine, so the suite uses 60; `HUREN_SYNC_RESULTS=3000` runs the same tests as the
 * few-thousand bench (README, Testing).
 */
const RESULTS = Number(process.env.HUREN_SYNC_RESULTS ?? 60);
const SLOW = Math.max(60_000, RESULTS * 400);

let hospital: TestApp;
let broker: TestApp;
let hospitalServer: Server;
let hospitalBase: string;
const badServers: Server[] = [];

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Writes results on the hospital's own server, in batches (each batch one instant of `meta.lastUpdated`). */
async function seedHospital(resources: unknown[], batch = 100): Promise<void> {
  for (let i = 0; i < resources.length; i += batch) {
    const items = resources.slice(i, i + batch).map((resource, k) => ({ resource, where: `#${i + k}` }));
    const results = await ingestPage(hospital.deps, items);
    expect(results.filter((r) => r.outcome === 'rejected')).toEqual([]);
  }
}

const countOf = (t: TestApp, type: string) =>
  t.deps.connection.db!.collection('resources').countDocuments({ type, deleted: false });
const versionsOf = (t: TestApp) =>
  t.deps.connection
    .db!.collection('history')
    .countDocuments({ type: { $in: ['DiagnosticReport', 'Observation', 'Patient'] } });

beforeAll(async () => {
  // No fixed base URL: the hospital's bundle links must point at where it really listens.
  hospital = await createTestApp('sync_hospital', { HUREN_BASE_URL: '' });
  broker = await createTestApp('sync_broker');
  hospitalServer = http.createServer(hospital.app);
  hospitalBase = `${await listen(hospitalServer)}/fhir`;
  await seedHospital(resultsOf('syn', RESULTS));
}, SLOW);

afterAll(async () => {
  for (const s of [hospitalServer, ...badServers]) {
    s?.closeAllConnections();
    await new Promise((resolve) => s?.close(resolve));
  }
  await hospital?.close();
  await broker?.close();
});

/** Hospital A's HIS client of the hospital instance, used the SMART Backend Services way. */
function backendServicesAuth() {
  const his = readDemoClients(TEST_DATA_DIR).find((c) => c.clientId === 'demo-his-hospital-a')!;
  return {
    type: 'backend-services',
    tokenUrl: hospitalBase.replace(/\/fhir$/, '/auth/token'),
    clientId: his.clientId,
    privateJwk: his.privateJwk,
    scope: 'system/DiagnosticReport.rs system/Observation.rs system/Patient.rs',
  };
}

describe('pull sync from a hospital FHIR server', () => {
  test('an administrator registers a hospital endpoint; secrets are never shown back', async () => {
    const put = await broker
      .as('admin')
      .put('/admin/sync/endpoints/hosp-a')
      .send({ institution: HOSPITAL_A, baseUrl: hospitalBase, auth: backendServicesAuth(), pageSize: 25 });
    expect(put.status).toBe(201);
    const list = await broker.as('admin').get('/admin/sync/endpoints');
    expect(list.body).toEqual([expect.objectContaining({ id: 'hosp-a', institution: HOSPITAL_A, pageSize: 25 })]);
    expect(JSON.stringify(list.body)).not.toContain('"d"');

    const bad = await broker
      .as('admin')
      .put('/admin/sync/endpoints/x')
      .send({ institution: HOSPITAL_A, baseUrl: 'ftp://x' });
    expect(bad.status).toBe(400);
    expect(bad.body.issue[0].expression).toEqual(['baseUrl']);
    const his = await broker.as('his').get('/admin/sync/status');
    expect(his.status).toBe(403);
    expect(his.body.resourceType).toBe('OperationOutcome');
  });

  test(
    'a first sync copies every result; a second copies only what changed',
    async () => {
      const first = await broker.deps.sync.syncAll(['hosp-a']);
      expect(first[0]).toMatchObject({ outcome: 'success', reports: RESULTS });
      expect(first[0].counts).toMatchObject({ created: 2 * RESULTS + 1, rejected: 0 });
      expect(await countOf(broker, 'DiagnosticReport')).toBe(RESULTS);
      expect(await countOf(broker, 'Observation')).toBe(RESULTS);
      const copied = await broker.as('admin').get('/fhir/DiagnosticReport/syn-dr-7');
      expect(copied.body.result[0].reference).toBe('Observation/syn-obs-7');
      expect(copied.body.meta.source).toBe(hospitalBase);

      // The hospital amends 3 reports and adds 2 results.
      const amended = [1, 2, 3].map((n) => reportOf('syn', n, 'amended'));
      const added = resultsOf('syn-new', 2).slice(1);
      await seedHospital([...amended, ...added]);
      const versionsBefore = await versionsOf(broker);
      const second = await broker.deps.sync.syncAll(['hosp-a']);
      expect(second[0].outcome).toBe('success');
      expect(second[0].counts).toMatchObject({ created: 4, updated: 3, rejected: 0 });
      expect(await versionsOf(broker)).toBe(versionsBefore + 7);
      expect((await broker.as('admin').get('/fhir/DiagnosticReport/syn-dr-2')).body.conclusion).toBe('amended');

      const status = await broker.as('admin').get('/admin/sync/status');
      expect(status.status).toBe(200);
      expect(status.body[0]).toMatchObject({
        id: 'hosp-a',
        status: {
          state: 'ok',
          consecutiveFailures: 0,
          lastRun: { resources: { created: 4, updated: 3, refused: 0 } },
        },
      });
      // Counts named for what they count: reports read, and resources per type.
      const lastRun = status.body[0].status.lastRun as {
        reportsFetched: number;
        byType: Record<string, { created: number; updated: number; unchanged: number }>;
      };
      expect(lastRun.reportsFetched).toBeGreaterThan(0);
      expect(lastRun.byType.DiagnosticReport).toBeDefined();
      const sum = (k: 'created' | 'updated') => Object.values(lastRun.byType).reduce((n, c) => n + c[k], 0);
      expect([sum('created'), sum('updated')]).toEqual([4, 3]);
      expect(status.body[0].status.lagSeconds).toBeLessThan(60);
      const metrics = await broker.as('admin').get('/metrics');
      expect(metrics.text).toMatch(/huren_sync_lag_seconds\{hospital="hosp-a"\} \d/);
      expect(metrics.text).toMatch(
        new RegExp(`huren_sync_resources_total\\{hospital="hosp-a",outcome="created"\\} ${2 * RESULTS + 5}\\b`),
      );
    },
    SLOW,
  );

  test('the same result pushed by the hospital and pulled from its server is one result', async () => {
    const pushed: DiagnosticReport = reportOf('syn', 5, 'corrected by push');
    expect((await broker.as('his').put('/fhir/DiagnosticReport/syn-dr-5').send(pushed)).status).toBe(200);
    await seedHospital([pushed]);
    const versions = await versionsOf(broker);
    const run = await broker.deps.sync.syncAll(['hosp-a']);
    expect(run[0].counts).toMatchObject({ created: 0, updated: 0 });
    expect(await versionsOf(broker)).toBe(versions);
  }, 30_000);

  test('one process pulls a hospital at a time', async () => {
    const other = await SyncService.create({
      ...broker.deps,
      db: broker.deps.connection.db!,
      metrics: createMetrics(),
    });
    const endpoint = (await broker.deps.sync.endpoint('hosp-a'))!;
    const [a, b] = await Promise.all([broker.deps.sync.syncEndpoint(endpoint), other.syncEndpoint(endpoint)]);
    expect([a.outcome, b.outcome].sort()).toEqual(['busy', 'success']);
  }, 30_000);
});

describe('failing hospitals', () => {
  test('a hospital answering 500, hanging, or sending malformed bundles is reported and retried, and the others sync', async () => {
    const hits = { fail: 0, hang: 0, malformed: 0 };
    const fail = http.createServer((_req, res) => {
      hits.fail++;
      res.writeHead(500, { 'Content-Type': 'application/fhir+json' }).end('{"resourceType":"OperationOutcome"}');
    });
    const hang = http.createServer(() => {
      hits.hang++; // never answers
    });
    const malformed = http.createServer((_req, res) => {
      hits.malformed++;
      res.writeHead(200, { 'Content-Type': 'application/fhir+json' }).end('{"resourceType":"Bundle","entry":{"oops":');
    });
    badServers.push(fail, hang, malformed);
    const bases = { fail: await listen(fail), hang: await listen(hang), malformed: await listen(malformed) };
    for (const [id, base] of Object.entries(bases)) {
      const put = await broker
        .as('admin')
        .put(`/admin/sync/endpoints/${id}`)
        .send({ institution: 'Organization/demo-hospital-b', baseUrl: `${base}/fhir`, timeoutSeconds: 1 });
      expect(put.status).toBe(201);
    }
    // The amended report since the last sync: the good hospital has something to copy.
    await seedHospital([reportOf('syn', 9, 'amended again')]);

    const sync = await SyncService.create(
      { ...broker.deps, db: broker.deps.connection.db!, metrics: createMetrics() },
      { retry: { attempts: 3, baseDelayMs: 50, maxDelayMs: 200 } },
    );
    const finished: string[] = [];
    const results = await sync.syncAll(undefined, undefined).then((r) => r);
    for (const r of results) finished.push(r.endpoint);
    const byId = Object.fromEntries(results.map((r) => [r.endpoint, r]));
    expect(byId['hosp-a']).toMatchObject({ outcome: 'success', counts: { updated: 1 } });
    expect(byId.fail).toMatchObject({ outcome: 'failed', error: expect.stringMatching(/HTTP 500/) });
    expect(byId.hang).toMatchObject({ outcome: 'failed', error: expect.stringMatching(/No answer within 1 s/) });
    expect(byId.malformed).toMatchObject({ outcome: 'failed', error: expect.stringMatching(/not valid JSON/) });
    expect(hits).toEqual({ fail: 3, hang: 3, malformed: 3 });

    const status = await broker.as('admin').get('/admin/sync/status');
    const states = Object.fromEntries(
      (status.body as { id: string; status: { state: string; consecutiveFailures: number; lastError?: string } }[]).map(
        (s) => [s.id, s.status],
      ),
    );
    expect(states['hosp-a']).toMatchObject({ state: 'ok' });
    expect(states.fail).toMatchObject({
      state: 'failing',
      consecutiveFailures: 1,
      lastError: expect.stringMatching(/500/),
    });
    expect(states.hang.state).toBe('failing');
    expect(states.malformed.state).toBe('failing');
  }, 60_000);

  test('a slow hospital does not hold up the others', async () => {
    const sync = await SyncService.create(
      { ...broker.deps, db: broker.deps.connection.db!, metrics: createMetrics() },
      { retry: { attempts: 4, baseDelayMs: 300, maxDelayMs: 1000 } }, // the hanging one takes 5 s or more
    );
    const done: Record<string, number> = {};
    const started = Date.now();
    await Promise.all(
      ['hang', 'hosp-a'].map(async (id) => {
        await sync.syncEndpoint((await sync.endpoint(id))!);
        done[id] = Date.now() - started;
      }),
    );
    expect(done['hosp-a']).toBeLessThan(done.hang);
  }, 30_000);

  test(
    'the schedule pulls a hospital when it is due',
    async () => {
      const put = await broker
        .as('admin')
        .put('/admin/sync/endpoints/hosp-a-scheduled')
        .send({ institution: HOSPITAL_A, baseUrl: hospitalBase, auth: backendServicesAuth(), scheduleMinutes: 60 });
      expect(put.status).toBe(201);
      const sync = await SyncService.create(
        { ...broker.deps, db: broker.deps.connection.db!, metrics: createMetrics() },
        { tickMs: 100 },
      );
      const stop = sync.startSchedule();
      try {
        // A new endpoint pulls everything the hospital has: the wait scales with its size, like the test's limit.
        const deadline = Date.now() + SLOW - 10_000;
        while (Date.now() < deadline) {
          const s = await sync.collections.status.findOne({ _id: 'hosp-a-scheduled' });
          if (s?.lastSuccessAt) break;
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        stop();
      }
      const s = await sync.collections.status.findOne({ _id: 'hosp-a-scheduled' });
      expect(s?.lastSuccessAt).toBeInstanceOf(Date);
      expect(s?.lastRun?.resources.refused).toBe(0);
    },
    SLOW,
  );
});
