import type {
  AuditEvent,
  Bundle,
  DiagnosticReport,
  Parameters,
  ParametersParameter,
  Patient,
  ServiceRequest,
} from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { REUSE_CHECKS_COLLECTION, type ReuseCheckDoc } from '../../src/recognition/reuse-checks.js';
import { createTestApp, type TestApp } from '../support/app.js';
import {
  B_LOCAL,
  DAY,
  FHIR_JSON,
  HOSPITAL_A,
  HOSPITAL_B,
  ID_CARD,
  LOINC,
  daysAgo,
  finalReport,
  patientWithId,
} from '../fixtures/recognition.js';

const ID_NUMBER = '11010519491231002X';

const patient = patientWithId('rc-patient', ID_NUMBER, { gender: 'female', birthDate: '1949-12-31' });
const report = (id: string, code: string, effective: string, extra: Partial<DiagnosticReport> = {}) =>
  finalReport(id, 'rc-patient', code, effective, extra);

const cbc = report('rc-cbc', '57021-8', daysAgo(1));
const hba1c = report('rc-hba1c', '4548-4', daysAgo(90));
const ct = report('rc-ct', '29252-4', daysAgo(10));

const order: ServiceRequest = {
  resourceType: 'ServiceRequest',
  status: 'draft',
  intent: 'order',
  code: { coding: [{ system: B_LOCAL, code: 'XCG' }] },
  subject: { reference: 'Patient/x' },
  requester: { reference: HOSPITAL_B },
};

const params = (...parameter: ParametersParameter[]): Parameters => ({ resourceType: 'Parameters', parameter });
const patientParam = (value = ID_NUMBER, system = ID_CARD): ParametersParameter => ({
  name: 'patient',
  valueIdentifier: { system, value },
});
const codeParam = (code: string, system = LOINC): ParametersParameter => ({
  name: 'code',
  valueCoding: { system, code },
});
const requesterParam = (ref = HOSPITAL_B): ParametersParameter => ({
  name: 'requester',
  valueReference: { reference: ref },
});

type Outcome = Record<string, ParametersParameter>;

function outcomesOf(body: Parameters): Outcome[] {
  return (body.parameter ?? [])
    .filter((p) => p.name === 'outcome')
    .map((p) => Object.fromEntries((p.part ?? []).map((x) => [x.name, x])));
}

