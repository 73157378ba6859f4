import { randomUUID } from 'node:crypto';
import type { Bundle, Observation, Patient } from 'fhir/r4';
import { importJWK, SignJWT } from 'jose';
import request, { type Response, type Test } from 'supertest';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { createClientAssertion } from '../../src/auth/assertion.js';
import { readDemoClients } from '../../src/auth/demo-clients.js';
import { createTestApp, type TestApp } from '../support/app.js';

const FHIR_JSON = 'application/fhir+json';
const TOKEN_URL = 'http://huren.test/auth/token';
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** 居民身份证 (PRC resident identity card), the identifier system hospitals send. */
const ID_CARD = 'urn:oid:2.16.156.10011.1.1';
const ID_NUMBER = '11010519491231002X';
const NAME = '王秀英';
const BIRTH_DATE = '1990-01-01';
const HOSPITAL_A = 'Organization/demo-hospital-a';

const byIdNumber = `identifier=${encodeURIComponent(`${ID_CARD}|${ID_NUMBER}`)}`;

const patient = (overrides: Partial<Patient> = {}): Patient => ({
  resourceType: 'Patient',
  identifier: [{ system: ID_CARD, value: ID_NUMBER }],
  name: [{ text: NAME, family: NAME.slice(0, 1), given: [NAME.slice(1)] }],
  gender: 'female',
  birthDate: BIRTH_DATE,
  managingOrganization: { reference: HOSPITAL_A },
  ...overrides,
});

const result = (subject: string): Observation => ({
  resourceType: 'Observation',
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '718-7', display: 'Hemoglobin [Mass/volume] in Blood' }] },
  subject: { reference: subject, display: NAME },
  effectiveDateTime: '2026-11-20T08:30:00+08:00',
  performer: [{ reference: HOSPITAL_A }],
  valueQuantity: { value: 135, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' },
  note: [{ text: `${NAME} ${ID_NUMBER} ${BIRTH_DATE}` }],
});

