import type {
  Bundle,
  BundleEntry,
  DiagnosticReport,
  Observation,
  OperationOutcome,
  Organization,
  Patient,
  Resource,
  ServiceRequest,
} from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { scanBucket } from '../../src/fhir/search/index.js';
import { createTestApp, type TestApp } from '../support/app.js';

/**
 * FHIR R4 search (§3.1.1) as a hospital system or a doctor's view uses it: lab reports and results of three patients
 * at three Qingdao hospitals, searched over HTTP against the real database.
 */

const BASE = 'http://huren.test/fhir';
const RESIDENT_ID = 'urn:oid:2.16.156.10011.1.1';
const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const V2_0074 = 'http://terminology.hl7.org/CodeSystem/v2-0074';
const OBS_CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const REPORT_NO = 'https://huren.example.org/fhir/sid/qd-municipal/report';

const ZHANG_ID = '370202199001011237';
const OUYANG_ID = '370203198505052341';

// ---- fixtures ----

const organization = (id: string, name: string): Organization => ({
  resourceType: 'Organization',
  id,
  active: true,
  name,
  address: [{ city: '青岛市', state: '山东省', country: 'CN' }],
});

const patient = (id: string, residentId: string, family: string, given: string, text: string): Patient => ({
  resourceType: 'Patient',
  id,
  identifier: [{ use: 'official', system: RESIDENT_ID, value: residentId }],
  name: [{ use: 'official', text, family, given: [given] }],
});

const serviceRequest = (): ServiceRequest => ({
  resourceType: 'ServiceRequest',
  id: 'sr-cbc-zhang',
  status: 'completed',
  intent: 'order',
  code: { coding: [{ system: LOINC, code: '57021-8', display: 'CBC W Auto Differential panel - Blood' }] },
  subject: { reference: 'Patient/pat-zhang' },
  authoredOn: '2024-03-05T21:00:00+08:00',
});

interface ReportSpec {
  id: string;
  patient: string;
  code: { code: string; display: string }[];
  /** A hospital's own code sent without a system, next to the LOINC code. */
  localCode?: string;
  category: string;
  effective: string;
  issued: string;
  performer: string;
  status: DiagnosticReport['status'];
  results: string[];
  basedOn?: string;
  reportNo: string;
}

const report = (s: ReportSpec): DiagnosticReport => ({
  resourceType: 'DiagnosticReport',
  id: s.id,
  identifier: [{ system: REPORT_NO, value: s.reportNo }],
  ...(s.basedOn ? { basedOn: [{ reference: `ServiceRequest/${s.basedOn}` }] } : {}),
  status: s.status,
  category: [{ coding: [{ system: V2_0074, code: s.category }] }],
  code: {
    coding: [
      ...s.code.map((c) => ({ system: LOINC, code: c.code, display: c.display })),
      ...(s.localCode ? [{ code: s.localCode, display: '血常规' }] : []),
    ],
  },
  subject: { reference: `Patient/${s.patient}` },
  effectiveDateTime: s.effective,
  issued: s.issued,
  performer: [{ reference: `Organization/${s.performer}` }],
  result: s.results.map((r) => ({ reference: `Observation/${r}` })),
});

interface ResultSpec {
  id: string;
  patient: string;
  code: string;
  display: string;
  effective: string;
  performer: string;
  value?: { value: number; unit: string };
  status?: Observation['status'];
}

