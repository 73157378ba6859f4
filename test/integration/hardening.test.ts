/**
 * Regression tests of the findings of the adversarial run against 1fd0f12 (issue 23): each sends exactly the request
 * that failed and checks the answer a client now gets, and that nothing was left behind.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Bundle, Observation } from 'fhir/r4';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createClientAssertion } from '../../src/auth/assertion.js';
import { readDemoClients } from '../../src/auth/demo-clients.js';
import { readDemoCdsClient, signCdsJwt } from '../../src/cds/clients.js';
import { createHttpServer, createMetricsServer } from '../../src/http-limits.js';
import { FHIR_JSON, HOSPITAL_A, HOSPITAL_B } from '../fixtures/recognition.js';
import { createTestApp, TEST_DATA_DIR, type TestApp } from '../support/app.js';

const RESULT_ID = 'https://huren.example.org/fhir/sid/hardening/result';
let seq = 0;
const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;

function result(performers: string[], overrides: Partial<Observation> = {}): Observation {
  return {
    resourceType: 'Observation',
    identifier: [{ system: RESULT_ID, value: unique('hgb') }],
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '718-7' }] },
    subject: { reference: 'Patient/hardening-p1' },
    effectiveDateTime: '2026-11-20T08:30:00+08:00',
    performer: performers.map((reference) => ({ reference })),
    valueQuantity: { value: 135, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' },
    ...overrides,
  } satisfies Observation;
}

describe('hardening: the requests that failed now get a 4xx with the endpoint’s error body', () => {
  let t: TestApp;
  let server: Server;
  /** A supertest agent on the real HTTP server (Node's parser limits apply), as a demo client. */
  const over = (who: string) => request.agent(server).set('Authorization', `Bearer ${t.tokens[who]}`);
  const storedWith = async (identifier: string): Promise<number> => {
    const res = await t.as('admin').get(`/fhir/Observation?identifier=${RESULT_ID}|${identifier}&_total=accurate`);
    expect(res.status, res.text).toBe(200);
    return (res.body as Bundle).total!;
  };

  beforeAll(async () => {
    t = await createTestApp('hardening');
    server = createHttpServer(t.app, t.deps.config);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await t.close();
  });

  test('value-quantity=1e400 is a 400 naming the parameter, and the database keeps answering', async () => {
    for (const value of ['1e400', 'gt1e400', '-1e400', '1e-400', 'ap1e400']) {
      const res = await t.as('admin').get(`/fhir/Observation?value-quantity=${value}`);
      expect(res.status, `${value}: ${res.text}`).toBe(400);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].expression).toEqual(['value-quantity']);
      expect(res.body.issue[0].diagnostics).toMatch(/out of range/);
    }
    expect((await t.as('admin').get('/fhir/Observation?value-quantity=1e300')).status).toBe(200);
    expect((await t.as('admin').get('/fhir/Observation?value-quantity=gt1e-300')).status).toBe(200);
  });

  test('a body with a number JSON cannot hold (1e400) is a 400 naming the element; nothing is stored', async () => {
    const obs = result([HOSPITAL_A]);
    const text = JSON.stringify(obs).replace('"value":135', '"value":1e400');
    const res = await t.as('his').post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(text);
    expect(res.status, res.text).toBe(400);
    expect(res.body.issue[0].expression).toEqual(['Observation.valueQuantity.value']);
    expect(res.body.issue[0].diagnostics).toMatch(/numbers must be finite/);
    expect(await storedWith(obs.identifier![0].value!)).toBe(0);
  });

  test('a POST of an Observation with 100 000 identifiers is refused at once with 413, nothing stored', async () => {
    const obs = result([HOSPITAL_A]);
    const first = obs.identifier![0].value!;
    obs.identifier = [
      obs.identifier![0],
      ...Array.from({ length: 99_999 }, (_, i) => ({ system: 'urn:x', value: `bulk-${i}` })),
    ];
    const body = JSON.stringify(obs);
    expect(body.length).toBeGreaterThan(3_000_000); // under HUREN_MAX_BODY (5 MB): the array limit answers
    expect(body.length).toBeLessThan(5 * 1024 * 1024);
    const started = Date.now();
    const res = await over('his').post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(body);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(res.status).toBe(413);
    expect(res.body.issue[0].expression).toEqual(['Observation.identifier']);
    expect(res.body.issue[0].diagnostics).toMatch(/100000 items; at most 1000/);
    expect(await storedWith(first)).toBe(0);
  });

  test('a 20 000-character name:contains is a 414 OperationOutcome naming the URL limit', async () => {
    const res = await over('admin').get(`/fhir/Patient?name:contains=${'a'.repeat(20_000)}`);
    expect(res.status).toBe(414);
    expect(res.headers['content-type']).toContain(FHIR_JSON);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].diagnostics).toMatch(/at most 8192 are accepted \(HUREN_MAX_URL_LENGTH\)/);
  });

  test('2 000 repeated _id parameters are an OperationOutcome naming the limit they pass', async () => {
    const query = (n: number) => Array.from({ length: n }, (_, i) => `_id=p${i}`).join('&');
    const res = await over('admin').get(`/fhir/Patient?${query(2000)}`);
    expect(res.status).toBe(414); // 17 000 characters: the URL limit answers first
    expect(res.body.resourceType).toBe('OperationOutcome');
    const many = await over('admin').get(`/fhir/Patient?${query(300)}`);
    expect(many.status).toBe(400);
    expect(many.body.resourceType).toBe('OperationOutcome');
    expect(many.body.issue[0].diagnostics).toMatch(/300 query parameters; at most 200 .*HUREN_MAX_PARAMETERS/);
    // A form-encoded POST _search is counted the same way.
    const form = await over('admin').post('/fhir/Patient/_search').type('form').send(query(300));
    expect(form.status).toBe(400);
    expect(form.body.issue[0].diagnostics).toMatch(/HUREN_MAX_PARAMETERS/);
  });

  test('headers past the limit are a 431 OperationOutcome naming the limit, not an empty answer', async () => {
    const res = await over('admin')
      .get('/fhir/Patient')
      .set('X-Padding', 'x'.repeat(70 * 1024));
    expect(res.status).toBe(431);
    expect(res.headers['content-type']).toContain(FHIR_JSON);
    expect(JSON.parse(res.text)).toMatchObject({
      resourceType: 'OperationOutcome',
      issue: [
        {
          code: 'too-costly',
          diagnostics: expect.stringMatching(/at most 65536 are accepted \(HUREN_MAX_HEADER_SIZE\)/),
        },
      ],
    });
    const head = await over('admin')
      .head('/fhir/Patient')
      .set('X-Padding', 'x'.repeat(70 * 1024));
    expect(head.status).toBe(431);
    // Past what Node's parser reads at all (4 × the limit), Node's own refusal is an OperationOutcome too.
    const huge = await over('admin')
      .get('/fhir/Patient')
      .set('X-Padding', 'x'.repeat(300 * 1024));
    expect(huge.status).toBe(431);
    expect(JSON.parse(huge.text)).toMatchObject({
      resourceType: 'OperationOutcome',
      issue: [{ diagnostics: expect.stringMatching(/exceed 262144 bytes \(4 × HUREN_MAX_HEADER_SIZE\)/) }],
    });
    // The server is still up.
    expect((await over('admin').get('/healthz')).status).toBe(200);
  });

  test('a 10 MB /auth/token request is answered with the OAuth error JSON', async () => {
    const res = await request(server)
      .post('/auth/token')
      .type('form')
      .send(`grant_type=client_credentials&client_assertion=${'a'.repeat(10 * 1024 * 1024)}`);
    expect(res.status).toBe(413);
    expect(res.body).toEqual({ error: 'invalid_request', error_description: expect.stringMatching(/exceeds 64kb/) });
    const long = await request(server)
      .post(`/auth/token?${'x'.repeat(9000)}`)
      .type('form')
      .send('a=b');
    expect(long.status).toBe(414);
    expect(long.body.error).toBe('invalid_request');
    const utf16 = await request(server)
      .post('/auth/token')
      .set('Content-Type', 'application/x-www-form-urlencoded; charset=utf-16')
      .send(Buffer.from('grant_type=client_credentials', 'utf16le'));
    expect(utf16.status).toBe(415);
    expect(utf16.body.error).toBe('invalid_request');
  });

  test('a body declared charset=utf-16 is a 415 OperationOutcome, not read as UTF-8; nothing stored', async () => {
    const obs = result([HOSPITAL_A]);
    const res = await t
      .as('his')
      .post('/fhir/Observation')
      .set('Content-Type', 'application/fhir+json; charset=utf-16')
      .send(Buffer.from(JSON.stringify(obs), 'utf16le'));
    expect(res.status).toBe(415);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].diagnostics).toMatch(/charset=utf-16 is not supported/);
    // The same bytes declared as UTF-8 are not valid JSON text either.
    const mislabelled = await t
      .as('his')
      .post('/fhir/Observation')
      .set('Content-Type', 'application/fhir+json; charset=utf-8')
      .send(Buffer.from(JSON.stringify(obs), 'utf16le'));
    expect(mislabelled.status).toBe(400);
    expect(await storedWith(obs.identifier![0].value!)).toBe(0);
    // UTF-8, declared or not, is read as sent.
    const ok = await t
      .as('his')
      .post('/fhir/Observation')
      .set('Content-Type', 'application/fhir+json; charset=UTF-8')
      .send(JSON.stringify(obs));
    expect(ok.status, ok.text).toBe(201);
  });

  test('found by the fuzzing suite: a transaction entry whose ifNoneExist is a number is a 400, not a 500', async () => {
    const res = await t
      .as('admin')
      .post('/fhir')
      .set('Content-Type', FHIR_JSON)
      .send({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          {
            fullUrl: 'urn:uuid:0000000b-fff3-8fff-8000-00040000001a',
            resource: { resourceType: 'Patient', managingOrganization: { reference: HOSPITAL_A } },
            request: { method: 'POST', url: 'Patient', ifNoneExist: 5e-324 },
          },
        ],
      });
    expect(res.status).toBe(400);
    expect(res.body.issue[0].expression).toEqual(['Bundle.entry[0].request.ifNoneExist']);
    for (const [entry, expression] of [
      [{ request: 'POST Patient' }, 'Bundle.entry[0].request'],
      [{ fullUrl: 7, request: { method: 'GET', url: 'Patient' } }, 'Bundle.entry[0].fullUrl'],
      [{ resource: [], request: { method: 'POST', url: 'Patient' } }, 'Bundle.entry[0].resource'],
      [{ request: { method: ['POST'], url: 'Patient' } }, 'Bundle.entry[0].request.method'],
    ] as const) {
      const bad = await t
        .as('admin')
        .post('/fhir')
        .set('Content-Type', FHIR_JSON)
        .send({ resourceType: 'Bundle', type: 'transaction', entry: [entry] });
      expect(bad.status, JSON.stringify(entry)).toBe(400);
      expect(bad.body.issue[0].expression).toEqual([expression]);
    }
  });

  test('found by the fuzzing suite: a NUL in a body or a search value is a 400, not a 500 from the database', async () => {
    const obs = result([HOSPITAL_A], { note: [{ text: 'before\u0000after' }] });
    const res = await t.as('his').post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(obs);
    expect(res.status).toBe(400);
    expect(res.body.issue[0].expression).toEqual(['Observation.note[0].text']);
    expect(await storedWith(obs.identifier![0].value!)).toBe(0);
    for (const query of ['name=%00', `identifier=${encodeURIComponent(RESULT_ID)}%7C%00`, '_id=a%00', '%00=1']) {
      const search = await t.as('admin').get(`/fhir/Patient?${query}`);
      expect(search.status, query).toBe(400);
      expect(search.body.issue[0].diagnostics).toMatch(/control character/);
    }
    const form = await t.as('admin').post('/fhir/Patient/_search').type('form').send('name=%00');
    expect(form.status).toBe(400);
  });

  test('found by the fuzzing suite: operation inputs of the wrong JSON type are a 400 (were 500)', async () => {
    const check = await t
      .as('demo-his-hospital-b')
      .post('/fhir/$reuse-check')
      .set('Content-Type', FHIR_JSON)
      .send({
        resourceType: 'Parameters',
        parameter: [
          { name: 'patient', valueIdentifier: { system: 'urn:oid:2.16.156.10011.1.1', value: '110105370905004' } },
          { name: 'code', valueCoding: { system: 'http://loinc.org', code: '11524-6' } },
          { name: 'requester', valueReference: { reference: [{ n: [{ n: 'bottom' }] }] } },
        ],
      });
    expect(check.status, check.text).toBe(400);
    expect(check.body.issue[0].expression).toEqual(['Parameters.parameter[2].valueReference.reference']);

    const demo = readDemoCdsClient(TEST_DATA_DIR)!;
    const path = '/cds-services/huren-reuse-order-select';
    const hook = await request(t.app)
      .post(path)
      .set('Authorization', `Bearer ${await signCdsJwt(demo.iss, demo.privateJwk, `http://huren.test${path}`)}`)
      .send({
        hook: 'order-select',
        hookInstance: '2f1c4a0e-1a7e-4b0c-9f0a-000000000000',
        context: {
          userId: 'Practitioner/dr-b',
          patientId: 'p1',
          selections: ['ServiceRequest/d1'],
          draftOrders: {
            resourceType: 'Bundle',
            type: 'collection',
            entry: [
              {
                resource: {
                  resourceType: 'ServiceRequest',
                  id: 'd1',
                  status: 'draft',
                  intent: 'order',
                  code: { coding: [{ system: 'http://loinc.org', code: '57021-8' }] },
                  subject: { reference: 'Patient/p1' },
                },
              },
            ],
          },
        },
        prefetch: { patient: { resourceType: 'Patient', id: 'p1', identifier: { system: 'x', value: 'y' } } },
      });
    expect(hook.status, hook.text).toBeLessThan(500);
    if (hook.status >= 400) expect(hook.body.resourceType).toBe('OperationOutcome');

    const patch = await request(server).patch('/auth/token');
    expect(patch.status).toBe(405);
    expect(patch.body.error).toBe('invalid_request');
  });

  test('the small JSON endpoints of the pages refuse another charset with a 415 OperationOutcome', async () => {
    const res = await t
      .as('clinician')
      .post('/auth/launch')
      .set('Content-Type', 'application/json; charset=iso-8859-1')
      .send(Buffer.from('{"appContext":"x"}', 'latin1'));
    expect(res.status).toBe(415);
    expect(res.body.resourceType).toBe('OperationOutcome');
  });

  describe('writing on behalf of another institution', () => {
    test('hospital A naming hospital B as co-performer is refused 403 with nothing stored', async () => {
      const obs = result([HOSPITAL_A, HOSPITAL_B]);
      const res = await t.as('his').post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(obs);
      expect(res.status).toBe(403);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].expression).toEqual(['Observation.performer']);
      expect(res.body.issue[0].diagnostics).toMatch(
        /Organization\/demo-hospital-b is another institution: Organization\/demo-hospital-a is not registered/,
      );
      expect(await storedWith(obs.identifier![0].value!)).toBe(0);
    });

    test('the same through a transaction, an update and for the other owner-determining references', async () => {
      const obs = result([HOSPITAL_A, HOSPITAL_B]);
      const bundle = await t
        .as('his')
        .post('/fhir')
        .set('Content-Type', FHIR_JSON)
        .send({
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [{ resource: obs, request: { method: 'POST', url: 'Observation' } }],
        });
      expect(bundle.status).toBe(403);
      expect(bundle.body.resourceType).toBe('OperationOutcome');
      expect(await storedWith(obs.identifier![0].value!)).toBe(0);

      const mine = await t
        .as('his')
        .post('/fhir/Observation')
        .set('Content-Type', FHIR_JSON)
        .send(result([HOSPITAL_A]));
      expect(mine.status).toBe(201);
      const widened = { ...mine.body, performer: [{ reference: HOSPITAL_A }, { reference: HOSPITAL_B }] };
      const put = await t
        .as('his')
        .put(`/fhir/Observation/${mine.body.id}`)
        .set('Content-Type', FHIR_JSON)
        .send(widened);
      expect(put.status).toBe(403);
      expect((await t.as('his').get(`/fhir/Observation/${mine.body.id}`)).body.performer).toEqual([
        { reference: HOSPITAL_A },
      ]);

      const order = {
        resourceType: 'ServiceRequest',
        status: 'active',
        intent: 'order',
        subject: { reference: 'Patient/hardening-p1' },
        code: { coding: [{ system: 'http://loinc.org', code: '718-7' }] },
        requester: { reference: HOSPITAL_A },
        performer: [{ reference: HOSPITAL_B }],
      };
      const sr = await t.as('his').post('/fhir/ServiceRequest').set('Content-Type', FHIR_JSON).send(order);
      expect(sr.status).toBe(403);
      expect(sr.body.issue[0].expression).toEqual(['ServiceRequest.requester']);
    });

    test('a client registered as acting for hospital B may name it', async () => {
      const client = readDemoClients(TEST_DATA_DIR).find((c) => c.clientId === 'demo-his-hospital-a')!;
      const clients = t.deps.auth.clients;
      await clients.updateOne({ _id: client.clientId }, { $set: { actsFor: [HOSPITAL_B] } });
      try {
        const tokenUrl = 'http://huren.test/auth/token';
        const token = await request(t.app)
          .post('/auth/token')
          .type('form')
          .send({
            grant_type: 'client_credentials',
            client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
            client_assertion: await createClientAssertion(client.clientId, client.privateJwk, tokenUrl),
            scope: client.scopes,
          });
        expect(token.status, token.text).toBe(200);
        const res = await request(t.app)
          .post('/fhir/Observation')
          .set('Authorization', `Bearer ${token.body.access_token}`)
          .set('Content-Type', FHIR_JSON)
          .send(result([HOSPITAL_A, HOSPITAL_B]));
        expect(res.status, res.text).toBe(201);
        // Its own institution must still be among the owners.
        const onlyB = await request(t.app)
          .post('/fhir/Observation')
          .set('Authorization', `Bearer ${token.body.access_token}`)
          .set('Content-Type', FHIR_JSON)
          .send(result([HOSPITAL_B]));
        expect(onlyB.status).toBe(403);
      } finally {
        await clients.updateOne({ _id: client.clientId }, { $unset: { actsFor: '' } });
      }
    });
  });

  test('reading the audit trail is itself audited', async () => {
    const requestId = unique('audit-read');
    const search = await t.as('admin').get('/fhir/AuditEvent?_count=5').set('X-Request-Id', requestId);
    expect(search.status).toBe(200);
    const one = (search.body as Bundle).entry![0]!.resource!;
    const readId = unique('audit-read');
    expect((await t.as('admin').get(`/fhir/AuditEvent/${one.id}`).set('X-Request-Id', readId)).status).toBe(200);
    for (const [id, subtype] of [
      [requestId, 'search-type'],
      [readId, 'read'],
    ] as const) {
      const found = await t.as('admin').get(`/fhir/AuditEvent?_tag=urn:huren:request-id|${id}`);
      const events = ((found.body as Bundle).entry ?? []).map((e) => e.resource as import('fhir/r4').AuditEvent);
      expect(events).toHaveLength(1);
      expect(events[0]!.subtype![0]!.code).toBe(subtype);
      expect(events[0]!.agent[0]!.altId).toBe('demo-admin');
    }
  });

  test('/metrics needs an admin token on the API port, and none on its own listener', async () => {
    const anonymous = await request(server).get('/metrics');
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.resourceType).toBe('OperationOutcome');
    expect((await over('his').get('/metrics')).status).toBe(403);
    const admin = await over('admin').get('/metrics');
    expect(admin.status).toBe(200);
    expect(admin.text).toContain('huren_http_requests_total');
    const metrics = createMetricsServer(t.deps.metrics);
    await new Promise<void>((resolve) => metrics.listen(0, '127.0.0.1', resolve));
    try {
      const port = (metrics.address() as AddressInfo).port;
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('huren_http_requests_total');
      expect((await fetch(`http://127.0.0.1:${port}/fhir/Patient`)).status).toBe(404);
    } finally {
      await new Promise((resolve) => metrics.close(resolve));
    }
  });
});
