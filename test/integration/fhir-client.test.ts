import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type {
  Bundle,
  CapabilityStatement,
  DiagnosticReport,
  Observation,
  OperationOutcome,
  Patient,
  Resource,
} from 'fhir/r4';
import { Client, type FhirResource, type PaginationParams } from 'fhir-kit-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.js';

/**
 * The broker as a real FHIR client sees it: fhir-kit-client (the library hospitals' integration engines and our own
 * sync use) against the app listening on a real port.
 */

const RESIDENT_ID = 'urn:oid:2.16.156.10011.1.1';
const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';

let t: TestApp;
let server: Server;
let client: Client;

/** fhir-kit-client types every resource as a loose record; the tests work with the R4 types. */
const asFhir = <T extends Resource>(r: T) => r as unknown as FhirResource;
const as = <T extends Resource>(r: FhirResource | undefined) => r as unknown as T;

/** client.nextPage for an R4 Bundle: the next page, or undefined after the last one. */
async function nextPage(bundle: Bundle): Promise<Bundle | undefined> {
  const next = client.nextPage({ bundle: bundle as unknown as PaginationParams['bundle'] });
  return next ? as<Bundle>(await next) : undefined;
}

/** The `{ response: { status, data } }` error fhir-kit-client rejects with on a non-2xx answer. */
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

const observation = (
  uuid: string,
  patientUuid: string,
  code: string,
  display: string,
  value: number,
  unit: string,
) => ({
  fullUrl: `urn:uuid:${uuid}`,
  resource: {
    resourceType: 'Observation',
    status: 'final',
    category: [
      { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] },
    ],
    code: { coding: [{ system: LOINC, code, display }] },
    subject: { reference: `urn:uuid:${patientUuid}` },
    effectiveDateTime: '2024-03-05T09:12:00+08:00',
    issued: '2024-03-05T10:05:31+08:00',
    performer: [{ reference: 'Organization/org-qd-municipal' }],
    valueQuantity: { value, unit, system: UCUM, code: unit },
  } satisfies Observation,
  request: { method: 'POST' as const, url: 'Observation' },
});

const PATIENT_UUID = '7d3c1f0e-9a41-4d55-8c55-2b7f0f3a1e01';
const REPORT_UUID = '7d3c1f0e-9a41-4d55-8c55-2b7f0f3a1e02';
const OBS_UUIDS = [
  '7d3c1f0e-9a41-4d55-8c55-2b7f0f3a1e03',
  '7d3c1f0e-9a41-4d55-8c55-2b7f0f3a1e04',
  '7d3c1f0e-9a41-4d55-8c55-2b7f0f3a1e05',
];

const liuYang = (): Patient => ({
  resourceType: 'Patient',
  identifier: [{ system: RESIDENT_ID, value: '370202199203034322' }],
  name: [{ text: '刘洋', family: 'Liu', given: ['Yang'] }],
  gender: 'male',
  birthDate: '1992-03-03',
});

const cbcReport = (): DiagnosticReport => ({
  resourceType: 'DiagnosticReport',
  status: 'final',
  category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', code: 'HM' }] }],
  code: { coding: [{ system: LOINC, code: '57021-8', display: 'CBC W Auto Differential panel - Blood' }] },
  subject: { reference: `urn:uuid:${PATIENT_UUID}` },
  effectiveDateTime: '2024-03-05T09:12:00+08:00',
  issued: '2024-03-05T10:05:31+08:00',
  performer: [{ reference: 'Organization/org-qd-municipal' }],
  result: OBS_UUIDS.map((u) => ({ reference: `urn:uuid:${u}` })),
});

