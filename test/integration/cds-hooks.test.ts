import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AuditEvent, Bundle, DiagnosticReport, Observation, Patient, ServiceRequest } from 'fhir/r4';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cdsClients, readDemoCdsClient, signCdsJwt, type DemoCdsClientFile } from '../../src/cds/clients.js';
import type { Card } from '../../src/cds/cards.js';
import { DECLINE_REASON_SYSTEM } from '../../src/recognition/decline-reasons.js';
import { createTestApp, TEST_DATA_DIR, type TestApp } from '../support/app.js';
import { B_LOCAL, FHIR_JSON, HOSPITAL_A, LOINC, daysAgo, finalReport, patientWithId } from '../fixtures/recognition.js';

/**
 * A CDS Hooks client as the specification describes one (an EHR of Hospital B): discovery, order-select with
 * prefetch, without prefetch but with its FHIR server (a second Huren), without either, feedback; and the errors a
 * careless or hostile client gets.
 */
const ID_NUMBER = '11010519491231002X';
const ORIGIN = 'http://huren.test';
const SELECT = 'huren-reuse-order-select';
const SIGN = 'huren-reuse-order-sign';

const patient = patientWithId('cds-patient', ID_NUMBER, { gender: 'female', birthDate: '1949-12-31' });

const wbc: Observation = {
  resourceType: 'Observation',
  id: 'cds-wbc',
  status: 'final',
  code: { coding: [{ system: LOINC, code: '6690-2', display: 'WBC' }], text: '白细胞计数' },
  subject: { reference: 'Patient/cds-patient' },
  effectiveDateTime: daysAgo(2),
  performer: [{ reference: HOSPITAL_A }],
  valueQuantity: { value: 6.1, unit: '10*9/L', system: 'http://unitsofmeasure.org', code: '10*9/L' },
  referenceRange: [{ low: { value: 3.5 }, high: { value: 9.5 } }],
};

const report = (id: string, code: string, effective: string, extra: Partial<DiagnosticReport> = {}) =>
  finalReport(id, 'cds-patient', code, effective, extra);

const cbc = report('cds-cbc', '57021-8', daysAgo(2), { result: [{ reference: 'Observation/cds-wbc' }] });
// Hospital A's CT qualification lapsed on 2025-06-30 (seed/institutions.json): its chest CTs are for reference only.
const ct = report('cds-ct', '29252-4', daysAgo(10));

const draft = (id: string, system: string, code: string): ServiceRequest => ({
  resourceType: 'ServiceRequest',
  id,
  status: 'draft',
  intent: 'order',
  code: { coding: [{ system, code }] },
  subject: { reference: 'Patient/cds-patient' },
});

const drafts = (...orders: ServiceRequest[]): Bundle => ({
  resourceType: 'Bundle',
  type: 'collection',
  entry: orders.map((resource) => ({ resource })),
});

function hookBody(
  hook: string,
  orders: ServiceRequest[],
  extra: Record<string, unknown> = { prefetch: { patient } },
): Record<string, unknown> {
  return {
    hook,
    hookInstance: crypto.randomUUID(),
    context: {
      userId: 'Practitioner/dr-b',
      patientId: 'cds-patient',
      ...(hook === 'order-select' ? { selections: orders.map((o) => `ServiceRequest/${o.id}`) } : {}),
      draftOrders: drafts(...orders),
    },
    ...extra,
  };
}