const result = (s: ResultSpec): Observation => ({
  resourceType: 'Observation',
  id: s.id,
  status: s.status ?? 'final',
  category: [{ coding: [{ system: OBS_CATEGORY, code: 'laboratory' }] }],
  code: { coding: [{ system: LOINC, code: s.code, display: s.display }] },
  subject: { reference: `Patient/${s.patient}` },
  effectiveDateTime: s.effective,
  issued: s.effective,
  performer: [{ reference: `Organization/${s.performer}` }],
  ...(s.value
    ? { valueQuantity: { value: s.value.value, unit: s.value.unit, system: UCUM, code: s.value.unit } }
    : {
        dataAbsentReason: {
          coding: [{ system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', code: 'error' }],
        },
      }),
});

const HGB = { code: '718-7', display: 'Hemoglobin [Mass/volume] in Blood' };
const WBC = { code: '6690-2', display: 'Leukocytes [#/volume] in Blood by Automated count' };
const A1C = { code: '4548-4', display: 'Hemoglobin A1c/Hemoglobin.total in Blood' };
const CBC = { code: '57021-8', display: 'CBC W Auto Differential panel - Blood' };

const organizations = [
  organization('org-qd-municipal', '青岛市市立医院'),
  organization('org-qd-women', '青岛市妇女儿童医院'),
  organization('org-qd-central', '青岛市中心医院'),
];

const patients = [
  patient('pat-zhang', ZHANG_ID, 'Zhang', 'Wei', '张伟'),
  patient('pat-ouyang', OUYANG_ID, 'Ouyang', 'Lan', '欧阳兰'),
  patient('pat-yang', '370211197212123455', 'Yang', 'Min', '杨敏'),
];

const observations: Observation[] = [
  // 23:30 on 5 March in China is 15:30 UTC: still the 5th for a search in +08:00.
  result({
    id: 'obs-hgb-zhang',
    patient: 'pat-zhang',
    ...HGB,
    effective: '2024-03-05T23:30:00+08:00',
    performer: 'org-qd-municipal',
    value: { value: 136, unit: 'g/L' },
  }),
  result({
    id: 'obs-wbc-zhang',
    patient: 'pat-zhang',
    ...WBC,
    effective: '2024-03-05T23:30:00+08:00',
    performer: 'org-qd-municipal',
    value: { value: 6.1, unit: '10*9/L' },
  }),
  result({
    id: 'obs-a1c-zhang',
    patient: 'pat-zhang',
    ...A1C,
    effective: '2024-02-20T09:00:00+08:00',
    performer: 'org-qd-central',
    value: { value: 6.8, unit: '%' },
  }),
  // 00:30 on 6 March in China is still 5 March in UTC.
  result({
    id: 'obs-hgb-ouyang',
    patient: 'pat-ouyang',
    ...HGB,
    effective: '2024-03-06T00:30:00+08:00',
    performer: 'org-qd-women',
    value: { value: 118, unit: 'g/L' },
  }),
  result({
    id: 'obs-hgb-yang',
    patient: 'pat-yang',
    ...HGB,
    effective: '2024-01-15T10:00:00+08:00',
    performer: 'org-qd-municipal',
    value: { value: 14.2, unit: 'g/dL' },
  }),
  result({
    id: 'obs-a1c-yang',
    patient: 'pat-yang',
    ...A1C,
    effective: '2024-01-15T10:00:00+08:00',
    performer: 'org-qd-municipal',
    status: 'cancelled',
  }),
];

const reports: DiagnosticReport[] = [
  report({
    id: 'dr-cbc-zhang',
    patient: 'pat-zhang',
    code: [CBC],
    category: 'HM',
    effective: '2024-03-05T23:30:00+08:00',
    issued: '2024-03-06T08:10:00+08:00',
    performer: 'org-qd-municipal',
    status: 'final',
    results: ['obs-hgb-zhang', 'obs-wbc-zhang'],
    basedOn: 'sr-cbc-zhang',
    reportNo: 'LAB-20240305-0042',
  }),
  report({
    id: 'dr-a1c-zhang',
    patient: 'pat-zhang',
    code: [A1C],
    category: 'CH',
    effective: '2024-02-20T09:00:00+08:00',
    issued: '2024-02-20T15:00:00+08:00',
    performer: 'org-qd-central',
    status: 'final',
    results: ['obs-a1c-zhang'],
    reportNo: 'LAB-20240220-0007',
  }),
  report({
    id: 'dr-cbc-ouyang',
    patient: 'pat-ouyang',
    code: [CBC],
    category: 'HM',
    effective: '2024-03-06T00:30:00+08:00',
    issued: '2024-03-06T09:00:00+08:00',
    performer: 'org-qd-women',
    status: 'preliminary',
    results: ['obs-hgb-ouyang'],
    reportNo: 'LAB-20240306-0001',
  }),
  report({
    id: 'dr-cbc-yang',
    patient: 'pat-yang',
    code: [CBC],
    localCode: 'XCG',
    category: 'HM',
    effective: '2024-01-15T10:00:00+08:00',
    issued: '2024-01-15T16:45:00+08:00',
    performer: 'org-qd-municipal',
    status: 'amended',
    results: ['obs-hgb-yang', 'obs-a1c-yang'],
    reportNo: 'LAB-20240115-0100',
  }),
];

// ---- helpers ----

let t: TestApp;

type Query = Record<string, string> | [string, string][];

function get(type: string, query: Query, headers: Record<string, string> = {}) {
  return t
    .as('admin')
    .get(`/fhir/${type}?${new URLSearchParams(query).toString()}`)
    .set(headers);
}

/** Searches and expects 200 with a searchset Bundle. */
async function search(type: string, query: Query, headers: Record<string, string> = {}): Promise<Bundle> {
  const res = await get(type, query, headers);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  const bundle = res.body as Bundle;
  expect(bundle.resourceType).toBe('Bundle');
  expect(bundle.type).toBe('searchset');
  return bundle;
}

const entriesOf = (bundle: Bundle, mode: 'match' | 'include' | 'outcome'): BundleEntry[] =>
  (bundle.entry ?? []).filter((e) => e.search?.mode === mode);

/** Ids of the matches, sorted (order is asserted separately where it matters). */
const matchIds = (bundle: Bundle): string[] =>
  entriesOf(bundle, 'match')
    .map((e) => e.resource!.id!)
    .sort();

async function ids(type: string, query: Query): Promise<string[]> {
  return matchIds(await search(type, query));
}

const nextLink = (bundle: Bundle): string | undefined => bundle.link?.find((l) => l.relation === 'next')?.url;

/** Follows a link.next URL as a client would (the test app's base URL is not a real host). */
function follow(url: string) {
  expect(url.startsWith(`${BASE}/`)).toBe(true);
  return t.as('admin').get(url.slice(BASE.length - '/fhir'.length));
}

async function put<T extends Resource>(resource: T): Promise<T> {
  const res = await t
    .as('admin')
    .put(`/fhir/${resource.resourceType}/${resource.id}`)
    .set('Content-Type', 'application/fhir+json')
    .send(resource);
  expect([200, 201], JSON.stringify(res.body)).toContain(res.status);
  return res.body as T;
}

async function transaction(resources: Resource[]): Promise<void> {
  const bundle: Bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: resources.map((r) => ({ resource: r, request: { method: 'PUT', url: `${r.resourceType}/${r.id}` } })),
  };
  const res = await t.as('admin').post('/fhir').set('Content-Type', 'application/fhir+json').send(bundle);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

async function expectError(type: string, query: Query, status: number, expression: string): Promise<string> {
  const res = await get(type, query);
  expect(res.status).toBe(status);
  const oo = res.body as OperationOutcome;
  expect(oo.resourceType).toBe('OperationOutcome');
  const issue = oo.issue.find((i) => i.severity === 'error');
  expect(issue?.expression).toContain(expression);
  return issue?.diagnostics ?? '';
}

/** Pages through a search with link.next to the end; returns the ids of every page in order. */
async function allPages(first: Bundle): Promise<string[][]> {
  const pages: string[][] = [entriesOf(first, 'match').map((e) => e.resource!.id!)];
  let url = nextLink(first);
  while (url) {
    const res = await follow(url);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const bundle = res.body as Bundle;
    pages.push(entriesOf(bundle, 'match').map((e) => e.resource!.id!));
    url = nextLink(bundle);
    expect(pages.length).toBeLessThan(100);
  }
  return pages;
}

const pagingObservation = (patientId: string, i: number, minutes = i): Observation => ({
  ...result({
    id: `${patientId}-${String(i).padStart(3, '0')}`,
    patient: patientId,
    code: '2345-7',
    display: 'Glucose [Mass/volume] in Serum or Plasma',
    effective: new Date(Date.UTC(2024, 2, 1, 0, minutes)).toISOString(),
    performer: 'org-qd-municipal',
    value: { value: 4 + (i % 40) / 10, unit: 'mmol/L' },
  }),
});

beforeAll(async () => {
  t = await createTestApp('fhir-search');
  await transaction([...organizations, ...patients, serviceRequest(), ...observations, ...reports]);
});

afterAll(async () => {
  await t?.close();
});

// ---- tests ----

describe('selecting by id, identifier and references', () => {
  test('finds reports by _id, several ids ORed with a comma', async () => {
    expect(await ids('DiagnosticReport', { _id: 'dr-cbc-zhang' })).toEqual(['dr-cbc-zhang']);
    expect(await ids('DiagnosticReport', { _id: 'dr-cbc-zhang,dr-cbc-yang,no-such-report' })).toEqual([
      'dr-cbc-yang',
      'dr-cbc-zhang',
    ]);
  });

  test('finds a patient by resident ID number (system|value) and not by the same number in another system', async () => {
    expect(await ids('Patient', { identifier: `${RESIDENT_ID}|${ZHANG_ID}` })).toEqual(['pat-zhang']);
    expect(await ids('Patient', { identifier: ZHANG_ID })).toEqual(['pat-zhang']);
    expect(await ids('Patient', { identifier: `urn:oid:2.16.156.10011.1.2|${ZHANG_ID}` })).toEqual([]);
    expect(await ids('DiagnosticReport', { identifier: `${REPORT_NO}|LAB-20240306-0001` })).toEqual(['dr-cbc-ouyang']);
  });

  test('finds a patient’s reports by patient and by subject, with or without the type', async () => {
    const zhang = ['dr-a1c-zhang', 'dr-cbc-zhang'];
    expect(await ids('DiagnosticReport', { patient: 'pat-zhang' })).toEqual(zhang);
    expect(await ids('DiagnosticReport', { patient: 'Patient/pat-zhang' })).toEqual(zhang);
    expect(await ids('DiagnosticReport', { subject: 'Patient/pat-zhang' })).toEqual(zhang);
    expect(await ids('DiagnosticReport', { 'subject:Patient': 'pat-zhang' })).toEqual(zhang);
    expect(await ids('Observation', { subject: 'Patient/pat-ouyang' })).toEqual(['obs-hgb-ouyang']);
    expect(await ids('Observation', { patient: 'pat-nobody' })).toEqual([]);
  });

  test('finds results by performing hospital, by order (based-on) and reports by result', async () => {
    expect(await ids('DiagnosticReport', { performer: 'Organization/org-qd-municipal' })).toEqual([
      'dr-cbc-yang',
      'dr-cbc-zhang',
    ]);
    expect(await ids('DiagnosticReport', { performer: 'org-qd-women' })).toEqual(['dr-cbc-ouyang']);
    expect(await ids('Observation', { 'performer:Organization': 'org-qd-central' })).toEqual(['obs-a1c-zhang']);
    expect(await ids('DiagnosticReport', { 'based-on': 'ServiceRequest/sr-cbc-zhang' })).toEqual(['dr-cbc-zhang']);
    expect(await ids('DiagnosticReport', { result: 'Observation/obs-a1c-yang' })).toEqual(['dr-cbc-yang']);
  });

  test('a reference of the wrong type is refused with 400 naming the parameter', async () => {
    await expectError('DiagnosticReport', { 'based-on': 'Organization/org-qd-women' }, 400, 'based-on');
  });
});

describe('codes and other tokens', () => {
  test('matches a LOINC code as code, system|code, and a local code sent without a system as |code', async () => {
    const cbc = ['dr-cbc-ouyang', 'dr-cbc-yang', 'dr-cbc-zhang'];
    expect(await ids('DiagnosticReport', { code: '57021-8' })).toEqual(cbc);
    expect(await ids('DiagnosticReport', { code: `${LOINC}|57021-8` })).toEqual(cbc);
    expect(await ids('DiagnosticReport', { code: 'http://snomed.info/sct|57021-8' })).toEqual([]);
    expect(await ids('DiagnosticReport', { code: '|57021-8' })).toEqual([]);
    expect(await ids('DiagnosticReport', { code: '|XCG' })).toEqual(['dr-cbc-yang']);
    expect(await ids('DiagnosticReport', { code: `${LOINC}|XCG` })).toEqual([]);
  });

  test('system| matches any code of the system', async () => {
    expect(await ids('DiagnosticReport', { code: `${LOINC}|` })).toHaveLength(4);
    expect(await ids('Observation', { code: `${LOINC}|` })).toHaveLength(observations.length);
    expect(await ids('Observation', { code: 'http://snomed.info/sct|' })).toEqual([]);
  });

  test('a comma ORs codes and a repeated parameter ANDs them', async () => {
    expect(await ids('Observation', { code: '4548-4,6690-2' })).toEqual([
      'obs-a1c-yang',
      'obs-a1c-zhang',
      'obs-wbc-zhang',
    ]);
    expect(
      await ids('Observation', [
        ['code', '718-7,4548-4'],
        ['patient', 'pat-yang'],
      ]),
    ).toEqual(['obs-a1c-yang', 'obs-hgb-yang']);
    expect(
      await ids('DiagnosticReport', [
        ['code', `${LOINC}|57021-8`],
        ['code', 'XCG'],
      ]),
    ).toEqual(['dr-cbc-yang']);
  });

  test('a corrected code is found under the new code only', async () => {
    const wrong = result({
      id: 'obs-corrected',
      patient: 'pat-ouyang',
      ...A1C,
      effective: '2024-03-06T00:30:00+08:00',
      performer: 'org-qd-women',
      value: { value: 5.4, unit: '%' },
    });
    await put(wrong);
    expect(await ids('Observation', { code: '4548-4', patient: 'pat-ouyang' })).toEqual(['obs-corrected']);
    await put({
      ...wrong,
      code: { coding: [{ system: LOINC, ...WBC }] },
      valueQuantity: { value: 5.4, unit: '10*9/L' },
    });
    expect(await ids('Observation', { code: '4548-4', patient: 'pat-ouyang' })).toEqual([]);
    expect(await ids('Observation', { code: '6690-2', patient: 'pat-ouyang' })).toEqual(['obs-corrected']);
    expect(await ids('Observation', { 'value-quantity': '5.4||%' })).toEqual([]);
    await t.as('admin').delete('/fhir/Observation/obs-corrected').expect(200);
  });

  test(':not excludes a code, keeping resources without it', async () => {
    expect(await ids('DiagnosticReport', { 'code:not': '57021-8' })).toEqual(['dr-a1c-zhang']);
    expect(await ids('DiagnosticReport', { 'code:not': 'http://snomed.info/sct|' })).toHaveLength(4);
    expect(await ids('DiagnosticReport', { 'code:not': `${LOINC}|` })).toEqual([]);
    expect(await ids('Observation', { 'code:not': `${LOINC}|718-7`, patient: 'pat-zhang' })).toEqual([
      'obs-a1c-zhang',
      'obs-wbc-zhang',
    ]);
  });

  test('filters by category and status (status values ORed)', async () => {
    expect(await ids('DiagnosticReport', { category: `${V2_0074}|HM` })).toEqual([
      'dr-cbc-ouyang',
      'dr-cbc-yang',
      'dr-cbc-zhang',
    ]);
    expect(await ids('DiagnosticReport', { category: 'CH' })).toEqual(['dr-a1c-zhang']);
    expect(await ids('Observation', { category: 'laboratory' })).toHaveLength(observations.length);
    expect(await ids('DiagnosticReport', { status: 'final' })).toEqual(['dr-a1c-zhang', 'dr-cbc-zhang']);
    expect(await ids('DiagnosticReport', { status: 'preliminary,amended' })).toEqual(['dr-cbc-ouyang', 'dr-cbc-yang']);
    expect(await ids('Observation', { 'status:not': 'cancelled', patient: 'pat-yang' })).toEqual(['obs-hgb-yang']);
  });
});

describe('dates', () => {
  test('a day is a day in China time: 23:30 on the 5th is on the 5th, 00:30 on the 6th is not', async () => {
    expect(await ids('DiagnosticReport', { date: '2024-03-05' })).toEqual(['dr-cbc-zhang']);
    expect(await ids('DiagnosticReport', { date: '2024-03-06' })).toEqual(['dr-cbc-ouyang']);
    expect(await ids('Observation', { date: '2024-03-05' })).toEqual(['obs-hgb-zhang', 'obs-wbc-zhang']);
  });

  test('a month matches every result in it, and an exact instant matches whatever its zone', async () => {
    expect(await ids('DiagnosticReport', { date: '2024-03' })).toEqual(['dr-cbc-ouyang', 'dr-cbc-zhang']);
    expect(await ids('DiagnosticReport', { date: '2024-01' })).toEqual(['dr-cbc-yang']);
    expect(await ids('DiagnosticReport', { date: '2024-03-05T15:30:00Z' })).toEqual(['dr-cbc-zhang']);
    expect(await ids('DiagnosticReport', { date: '2024-03-05T23:30:00+08:00' })).toEqual(['dr-cbc-zhang']);
    expect(await ids('DiagnosticReport', { date: '2024-03-05T23:30+08:00' })).toEqual(['dr-cbc-zhang']);
    // Typed into a URL unencoded, the + of the zone arrives as a space; it still means +08:00.
    const typed = await t.as('admin').get('/fhir/DiagnosticReport?date=ge2024-03-05T23:30:00+08:00');
    expect(matchIds(typed.body as Bundle)).toEqual(['dr-cbc-ouyang', 'dr-cbc-zhang']);
  });

  test('eq, ne, gt, ge, lt and le compare the whole day', async () => {
    expect(await ids('DiagnosticReport', { date: 'eq2024-03-05' })).toEqual(['dr-cbc-zhang']);
    expect(await ids('DiagnosticReport', { date: 'ne2024-03-05' })).toEqual([
      'dr-a1c-zhang',
      'dr-cbc-ouyang',
      'dr-cbc-yang',
    ]);
    expect(await ids('DiagnosticReport', { date: 'gt2024-03-05' })).toEqual(['dr-cbc-ouyang']);
    expect(await ids('DiagnosticReport', { date: 'ge2024-03-05' })).toEqual(['dr-cbc-ouyang', 'dr-cbc-zhang']);
    expect(await ids('DiagnosticReport', { date: 'lt2024-03-05' })).toEqual(['dr-a1c-zhang', 'dr-cbc-yang']);
    expect(await ids('DiagnosticReport', { date: 'le2024-03-05' })).toEqual([
      'dr-a1c-zhang',
      'dr-cbc-yang',
      'dr-cbc-zhang',
    ]);
  });

  test('sa and eb find what starts after or ends before the day', async () => {
    expect(await ids('DiagnosticReport', { date: 'sa2024-03-05' })).toEqual(['dr-cbc-ouyang']);
    expect(await ids('DiagnosticReport', { date: 'eb2024-02-20' })).toEqual(['dr-cbc-yang']);
  });

  test('prefixes work at month precision', async () => {
    expect(await ids('DiagnosticReport', { date: 'lt2024-03' })).toEqual(['dr-a1c-zhang', 'dr-cbc-yang']);
    expect(await ids('DiagnosticReport', { date: 'ge2024-02' })).toEqual([
      'dr-a1c-zhang',
      'dr-cbc-ouyang',
      'dr-cbc-zhang',
    ]);
    expect(await ids('DiagnosticReport', { date: 'gt2024-02' })).toEqual(['dr-cbc-ouyang', 'dr-cbc-zhang']);
    expect(await ids('DiagnosticReport', { date: 'ne2024-03' })).toEqual(['dr-a1c-zhang', 'dr-cbc-yang']);
  });

  test('a repeated date makes a range and a comma ORs two months', async () => {
    const range: [string, string][] = [
      ['date', 'ge2024-02-01'],
      ['date', 'lt2024-03-01'],
    ];
    expect(await ids('DiagnosticReport', range)).toEqual(['dr-a1c-zhang']);
    expect(await ids('DiagnosticReport', { date: '2024-01,2024-02' })).toEqual(['dr-a1c-zhang', 'dr-cbc-yang']);
  });

  test('issued is searched on its own instant, not on the effective time', async () => {
    // dr-cbc-zhang was done on the 5th and issued on the 6th.
    expect(await ids('DiagnosticReport', { issued: '2024-03-06' })).toEqual(['dr-cbc-ouyang', 'dr-cbc-zhang']);
    expect(await ids('DiagnosticReport', { issued: 'lt2024-03-06T09:00:00+08:00' })).toEqual([
      'dr-a1c-zhang',
      'dr-cbc-yang',
      'dr-cbc-zhang',
    ]);
    expect(await ids('DiagnosticReport', { issued: 'ge2024-03-06T09:00:00+08:00' })).toEqual(['dr-cbc-ouyang']);
  });

  test('_lastUpdated finds only what changed after a point in time', async () => {
    const before = await search('Organization', { _id: 'org-qd-central' });
    const seededAt = entriesOf(before, 'match')[0]!.resource!.meta!.lastUpdated!;
    await new Promise((resolve) => setTimeout(resolve, 5)); // a later millisecond than the seeding
    const renamed = await put({ ...organizations[1]!, name: '青岛妇女儿童医院' });
    expect(renamed.meta?.versionId).toBe('2');
    // Only this file's organizations (the broker also publishes its participating institutions as Organizations).
    const ours = async (q: Record<string, string>) =>
      (await ids('Organization', q)).filter((id) => id.startsWith('org-'));
    expect(await ours({ _lastUpdated: `gt${seededAt}` })).toEqual(['org-qd-women']);
    expect(await ours({ _lastUpdated: `le${seededAt}` })).toEqual(['org-qd-central', 'org-qd-municipal']);
  });
});

describe('quantities', () => {
  test('matches a value with the precision it is written in, and with a unit', async () => {
    expect(await ids('Observation', { 'value-quantity': '136' })).toEqual(['obs-hgb-zhang']);
    expect(await ids('Observation', { 'value-quantity': `136|${UCUM}|g/L` })).toEqual(['obs-hgb-zhang']);
    expect(await ids('Observation', { 'value-quantity': `136|${UCUM}|g/dL` })).toEqual([]);
    expect(await ids('Observation', { 'value-quantity': '6.8||%' })).toEqual(['obs-a1c-zhang']);
    expect(await ids('Observation', { 'value-quantity': '6.83' })).toEqual([]);
  });

  test('prefixes compare values, and the unit keeps g/L and g/dL apart', async () => {
    expect(await ids('Observation', { 'value-quantity': `gt130|${UCUM}|g/L` })).toEqual(['obs-hgb-zhang']);
    expect(await ids('Observation', { 'value-quantity': 'ge118||g/L' })).toEqual(['obs-hgb-ouyang', 'obs-hgb-zhang']);
    expect(await ids('Observation', { 'value-quantity': 'lt118||g/L' })).toEqual([]);
    expect(await ids('Observation', { 'value-quantity': 'le14.2||g/dL' })).toEqual(['obs-hgb-yang']);
    expect(await ids('Observation', { 'value-quantity': 'lt15' })).toEqual([
      'obs-a1c-zhang',
      'obs-hgb-yang',
      'obs-wbc-zhang',
    ]);
    expect(await ids('Observation', { 'value-quantity': 'ne136', code: '718-7' })).toEqual([
      'obs-hgb-ouyang',
      'obs-hgb-yang',
    ]);
    // ap: within 10% (126 to 154).
    expect(await ids('Observation', { 'value-quantity': 'ap140' })).toEqual(['obs-hgb-zhang']);
  });

  test(':missing finds results with and without a value', async () => {
    expect(await ids('Observation', { 'value-quantity:missing': 'true' })).toEqual(['obs-a1c-yang']);
    expect(await ids('Observation', { 'value-quantity:missing': 'false', patient: 'pat-yang' })).toEqual([
      'obs-hgb-yang',
    ]);
    expect(await ids('DiagnosticReport', { 'based-on:missing': 'false' })).toEqual(['dr-cbc-zhang']);
    expect(await ids('DiagnosticReport', { 'based-on:missing': 'true' })).toHaveLength(3);
  });
});

describe('names', () => {
  test('a name matches from its start, ignoring case, in Chinese characters or pinyin', async () => {
    expect(await ids('Patient', { name: 'zha' })).toEqual(['pat-zhang']);
    expect(await ids('Patient', { name: 'YANG' })).toEqual(['pat-yang']);
    expect(await ids('Patient', { name: '欧阳' })).toEqual(['pat-ouyang']);
    expect(await ids('Patient', { family: 'Ou' })).toEqual(['pat-ouyang']);
  });

  test(':contains matches inside a name and :exact only the whole name as written', async () => {
    expect(await ids('Patient', { 'name:contains': 'yang' })).toEqual(['pat-ouyang', 'pat-yang']);
    expect(await ids('Patient', { 'family:contains': 'ANG' })).toEqual(['pat-ouyang', 'pat-yang', 'pat-zhang']);
    expect(await ids('Patient', { 'family:exact': 'Yang' })).toEqual(['pat-yang']);
    expect(await ids('Patient', { 'family:exact': 'yang' })).toEqual([]);
    expect(await ids('Patient', { 'family:exact': 'Yan' })).toEqual([]);
    expect(await ids('Patient', { 'name:exact': '欧阳兰' })).toEqual(['pat-ouyang']);
  });
});

describe('chained parameters', () => {
  test('finds reports and results by the patient’s resident ID number', async () => {
    const token = `${RESIDENT_ID}|${ZHANG_ID}`;
    expect(await ids('DiagnosticReport', { 'patient.identifier': token })).toEqual(['dr-a1c-zhang', 'dr-cbc-zhang']);
    expect(await ids('DiagnosticReport', { 'subject:Patient.identifier': token })).toEqual([
      'dr-a1c-zhang',
      'dr-cbc-zhang',
    ]);
    expect(await ids('Observation', { 'subject:Patient.identifier': `${RESIDENT_ID}|${OUYANG_ID}` })).toEqual([
      'obs-hgb-ouyang',
    ]);
    expect(
      await ids('Observation', { 'patient.identifier': `${RESIDENT_ID}|000000000000000000`, code: '718-7' }),
    ).toEqual([]);
  });

  test('a chain combines with other parameters', async () => {
    expect(
      await ids('DiagnosticReport', { 'patient.identifier': `${RESIDENT_ID}|${ZHANG_ID}`, code: '57021-8' }),
    ).toEqual(['dr-cbc-zhang']);
    expect(await ids('DiagnosticReport', { 'performer:Organization.name': '青岛市市立' })).toEqual([
      'dr-cbc-yang',
      'dr-cbc-zhang',
    ]);
  });
});

describe('_include and _revinclude', () => {
  test('_include=DiagnosticReport:result brings the results of the report', async () => {
    const bundle = await search('DiagnosticReport', { _id: 'dr-cbc-zhang', _include: 'DiagnosticReport:result' });
    expect(matchIds(bundle)).toEqual(['dr-cbc-zhang']);
    const included = entriesOf(bundle, 'include');
    expect(included.map((e) => `${e.resource!.resourceType}/${e.resource!.id}`).sort()).toEqual([
      'Observation/obs-hgb-zhang',
      'Observation/obs-wbc-zhang',
    ]);
    expect(included[0]!.fullUrl).toBe(`${BASE}/${included[0]!.resource!.resourceType}/${included[0]!.resource!.id}`);
  });

  test('_include=DiagnosticReport:subject brings each patient once', async () => {
    const bundle = await search('DiagnosticReport', { code: '57021-8', _include: 'DiagnosticReport:subject' });
    expect(matchIds(bundle)).toHaveLength(3);
    const included = entriesOf(bundle, 'include').map((e) => `${e.resource!.resourceType}/${e.resource!.id}`);
    expect(included.sort()).toEqual(['Patient/pat-ouyang', 'Patient/pat-yang', 'Patient/pat-zhang']);

    const zhang = await search('DiagnosticReport', { patient: 'pat-zhang', _include: 'DiagnosticReport:subject' });
    expect(entriesOf(zhang, 'include').map((e) => e.resource!.id)).toEqual(['pat-zhang']);
  });

  test('_revinclude=Observation:patient brings the patient’s results', async () => {
    const bundle = await search('Patient', {
      identifier: `${RESIDENT_ID}|${ZHANG_ID}`,
      _revinclude: 'Observation:patient',
    });
    expect(matchIds(bundle)).toEqual(['pat-zhang']);
    expect(
      entriesOf(bundle, 'include')
        .map((e) => `${e.resource!.resourceType}/${e.resource!.id}`)
        .sort(),
    ).toEqual(['Observation/obs-a1c-zhang', 'Observation/obs-hgb-zhang', 'Observation/obs-wbc-zhang']);
  });

  test('_include:iterate follows the references of included results too', async () => {
    const bundle = await search('DiagnosticReport', {
      _id: 'dr-a1c-zhang',
      _include: 'DiagnosticReport:result',
      '_include:iterate': 'Observation:performer',
    });
    expect(
      entriesOf(bundle, 'include')
        .map((e) => `${e.resource!.resourceType}/${e.resource!.id}`)
        .sort(),
    ).toEqual(['Observation/obs-a1c-zhang', 'Organization/org-qd-central']);
  });

  test('_revinclude=DiagnosticReport:result brings the reports a result belongs to', async () => {
    const bundle = await search('Observation', {
      patient: 'pat-yang',
      _revinclude: 'DiagnosticReport:result',
    });
    expect(matchIds(bundle)).toEqual(['obs-a1c-yang', 'obs-hgb-yang']);
    // One report holds both results: it is included once.
    expect(entriesOf(bundle, 'include').map((e) => e.resource!.id)).toEqual(['dr-cbc-yang']);
  });

  test('an _include of a parameter that is not a reference is refused', async () => {
    await expectError('DiagnosticReport', { _include: 'DiagnosticReport:code' }, 400, '_include');
  });
});

describe('sorting, counting and totals', () => {
  test('_sort=-date lists the newest first and breaks ties the same way every time', async () => {
    const order = async () =>
      entriesOf(await search('Observation', { patient: 'pat-zhang', _sort: '-date' }), 'match').map(
        (e) => e.resource!.id,
      );
    const first = await order();
    expect(first).toEqual(['obs-hgb-zhang', 'obs-wbc-zhang', 'obs-a1c-zhang']);
    expect(await order()).toEqual(first);
    const ascending = entriesOf(await search('DiagnosticReport', { _sort: 'date' }), 'match').map(
      (e) => e.resource!.id,
    );
    expect(ascending).toEqual(['dr-cbc-yang', 'dr-a1c-zhang', 'dr-cbc-zhang', 'dr-cbc-ouyang']);
    const byStatus = await search('DiagnosticReport', { _sort: 'status,-date' });
    expect(entriesOf(byStatus, 'match').map((e) => e.resource!.id)).toEqual([
      'dr-cbc-yang', // amended
      'dr-cbc-zhang', // final, 5 March
      'dr-a1c-zhang', // final, 20 February
      'dr-cbc-ouyang', // preliminary
    ]);
  });

  test('_count limits the page and offers link.next', async () => {
    const bundle = await search('DiagnosticReport', { _count: '2', _sort: '-date' });
    expect(entriesOf(bundle, 'match').map((e) => e.resource!.id)).toEqual(['dr-cbc-ouyang', 'dr-cbc-zhang']);
    const next = nextLink(bundle);
    expect(next).toBeDefined();
    const page2 = (await follow(next!)).body as Bundle;
    expect(entriesOf(page2, 'match').map((e) => e.resource!.id)).toEqual(['dr-a1c-zhang', 'dr-cbc-yang']);
    expect(nextLink(page2)).toBeUndefined();
    expect(nextLink(await search('DiagnosticReport', { _count: '4' }))).toBeUndefined();
  });

  test('a total only with _total=accurate, and then the number of all matches, not of the page', async () => {
    const plain = await search('DiagnosticReport', { code: '57021-8', _count: '1' });
    expect(plain.total).toBeUndefined();
    const accurate = await search('DiagnosticReport', { code: '57021-8', _count: '1', _total: 'accurate' });
    expect(accurate.total).toBe(3);
    expect(entriesOf(accurate, 'match')).toHaveLength(1);
  });

  test('_summary=count answers the number of matches without entries', async () => {
    const bundle = await search('Observation', { code: '718-7', _summary: 'count' });
    expect(bundle.total).toBe(3);
    expect(bundle.entry ?? []).toEqual([]);
    const none = await search('Observation', { code: '718-7', _count: '0' });
    expect(none.total).toBe(3);
    expect(none.entry ?? []).toEqual([]);
    expect(nextLink(none)).toBeUndefined();
  });
});

describe('errors and lenient handling', () => {
  test('an unknown parameter is a 400 OperationOutcome naming it', async () => {
    const diagnostics = await expectError('DiagnosticReport', { patient: 'pat-zhang', colour: 'red' }, 400, 'colour');
    expect(diagnostics).toContain('colour');
  });

  test('with Prefer: handling=lenient the unknown parameter is ignored and reported in an outcome entry', async () => {
    const bundle = await search(
      'DiagnosticReport',
      { patient: 'pat-zhang', colour: 'red' },
      { Prefer: 'handling=lenient' },
    );
    expect(matchIds(bundle)).toEqual(['dr-a1c-zhang', 'dr-cbc-zhang']);
    const outcomes = entriesOf(bundle, 'outcome');
    expect(outcomes).toHaveLength(1);
    const oo = outcomes[0]!.resource as OperationOutcome;
    expect(oo.resourceType).toBe('OperationOutcome');
    expect(oo.issue.some((i) => i.severity === 'warning' && i.expression?.includes('colour'))).toBe(true);
  });

  test('the self link shows only the parameters used, and link.next works without Prefer: handling=lenient', async () => {
    const bundle = await search(
      'Observation',
      { code: '718-7', colour: 'red', _count: '1', _sort: '-date,shoe-size' },
      { Prefer: 'handling=lenient' },
    );
    const self = new URL(bundle.link!.find((l) => l.relation === 'self')!.url);
    expect([...self.searchParams.keys()].sort()).toEqual(['_count', '_sort', 'code']);
    expect(self.searchParams.get('_sort')).toBe('-date');
    const pages = await allPages(bundle);
    expect(pages.flat()).toEqual(['obs-hgb-ouyang', 'obs-hgb-zhang', 'obs-hgb-yang']);
  });

  test('an impossible or malformed date is a 400 naming the parameter', async () => {
    await expectError('DiagnosticReport', { date: '2024-02-30' }, 400, 'date');
    await expectError('DiagnosticReport', { date: '05/03/2024' }, 400, 'date');
    await expectError('DiagnosticReport', { issued: '2024-13' }, 400, 'issued');
  });

  test('an unknown prefix is a 400', async () => {
    const diagnostics = await expectError('DiagnosticReport', { date: 'xx2024-03-05' }, 400, 'date');
    expect(diagnostics).toContain('xx');
    await expectError('Observation', { 'value-quantity': 'zz5' }, 400, 'value-quantity');
  });

  test('a forged or foreign _cursor is a 400 asking to use link.next', async () => {
    await expectError('Observation', { _cursor: 'not-a-cursor' }, 400, '_cursor');
    const forged = Buffer.from(JSON.stringify({ v: 1, f: 'x', k: ['Observation/a'] })).toString('base64url');
    await expectError('Observation', { _cursor: forged }, 400, '_cursor');
    const page = await search('Observation', { code: '718-7', _count: '1' });
    const cursor = new URL(nextLink(page)!).searchParams.get('_cursor')!;
    await expectError('Observation', { code: '4548-4', _count: '1', _cursor: cursor }, 400, '_cursor');
  });
});

describe('paging', () => {
  // Seven results share each minute, so equal dates straddle page boundaries in the sorted test.
  const created = Array.from({ length: 250 }, (_, i) => pagingObservation('pat-paging', i, Math.floor(i / 7)));
  const originals = Array.from({ length: 120 }, (_, i) => pagingObservation('pat-stable', i + 100));

  beforeAll(async () => {
    await transaction([
      patient('pat-paging', '370202200001010002', 'Li', 'Na', '李娜'),
      patient('pat-stable', '37020220000202000X', 'Wang', 'Fang', '王芳'),
      ...created,
      ...originals,
    ]);
  });

  test('pages through 250 observations with link.next without repeats or gaps', async () => {
    const first = await search('Observation', { patient: 'pat-paging', _count: '40' });
    const pages = await allPages(first);
    expect(pages.map((p) => p.length)).toEqual([40, 40, 40, 40, 40, 40, 10]);
    const seen = pages.flat();
    expect(new Set(seen).size).toBe(250);
    expect(seen.sort()).toEqual(created.map((o) => o.id).sort());
  });

  test('pages sorted by date newest first keep the order across pages, equal dates in a stable order', async () => {
    const first = await search('Observation', { patient: 'pat-paging', _count: '40', _sort: '-date' });
    const seen = (await allPages(first)).flat();
    expect(seen).toHaveLength(250);
    expect(new Set(seen).size).toBe(250);
    // Newest minute first; within a minute the server's tie-breaker (the id) orders them.
    const minute = (id: string) => Math.floor(Number(id.slice(-3)) / 7);
    const expected = [...seen].sort((a, b) => minute(b) - minute(a) || (a < b ? -1 : 1));
    expect(seen).toEqual(expected);
    expect(seen.slice(0, 5)).toEqual([
      'pat-paging-245',
      'pat-paging-246',
      'pat-paging-247',
      'pat-paging-248',
      'pat-paging-249',
    ]);
  });

  // Writing and paging hundreds of resources on the embedded test database takes a while on a busy machine.
  test(
    'resources created or updated while paging neither repeat nor hide the original ones',
    { timeout: 120_000 },
    async () => {
      for (const sort of [undefined, '-date']) {
        const query: Record<string, string> = { patient: 'pat-stable', _count: '40', ...(sort ? { _sort: sort } : {}) };
        const first = await search('Observation', query);
        const seen = entriesOf(first, 'match').map((e) => e.resource!.id!);
        expect(seen).toHaveLength(40);

        // Meanwhile a hospital sends new results (ids before and after the current position, dates old and new) and
        // corrects results the client has not seen yet (the value, not the date).
        const unseen = originals.filter((o) => !seen.includes(o.id!)).slice(0, 10);
        const value = sort ? 8.8 : 9.9;
        await transaction([
          { ...pagingObservation('pat-stable', 1), id: sort ? 'pat-stable-001-new' : 'pat-stable-000-new' },
          { ...pagingObservation('pat-stable', 400), id: sort ? 'pat-stable-998-new' : 'pat-stable-999-new' },
          ...unseen.map((o) => ({ ...o, valueQuantity: { ...o.valueQuantity, value } })),
        ]);
        const corrected = await search('Observation', { _id: unseen.map((o) => o.id).join(','), _count: '100' });
        expect(entriesOf(corrected, 'match').map((e) => (e.resource as Observation).valueQuantity?.value)).toEqual(
          unseen.map(() => value),
        );

        let url = nextLink(first);
        while (url) {
          const res = await follow(url);
          expect(res.status).toBe(200);
          const bundle = res.body as Bundle;
          seen.push(...entriesOf(bundle, 'match').map((e) => e.resource!.id!));
          url = nextLink(bundle);
        }
        expect(new Set(seen).size).toBe(seen.length); // no repeats
        for (const o of originals) expect(seen).toContain(o.id); // no gaps
      }
    },
  );
});

describe('deleted resources', () => {
  test('a deleted result is no longer found, counted or included', async () => {
    await put(
      result({
        id: 'obs-wbc-ouyang',
        patient: 'pat-ouyang',
        ...WBC,
        effective: '2024-03-06T00:30:00+08:00',
        performer: 'org-qd-women',
        value: { value: 7.2, unit: '10*9/L' },
      }),
    );
    await put({ ...reports[2]!, result: [...reports[2]!.result!, { reference: 'Observation/obs-wbc-ouyang' }] });
    expect(await ids('Observation', { patient: 'pat-ouyang' })).toEqual(['obs-hgb-ouyang', 'obs-wbc-ouyang']);

    const del = await t.as('admin').delete('/fhir/Observation/obs-wbc-ouyang');
    expect(del.status).toBe(200);

    expect(await ids('Observation', { patient: 'pat-ouyang' })).toEqual(['obs-hgb-ouyang']);
    expect(await ids('Observation', { _id: 'obs-wbc-ouyang' })).toEqual([]);
    expect((await search('Observation', { code: '6690-2', _summary: 'count' })).total).toBe(1);
    const withResults = await search('DiagnosticReport', { _id: 'dr-cbc-ouyang', _include: 'DiagnosticReport:result' });
    expect(entriesOf(withResults, 'include').map((e) => e.resource!.id)).toEqual(['obs-hgb-ouyang']);
    const revinc = await search('Patient', { _id: 'pat-ouyang', _revinclude: 'Observation:patient' });
    expect(entriesOf(revinc, 'include').map((e) => e.resource!.id)).toEqual(['obs-hgb-ouyang']);
  });
});

describe('a search that reads too much of the database', () => {
  let slow: TestApp;
  beforeAll(async () => {
    // A time limit no query can meet stands in for a search over a city's worth of one type.
    slow = await createTestApp('search-timeout', { HUREN_SEARCH_TIMEOUT_MS: '1' });
    const entry = Array.from({ length: 200 }, (_, i) => ({
      resource: {
        resourceType: 'Observation',
        status: 'final',
        code: { coding: [{ system: 'http://loinc.org', code: '2345-7' }] },
        subject: { reference: `Patient/p${i % 20}` },
        effectiveDateTime: new Date(Date.UTC(2024, 0, 1, 0, i)).toISOString(),
      },
      request: { method: 'POST', url: 'Observation' },
    }));
    const res = await slow
      .as('admin')
      .post('/fhir')
      .set('Content-Type', 'application/fhir+json')
      .send({ resourceType: 'Bundle', type: 'batch', entry });
    expect(res.status).toBe(200);
  });
  afterAll(async () => {
    await slow.close();
  });

  test('is stopped at HUREN_SEARCH_TIMEOUT_MS and refused as too costly, saying how to narrow it', async () => {
    for (const query of ['status=final', 'status=final&_total=accurate']) {
      const res = await slow.as('admin').get(`/fhir/Observation?${query}`);
      expect(res.status).toBe(400);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].code).toBe('too-costly');
      expect(res.body.issue[0].diagnostics).toMatch(/patient, subject, identifier or code/);
    }
  });
});

