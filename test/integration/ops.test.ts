import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.js';

const ID_NUMBER = '370202199001011234';
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