/** What a hospital's LIS sends when a blood count is signed: the patient, the report and its results, at once. */
const cbcTransaction = (): Bundle => ({
  resourceType: 'Bundle',
  type: 'transaction',
  entry: [
    {
      fullUrl: `urn:uuid:${PATIENT_UUID}`,
      resource: liuYang(),
      request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${RESIDENT_ID}|370202199203034322` },
    },
    {
      fullUrl: `urn:uuid:${REPORT_UUID}`,
      resource: cbcReport(),
      request: { method: 'POST', url: 'DiagnosticReport' },
    },
    observation(OBS_UUIDS[0]!, PATIENT_UUID, '718-7', 'Hemoglobin [Mass/volume] in Blood', 136, 'g/L'),
    observation(OBS_UUIDS[1]!, PATIENT_UUID, '6690-2', 'Leukocytes [#/volume] in Blood', 6.1, '10*9/L'),
    observation(OBS_UUIDS[2]!, PATIENT_UUID, '777-3', 'Platelets [#/volume] in Blood', 210, '10*9/L'),
  ],
});

beforeAll(async () => {
  // No fixed base URL: links and Locations are built from the Host the client used, as behind a plain deployment.
  t = await createTestApp('fhir-client', { HUREN_BASE_URL: '' });
  server = await new Promise<Server>((resolve) => {
    const s = t.app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  client = new Client({ baseUrl: `http://127.0.0.1:${port}/fhir`, bearerToken: t.tokens.admin });
});

afterAll(async () => {
  if (server) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  await t?.close();
});

describe('fhir-kit-client against the broker', () => {
  let reportId: string;
  let patientId: string;

  test('a transaction with urn:uuid references creates the patient, the report and its results linked together', async () => {
    const response = as<Bundle>(await client.transaction({ body: asFhir(cbcTransaction()) }));
    expect(response.type).toBe('transaction-response');
    expect(response.entry!.map((e) => e.response!.status)).toEqual([
      '201 Created',
      '201 Created',
      '201 Created',
      '201 Created',
      '201 Created',
    ]);
    const locations = response.entry!.map((e) => e.response!.location!);
    expect(locations[0]).toMatch(new RegExp(`^${client.baseUrl}/Patient/[^/]+/_history/1$`));
    patientId = locations[0]!.split('/').at(-3)!;
    reportId = locations[1]!.split('/').at(-3)!;
    const observationIds = locations.slice(2).map((l) => l.split('/').at(-3)!);

    const report = as<DiagnosticReport>(await client.read({ resourceType: 'DiagnosticReport', id: reportId }));
    expect(report.subject?.reference).toBe(`Patient/${patientId}`);
    expect(report.result?.map((r) => r.reference)).toEqual(observationIds.map((id) => `Observation/${id}`));
    const hgb = as<Observation>(await client.read({ resourceType: 'Observation', id: observationIds[0]! }));
    expect(hgb.subject?.reference).toBe(`Patient/${patientId}`);
    expect(hgb.valueQuantity?.value).toBe(136);
  });

  test('sending the same transaction again finds the patient by resident ID instead of creating a second one', async () => {
    const response = as<Bundle>(await client.transaction({ body: asFhir(cbcTransaction()) }));
    expect(response.entry![0]!.response!.status).toBe('200 OK');
    expect(response.entry![0]!.response!.location).toContain(`/Patient/${patientId}/`);
    const patients = as<Bundle>(
      await client.search({
        resourceType: 'Patient',
        searchParams: { identifier: `${RESIDENT_ID}|370202199203034322`, _total: 'accurate' },
      }),
    );
    expect(patients.total).toBe(1);
  });

  test('a search with _include returns the report together with its results', async () => {
    const bundle = as<Bundle>(
      await client.search({
        resourceType: 'DiagnosticReport',
        searchParams: { _id: reportId, _include: 'DiagnosticReport:result' },
      }),
    );
    const matches = bundle.entry!.filter((e) => e.search?.mode === 'match');
    const included = bundle.entry!.filter((e) => e.search?.mode === 'include');
    expect(matches.map((e) => e.resource!.id)).toEqual([reportId]);
    expect(included.map((e) => (e.resource as Observation).code.coding![0]!.code).sort()).toEqual([
      '6690-2',
      '718-7',
      '777-3',
    ]);
    // Full URLs point back at this server, so a client can resolve them.
    expect(included[0]!.fullUrl).toBe(`${client.baseUrl}/Observation/${included[0]!.resource!.id}`);
  });

  // Writing and paging hundreds of resources on the embedded test database takes a while on a busy machine.
  test('nextPage walks a 250-result search to its end, every result exactly once', { timeout: 120_000 }, async () => {
    const batch: Bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      entry: Array.from({ length: 250 }, (_, i) => ({
        resource: {
          resourceType: 'Observation',
          status: 'final',
          code: { coding: [{ system: LOINC, code: '2345-7', display: 'Glucose [Mass/volume] in Serum or Plasma' }] },
          subject: { reference: 'Patient/pat-glucose-diary' },
          effectiveDateTime: new Date(Date.UTC(2024, 0, 1, 0, i)).toISOString(),
          valueQuantity: { value: 5 + (i % 30) / 10, unit: 'mmol/L', system: UCUM, code: 'mmol/L' },
        } satisfies Observation,
        request: { method: 'POST', url: 'Observation' },
      })),
    };
    const created = as<Bundle>(await client.batch({ body: asFhir(batch) }));
    expect(created.entry!.every((e) => e.response!.status === '201 Created')).toBe(true);

    const first = as<Bundle>(
      await client.search({
        resourceType: 'Observation',
        searchParams: { subject: 'Patient/pat-glucose-diary', _count: 40, _sort: '-date' },
      }),
    );
    expect(first.total).toBeUndefined();
    const ids: string[] = [];
    let pages = 0;
    for (let page: Bundle | undefined = first; page && pages < 20; page = await nextPage(page)) {
      pages++;
      ids.push(...(page.entry ?? []).map((e) => e.resource!.id!));
    }
    expect(pages).toBe(7);
    expect(ids).toHaveLength(250);
    expect(new Set(ids).size).toBe(250);
    const createdIds = created.entry!.map((e) => e.response!.location!.split('/').at(-3)!);
    expect([...ids].sort()).toEqual([...createdIds].sort());
    // Newest first: the last one sent (23:59 … 04:09 UTC) comes first.
    expect(ids[0]).toBe(createdIds[249]);
  });

  test('nextPage of a lenient search works although the client does not repeat the Prefer header', async () => {
    const first = as<Bundle>(
      await client.search({
        resourceType: 'Observation',
        searchParams: { subject: 'Patient/pat-glucose-diary', 'hospital-ward': '3B', _count: 100 },
        options: { headers: { Prefer: 'handling=lenient' } },
      }),
    );
    const warning = first.entry!.find((e) => e.search?.mode === 'outcome')!.resource as OperationOutcome;
    expect(warning.issue[0]!.expression).toEqual(['hospital-ward']);
    let count = 0;
    for (let page: Bundle | undefined = first; page; page = await nextPage(page)) {
      count += (page.entry ?? []).filter((e) => e.search?.mode === 'match').length;
    }
    expect(count).toBe(250);
  });

  test('an unknown search parameter rejects with 400 and an OperationOutcome naming it', async () => {
    const { status, data } = await failure(
      client.search({ resourceType: 'Observation', searchParams: { 'hospital-ward': '3B' } }),
    );
    expect(status).toBe(400);
    expect(data.resourceType).toBe('OperationOutcome');
    expect(data.issue[0]!.expression).toEqual(['hospital-ward']);
  });

  test('update with a stale If-Match is refused with 412 and the newer version is kept', async () => {
    const v1 = as<Patient>(await client.read({ resourceType: 'Patient', id: patientId }));
    expect(v1.meta?.versionId).toBe('1');

    const v2 = as<Patient>(
      await client.update({
        resourceType: 'Patient',
        id: patientId,
        body: asFhir({ ...v1, telecom: [{ system: 'phone', value: '13900000000', use: 'mobile' }] }),
        options: { headers: { 'If-Match': 'W/"1"' } },
      }),
    );
    expect(v2.meta?.versionId).toBe('2');

    // A second editor still holding version 1 must not overwrite version 2.
    const { status, data } = await failure(
      client.update({
        resourceType: 'Patient',
        id: patientId,
        body: asFhir({ ...v1, gender: 'female' }),
        options: { headers: { 'If-Match': 'W/"1"' } },
      }),
    );
    expect(status).toBe(412);
    expect(data.resourceType).toBe('OperationOutcome');
    expect(data.issue[0]!.diagnostics).toContain('version 2');

    const current = as<Patient>(await client.read({ resourceType: 'Patient', id: patientId }));
    expect(current.meta?.versionId).toBe('2');
    expect(current.gender).toBe('male');
    expect(current.telecom?.[0]?.value).toBe('13900000000');
  });

  test('vread returns each version as it was and history lists them newest first', async () => {
    const v1 = as<Patient>(await client.vread({ resourceType: 'Patient', id: patientId, version: '1' }));
    expect(v1.telecom).toBeUndefined();
    const v2 = as<Patient>(await client.vread({ resourceType: 'Patient', id: patientId, version: '2' }));
    expect(v2.telecom?.[0]?.value).toBe('13900000000');

    const history = as<Bundle>(await client.history({ resourceType: 'Patient', id: patientId }));
    expect(history.type).toBe('history');
    expect(history.entry!.map((e) => e.resource?.meta?.versionId)).toEqual(['2', '1']);
    expect(history.entry!.map((e) => e.request?.method)).toEqual(['PUT', 'POST']);

    const missing = await failure(client.vread({ resourceType: 'Patient', id: patientId, version: '3' }));
    expect(missing.status).toBe(404);
  });

  test('type history pages with nextPage through every version exactly once', async () => {
    const first = as<Bundle>(await client.request('Observation/_history?_count=60'));
    expect(first.entry).toHaveLength(60);
    const versions: string[] = [];
    for (let page: Bundle | undefined = first; page; page = await nextPage(page)) {
      versions.push(...page.entry!.map((e) => `${e.resource!.id}/${e.resource!.meta!.versionId}`));
    }
    // 3 + 3 results of the two CBC transactions and the 250 glucose results, one version each.
    expect(versions).toHaveLength(256);
    expect(new Set(versions).size).toBe(256);
  });

  test('read of an unknown resource rejects with 404 and an OperationOutcome', async () => {
    const { status, data } = await failure(client.read({ resourceType: 'Observation', id: 'no-such-result' }));
    expect(status).toBe(404);
    expect(data.resourceType).toBe('OperationOutcome');
  });

  test('the CapabilityStatement declares the search parameters that actually work', async () => {
    const cs = as<CapabilityStatement>(await client.capabilityStatement());
    expect(cs.fhirVersion).toBe('4.0.1');
    const resource = (type: string) => cs.rest![0]!.resource!.find((r) => r.type === type)!;
    const params = (type: string) => resource(type).searchParam!.map((p) => p.name);
    expect(params('DiagnosticReport')).toEqual(expect.arrayContaining(['code', 'date', 'issued', 'patient', 'result']));
    expect(params('Observation')).toEqual(expect.arrayContaining(['code', 'date', 'patient', 'value-quantity']));
    expect(params('Patient')).toEqual(expect.arrayContaining(['identifier', 'name', 'family']));
    expect(resource('Observation').searchParam!.find((p) => p.name === 'value-quantity')!.type).toBe('quantity');
    expect(resource('DiagnosticReport').searchInclude).toContain('DiagnosticReport:result');
    expect(resource('Patient').searchRevInclude).toContain('Observation:patient');

    // Every declared parameter of the clinical types is accepted by a search (none is declared but refused).
    const sample: Record<string, string> = {
      token: 'x',
      reference: 'x',
      date: '2024',
      string: 'x',
      number: '1',
      quantity: '1',
      uri: 'http://x',
    };
    for (const type of ['DiagnosticReport', 'Observation', 'Patient', 'Organization', 'ServiceRequest']) {
      // All of a type's declared parameters in one strict search: a single refused one would make it a 400.
      const searchParams: Record<string, string> = { _summary: 'count' };
      for (const p of resource(type).searchParam!) {
        expect(sample[p.type], `${type}.${p.name} has type ${p.type}`).toBeDefined();
        searchParams[p.name] = sample[p.type]!;
      }
      expect(Object.keys(searchParams).length, type).toBeGreaterThan(10);
      const bundle = as<Bundle>(await client.search({ resourceType: type, searchParams }));
      expect(bundle.total, type).toBe(0);
    }
  });
});
