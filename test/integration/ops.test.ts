import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { createServices } from '../../src/services.js';
import type { ResourceStore } from '../../src/store/resource-store.js';
import { createTestApp, TEST_DATA_DIR, type TestApp } from '../support/app.js';

const ID_NUMBER = '370202199001011237';
const NAME = '王小明';

describe('operations endpoints and logs', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp('ops');
  });
  afterAll(async () => {
    await t.close();
  });

  test('healthz answers ok and readyz confirms the database is reachable', async () => {
    expect((await t.as('admin').get('/healthz')).body).toEqual({ status: 'ok' });
    const ready = await t.as('admin').get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.database).toBe('reachable');
  });

  test('each FHIR operation is its own metrics route: $reuse-check, $reuse-decision, $validate, $evaluate-measure', async () => {
    await t.as('admin').post('/fhir/$reuse-check').set('Content-Type', 'application/fhir+json').send({});
    await t.as('admin').post('/fhir/$reuse-decision').set('Content-Type', 'application/fhir+json').send({});
    await t.as('admin').post('/fhir/Observation/$validate').set('Content-Type', 'application/fhir+json').send({});
    await t
      .as('admin')
      .get('/fhir/Measure/reuse-savings/$evaluate-measure?periodStart=2026-01-01&periodEnd=2026-01-31');
    const text = (await t.as('admin').get('/metrics')).text;
    for (const route of [
      '/fhir/$reuse-check',
      '/fhir/$reuse-decision',
      '/fhir/Observation/$validate',
      '/fhir/Measure/:id/$evaluate-measure',
    ]) {
      expect(text).toContain(`route="${route}"`);
    }
  });

  test('metrics are Prometheus text counting requests by route without resource ids', async () => {
    await t.as('admin').get('/fhir/Observation/some-id-123');
    const res = await t.as('admin').get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    expect(res.text).toMatch(
      /huren_http_requests_total\{method="GET",route="\/fhir\/Observation\/:id",status="404"\} 1/,
    );
    expect(res.text).not.toContain('some-id-123');
    // A path can carry anything a client typed: unknown segments never become label values.
    await t.as('admin').get(`/fhir/${ID_NUMBER}`);
    await t.as('admin').get(`/patients/${ID_NUMBER}`);
    const after = await t.as('admin').get('/metrics');
    expect(after.text).not.toContain(ID_NUMBER);
    expect(after.text).toContain('route="/fhir/(other)"');
    expect(res.text).toContain('process_resident_memory_bytes');
  });

  test('every response carries a request id, and a caller-supplied one is kept', async () => {
    const generated = await t.as('admin').get('/healthz');
    expect(generated.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const kept = await t.as('admin').get('/healthz').set('X-Request-Id', 'his-trace-42');
    expect(kept.headers['x-request-id']).toBe('his-trace-42');
  });

  test('security headers are set', async () => {
    const res = await t.as('admin').get('/fhir/metadata');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-powered-by']).toBeUndefined();
  });

  test('an ID number and a name pushed through create, search and errors never reach the logs', async () => {
    const patient = {
      resourceType: 'Patient',
      identifier: [{ system: 'urn:oid:2.16.156.10011.1.1', value: ID_NUMBER }],
      name: [{ text: NAME }],
      birthDate: '1990-01-01',
    };
    const created = await t
      .as('admin')
      .post('/fhir/Patient')
      .set('Content-Type', 'application/fhir+json')
      .send(patient);
    expect(created.status).toBe(201);
    await t.as('admin').get(`/fhir/Patient?identifier=urn:oid:2.16.156.10011.1.1|${ID_NUMBER}`);
    await t.as('admin').get(`/fhir/Patient?name=${encodeURIComponent(NAME)}&bogus=${ID_NUMBER}`);
    await t
      .as('admin')
      .post('/fhir/Patient')
      .set('Content-Type', 'application/fhir+json')
      .send({ ...patient, gender: 'nonsense' });
    await t
      .as('admin')
      .post('/fhir')
      .set('Content-Type', 'application/fhir+json')
      .send({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [{ resource: patient, request: { method: 'POST', url: 'Patient' } }],
      });
    const logs = t.logLines.join('\n');
    expect(t.logLines.length).toBeGreaterThan(4); // requests were logged…
    expect(logs).toContain('Request served');
    expect(logs).not.toContain(ID_NUMBER); // …but no identifier,
    expect(logs).not.toContain(NAME); // no name,
    expect(logs).not.toContain('1990-01-01'); // no birth date.
  });
});