describe('patient data never reaches the logs', () => {
  let t: TestApp;
  let sent = 0;
  let servedBefore = 0;
  const served = () => t.logLines.filter((l) => l.includes('Request served')).length;

  /** Every request of this file goes through here, so the request log lines can be counted. */
  async function send(req: Test, expected: number | number[]): Promise<Response> {
    sent++;
    const res = await req;
    expect([expected].flat()).toContain(res.status);
    return res;
  }
  const as = (who: string) => t.as(who);
  const anonymous = () => request(t.app);

  beforeAll(async () => {
    t = await createTestApp('phi-logs');
    // The demo clients' token requests of createTestApp are logged too; wait until they all are.
    const tokenRequests = new Set(Object.values(t.tokens)).size;
    await vi.waitFor(() => expect(served()).toBe(tokenRequests));
    servedBefore = served();
  });
  afterAll(async () => {
    await t.close();
  });

  test('an ID number, a name and a birth date pushed through every endpoint appear in no log line', async () => {
    const his = readDemoClients(t.deps.config.dataDir).find((c) => c.clientId === 'demo-his-hospital-a')!;
    const tokenForm = (assertion: string, extra: Record<string, string> = {}) => ({
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: assertion,
      scope: 'system/Patient.rs',
      ...extra,
    });

    // -- the token endpoint, with assertions that carry the ID number where a careless client might put it
    const token = () => anonymous().post('/auth/token').type('form');
    await send(token().send(tokenForm(`eyJhbGciOiJFUzM4NCJ9.${ID_NUMBER}.${NAME}`)), 401);
    const strangerKey = { ...his.privateJwk, kid: ID_NUMBER };
    const stranger = await new SignJWT({ jti: ID_NUMBER, name: NAME, birthdate: BIRTH_DATE })
      .setProtectedHeader({ alg: 'ES384', kid: ID_NUMBER })
      .setIssuer(ID_NUMBER)
      .setSubject(ID_NUMBER)
      .setAudience(TOKEN_URL)
      .setExpirationTime('4m')
      .sign(await importJWK(strangerKey, 'ES384'));
    await send(token().send(tokenForm(stranger)), 401);
    const forSomeoneElse = await createClientAssertion(his.clientId, his.privateJwk, `${TOKEN_URL}/${ID_NUMBER}`);
    await send(token().send(tokenForm(forSomeoneElse)), 401);
    const valid = await createClientAssertion(his.clientId, his.privateJwk, TOKEN_URL);
    await send(token().send(tokenForm(valid, { scope: `system/Patient.rs ${NAME} ${ID_NUMBER}` })), 400);
    await send(token().send(tokenForm(valid, { grant_type: ID_NUMBER })), 400);
    await send(anonymous().post('/auth/token').send({ client_assertion: ID_NUMBER, name: NAME }), 400);

    // -- bearer tokens carrying the ID number
    await send(anonymous().get(`/fhir/Patient?${byIdNumber}`).set('Authorization', `Bearer ${ID_NUMBER}`), 401);
    await send(anonymous().get(`/fhir/Patient?${byIdNumber}`).set('Authorization', `Bearer a.${ID_NUMBER}.b`), 401);

    // -- writes: create, conditional create, transaction, batch
    const created = await send(as('his').post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(patient()), 201);
    const patientRef = `Patient/${created.body.id}`;
    await send(
      as('his')
        .post('/fhir/Patient')
        .set('Content-Type', FHIR_JSON)
        .set('If-None-Exist', `identifier=${ID_CARD}|${ID_NUMBER}`)
        .send(patient()),
      200,
    );
    await send(as('his').post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(result(patientRef)), 201);
    const p = `urn:uuid:${randomUUID()}`;
    const transaction: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: p, resource: patient(), request: { method: 'POST', url: 'Patient' } },
        { resource: result(p), request: { method: 'POST', url: 'Observation' } },
      ],
    };
    await send(as('his').post('/fhir').set('Content-Type', FHIR_JSON).send(transaction), 200);
    const batch: Bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { request: { method: 'GET', url: `Patient?${byIdNumber}` } },
        { request: { method: 'GET', url: `Patient?name=${encodeURIComponent(NAME)}&birthdate=${BIRTH_DATE}` } },
        { resource: patient({ birthDate: ID_NUMBER }), request: { method: 'POST', url: 'Patient' } },
      ],
    };
    await send(as('his').post('/fhir').set('Content-Type', FHIR_JSON).send(batch), 200);

    // -- reads and searches by the identifying values
    await send(as('his').get(`/fhir/Patient?${byIdNumber}`), 200);
    await send(as('his').get(`/fhir/Patient?name=${encodeURIComponent(NAME)}&birthdate=${BIRTH_DATE}`), 200);
    await send(as('clinician').get(`/fhir/Observation?subject:Patient.${byIdNumber}`), 200);
    await send(
      as('his')
        .post('/fhir/Patient/_search')
        .type('form')
        .send({ identifier: `${ID_CARD}|${ID_NUMBER}`, name: NAME }),
      200,
    );
    await send(as('his').get(`/fhir/${patientRef}`), 200);

    // -- $validate of an invalid resource full of identifying data
    await send(
      as('his')
        .post('/fhir/Patient/$validate')
        .set('Content-Type', FHIR_JSON)
        .send(patient({ birthDate: `${BIRTH_DATE}T25:61` })),
      200,
    );

    // -- refusals and errors: 400, 403, 404, 412, 415
    await send(
      as('his')
        .post('/fhir/Patient')
        .set('Content-Type', FHIR_JSON)
        .send(patient({ birthDate: ID_NUMBER, gender: NAME as Patient['gender'] })),
      400,
    );
    await send(
      as('his')
        .post('/fhir/Patient')
        .set('Content-Type', FHIR_JSON)
        .send(`{"resourceType":"Patient","identifier":[{"value":${ID_NUMBER}}],"name":"${NAME}"`),
      400,
    );
    await send(
      as('his')
        .post('/fhir/Patient')
        .set('Content-Type', FHIR_JSON)
        .send(patient({ [ID_NUMBER]: NAME } as Partial<Patient>)),
      400,
    );
    await send(as('demo-his-hospital-b').post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(patient()), 403);
    await send(as('demo-his-hospital-b').get(`/fhir/${patientRef}`), 403);
    await send(as('bureau').get(`/fhir/Patient?${byIdNumber}`), 403);
    await send(as('his').get(`/fhir/Patient/${ID_NUMBER}`), 404);
    await send(as('his').get(`/fhir/Patient?${byIdNumber}&${encodeURIComponent(NAME)}=${BIRTH_DATE}`), 400);
    // Two patients now carry the ID number (the transaction made the second): a conditional update cannot choose.
    await send(
      as('his')
        .put(`/fhir/Patient?${byIdNumber}`)
        .set('Content-Type', FHIR_JSON)
        .send(patient({ gender: 'other' })),
      412,
    );
    await send(
      as('his')
        .put(`/fhir/${patientRef}`)
        .set('Content-Type', FHIR_JSON)
        .set('If-Match', 'W/"9"')
        .send(patient({ id: created.body.id as string })),
      412,
    );
    await send(
      as('his').post('/fhir/Patient').set('Content-Type', 'text/plain').send(`${NAME} ${ID_NUMBER} ${BIRTH_DATE}`),
      415,
    );

    // -- operations endpoints
    const metrics = await send(as('admin').get('/metrics'), 200);
    expect(metrics.text).not.toContain(ID_NUMBER);
    expect(metrics.text).not.toContain(encodeURIComponent(NAME));
    await send(anonymous().get('/healthz'), 200);
    await send(anonymous().get('/readyz'), 200);

    // Every request is in the request log (method, path, status, request id) …
    await vi.waitFor(() => expect(served() - servedBefore).toBe(sent));
    const requestLines = t.logLines
      .filter((l) => l.includes('Request served'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(requestLines.every((l) => typeof l.requestId === 'string' && typeof l.status === 'number')).toBe(true);
    expect(requestLines.some((l) => l.path === '/auth/token' && l.status === 401)).toBe(true);

    // … and no log line holds the ID number, the name, the birth date or a resource.
    const logs = t.logLines.join('\n');
    for (const secret of [
      ID_NUMBER,
      ID_NUMBER.toLowerCase(),
      ID_NUMBER.slice(0, 17),
      NAME,
      encodeURIComponent(NAME),
      [...NAME].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join(''),
      BIRTH_DATE,
      '"resourceType"',
      '\\"resourceType\\"',
    ]) {
      expect(logs, `the logs contain ${secret}`).not.toContain(secret);
    }
  });
});
