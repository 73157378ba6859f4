import type { AuditEvent, Bundle, Patient } from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findDeclineReason } from '../../src/recognition/decline-reasons.js';
import { decisionEntry, promptEntries, type DoctorAction } from '../../src/recognition/ledger.js';
import type { ReuseCheckDoc } from '../../src/recognition/reuse-checks.js';
import type { SupervisionCase, SupervisionReport } from '../../src/reports/supervision.js';
import { createTestApp, type TestApp } from '../support/app.js';
import { FHIR_JSON, ID_CARD, finalReport } from '../fixtures/recognition.js';

/**
 * Supervision of declines (issue 20): by institution, department and doctor with the reason distribution and the
 * outliers against peers for the same item; the case list for expert review without patient identifiers; a case's
 * prior result for the supervisor role only, every access audited.
 */
const TZ = 'Asia/Shanghai';
const DAY = '2025-05-12';
const FROM = '2025-05-01';
const TO = '2025-05-31';
const ID_NUMBER = '11010519491231002X';

const patient: Patient = {
  resourceType: 'Patient',
  id: 'sv-patient',
  identifier: [{ system: ID_CARD, value: ID_NUMBER }],
  name: [{ text: '王芳' }],
  gender: 'female',
  birthDate: '1949-12-31',
  managingOrganization: { reference: 'Organization/demo-hospital-a' },
};
const cbc = finalReport('sv-cbc', 'sv-patient', '57021-8', '2025-05-10T08:00:00+08:00', {
  issued: '2025-05-10T10:00:00+08:00',
  conclusion: '血常规未见异常',
});

/** One doctor's decisions: `declines` of `decided` CBCs declined (condition changed), the rest accepted. */
interface Doctor {
  practitioner: string;
  department: string;
  decided: number;
  declines: number;
}
const DOCTORS: Doctor[] = [
  { practitioner: 'Practitioner/dr-x', department: '心内科', decided: 8, declines: 6 },
  { practitioner: 'Practitioner/dr-y', department: '呼吸科', decided: 10, declines: 1 },
  { practitioner: 'Practitioner/dr-z', department: '呼吸科', decided: 10, declines: 0 },
];

