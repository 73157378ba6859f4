import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type {
  Bundle,
  DiagnosticReport,
  Observation,
  OperationOutcome,
  Parameters,
  ParametersParameter,
  Patient,
} from 'fhir/r4';
import { Client, type FhirResource } from 'fhir-kit-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DECLINE_REASON_SYSTEM } from '../../src/recognition/decline-reasons.js';
import { DECISIONS_COLLECTION, type LedgerEntry } from '../../src/recognition/ledger.js';
import { REUSE_CHECKS_COLLECTION } from '../../src/recognition/reuse-checks.js';
import { SYSTEMS } from '../../src/recognition/vocabulary.js';
import { createTestApp, type TestApp } from '../support/app.js';
import { B_LOCAL, DAY, ID_CARD, LOINC, UCUM, daysAgo } from '../fixtures/recognition.js';

/**
 * The recognition scenario of issue 4, as hospitals live it, over real HTTP with fhir-kit-client: hospital A pushes
 * results, hospital B asks at order entry what it can reuse, the doctor decides, and a withdrawn result stops being
 * offered. Then the bad inputs a HIS integration gets wrong, each refused with nothing recorded.
 */

const ID_NUMBER = '370202198003150025';

let t: TestApp;
let server: Server;
let hospitalA: Client;
let hospitalB: Client;

const asFhir = (r: unknown) => r as FhirResource;

async function failure(promise: Promise<unknown>): Promise<{ status: number; data: OperationOutcome }> {
  try {
    await promise;
  } catch (err) {
    const response = (err as { response?: { status: number; data: OperationOutcome } }).response;
    if (response) return response;
    throw err;
  }
  throw new Error('expected the request to fail');
}

const entry = (resource: Patient | DiagnosticReport | Observation) => ({
  fullUrl: `urn:uuid:${resource.id}`,
  resource,
  request: { method: 'PUT' as const, url: `${resource.resourceType}/${resource.id}` },
});

const patient: Patient = {
  resourceType: 'Patient',
  id: 'sc-patient',
  identifier: [{ system: ID_CARD, value: ID_NUMBER }],
  gender: 'female',
  birthDate: '1980-03-15',
  managingOrganization: { reference: 'Organization/demo-hospital-a' },
};

const hgb: Observation = {
  resourceType: 'Observation',
  id: 'sc-cbc-hgb',
  status: 'final',
  category: [
    { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] },
  ],
  code: { coding: [{ system: LOINC, code: '718-7', display: 'Hemoglobin' }] },
  subject: { reference: 'Patient/sc-patient' },
  effectiveDateTime: daysAgo(1),
  valueQuantity: { value: 128, unit: 'g/L', system: UCUM, code: 'g/L' },
  referenceRange: [{ low: { value: 115, unit: 'g/L' }, high: { value: 150, unit: 'g/L' } }],
  performer: [{ reference: 'Organization/demo-hospital-a' }],
};

function report(id: string, code: string, effective: string, extra: Partial<DiagnosticReport> = {}): DiagnosticReport {
  return {
    resourceType: 'DiagnosticReport',
    id,
    status: 'final',
    code: { coding: [{ system: LOINC, code }] },
    subject: { reference: 'Patient/sc-patient' },
    effectiveDateTime: effective,
    issued: effective,
    performer: [{ reference: 'Organization/demo-hospital-a' }],
    ...extra,
  };
}

const cbc = report('sc-cbc', '57021-8', daysAgo(1), { result: [{ reference: 'Observation/sc-cbc-hgb' }] });
const hba1c = report('sc-hba1c', '4548-4', daysAgo(90));
const ct = report('sc-ct', '29252-4', daysAgo(20));

const patientParam = (value = ID_NUMBER, system = ID_CARD): ParametersParameter => ({
  name: 'patient',
  valueIdentifier: { system, value },
});
const codeParam = (code: string, system = LOINC): ParametersParameter => ({
  name: 'code',
  valueCoding: { system, code },
});
const requester = (id = 'demo-hospital-b'): ParametersParameter => ({
  name: 'requester',
  valueReference: { reference: `Organization/${id}` },
});
const params = (...parameter: ParametersParameter[]): Parameters => ({ resourceType: 'Parameters', parameter });

type Outcome = Record<string, ParametersParameter>;

function outcomesOf(body: Parameters): Outcome[] {
  return (body.parameter ?? [])
    .filter((p) => p.name === 'outcome')
    .map((p) => Object.fromEntries((p.part ?? []).map((x) => [x.name, x])));
}

