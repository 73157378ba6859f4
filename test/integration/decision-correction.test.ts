import type { OperationOutcome, Parameters } from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DECISIONS_COLLECTION, type LedgerEntry } from '../../src/recognition/ledger.js';
import { localDate } from '../../src/recognition/time.js';
import type { SavingsReport } from '../../src/reports/savings.js';
import { createTestApp, type TestApp } from '../support/app.js';
import {
  FHIR_JSON,
  daysAgo,
  checkIdOf,
  decisionParameters,
  finalReport,
  patientWithId,
  reuseCheckParameters,
} from '../fixtures/recognition.js';

/**
 * A doctor's mis-click corrected within 10 minutes: a new ledger entry that supersedes the first (the ledger stays
 * append-only), and the bureau's report counts the final decision once.
 */

const ID_NUMBER = '370202197502140011';
const DECLINE = 'https://huren.example.org/fhir/CodeSystem/hr-decline-reason';
const TODAY = localDate(Date.now(), 'Asia/Shanghai');

const patient = patientWithId('dc-patient', ID_NUMBER, { gender: 'male', birthDate: '1975-02-14' });
const cbc = finalReport('dc-cbc', 'dc-patient', '57021-8', daysAgo(1));

let t: TestApp;

async function check(): Promise<string> {
  const res = await t
    .as('clinician')
    .post('/fhir/$reuse-check')
    .set('Content-Type', FHIR_JSON)
    .send(reuseCheckParameters(ID_NUMBER, ['57021-8']));
  expect(res.status, res.text).toBe(200);
  return checkIdOf(res.body);
}

function decide(checkId: string, decision: string, extra: Parameters['parameter'] = []) {
  return t
    .as('clinician')
    .post('/fhir/$reuse-decision')
    .set('Content-Type', FHIR_JSON)
    .send(decisionParameters(checkId, 'HR-LAB-CBC', decision, extra));
}

const param = (body: Parameters, name: string) => body.parameter?.find((p) => p.name === name);

async function totals(): Promise<SavingsReport['totals']> {
  const res = await t.as('bureau').get(`/reports/savings?from=${TODAY}&to=${TODAY}`);
  expect(res.status, res.text).toBe(200);
  return (res.body as SavingsReport).totals;
}

describe('correcting a decision', () => {
  beforeAll(async () => {
    t = await createTestApp('decision-correction');
    for (const resource of [patient, cbc]) {
      const res = await t
        .as('demo-his-hospital-a')
        .put(`/fhir/${resource.resourceType}/${resource.id}`)
        .set('Content-Type', FHIR_JSON)
        .send(resource);
      expect([200, 201], res.text).toContain(res.status);
    }
  });
  afterAll(async () => t?.close());

  test('a reuse corrected to a decline within 10 minutes supersedes it, and the report counts the decline once', async () => {
    const before = await totals();
    const checkId = await check();
    const accepted = await decide(checkId, 'accepted');
    expect(accepted.status, accepted.text).toBe(201);
    const until = Date.parse(param(accepted.body as Parameters, 'correctableUntil')!.valueInstant!);
    expect(until - Date.now()).toBeGreaterThan(9 * 60_000);
    expect((await totals()).accepted).toBe(before.accepted! + 1);

    // Without `correction` a different decision is still refused, and says how to correct.
    const refused = await decide(checkId, 'declined', [
      { name: 'reason', valueCoding: { system: DECLINE, code: 'condition-changed' } },
    ]);
    expect(refused.status).toBe(409);
    expect((refused.body as OperationOutcome).issue[0]!.diagnostics).toMatch(/correction/);

    const corrected = await decide(checkId, 'declined', [
      { name: 'reason', valueCoding: { system: DECLINE, code: 'condition-changed' } },
      { name: 'correction', valueBoolean: true },
    ]);
    expect(corrected.status, corrected.text).toBe(201);
    expect(param(corrected.body as Parameters, 'decision')!.valueCode).toBe('declined');
    expect(param(corrected.body as Parameters, 'supersedes')!.valueString).toBe(`${checkId}|HR-LAB-CBC|decision`);

    // Append-only: both entries are kept, the correction names the first.
    const entries = await t.deps.connection
      .db!.collection<LedgerEntry>(DECISIONS_COLLECTION)
      .find({ check: checkId })
      .toArray();
    expect(entries.filter((e) => e.event === 'accepted')).toHaveLength(1);
    expect(entries.find((e) => e.event === 'declined')).toMatchObject({ supersedes: `${checkId}|HR-LAB-CBC|decision` });

    const after = await totals();
    expect(after.accepted).toBe(before.accepted);
    expect(after.saving).toBe(before.saving);
    expect(after.declined).toBe(before.declined! + 1);
    expect(after.patients).toBe(before.patients);

    // The same correction again changes nothing; a second, different one is refused.
    expect(
      (
        await decide(checkId, 'declined', [
          { name: 'reason', valueCoding: { system: DECLINE, code: 'condition-changed' } },
          { name: 'correction', valueBoolean: true },
        ])
      ).status,
    ).toBe(200);
    const again = await decide(checkId, 'accepted', [{ name: 'correction', valueBoolean: true }]);
    expect(again.status).toBe(409);
    expect((again.body as OperationOutcome).issue[0]!.diagnostics).toMatch(/already corrected/);
    expect(await totals()).toEqual(after);
  });

  test('a decision older than 10 minutes is final', async () => {
    const checkId = await check();
    const declined = await decide(checkId, 'declined', [
      { name: 'reason', valueCoding: { system: DECLINE, code: 'emergency' } },
    ]);
    expect(declined.status, declined.text).toBe(201);
    // Eleven minutes pass (the entry's time is moved back; nothing else reads it).
    await t.deps.connection
      .db!.collection<LedgerEntry>(DECISIONS_COLLECTION)
      .updateOne(
        { _id: `${checkId}|HR-LAB-CBC|decision` },
        { $set: { recordedAt: new Date(Date.now() - 11 * 60_000) } },
      );
    const late = await decide(checkId, 'accepted', [{ name: 'correction', valueBoolean: true }]);
    expect(late.status).toBe(409);
    expect((late.body as OperationOutcome).issue[0]!.diagnostics).toMatch(/final/);
  });
});