describe('CDS Hooks services at order entry', () => {
  let t: TestApp;
  let ehr: TestApp;
  let ehrServer: Server;
  let ehrFhirBase: string;
  let demo: DemoCdsClientFile;

  const jwtFor = (path: string) => signCdsJwt(demo.iss, demo.privateJwk, `${ORIGIN}${path}`);

  async function call(service: string, body: unknown, headers: Record<string, string> = {}) {
    const path = `/cds-services/${service}`;
    return request(t.app)
      .post(path)
      .set('Authorization', `Bearer ${await jwtFor(path)}`)
      .set(headers)
      .send(body as object);
  }

  async function feedback(service: string, body: unknown) {
    const path = `/cds-services/${service}/feedback`;
    return request(t.app)
      .post(path)
      .set('Authorization', `Bearer ${await jwtFor(path)}`)
      .send(body as object);
  }

  async function put(app: TestApp, resource: Patient | DiagnosticReport | Observation): Promise<void> {
    const res = await app
      .as('his')
      .put(`/fhir/${resource.resourceType}/${resource.id}`)
      .set('Content-Type', FHIR_JSON)
      .send(resource);
    expect([200, 201], res.text).toContain(res.status);
  }

  const cardsOf = (res: request.Response) => (res.body as { cards: Card[] }).cards;
  const cardFor = (cards: Card[], item: string) => cards.find((c) => c.source.topic?.code === item);

  beforeAll(async () => {
    t = await createTestApp('cds-hooks');
    for (const r of [patient, wbc, cbc, ct]) await put(t, r);
    demo = readDemoCdsClient(TEST_DATA_DIR)!;
    // The EHR's own FHIR server: a second Huren on another database, holding the Patient.
    ehr = await createTestApp('cds-ehr');
    await put(ehr, patient);
    ehrServer = ehr.app.listen(0, '127.0.0.1');
    await new Promise((resolve) => ehrServer.once('listening', resolve));
    ehrFhirBase = `http://127.0.0.1:${(ehrServer.address() as AddressInfo).port}/fhir`;
    // The demo EHR's FHIR server is registered (by default only the EHR's own origin, its iss, would be read).
    await cdsClients(t.deps.connection.db!).updateOne({ _id: demo.iss }, { $set: { fhirServers: [ehrFhirBase] } });
  });
  afterAll(async () => {
    await new Promise((resolve) => ehrServer.close(resolve));
    await ehr.close();
    await t.close();
  });

  test('discovery lists the order-select and order-sign services with a Patient prefetch template', async () => {
    const res = await request(t.app).get('/cds-services');
    expect(res.status).toBe(200);
    const services = res.body.services as { id: string; hook: string; description: string; prefetch: object }[];
    expect(services.map((s) => [s.id, s.hook])).toEqual([
      [SELECT, 'order-select'],
      [SIGN, 'order-sign'],
    ]);
    for (const s of services) {
      expect(s.description.length).toBeGreaterThan(10);
      expect(s.prefetch).toEqual({ patient: 'Patient/{{context.patientId}}' });
    }
  });

  test('order-select with prefetch: an info card for the reusable CBC, a warning card for the chest CT', async () => {
    const orders = [draft('draft-cbc', B_LOCAL, 'XCG'), draft('draft-ct', B_LOCAL, 'XBCT')];
    const res = await call(SELECT, hookBody('order-select', orders));
    expect(res.status, res.text).toBe(200);
    const cards = cardsOf(res);
    expect(cards).toHaveLength(2);

    const cbcCard = cardFor(cards, 'HR-LAB-CBC')!;
    expect(cbcCard.indicator).toBe('info');
    expect(cbcCard.summary.length).toBeLessThan(140);
    expect(cbcCard.summary).toMatch(/^可互认：.*青岛演示医院A，2天前，有效至\d{4}-\d{2}-\d{2}$/);
    expect(cbcCard.detail).toContain('| 白细胞计数 | 6.1 | 10*9/L | 3.5–9.5 |');
    expect(cbcCard.detail).toMatch(/本省HR|全国HR|本市HR/);
    expect(cbcCard.source.label).toMatch(/Huren/);
    expect(cbcCard.selectionBehavior).toBe('at-most-one');
    const suggestion = cbcCard.suggestions![0]!;
    expect(suggestion.isRecommended).toBe(true);
    expect(suggestion.actions).toEqual([
      expect.objectContaining({ type: 'delete', resourceId: 'ServiceRequest/draft-cbc' }),
    ]);
    const reasons = cbcCard.overrideReasons!;
    expect(reasons.map((r) => r.code)).toEqual(
      expect.arrayContaining(['condition-changed', 'emergency', 'key-time-point', 'other']),
    );
    expect(reasons.every((r) => r.system === DECLINE_REASON_SYSTEM && r.display)).toBe(true);
    const link = cbcCard.links![0]!;
    expect(link.type).toBe('smart');
    expect(link.url).toMatch(new RegExp(`^${ORIGIN}/app\\?check=[0-9a-f-]{36}&item=HR-LAB-CBC$`));
    expect(JSON.parse(link.appContext!)).toMatchObject({ item: 'HR-LAB-CBC', result: 'DiagnosticReport/cds-cbc' });

    const ctCard = cardFor(cards, 'HR-IMG-CT-CHEST')!;
    expect(ctCard.indicator).toBe('warning');
    expect(ctCard.summary).toMatch(/^仅供参考：胸部CT/);
    expect(ctCard.summary.length).toBeLessThan(140);
    expect(ctCard.detail).toMatch(/2025-06-30/);
    // For reference only: no suggestion to delete the order, no decline to give.
    expect(ctCard.suggestions).toBeUndefined();
    expect(ctCard.overrideReasons).toBeUndefined();
    expect(ctCard.links![0]!.type).toBe('smart');

    // The call read the patient's results: one AuditEvent names the broker's Patient and the results.
    const audit = await t.as('admin').get('/fhir/AuditEvent?_sort=-date&_count=1');
    const event = (audit.body as Bundle).entry?.[0]?.resource as AuditEvent;
    const refs = event.entity?.map((e) => e.what?.reference);
    expect(refs).toEqual(expect.arrayContaining(['Patient/cds-patient', 'DiagnosticReport/cds-cbc']));
    expect(event.agent?.[0]).toMatchObject({ who: { reference: 'Organization/demo-hospital-b' }, altId: demo.iss });
  });

  test('a hook call answers within 500 ms (median of 5), with prefetch and from the EHR FHIR server', async () => {
    const orders = [draft('draft-cbc', B_LOCAL, 'XCG'), draft('draft-ct', B_LOCAL, 'XBCT')];
    const fromServer = {
      fhirServer: ehrFhirBase,
      fhirAuthorization: {
        access_token: ehr.tokens.clinician,
        token_type: 'Bearer',
        expires_in: 300,
        scope: 'x',
        subject: 'y',
      },
    };
    for (const [label, extra] of [
      ['prefetch', { prefetch: { patient } }],
      ['fhirServer', fromServer],
    ] as const) {
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const path = `/cds-services/${SELECT}`;
        const jwt = await jwtFor(path);
        const started = performance.now();
        const res = await request(t.app)
          .post(path)
          .set('Authorization', `Bearer ${jwt}`)
          .send(hookBody('order-select', orders, extra));
        times.push(performance.now() - started);
        expect(res.status, res.text).toBe(200);
        expect(cardsOf(res)).toHaveLength(2);
      }
      times.sort((a, b) => a - b);
      console.info(`CDS order-select (${label}): median ${times[2]!.toFixed(1)} ms, max ${times[4]!.toFixed(1)} ms`);
      expect(times[2]).toBeLessThan(500);
    }
  });

  test("when the EHR's record of the patient says another sex, a warning card asks to verify and reuse is not recommended", async () => {
    const orders = [draft('draft-cbc-id', B_LOCAL, 'XCG')];
    const male = { ...patient, gender: 'male' as const };
    const res = await call(SELECT, hookBody('order-select', orders, { prefetch: { patient: male } }));
    expect(res.status, res.text).toBe(200);
    const cards = cardsOf(res);
    const warning = cards.find((c) => c.summary.startsWith('患者身份信息在各机构间不一致'))!;
    expect(warning.indicator).toBe('warning');
    // The ID number (…1949-12-31, female) and hospital A's record disagree with hospital B's EHR.
    expect(warning.detail).toContain('性别：女（身份证号、青岛演示医院A） ≠ 男（青岛演示医院B）');
    const cbcCard = cardFor(cards, 'HR-LAB-CBC')!;
    expect(cbcCard.suggestions![0]!.isRecommended).toBe(false);
  });

  test('cards speak English when the doctor prefers it', async () => {
    const res = await call(SIGN, hookBody('order-sign', [draft('draft-cbc', B_LOCAL, 'XCG')]), {
      'Accept-Language': 'en-US,en;q=0.9',
    });
    expect(res.status, res.text).toBe(200);
    const card = cardsOf(res)[0]!;
    expect(card.summary).toMatch(/^Reusable: CBC.* from Qingdao Demo Hospital A, 2 days ago, valid until /);
    expect(card.detail).toContain('| Test | Result | Unit | Reference range |');
    expect(card.overrideReasons!.find((r) => r.code === 'emergency')!.display).toBe('Emergency or rescue');
  });

  test('without prefetch, the patient is read from the EHR FHIR server with fhirAuthorization', async () => {
    const res = await call(
      SELECT,
      hookBody('order-select', [draft('draft-cbc', B_LOCAL, 'XCG')], {
        fhirServer: ehrFhirBase,
        fhirAuthorization: {
          access_token: ehr.tokens.clinician,
          token_type: 'Bearer',
          expires_in: 300,
          scope: 'system/Patient.rs',
          subject: 'huren',
        },
      }),
    );
    expect(res.status, res.text).toBe(200);
    expect(cardFor(cardsOf(res), 'HR-LAB-CBC')?.indicator).toBe('info');
  });

  test('a fhirServer other than the EHR registered base is refused, whatever it looks like', async () => {
    const port = new URL(ehrFhirBase).port;
    for (const fhirServer of [
      `http://127.0.0.1:${port}/admin`, // same host, outside the registered base
      `http://127.0.0.1:${port}/fhirx`, // a look-alike path
      'http://169.254.169.254/latest/meta-data', // a metadata service
      'https://ehr.demo-hospital-b.example.org.attacker.example/fhir', // a look-alike host
    ]) {
      const res = await call(
        SELECT,
        hookBody('order-select', [draft('draft-cbc', B_LOCAL, 'XCG')], {
          fhirServer,
          fhirAuthorization: { access_token: 'x', token_type: 'Bearer', expires_in: 300, scope: 'x', subject: 'y' },
        }),
      );
      expect(res.status, fhirServer).toBe(403);
      expect(res.body.issue[0].expression).toEqual(['fhirServer']);
      expect(res.body.issue[0].diagnostics).toContain('is not the FHIR server registered for this EHR');
    }
  });

  test('CORS: a registered EHR origin may call from a browser, another origin gets no CORS headers', async () => {
    const path = `/cds-services/${SELECT}`;
    const preflight = await request(t.app)
      .options(path)
      .set('Origin', 'https://ehr.demo-hospital-b.example.org')
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', 'authorization, content-type');
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe('https://ehr.demo-hospital-b.example.org');
    expect(preflight.headers['access-control-allow-headers']).toMatch(/Authorization/);
    const discovery = await request(t.app)
      .get('/cds-services')
      .set('Origin', 'https://ehr.demo-hospital-b.example.org');
    expect(discovery.headers['access-control-allow-origin']).toBe('https://ehr.demo-hospital-b.example.org');
    const stranger = await request(t.app).get('/cds-services').set('Origin', 'https://evil.example.org');
    expect(stranger.status).toBe(200);
    expect(stranger.headers['access-control-allow-origin']).toBeUndefined();
  });

  test('412 when the patient is neither prefetched nor readable from the EHR', async () => {
    const orders = [draft('draft-cbc', B_LOCAL, 'XCG')];
    const neither = await call(SELECT, hookBody('order-select', orders, {}));
    expect(neither.status).toBe(412);
    expect(neither.body.issue[0].diagnostics).toMatch(/prefetch/);
    const refused = await call(
      SELECT,
      hookBody('order-select', orders, {
        fhirServer: ehrFhirBase,
        fhirAuthorization: { access_token: 'a.b.c', token_type: 'Bearer', expires_in: 300, scope: 'x', subject: 'y' },
      }),
    );
    expect(refused.status).toBe(412);
    expect(refused.body.issue[0].diagnostics).toMatch(/HTTP 401/);
  });

  test('feedback: accepted twice counts the saving once; overridden with a reason is a decline', async () => {
    const res = await call(
      SELECT,
      hookBody('order-select', [draft('draft-cbc', B_LOCAL, 'XCG'), draft('draft-ct', B_LOCAL, 'XBCT')]),
    );
    const cards = cardsOf(res);
    const cbcCard = cardFor(cards, 'HR-LAB-CBC')!;
    const ctCard = cardFor(cards, 'HR-IMG-CT-CHEST')!;
    const ledger = t.deps.ledger!.collection;
    const savedBefore = (await ledger.find({ event: 'accepted', institution: 'demo-hospital-b' }).toArray()).reduce(
      (sum, e) => sum + e.saving,
      0,
    );

    const accept = {
      feedback: [
        {
          card: cbcCard.uuid,
          outcome: 'accepted',
          acceptedSuggestions: [{ id: cbcCard.suggestions![0]!.uuid }],
          outcomeTimestamp: new Date().toISOString(),
        },
      ],
    };
    const first = await feedback(SELECT, accept);
    expect(first.status, first.text).toBe(200);
    expect(first.body.feedback[0]).toMatchObject({ decision: 'accepted', status: 'created' });
    const again = await feedback(SELECT, accept);
    expect(again.status, again.text).toBe(200);
    expect(again.body.feedback[0].status).toBe('unchanged');

    const accepted = await ledger.find({ event: 'accepted', institution: 'demo-hospital-b' }).toArray();
    const savedAfter = accepted.reduce((sum, e) => sum + e.saving, 0);
    expect(savedAfter - savedBefore).toBe(30); // the CBC's price, once
    expect(accepted.filter((e) => e.card === cbcCard.uuid)).toHaveLength(1);
    expect(accepted.find((e) => e.card === cbcCard.uuid)).toMatchObject({
      channel: 'cds-feedback',
      item: 'HR-LAB-CBC',
    });

    // Dismissing the reference-only CT card, even with a reason, is not a decline; accepting it is refused.
    const dismissCt = await feedback(SELECT, {
      feedback: [
        {
          card: ctCard.uuid,
          outcome: 'overridden',
          overrideReason: { reason: { system: DECLINE_REASON_SYSTEM, code: 'condition-changed' }, userComment: '复查' },
          outcomeTimestamp: new Date().toISOString(),
        },
      ],
    });
    expect(dismissCt.status, dismissCt.text).toBe(200);
    expect(dismissCt.body.feedback[0]).toMatchObject({ decision: 'dismissed', status: 'not-recorded' });
    const acceptCt = await feedback(SELECT, {
      feedback: [
        {
          card: ctCard.uuid,
          outcome: 'accepted',
          acceptedSuggestions: [{ id: 'x' }],
          outcomeTimestamp: new Date().toISOString(),
        },
      ],
    });
    expect(acceptCt.status).toBe(400);
    expect(acceptCt.body.issue[0].expression).toEqual(['feedback[0].outcome']);
    expect(await ledger.countDocuments({ card: ctCard.uuid })).toBe(0);

    // A reusable card overridden with a reason is a decline.
    const second = cardFor(
      cardsOf(await call(SELECT, hookBody('order-select', [draft('draft-cbc', B_LOCAL, 'XCG')]))),
      'HR-LAB-CBC',
    )!;
    const override = await feedback(SELECT, {
      feedback: [
        {
          card: second.uuid,
          outcome: 'overridden',
          overrideReason: { reason: { system: DECLINE_REASON_SYSTEM, code: 'condition-changed' }, userComment: '复查' },
          outcomeTimestamp: new Date().toISOString(),
        },
      ],
    });
    expect(override.status, override.text).toBe(200);
    const declined = await ledger.findOne({ card: second.uuid, event: 'declined' });
    expect(declined).toMatchObject({
      item: 'HR-LAB-CBC',
      reason: 'condition-changed',
      reasonText: '复查',
      saving: 0,
    });

    // Changing a recorded decision is refused; nothing is counted twice.
    const change = await feedback(SELECT, {
      feedback: [
        { ...accept.feedback[0], card: second.uuid, acceptedSuggestions: [{ id: second.suggestions![0]!.uuid }] },
      ],
    });
    expect(change.status).toBe(409);
  });

  test('feedback: overridden without a reason is a dismissal, not a view (CDS Hooks 2.0)', async () => {
    const res = await call(SELECT, hookBody('order-select', [draft('draft-cbc', B_LOCAL, 'XCG')]));
    const card = cardFor(cardsOf(res), 'HR-LAB-CBC')!;
    const dismissed = await feedback(SELECT, {
      feedback: [{ card: card.uuid, outcome: 'overridden', outcomeTimestamp: new Date().toISOString() }],
    });
    expect(dismissed.status, dismissed.text).toBe(200);
    expect(dismissed.body.feedback[0]).toMatchObject({ decision: 'dismissed', status: 'not-recorded' });
    expect(await t.deps.ledger!.collection.countDocuments({ card: card.uuid })).toBe(0);
    // "Other" is the last override reason.
    expect(card.overrideReasons!.at(-1)!.code).toBe('other');
  });

  test('feedback errors name the field at fault and record nothing', async () => {
    const res = await call(SELECT, hookBody('order-select', [draft('draft-cbc', B_LOCAL, 'XCG')]));
    const card = cardsOf(res)[0]!;
    const now = new Date().toISOString();
    const unknownReason = await feedback(SELECT, {
      feedback: [
        {
          card: card.uuid,
          outcome: 'overridden',
          overrideReason: { reason: { code: 'bored' } },
          outcomeTimestamp: now,
        },
      ],
    });
    expect(unknownReason.status).toBe(400);
    expect(unknownReason.body.issue[0].expression).toEqual(['feedback[0].overrideReason.reason']);
    const otherNeedsText = await feedback(SELECT, {
      feedback: [
        {
          card: card.uuid,
          outcome: 'overridden',
          overrideReason: { reason: { system: DECLINE_REASON_SYSTEM, code: 'other' } },
          outcomeTimestamp: now,
        },
      ],
    });
    expect(otherNeedsText.status).toBe(400);
    const unknownCard = await feedback(SELECT, {
      feedback: [{ card: crypto.randomUUID(), outcome: 'overridden', outcomeTimestamp: now }],
    });
    expect(unknownCard.status).toBe(404);
    const wrongService = await feedback(SIGN, {
      feedback: [{ card: card.uuid, outcome: 'overridden', outcomeTimestamp: now }],
    });
    expect(wrongService.status).toBe(404);
    expect(await t.deps.ledger!.collection.countDocuments({ card: card.uuid })).toBe(0);
  });

  test('an EHR without a valid JWT is refused with 401', async () => {
    const path = `/cds-services/${SELECT}`;
    const body = hookBody('order-select', [draft('draft-cbc', B_LOCAL, 'XCG')]);
    const missing = await request(t.app).post(path).send(body);
    expect(missing.status).toBe(401);
    expect(missing.body.resourceType).toBe('OperationOutcome');

    // Forged: the demo EHR's iss, signed with a key that is not registered.
    const { privateKey } = await generateKeyPair('ES384', { extractable: true });
    const forgedJwk = { ...(await exportJWK(privateKey)), kid: demo.privateJwk.kid, alg: 'ES384' };
    const forged = await request(t.app)
      .post(path)
      .set('Authorization', `Bearer ${await signCdsJwt(demo.iss, forgedJwk, `${ORIGIN}${path}`)}`)
      .send(body);
    expect(forged.status).toBe(401);
    expect(forged.body.issue[0].diagnostics).toMatch(/signature/);

    const wrongAud = await request(t.app)
      .post(path)
      .set('Authorization', `Bearer ${await signCdsJwt(demo.iss, demo.privateJwk, `${ORIGIN}/cds-services/${SIGN}`)}`)
      .send(body);
    expect(wrongAud.status).toBe(401);
    expect(wrongAud.body.issue[0].diagnostics).toMatch(/aud/);

    const hmac = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(demo.iss)
      .setAudience(`${ORIGIN}${path}`)
      .setIssuedAt()
      .setExpirationTime('5m')
      .setJti(crypto.randomUUID())
      .sign(new TextEncoder().encode('a shared secret that must not be accepted'));
    expect((await request(t.app).post(path).set('Authorization', `Bearer ${hmac}`).send(body)).status).toBe(401);

    const unknownIss = await signCdsJwt('https://ehr.unknown.example.org', demo.privateJwk, `${ORIGIN}${path}`);
    expect((await request(t.app).post(path).set('Authorization', `Bearer ${unknownIss}`).send(body)).status).toBe(401);

    const once = await jwtFor(path);
    expect((await request(t.app).post(path).set('Authorization', `Bearer ${once}`).send(body)).status).toBe(200);
    const replay = await request(t.app).post(path).set('Authorization', `Bearer ${once}`).send(body);
    expect(replay.status).toBe(401);
    expect(replay.body.issue[0].diagnostics).toMatch(/replay/);
  });

  test('bad requests get 400 with the field at fault; unmapped codes get an informative card', async () => {
    const orders = [draft('draft-cbc', B_LOCAL, 'XCG')];
    const wrongHook = await call(SELECT, { ...hookBody('order-select', orders), hook: 'patient-view' });
    expect(wrongHook.status).toBe(400);
    expect(wrongHook.body.issue[0].expression).toEqual(['hook']);

    const body = hookBody('order-select', orders);
    const malformed = await call(SELECT, { ...body, context: { ...(body.context as object), draftOrders: 'XCG' } });
    expect(malformed.status).toBe(400);
    expect(malformed.body.issue[0].expression).toEqual(['context.draftOrders']);

    const noCode = await call(SIGN, hookBody('order-sign', [{ ...orders[0]!, code: { text: '血常规' } }]));
    expect(noCode.status).toBe(400);
    expect(noCode.body.issue[0].expression).toEqual(['context.draftOrders.entry[0].resource.code.coding']);

    const notJson = await request(t.app)
      .post(`/cds-services/${SELECT}`)
      .set('Authorization', `Bearer ${await jwtFor(`/cds-services/${SELECT}`)}`)
      .set('Content-Type', 'application/json')
      .send('{"hook": ');
    expect(notJson.status).toBe(400);

    const unknownService = await call('no-such-service', hookBody('order-select', orders));
    expect(unknownService.status).toBe(404);

    const unmapped = await call(SIGN, hookBody('order-sign', [draft('draft-x', B_LOCAL, 'NOT-A-CODE')]));
    expect(unmapped.status, unmapped.text).toBe(200);
    const [card] = cardsOf(unmapped);
    expect(card!.indicator).toBe('info');
    expect(card!.summary).toMatch(/未做互认检查/);
    expect(card!.detail).toContain('NOT-A-CODE');
    expect(card!.suggestions).toBeUndefined();
  });

  test('an EHR over the rate limit gets 429 with Retry-After', async () => {
    const limited = await createTestApp('cds-limited', { HUREN_RATE_LIMIT: '2' });
    try {
      const path = `/cds-services/${SELECT}`;
      const body = hookBody('order-select', [draft('draft-cbc', B_LOCAL, 'XCG')]);
      const send = async () =>
        request(limited.app)
          .post(path)
          .set('Authorization', `Bearer ${await jwtFor(path)}`)
          .send(body);
      expect((await send()).status).toBe(200);
      expect((await send()).status).toBe(200);
      const third = await send();
      expect(third.status).toBe(429);
      expect(Number(third.headers['retry-after'])).toBeGreaterThan(0);
      expect(third.body.issue[0].code).toBe('throttled');
    } finally {
      await limited.close();
    }
  });
});