async function reuseCheck(...parameter: ParametersParameter[]): Promise<Parameters> {
  return (await hospitalB.operation({
    name: 'reuse-check',
    input: asFhir(params(...parameter)),
  })) as unknown as Parameters;
}

const item = (code: string): ParametersParameter => ({
  name: 'item',
  valueCoding: { system: SYSTEMS.catalogue, code },
});

async function decide(...parameter: ParametersParameter[]): Promise<Parameters> {
  return (await hospitalB.operation({
    name: 'reuse-decision',
    input: asFhir(params(...parameter)),
  })) as unknown as Parameters;
}

async function recordedCounts(): Promise<{ checks: number; decisions: number }> {
  const db = t.deps.connection.db!;
  return {
    checks: await db.collection(REUSE_CHECKS_COLLECTION).countDocuments({}),
    decisions: await db.collection(DECISIONS_COLLECTION).countDocuments({}),
  };
}

describe('recognition scenario over HTTP (fhir-kit-client)', () => {
  beforeAll(async () => {
    t = await createTestApp('recognition-scenario');
    server = t.app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
    hospitalA = new Client({ baseUrl: base, bearerToken: t.tokens['demo-his-hospital-a'] });
    hospitalB = new Client({ baseUrl: base, bearerToken: t.tokens['demo-his-hospital-b'] });

    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [patient, hgb, cbc, hba1c, ct].map(entry),
    };
    const answer = (await hospitalA.transaction({ body: asFhir(bundle) })) as unknown as Bundle;
    expect(answer.entry?.map((e) => e.response?.status.slice(0, 3))).toEqual(['201', '201', '201', '201', '201']);
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await t.close();
  });

  let checkId = '';

  test('hospital B asks for a CBC, an HbA1c, a chest CT, an unknown item and its own local CBC code', async () => {
    const answer = await reuseCheck(
      patientParam(),
      codeParam('57021-8'),
      codeParam('4548-4'),
      codeParam('29252-4'),
      codeParam('2345-7'),
      codeParam('XCG', B_LOCAL),
      requester(),
    );
    checkId = answer.parameter!.find((p) => p.name === 'check')!.valueId!;
    const [cbcOut, hba1cOut, ctOut, unknown, local] = outcomesOf(answer);

    // CBC of yesterday: reusable, valid 7 local days after its effective day, saving hospital B's price.
    expect(cbcOut!.decision!.valueCode).toBe('reusable');
    expect(cbcOut!.result!.valueReference!.reference).toBe('DiagnosticReport/sc-cbc');
    expect(cbcOut!.performer!.valueReference!.reference).toBe('Organization/demo-hospital-a');
    expect(cbcOut!.effective!.valueDateTime).toBe(cbc.effectiveDateTime);
    const effectiveDay = cbc.effectiveDateTime!.slice(0, 10);
    const lastDay = new Date(Date.parse(`${effectiveDay}T00:00:00Z`) + 7 * DAY).toISOString().slice(0, 10);
    expect(cbcOut!.validUntil!.valueDateTime).toBe(`${lastDay}T23:59:59+08:00`);
    expect(cbcOut!.saving!.valueMoney).toEqual({ value: 30, currency: 'CNY' });
    expect(cbcOut!.reason!.valueString).toMatch(/^可互认/);

    // HbA1c of 90 days ago: outside its 60-day window.
    expect(hba1cOut!.decision!.valueCode).toBe('expired');
    expect(hba1cOut!.result!.valueReference!.reference).toBe('DiagnosticReport/sc-hba1c');
    expect(hba1cOut!.saving!.valueMoney!.value).toBe(0);
    expect(hba1cOut!.reason!.valueString).toMatch(/60/);

    // Chest CT of hospital A, whose CT qualification lapsed: for reference only, and the reason says when.
    expect(ctOut!.decision!.valueCode).toBe('reference-only');
    expect(ctOut!.result!.valueReference!.reference).toBe('DiagnosticReport/sc-ct');
    expect(ctOut!.reason!.valueString).toMatch(/2025-06-30/);

    expect(unknown!.decision!.valueCode).toBe('not-recognized');
    expect(unknown!.reason!.valueString).toMatch(/2345-7/);

    // Hospital B's own order code maps to the same CBC.
    expect(local!.item!.valueCoding!.code).toBe('HR-LAB-CBC');
    expect(local!.decision!.valueCode).toBe('reusable');
  });

  test('the prompts of the check are in the ledger; the doctor views and accepts the CBC once', async () => {
    const ledger = t.deps.connection.db!.collection<LedgerEntry>(DECISIONS_COLLECTION);
    const prompts = await ledger.find({ check: checkId, event: 'prompt' }).toArray();
    expect(prompts.map((p) => [p.item, p.outcome]).sort()).toEqual([
      ['HR-IMG-CT-CHEST', 'reference-only'],
      ['HR-LAB-CBC', 'reusable'],
    ]);

    const viewed = await decide({ name: 'check', valueId: checkId }, item('HR-LAB-CBC'), {
      name: 'decision',
      valueCode: 'viewed',
    });
    expect(viewed.parameter!.find((p) => p.name === 'saving')!.valueMoney!.value).toBe(0);

    const accepted = await decide(
      { name: 'check', valueId: checkId },
      item('HR-LAB-CBC'),
      { name: 'decision', valueCode: 'accepted' },
      { name: 'practitioner', valueReference: { reference: 'Practitioner/dr-wang' } },
    );
    expect(accepted.parameter!.find((p) => p.name === 'saving')!.valueMoney).toEqual({ value: 30, currency: 'CNY' });
    expect(accepted.parameter!.find((p) => p.name === 'result')!.valueReference!.reference).toBe(
      'DiagnosticReport/sc-cbc',
    );

    // A retry (the HIS did not see the answer) is the same record; a change of mind is refused.
    const again = await decide({ name: 'check', valueId: checkId }, item('HR-LAB-CBC'), {
      name: 'decision',
      valueCode: 'accepted',
    });
    expect(again.parameter!.find((p) => p.name === 'recorded')!.valueInstant).toBe(
      accepted.parameter!.find((p) => p.name === 'recorded')!.valueInstant,
    );
    const changed = await failure(
      decide(
        { name: 'check', valueId: checkId },
        item('HR-LAB-CBC'),
        { name: 'decision', valueCode: 'declined' },
        { name: 'reason', valueCoding: { system: DECLINE_REASON_SYSTEM, code: 'condition-changed' } },
      ),
    );
    expect(changed.status).toBe(409);
    expect(changed.data.issue[0]!.diagnostics).toMatch(/immutable/);

    const entries = await ledger.find({ check: checkId, item: 'HR-LAB-CBC' }).toArray();
    expect(entries.map((e) => e.event).sort()).toEqual(['accepted', 'prompt', 'viewed']);
    const acceptedEntry = entries.find((e) => e.event === 'accepted')!;
    expect(acceptedEntry).toMatchObject({
      saving: 30,
      institution: 'demo-hospital-b',
      performer: 'demo-hospital-a',
      category: 'lab-hematology',
      practitioner: 'Practitioner/dr-wang',
    });
    expect(acceptedEntry.day).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(acceptedEntry.month).toBe(acceptedEntry.day.slice(0, 7));
    expect(JSON.stringify(entries)).not.toContain(ID_NUMBER);
  });

  test('the doctor declines the reference-only CT with a reason that needs an explanation', async () => {
    const noText = await failure(
      decide(
        { name: 'check', valueId: checkId },
        item('HR-IMG-CT-CHEST'),
        { name: 'decision', valueCode: 'declined' },
        { name: 'reason', valueCoding: { system: DECLINE_REASON_SYSTEM, code: 'other' } },
      ),
    );
    expect(noText.status).toBe(400);
    expect(noText.data.issue[0]!.expression).toEqual(['reasonText']);

    const declined = await decide(
      { name: 'check', valueId: checkId },
      item('HR-IMG-CT-CHEST'),
      { name: 'decision', valueCode: 'declined' },
      { name: 'reason', valueCoding: { system: DECLINE_REASON_SYSTEM, code: 'other' } },
      { name: 'reasonText', valueString: '影像资料未能调阅到原片' },
    );
    expect(declined.parameter!.find((p) => p.name === 'countsAsDecline')!.valueBoolean).toBe(true);
    expect(declined.parameter!.find((p) => p.name === 'saving')!.valueMoney!.value).toBe(0);
  });

  test('hospital A withdraws the CBC (entered-in-error): it is no longer offered', async () => {
    await hospitalA.update({
      resourceType: 'DiagnosticReport',
      id: 'sc-cbc',
      body: asFhir({ ...cbc, status: 'entered-in-error' }),
    });
    const answer = await reuseCheck(patientParam(), codeParam('57021-8'), requester());
    const [cbcOut] = outcomesOf(answer);
    expect(cbcOut!.decision!.valueCode).toBe('none');
    expect(cbcOut!.result).toBeUndefined();
  });

  test('bad input is refused with an OperationOutcome pointing at the parameter, and nothing is recorded', async () => {
    const before = await recordedCounts();
    const cases: { input: ParametersParameter[]; status: number; expression: string; says: RegExp }[] = [
      {
        input: [patientParam(ID_NUMBER, 'urn:oid:1.2.3'), codeParam('57021-8'), requester()],
        status: 400,
        expression: 'Parameters.parameter[0].valueIdentifier.system',
        says: /resident ID card/,
      },
      {
        input: [patientParam('370202198003150027'), codeParam('57021-8'), requester()],
        status: 400,
        expression: 'Parameters.parameter[0].valueIdentifier.value',
        says: /check character/,
      },
      {
        input: [patientParam(), codeParam('57021-8'), requester('no-such-hospital')],
        status: 400,
        expression: 'Parameters.parameter[2].valueReference',
        says: /not a participating institution/,
      },
      {
        input: [patientParam(), codeParam('57021-8', 'http://example.org/unknown'), requester()],
        status: 400,
        expression: 'Parameters.parameter[1].valueCoding.system',
        says: /not mapped/,
      },
    ];
    for (const c of cases) {
      const res = await failure(reuseCheck(...c.input));
      expect(res.status, JSON.stringify(res.data)).toBe(c.status);
      expect(res.data.resourceType).toBe('OperationOutcome');
      expect(res.data.issue[0]!.expression).toEqual([c.expression]);
      expect(res.data.issue[0]!.diagnostics).toMatch(c.says);
    }

    const unknownCheck = await failure(
      decide({ name: 'check', valueId: 'no-such-check' }, item('HR-LAB-CBC'), {
        name: 'decision',
        valueCode: 'accepted',
      }),
    );
    expect(unknownCheck.status).toBe(404);
    expect(unknownCheck.data.issue[0]!.diagnostics).toMatch(/no-such-check/);

    const badReason = await failure(
      decide(
        { name: 'check', valueId: checkId },
        item('HR-LAB-HBA1C'),
        { name: 'decision', valueCode: 'declined' },
        { name: 'reason', valueCoding: { system: DECLINE_REASON_SYSTEM, code: 'bored' } },
      ),
    );
    expect(badReason.status).toBe(400);
    expect(badReason.data.issue[0]!.expression).toEqual(['Parameters.parameter[3].valueCoding.code']);

    // The HbA1c was expired: there was nothing to reuse, so nothing to decide.
    const nothing = await failure(
      decide({ name: 'check', valueId: checkId }, item('HR-LAB-HBA1C'), { name: 'decision', valueCode: 'accepted' }),
    );
    expect(nothing.status).toBe(409);
    expect(nothing.data.issue[0]!.diagnostics).toMatch(/expired/);

    // Another institution cannot decide on hospital B's check.
    const foreign = await failure(
      hospitalA.operation({
        name: 'reuse-decision',
        input: asFhir(
          params({ name: 'check', valueId: checkId }, item('HR-LAB-CBC'), { name: 'decision', valueCode: 'accepted' }),
        ),
      }),
    );
    expect(foreign.status).toBe(403);

    expect(await recordedCounts()).toEqual(before);
  });

  test('when hospital B records the same ID number as a man, the check flags the identity conflict', async () => {
    const before = await reuseCheck(patientParam(), codeParam('29252-4'), requester());
    expect(before.parameter!.find((p) => p.name === 'identity')).toBeUndefined();

    await hospitalB.update({
      resourceType: 'Patient',
      id: 'sc-patient-at-b',
      body: asFhir({
        resourceType: 'Patient',
        id: 'sc-patient-at-b',
        identifier: [{ system: ID_CARD, value: ID_NUMBER }],
        gender: 'male',
        birthDate: '1980-03-15',
        managingOrganization: { reference: 'Organization/demo-hospital-b' },
      }),
    });
    const answer = await reuseCheck(patientParam(), codeParam('29252-4'), requester());
    const identity = answer.parameter!.find((p) => p.name === 'identity')!;
    const parts = Object.fromEntries((identity.part ?? []).map((p) => [p.name, p]));
    expect(parts.consistent!.valueBoolean).toBe(false);
    expect(parts.conflict!.valueString).toBe(
      'sex: female (resident-id-card, demo-hospital-a) ≠ male (demo-hospital-b)',
    );
    expect(parts.advice!.valueString).toMatch(/verify the identity/);
    // Still answered: the doctor decides, the broker never merges or drops silently.
    expect(outcomesOf(answer)[0]!.decision!.valueCode).toBe('reference-only');
  });
});
