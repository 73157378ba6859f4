import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Bundle, Parameters, Resource } from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { HOSPITAL_A, observationOf, patientOf, reportOf } from '../fixtures/connectors.js';
import { createTestApp, type TestApp } from '../support/app.js';

/**
 * Subscription intake: a hospital FHIR server notifies the broker (R4 rest-hook, Subscriptions Backport IG
 * notification bundles); the broker ingests what it names. The hospital's server is a small fake serving reads.
 */

const SECRET = 'notify-secret-of-hospital-a-0123456789';
let t: TestApp;
let hospital: Server;
let base: string;
const served = new Map<string, Resource>();
const reads: string[] = [];

beforeAll(async () => {
  t = await createTestApp('subscriptions');
  hospital = http.createServer((req, res) => {
    const path = (req.url ?? '').replace(/^\/fhir\//, '').split('?')[0];
    reads.push(path);
    const body =
      path === 'DiagnosticReport'
        ? ({ resourceType: 'Bundle', type: 'searchset', entry: [] } satisfies Bundle)
        : served.get(path);
    res.writeHead(body ? 200 : 404, { 'Content-Type': 'application/fhir+json' });
    res.end(JSON.stringify(body ?? { resourceType: 'OperationOutcome', issue: [] }));
  });
  await new Promise<void>((resolve) => hospital.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(hospital.address() as AddressInfo).port}/fhir`;
  const put = await t
    .as('admin')
    .put('/admin/sync/endpoints/hosp-a')
    .send({ institution: HOSPITAL_A, baseUrl: base, notifySecret: SECRET, timeoutSeconds: 2 });
  expect(put.status).toBe(201);
  expect(put.body.notifications).toBe(true);
  expect(JSON.stringify(put.body)).not.toContain(SECRET);
}, 60_000);

afterAll(async () => {
  hospital?.closeAllConnections();
  await new Promise((resolve) => hospital?.close(resolve));
  await t?.close();
});

const statusParameters = (type: string): Parameters => ({
  resourceType: 'Parameters',
  parameter: [
    { name: 'subscription', valueReference: { reference: `${base}/Subscription/huren` } },
    { name: 'topic', valueCanonical: 'http://hospital-a.example.org/SubscriptionTopic/diagnostic-report' },
    { name: 'status', valueCode: 'active' },
    { name: 'type', valueCode: type },
    { name: 'events-since-subscription-start', valueString: '1' },
  ],
});

const notification = (type: string, entries: Bundle['entry'] = []): Bundle => ({
  resourceType: 'Bundle',
  type: 'history',
  timestamp: new Date().toISOString(),
  entry: [{ fullUrl: 'urn:uuid:status', resource: statusParameters(type) }, ...(entries ?? [])],
});

const notify = (body?: unknown, secret = SECRET) => {
  const req = t.as('admin').post('/subscriptions/notify/hosp-a').set('Authorization', `Bearer ${secret}`);
  return body === undefined ? req : req.set('Content-Type', 'application/fhir+json').send(JSON.stringify(body));
};
const versions = () => t.deps.connection.db!.collection('history').countDocuments({ type: 'DiagnosticReport' });

describe('subscription intake', () => {
  test('a handshake and a heartbeat are acknowledged and show in the hospital status', async () => {
    const hand = await notify(notification('handshake'));
    expect(hand.status).toBe(200);
    expect(hand.body.issue[0].diagnostics).toBe('handshake acknowledged');
    expect((await notify(notification('heartbeat'))).status).toBe(200);
    const status = await t.as('admin').get('/admin/sync/status');
    expect(status.body[0].status).toMatchObject({ lastNotificationType: 'heartbeat' });
  });

  test('a notification without the secret is refused, whatever the endpoint', async () => {
    const wrong = await notify(notification('heartbeat'), 'not-the-secret-at-all-000000');
    expect(wrong.status).toBe(401);
    expect(wrong.body.resourceType).toBe('OperationOutcome');
    const unknown = await t
      .as('admin')
      .post('/subscriptions/notify/nobody')
      .set('Authorization', `Bearer ${SECRET}`)
      .send(notification('heartbeat'));
    expect(unknown.status).toBe(401);
  });

  test('a full-resource notification stores the results it carries, once however often it is sent', async () => {
    const entries = [patientOf('sub'), observationOf('sub', 1), reportOf('sub', 1)].map((resource) => ({
      fullUrl: `${base}/${resource.resourceType}/${resource.id}`,
      resource,
      request: { method: 'PUT' as const, url: `${resource.resourceType}/${resource.id}` },
    }));
    const first = await notify(notification('event-notification', entries));
    expect(first.status).toBe(200);
    expect(first.body.issue[0].diagnostics).toBe('3 resource(s) received, 3 stored or changed');
    expect((await t.as('his').get('/fhir/DiagnosticReport/sub-dr-1')).status).toBe(200);
    const before = await versions();
    const again = await notify(notification('event-notification', entries));
    expect(again.body.issue[0].diagnostics).toBe('3 resource(s) received, 0 stored or changed');
    expect(await versions()).toBe(before);
  });

  test('an id-only notification is read from the hospital, with the report results it names', async () => {
    for (const r of [patientOf('idonly'), observationOf('idonly', 1), reportOf('idonly', 1)]) {
      served.set(`${r.resourceType}/${r.id}`, r);
    }
    const res = await notify(
      notification('event-notification', [
        {
          fullUrl: `${base}/DiagnosticReport/idonly-dr-1`,
          request: { method: 'PUT', url: 'DiagnosticReport/idonly-dr-1' },
        },
      ]),
    );
    expect(res.status).toBe(200);
    expect(reads).toEqual(expect.arrayContaining(['DiagnosticReport/idonly-dr-1', 'Observation/idonly-obs-1']));
    expect((await t.as('his').get('/fhir/Observation/idonly-obs-1')).body.valueQuantity.value).toBe(130);
  });

  test('an id-only entry pointing outside the hospital server is refused', async () => {
    const res = await notify(
      notification('event-notification', [{ fullUrl: 'http://elsewhere.example/fhir/Patient/1' }]),
    );
    expect(res.status).toBe(400);
    expect(res.body.issue[0].expression).toEqual(['Bundle.entry[1].fullUrl']);
  });

  test('an older version notified late does not replace the newer one', async () => {
    const newer = { ...reportOf('sub', 1, 'amended'), meta: { lastUpdated: '2024-03-05T10:00:00+08:00' } };
    const older = { ...reportOf('sub', 1, 'first reading'), meta: { lastUpdated: '2024-03-04T10:00:00+08:00' } };
    await notify(newer);
    await notify(older);
    expect((await t.as('his').get('/fhir/DiagnosticReport/sub-dr-1')).body.conclusion).toBe('amended');
  });

  test('an empty classic rest-hook notification starts a pull of the hospital', async () => {
    reads.length = 0;
    const res = await notify();
    expect(res.status).toBe(200);
    for (let i = 0; i < 100 && !reads.some((r) => r === 'DiagnosticReport'); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(reads).toContain('DiagnosticReport');
  });

  test('a notification bundle without its status is refused with what is wrong', async () => {
    const res = await notify({ resourceType: 'Bundle', type: 'history', entry: [] });
    expect(res.status).toBe(400);
    expect(res.body.issue[0].expression).toEqual(['Bundle.entry[0].resource']);
  });
});