describe('$reuse-check', () => {
  let t: TestApp;

  async function put(resource: Patient | DiagnosticReport): Promise<void> {
    const res = await t
      .as('his')
      .put(`/fhir/${resource.resourceType}/${resource.id}`)
      .set('Content-Type', FHIR_JSON)
      .send(resource);
    expect([200, 201], res.text).toContain(res.status);
  }

  async function check(body: Parameters, who = 'demo-his-hospital-b') {
    return t.as(who).post('/fhir/$reuse-check').set('Content-Type', FHIR_JSON).send(body);
  }

  /** How many AuditEvents there are; this read of the trail is itself audited once it has answered (+1). */
  async function auditCount(): Promise<number> {
    const res = await t.as('admin').get('/fhir/AuditEvent?_total=accurate');
    expect(res.status, res.text).toBe(200);
    return (res.body as Bundle).total as number;
  }

  beforeAll(async () => {
    t = await createTestApp('reuse-check');
    await put(patient);
    await put(cbc);
    await put(hba1c);
    await put(ct);
  });
  afterAll(async () => {
    await t.close();
  });

  test('hospital B is told what of hospital A it can reuse, with the result, window, saving and reason', async () => {
    const before = await auditCount();
    const res = await check(
      params(
        patientParam(),
        codeParam('57021-8'),
        codeParam('4548-4'),
        codeParam('29252-4'),
        codeParam('2345-7'),
        codeParam('XCG', B_LOCAL),
        requesterParam(),
      ),
    );
    expect(res.status, res.text).toBe(200);
    const body = res.body as Parameters;
    expect(body.resourceType).toBe('Parameters');
    const checkId = body.parameter?.find((p) => p.name === 'check')?.valueId;
    expect(checkId).toMatch(/^[0-9a-f-]{36}$/);

    const [cbcOut, hba1cOut, ctOut, unknown, local] = outcomesOf(body);
    expect(cbcOut!.item!.valueCoding!.code).toBe('HR-LAB-CBC');
    expect(cbcOut!.decision!.valueCode).toBe('reusable');
    expect(cbcOut!.result!.valueReference!.reference).toBe('DiagnosticReport/rc-cbc');
    expect(cbcOut!.performer!.valueReference!.reference).toBe(HOSPITAL_A);
    expect(cbcOut!.effective!.valueDateTime).toBe(cbc.effectiveDateTime);
    expect(cbcOut!.validUntil!.valueDateTime).toMatch(/T23:59:59\+08:00$/);
    expect(Date.parse(cbcOut!.validUntil!.valueDateTime!)).toBeGreaterThan(Date.now() + 4 * DAY);
    expect(cbcOut!.saving!.valueMoney).toEqual({ value: 30, currency: 'CNY' });
    // One sentence in the requester's language (zh-CN by default), the rule path apart, the asked code echoed.
    expect(cbcOut!.reason!.valueString).toMatch(/^可互认：青岛演示医院A .*血常规.*无需重复检查。$/);
    expect(cbcOut!.reason!.valueString).not.toMatch(/Reusable|判定依据/);
    const steps = cbcOut!.rulePath!.part!.map((s) => Object.fromEntries(s.part!.map((x) => [x.name, x])));
    expect(steps.map((s) => s.rule!.valueCode)).toContain('window');
    expect(steps.find((s) => s.rule!.valueCode === 'window')!.text!.valueString).toMatch(/有效期 7 天/);
    expect(cbcOut!.requested!.valueCoding).toEqual({ system: LOINC, code: '57021-8' });
    expect(local!.requested!.valueCoding).toEqual({ system: B_LOCAL, code: 'XCG' });

    expect(hba1cOut!.item!.valueCoding!.code).toBe('HR-LAB-HBA1C');
    expect(hba1cOut!.decision!.valueCode).toBe('expired');
    expect(hba1cOut!.result!.valueReference!.reference).toBe('DiagnosticReport/rc-hba1c');
    expect(hba1cOut!.saving!.valueMoney!.value).toBe(0);

    expect(ctOut!.item!.valueCoding!.code).toBe('HR-IMG-CT-CHEST');
    expect(ctOut!.decision!.valueCode).toBe('reference-only');
    expect(ctOut!.reason!.valueString).toMatch(/2025-06-30/);

    expect(unknown!.decision!.valueCode).toBe('not-recognized');
    expect(unknown!.item).toBeUndefined();
    expect(unknown!.reason!.valueString).toMatch(/2345-7/);
    expect(unknown!.requested!.valueCoding!.code).toBe('2345-7');

    expect(local!.item!.valueCoding!.code).toBe('HR-LAB-CBC');
    expect(local!.decision!.valueCode).toBe('reusable');
    expect(local!.result!.valueReference!.reference).toBe('DiagnosticReport/rc-cbc');

    // One AuditEvent, an executed operation naming the patient.
    expect(await auditCount()).toBe(before + 2);
    const audit = await t.as('admin').get('/fhir/AuditEvent?_count=1000');
    const events = ((audit.body as Bundle).entry ?? []).map((e) => e.resource as AuditEvent);
    const event = events.find((e) => e.subtype?.[0]?.code === 'operation' && e.outcome === '0');
    expect(event?.action).toBe('E');
    expect(event?.entity?.map((e) => e.what?.reference)).toContain('Patient/rc-patient');

    // The check is stored with patient keys only.
    const stored = await t.deps.connection
      .db!.collection<ReuseCheckDoc>(REUSE_CHECKS_COLLECTION)
      .findOne({ _id: checkId! });
    expect(stored).toMatchObject({ requester: 'demo-hospital-b', context: 'routine' });
    expect(stored!.outcomes.map((o) => o.decision)).toEqual([
      'reusable',
      'expired',
      'reference-only',
      'not-recognized',
      'reusable',
    ]);
    expect(stored!.outcomes[0]).toMatchObject({ item: 'HR-LAB-CBC', result: 'DiagnosticReport/rc-cbc', saving: 30 });
    expect(stored!.patientKeys).toHaveLength(1);
    expect(JSON.stringify(stored)).not.toContain(ID_NUMBER);
  });

  test('asked in English, the reason and the rule path are English sentences with English dates', async () => {
    const res = await t
      .as('demo-his-hospital-b')
      .post('/fhir/$reuse-check')
      .set('Content-Type', FHIR_JSON)
      .set('Accept-Language', 'en-GB,en;q=0.9,zh;q=0.5')
      .send(params(patientParam(), codeParam('57021-8'), codeParam('29252-4'), requesterParam()));
    expect(res.status, res.text).toBe(200);
    const [cbcOut, ctOut] = outcomesOf(res.body as Parameters);
    expect(cbcOut!.reason!.valueString).toMatch(
      /^Reusable: the CBC with 5-part differential from Qingdao Demo Hospital A on \d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2} is valid until \d{1,2} [A-Z][a-z]{2} \d{4}; no need to repeat it\.$/,
    );
    expect(ctOut!.reason!.valueString).toMatch(/^For reference only: .*ended on 30 Jun 2025/);
    expect(JSON.stringify(ctOut!.rulePath)).not.toMatch(/\d{4}-\d{2}-\d{2}/);
    expect(JSON.stringify(ctOut!.rulePath)).not.toMatch(/[\u4e00-\u9fff]{2}/);
  });

  test('GET with query parameters, by a clinician of hospital B, and an order', async () => {
    const q = new URLSearchParams({
      patient: `${ID_CARD}|${ID_NUMBER}`,
      code: `${LOINC}|57021-8`,
      requester: HOSPITAL_B,
      context: 'routine',
      at: new Date().toISOString(),
    });
    const res = await t.as('clinician').get(`/fhir/$reuse-check?${q.toString()}`);
    expect(res.status, res.text).toBe(200);
    expect(outcomesOf(res.body as Parameters)[0]!.decision!.valueCode).toBe('reusable');

    const ordered = await check(
      params(
        patientParam(),
        {
          name: 'order',
          resource: order,
        },
        requesterParam(),
      ),
      'clinician',
    );
    expect(ordered.status, ordered.text).toBe(200);
    expect(outcomesOf(ordered.body as Parameters)[0]!.decision!.valueCode).toBe('reusable');
  });

  test('a check at a time before the result was done finds nothing', async () => {
    const res = await check(
      params(patientParam(), codeParam('57021-8'), requesterParam(), { name: 'at', valueDateTime: daysAgo(3) }),
    );
    expect(res.status, res.text).toBe(200);
    expect(outcomesOf(res.body as Parameters)[0]!.decision!.valueCode).toBe('none');
  });

  test.each([
    [
      'an unknown identifier system',
      params(patientParam(ID_NUMBER, 'urn:oid:1.2.3'), codeParam('57021-8'), requesterParam()),
      'Parameters.parameter[0].valueIdentifier.system',
    ],
    [
      'a mistyped ID number',
      params(patientParam('110105194912310021'), codeParam('57021-8'), requesterParam()),
      'Parameters.parameter[0].valueIdentifier.value',
    ],
    [
      'an unknown requester',
      params(patientParam(), codeParam('57021-8'), requesterParam('Organization/nowhere')),
      'Parameters.parameter[2].valueReference',
    ],
    [
      'a code of an unknown system',
      params(patientParam(), codeParam('57021-8', 'http://example.org/codes'), requesterParam()),
      'Parameters.parameter[1].valueCoding.system',
    ],
    [
      "another hospital's local code",
      params(
        patientParam(),
        codeParam('A-0101', 'https://demo-hospital-a.example.org/fhir/CodeSystem/lis-test'),
        requesterParam(),
      ),
      'Parameters.parameter[1].valueCoding.system',
    ],
    ['no code', params(patientParam(), requesterParam()), 'Parameters.parameter'],
    [
      'a malformed at',
      params(patientParam(), codeParam('57021-8'), requesterParam(), {
        name: 'at',
        valueDateTime: '2026-02-30T10:00:00+08:00',
      }),
      'Parameters.parameter[3].valueDateTime',
    ],
    [
      'an unknown context',
      params(patientParam(), codeParam('57021-8'), requesterParam(), { name: 'context', valueCode: 'whenever' }),
      'Parameters.parameter[3].valueCode',
    ],
    [
      'an unknown parameter',
      params(patientParam(), { name: 'colour', valueString: 'blue' }),
      'Parameters.parameter[1].name',
    ],
  ])('%s is a 400 with the expression of the parameter', async (_label, body, expression) => {
    const before = await auditCount();
    const res = await check(body);
    expect(res.status, res.text).toBe(400);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].expression).toEqual([expression]);
    expect(await auditCount()).toBe(before + 2);
  });

  test('GET with a mistyped ID number is a 400 at the query parameter', async () => {
    const q = new URLSearchParams({
      patient: `${ID_CARD}|110105194912310021`,
      code: `${LOINC}|57021-8`,
      requester: HOSPITAL_B,
    });
    const res = await t.as('clinician').get(`/fhir/$reuse-check?${q.toString()}`);
    expect(res.status, res.text).toBe(400);
    expect(res.body.issue[0].expression).toEqual(['patient']);
  });

  test('the bureau, and a requester other than the caller, are refused', async () => {
    const body = params(patientParam(), codeParam('57021-8'), requesterParam());
    const bureau = await check(body, 'bureau');
    expect(bureau.status, bureau.text).toBe(403);
    const other = await check(params(patientParam(), codeParam('57021-8'), requesterParam(HOSPITAL_A)));
    expect(other.status, other.text).toBe(403);
    expect(other.body.issue[0].expression).toEqual(['Parameters.parameter[2].valueReference']);
  });

  test('the CapabilityStatement declares the operation', async () => {
    const res = await t.as('his').get('/fhir/metadata');
    expect(res.body.rest[0].operation).toContainEqual(
      expect.objectContaining({
        name: 'reuse-check',
        definition: expect.stringMatching(/OperationDefinition\/reuse-check$/),
      }),
    );
  });

  test('once hospital A marks the CBC entered-in-error, hospital B has nothing to reuse', async () => {
    await put({ ...cbc, status: 'entered-in-error' });
    const before = await auditCount();
    const res = await check(params(patientParam(), codeParam('57021-8'), requesterParam()));
    expect(res.status, res.text).toBe(200);
    const [out] = outcomesOf(res.body as Parameters);
    expect(out!.decision!.valueCode).toBe('none');
    expect(out!.result).toBeUndefined();
    expect(out!.saving!.valueMoney!.value).toBe(0);
    expect(out!.reason!.valueString).toBeTruthy();
    expect(await auditCount()).toBe(before + 2);
  });
});