describe('a request whose client has gone away', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp('ops-client-gone');
  });
  afterAll(async () => {
    await t.close();
  });

  /**
   * The app on the real store, with every store call recorded; the first call waits for `hangUpFirst`'s function
   * (the client hanging up and the server seeing it) before it goes on.
   */
  async function appHangingUpOnFirstCall() {
    const calls: string[] = [];
    let onFirst = async () => {};
    const store = new Proxy(t.deps.store, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver) as unknown;
        if (typeof value !== 'function') return value;
        // The per-request view of the store is this recording store itself.
        if (property === 'forRequest') return () => receiver as ResourceStore;
        return async (...args: unknown[]) => {
          calls.push(String(property));
          if (calls.length === 1) await onFirst();
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    }) as ResourceStore;
    const server = createApp({ ...t.deps, store }).listen(0, '127.0.0.1');
    await once(server, 'listening');
    const serverSockets: net.Socket[] = [];
    server.on('connection', (socket: net.Socket) => serverSockets.push(socket));
    const hangUpFirst = (f: () => Promise<void>) => (onFirst = f);
    return { calls, server, serverSockets, hangUpFirst };
  }

  test('a search stops before its next database query once the client has disconnected', async () => {
    const identifier = { system: 'urn:huren:test:client-gone', value: randomBytes(6).toString('hex') };
    const created = await t
      .as('admin')
      .post('/fhir/Patient')
      .set('Content-Type', 'application/fhir+json')
      .send({ resourceType: 'Patient', identifier: [identifier] });
    expect(created.status).toBe(201);

    // The real store, with every call the search makes recorded; the first one (the page) waits until the client
    // has hung up and the server has seen it.
    const { calls, server, serverSockets, hangUpFirst } = await appHangingUpOnFirstCall();
    try {
      const { port } = server.address() as net.AddressInfo;
      // With a match on the page, the search would go on to its _revinclude query.
      const search = http.get({
        host: '127.0.0.1',
        port,
        path: `/fhir/Patient?identifier=${encodeURIComponent(`${identifier.system}|${identifier.value}`)}&_revinclude=Observation:subject`,
        headers: { Authorization: `Bearer ${t.tokens.admin}` },
      });
      search.on('error', () => undefined);
      let answered = false;
      search.on('response', () => (answered = true));
      hangUpFirst(async () => {
        search.destroy();
        await once(serverSockets[0]!, 'close');
      });
      const abandoned = () => t.logLines.some((line) => line.includes('Request abandoned by the client'));
      for (let waited = 0; !abandoned() && waited < 10_000; waited += 50) await sleep(50);
      expect(abandoned(), 'the broker noticed and logged the abandoned request').toBe(true);
      expect(answered).toBe(false);
      expect(calls).toEqual(['find']); // the page query only: no _revinclude query after the client left
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('a write whose client has gone before it was accepted is not stored', async () => {
    const identifier = { system: 'urn:huren:test:client-gone', value: randomBytes(6).toString('hex') };
    // The store's calls are recorded; planning the create (the first call) waits until the client has hung up.
    const abandonedLines = () => t.logLines.filter((l) => l.includes('Request abandoned by the client')).length;
    const before = abandonedLines();
    const { calls, server, serverSockets, hangUpFirst } = await appHangingUpOnFirstCall();
    try {
      const { port } = server.address() as net.AddressInfo;
      const create = http.request({
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/fhir/Patient',
        headers: { Authorization: `Bearer ${t.tokens.admin}`, 'Content-Type': 'application/fhir+json' },
      });
      create.on('error', () => undefined);
      let answered = false;
      create.on('response', () => (answered = true));
      hangUpFirst(async () => {
        create.destroy();
        await once(serverSockets[0]!, 'close');
      });
      create.end(JSON.stringify({ resourceType: 'Patient', identifier: [identifier] }));
      const abandoned = () => abandonedLines() > before;
      for (let waited = 0; !abandoned() && waited < 10_000; waited += 50) await sleep(50);
      expect(abandoned(), 'the broker noticed and logged the abandoned write').toBe(true);
      expect(answered).toBe(false);
      expect(calls).toEqual(['planCreate']); // planned, never committed
      const found = await t
        .as('admin')
        .get(`/fhir/Patient?identifier=${encodeURIComponent(`${identifier.system}|${identifier.value}`)}`);
      expect(found.body.entry ?? []).toEqual([]);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

/**
 * A TCP relay to the test database that can stop passing bytes on: the database then accepts connections and
 * never answers, the way an overloaded or partitioned one does.
 */
async function startDatabaseGate(target: URL) {
  let frozen = false;
  const held: (() => void)[] = [];
  const sockets = new Set<net.Socket>();
  const relay = (to: net.Socket) => (chunk: Buffer) => {
    if (frozen) held.push(() => to.write(chunk));
    else to.write(chunk);
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => socket.destroy());
      socket.on('close', () => sockets.delete(socket));
    }
    client.on('data', relay(upstream));
    upstream.on('data', relay(client));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const uri = new URL(target);
  uri.host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  uri.searchParams.set('directConnection', 'true');
  return {
    uri: uri.toString(),
    freeze: () => {
      frozen = true;
    },
    thaw: () => {
      frozen = false;
      for (const write of held.splice(0)) write();
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('liveness and readiness while the database does not answer', () => {
  test('healthz answers at once, readyz answers 503 within 2 s, and both recover with the database', async () => {
    const gate = await startDatabaseGate(new URL(inject('mongoUri')));
    const config = loadConfig({
      NODE_ENV: 'test',
      HUREN_BASE_URL: 'http://huren.test/fhir',
      HUREN_DATA_DIR: TEST_DATA_DIR,
      HUREN_RULES_POLL_MS: '100',
    });
    const quiet = new Writable({ write: (_chunk, _enc, done) => done() });
    const dbName = `t_ops_unanswered_${randomBytes(4).toString('hex')}`;
    const deps = await createServices(config, createLogger({ level: 'error', stream: quiet }), gate.uri, dbName);
    const app = createApp(deps);
    try {
      expect((await request(app).get('/readyz')).status).toBe(200);
      gate.freeze();
      await sleep(300); // past the rules poll interval: a request that refreshes the rules now waits on the database
      // What the probe is spared: a request that needs the database waits for it.
      await expect(request(app).get('/fhir/metadata').timeout(1000)).rejects.toThrow(/Timeout/);

      const started = Date.now();
      const health = await request(app).get('/healthz').timeout(5000);
      expect(health.status).toBe(200);
      expect(health.body).toEqual({ status: 'ok' });
      expect(Date.now() - started).toBeLessThan(500);

      const readyStarted = Date.now();
      const ready = await request(app).get('/readyz').timeout(10_000);
      expect(ready.status).toBe(503);
      expect(ready.body).toMatchObject({ status: 'not ready', database: 'unreachable' });
      expect(Date.now() - readyStarted).toBeLessThan(2000);

      gate.thaw();
      let again = await request(app).get('/readyz');
      for (let waited = 0; again.status !== 200 && waited < 20_000; waited += 250) {
        await sleep(250);
        again = await request(app).get('/readyz');
      }
      expect(again.status).toBe(200);
    } finally {
      gate.thaw();
      await deps.connection.dropDatabase().catch(() => undefined);
      await deps.connection.close();
      await gate.close();
    }
  }, 60_000);
});