describe('a search with nothing selective over a large type', () => {
  let big: TestApp;
  // Ids chosen so that two fall in the type's first scan bucket of 256: the broker, which estimates a type's size
  // from its first buckets, takes this type for one of about 500 Observations and pages through it in 16 buckets,
  // at most 4 per page.
  const inFirstBucket = Array.from({ length: 20_000 }, (_, i) => `scan-${i}`)
    .filter((id) => scanBucket(id, 2) === '00')
    .slice(0, 2);
  const others = Array.from({ length: 46 }, (_, i) => `scan-obs-${i}`).filter((id) => scanBucket(id, 2) !== '00');
  const all = [...inFirstBucket, ...others];
  const preliminary = new Set(others.slice(0, 8));
  const final = all.filter((id) => !preliminary.has(id));
  /** Bucket order at level 1, then id order: the order in which the broker pages through the type. */
  const scanOrder = (ids: string[]) =>
    [...ids].sort((a, b) => scanBucket(a, 1).localeCompare(scanBucket(b, 1)) || (a < b ? -1 : a > b ? 1 : 0));

  beforeAll(async () => {
    expect(inFirstBucket).toHaveLength(2);
    expect(others).toHaveLength(46);
    big = await createTestApp('search-scan');
    const entry = all.map((id, i) => ({
      resource: {
        resourceType: 'Observation',
        id,
        status: preliminary.has(id) ? 'preliminary' : 'final',
        code: { coding: [{ system: 'http://loinc.org', code: '2345-7' }] },
        subject: { reference: `Patient/p${i % 20}` },
        effectiveDateTime: new Date(Date.UTC(2024, 0, 1, 0, i)).toISOString(),
      },
      request: { method: 'PUT', url: `Observation/${id}` },
    }));
    const res = await big
      .as('admin')
      .post('/fhir')
      .set('Content-Type', 'application/fhir+json')
      .send({ resourceType: 'Bundle', type: 'transaction', entry });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  });
  afterAll(async () => {
    await big.close();
  });

  async function pages(query: string): Promise<string[][]> {
    const out: string[][] = [];
    let url: string | undefined = `/fhir/Observation?${query}`;
    while (url) {
      const res = await big.as('admin').get(url);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      const bundle = res.body as Bundle;
      out.push((bundle.entry ?? []).map((e) => e.resource!.id!));
      const next = nextLink(bundle);
      url = next ? next.slice(next.indexOf('/fhir/')) : undefined;
      expect(out.length).toBeLessThan(50);
    }
    return out;
  }

  test('pages through every match once, bucket by bucket', async () => {
    const got = await pages('status=final&_count=5');
    expect(got.every((page) => page.length <= 5)).toBe(true);
    expect(got.flat()).toEqual(scanOrder(final));
    const total = await big.as('admin').get('/fhir/Observation?status=final&_total=accurate&_count=1');
    expect(total.body.total).toBe(final.length);
  });

  test('a page reads at most four buckets: rare matches come over several pages, each with its next link', async () => {
    const got = await pages('status=preliminary&_count=50');
    // 16 buckets, 4 per page: four pages, each with the matches of its buckets (some may have none).
    expect(got).toHaveLength(4);
    got.forEach((page, i) => {
      const buckets = [0, 1, 2, 3].map((b) => (i * 4 + b).toString(16));
      expect(page).toEqual(scanOrder([...preliminary].filter((id) => buckets.includes(scanBucket(id, 1)))));
    });
  });

  test('with _sort it pages in that order, as before', async () => {
    const res = await big.as('admin').get('/fhir/Observation?status=final&_sort=-date&_count=50');
    expect(res.status).toBe(200);
    const ids = (res.body as Bundle).entry!.map((e) => e.resource!.id!);
    expect(ids).toEqual([...final].sort((a, b) => all.indexOf(b) - all.indexOf(a)));
  });
});