describe('supervision of declines', () => {
  let t: TestApp;
  let n = 0;

  async function decided(doctor: Doctor, action: DoctorAction): Promise<void> {
    const rules = t.deps.facts.rules;
    const at = new Date(`${DAY}T09:00:00+08:00`);
    const check: ReuseCheckDoc = {
      _id: `sv-check-${++n}`,
      requester: 'demo-hospital-b',
      patientKeys: [`sv-pk-${n}`],
      createdAt: at,
      at,
      context: 'routine',
      outcomes: [
        {
          requestIndex: 0,
          item: 'HR-LAB-CBC',
          decision: 'reusable',
          result: 'DiagnosticReport/sv-cbc',
          performer: 'demo-hospital-a',
          saving: 30,
          currency: 'CNY',
        },
      ],
    };
    await t.deps.reuseChecks!.insert(check);
    await t.deps.ledger!.recordPrompts(promptEntries(check, () => 'lab-hematology', TZ));
    const entry = decisionEntry({
      check,
      item: 'HR-LAB-CBC',
      action,
      ...(action === 'declined'
        ? {
            reason: findDeclineReason(rules.declineReasons, 'condition-changed')!,
            reasonText: '患者诉近两日发热，需复查',
          }
        : {}),
      practitioner: doctor.practitioner,
      department: doctor.department,
      channel: 'operation',
      now: new Date(at.getTime() + 300_000),
      timeZone: TZ,
      category: 'lab-hematology',
    });
    if ('kind' in entry) throw new Error(entry.message);
    await t.deps.ledger!.record(entry);
  }

  beforeAll(async () => {
    t = await createTestApp('supervision');
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [patient, cbc].map((resource) => ({
        resource,
        request: { method: 'PUT' as const, url: `${resource.resourceType}/${resource.id}` },
      })),
    };
    const pushed = await t.as('his').post('/fhir').set('Content-Type', FHIR_JSON).send(bundle);
    expect(pushed.status, pushed.text).toBe(200);
    for (const doctor of DOCTORS) {
      for (let i = 0; i < doctor.decided; i++) await decided(doctor, i < doctor.declines ? 'declined' : 'accepted');
    }
  });
  afterAll(async () => {
    await t?.close();
  });

  test('declines by institution, department and doctor, with reasons, and the outlier against its peers', async () => {
    const res = await t
      .as('bureau')
      .get('/reports/savings')
      .query({ from: FROM, to: TO, by: 'organization,department,practitioner' });
    expect(res.status, res.text).toBe(200);
    const body = res.body as SupervisionReport;
    expect(body.report).toBe('decline-supervision');
    expect(body.rows).toHaveLength(3);
    const [first, ...others] = body.rows;
    // The outlier comes first: 6 of 8 declined where its peers decline 1 in 20 of the same item.
    expect(first).toMatchObject({
      practitioner: { code: 'Practitioner/dr-x' },
      department: { code: '心内科' },
      organization: { code: 'demo-hospital-b' },
      decided: 8,
      declined: 6,
      declineRate: 0.75,
      peerDeclineRate: 0.05,
      expectedDeclined: 0.4,
      outlier: true,
    });
    expect(first!.declinedByReason['condition-changed']).toBe(6);
    expect(others.every((r) => !r.outlier)).toBe(true);
    expect(body.totals).toMatchObject({ decided: 28, declined: 7, accepted: 21 });
    expect(body.definitions.outlier.en).toMatch(/twice/);

    // The savings report's rollups stay institutions × items: the doctors are in supervision's own rollups.
    expect((await t.as('bureau').get('/reports/savings').query({ from: FROM, to: TO })).status).toBe(200);
    const rollups = t.deps.rollups!.collection;
    expect((await rollups.findOne({ _id: 'month:2025-05' }))?.staff).toEqual([]);
    expect((await rollups.findOne({ _id: 'staff|month:2025-05' }))?.staff).toHaveLength(3);

    const byDepartment = await t.as('bureau').get('/reports/savings').query({ from: FROM, to: TO, by: 'department' });
    const departments = (byDepartment.body as SupervisionReport).rows.map((r) => [r.department!.code, r.declined]);
    expect(departments).toEqual([
      ['心内科', 6],
      ['呼吸科', 1],
    ]);
  });

  test('the case list names check, item, reason, text, institution, department, doctor and date, never the patient', async () => {
    const res = await t.as('bureau').get('/reports/supervision/cases').query({ from: FROM, to: TO });
    expect(res.status, res.text).toBe(200);
    const cases = res.body.cases as SupervisionCase[];
    expect(cases).toHaveLength(7);
    expect(cases[0]).toMatchObject({
      check: expect.stringMatching(/^sv-check-/),
      date: DAY,
      organization: { code: 'demo-hospital-b' },
      item: { code: 'HR-LAB-CBC', name: { zh: expect.any(String) } },
      reason: { code: 'condition-changed', countsAsDecline: true },
      reasonText: '患者诉近两日发热，需复查',
    });
    expect(res.text).not.toMatch(/sv-pk-|sv-patient|11010519491231002X|王/);

    const csv = await t.as('bureau').get('/reports/supervision/cases').query({ from: FROM, to: TO, format: 'csv' });
    expect(csv.status).toBe(200);
    expect(csv.headers['content-type']).toMatch(/^text\/csv; charset=utf-8/);
    expect(csv.text.startsWith('\uFEFF病例编号,检查编号,日期,医疗机构编码,医疗机构,科室,医生,')).toBe(true);
    const lines = csv.text.slice(1).split('\r\n');
    expect(lines).toHaveLength(7 + 2); // header, seven cases, the final CRLF
    expect(csv.text).not.toMatch(/sv-pk-|sv-patient|王/);
    const en = await t
      .as('bureau')
      .get('/reports/supervision/cases')
      .query({ from: FROM, to: TO, format: 'csv', lang: 'en' });
    expect(en.text.startsWith('\uFEFFCase id,Check id,Date,Institution code,Institution,Department,Doctor,')).toBe(
      true,
    );
  });

  test('a case with its prior result is for the supervisor role only, and every access is audited', async () => {
    const list = await t.as('bureau').get('/reports/supervision/cases').query({ from: FROM, to: TO });
    const id = (list.body.cases as SupervisionCase[])[0]!.id;
    const path = `/reports/supervision/cases/${encodeURIComponent(id)}`;

    const bureau = await t.as('bureau').get(path);
    expect(bureau.status).toBe(403);
    expect(bureau.body.resourceType).toBe('OperationOutcome');

    const supervisor = await t.as('supervisor').get(path);
    expect(supervisor.status, supervisor.text).toBe(200);
    expect(supervisor.body.case).toMatchObject({ id, reason: { code: 'condition-changed' } });
    expect(supervisor.body.priorResult).toMatchObject({
      resourceType: 'DiagnosticReport',
      conclusion: '血常规未见异常',
    });
    expect((await t.as('supervisor').get('/reports/supervision/cases/nothing%7Chere%7Cdecision')).status).toBe(404);
    // A supervisor reads no other patient data.
    expect((await t.as('supervisor').get('/fhir/DiagnosticReport/sv-cbc')).status).toBe(403);

    const audit = await t.as('admin').get('/fhir/AuditEvent').query({ patient: 'Patient/sv-patient', _count: '100' });
    expect(audit.status, audit.text).toBe(200);
    const events = ((audit.body as Bundle).entry ?? []).map((e) => e.resource as AuditEvent);
    const reads = events.filter((e) => e.entity?.some((x) => x.what?.reference === 'DiagnosticReport/sv-cbc'));
    // The supervisor's read of the prior result is on the record, naming the patient and the result.
    expect(reads.map((e) => [e.agent?.[0]?.altId, e.outcome])).toEqual(
      expect.arrayContaining([['demo-supervisor', '0']]),
    );
  });
});
