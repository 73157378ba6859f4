import type { Bundle, BundleEntry, DiagnosticReport, Observation, OperationOutcome, Patient, Resource } from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { hemoglobin, hurenObservation, labReport, organization, patient } from '../fixtures/validation/resources.js';
import { createTestApp, type TestApp } from '../support/app.js';

const FHIR_JSON = 'application/fhir+json';
const RESIDENT_ID = 'https://huren.example.org/fhir/sid/resident-id';
const RESULT_ID = 'https://huren.example.org/fhir/sid/qd-municipal/result';
const REPORT_ID = 'https://huren.example.org/fhir/sid/qd-municipal/report';
const USCC = 'https://huren.example.org/fhir/sid/uscc';

let seq = 0;
/** A value no other test uses, so that tests sharing one database never see each other's resources. */
const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;
const uuid = () => `urn:uuid:${crypto.randomUUID()}`;

function newPatient(residentId: string): Patient {
  const p = patient();
  delete p.id;
  delete p.meta;
  return { ...p, identifier: [{ system: RESIDENT_ID, value: residentId }] };
}

function newObservation(resultId: string, subject: string, overrides: Partial<Observation> = {}): Observation {
  const o = hemoglobin();
  delete o.id;
  return { ...o, identifier: [{ system: RESULT_ID, value: resultId }], subject: { reference: subject }, ...overrides };
}

function newReport(reportId: string, subject: string, results: string[]): DiagnosticReport {
  const r = labReport();
  delete r.id;
  delete r.basedOn;
  return {
    ...r,
    identifier: [{ system: REPORT_ID, value: reportId }],
    subject: { reference: subject },
    result: results.map((reference) => ({ reference })),
  };
}

const post = (fullUrl: string, resource: Resource, ifNoneExist?: string): BundleEntry => ({
  fullUrl,
  resource,
  request: { method: 'POST', url: resource.resourceType, ...(ifNoneExist ? { ifNoneExist } : {}) },
});

const put = (url: string, resource: Resource, extra: { fullUrl?: string; ifMatch?: string } = {}): BundleEntry => ({
  ...(extra.fullUrl ? { fullUrl: extra.fullUrl } : {}),
  resource,
  request: { method: 'PUT', url, ...(extra.ifMatch ? { ifMatch: extra.ifMatch } : {}) },
});

const bundle = (type: Bundle['type'], entry: BundleEntry[]): Bundle => ({ resourceType: 'Bundle', type, entry });

/** `Type/id` from a Location such as http://huren.test/fhir/Patient/abc/_history/1. */
function refOf(location: string | undefined): string {
  const m = /^http:\/\/huren\.test\/fhir\/([A-Za-z]+)\/([A-Za-z0-9.-]+)\/_history\/\d+$/.exec(location ?? '');
  if (!m) throw new Error(`not a version Location: ${location}`);
  return `${m[1]}/${m[2]}`;
}

describe('transaction and batch Bundles', () => {
  let t: TestApp;
  const api = () => t.as('admin');

  const postBundle = (body: unknown) =>
    api()
      .post('/fhir')
      .set('Content-Type', FHIR_JSON)
      .send(body as object);

  async function searchIds(type: string, query: Record<string, string>): Promise<string[]> {
    const res = await api().get(`/fhir/${type}`).query(query);
    expect(res.status).toBe(200);
    return ((res.body as Bundle).entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id!);
  }

  async function read<T extends Resource>(ref: string): Promise<T> {
    const res = await api().get(`/fhir/${ref}`);
    expect(res.status, `GET ${ref}`).toBe(200);
    return res.body as T;
  }

  /** How many versions the whole server holds: a write of any kind adds at least one. */
  async function versionCount(): Promise<number> {
    const res = await api().get('/fhir/_history').query({ _count: '1000' });
    expect(res.status).toBe(200);
    return ((res.body as Bundle).entry ?? []).length;
  }

  function expectOutcome(body: unknown): OperationOutcome {
    const oo = body as OperationOutcome;
    expect(oo.resourceType).toBe('OperationOutcome');
    expect(oo.issue.length).toBeGreaterThan(0);
    return oo;
  }

  beforeAll(async () => {
    t = await createTestApp('fhir-bundle');
  });
  afterAll(async () => {
    await t.close();
  });

  describe('transaction', () => {
    test('creates a patient, a report and its results, answering in request order with Location for each', async () => {
      const [p, r, o1, o2] = [uuid(), uuid(), uuid(), uuid()];
      const residentId = unique('res');
      const res = await postBundle(
        bundle('transaction', [
          post(p, newPatient(residentId)),
          post(r, newReport(unique('rep'), p, [o1, o2])),
          post(o1, newObservation(unique('hgb'), p)),
          post(o2, newObservation(unique('wbc'), p, { valueQuantity: { value: 6.1, unit: '10*9/L' } })),
        ]),
      );
      expect(res.status).toBe(200);
      const body = res.body as Bundle;
      expect(body.resourceType).toBe('Bundle');
      expect(body.type).toBe('transaction-response');
      expect(body.entry).toHaveLength(4);
      expect(body.entry!.map((e) => e.response!.status)).toEqual([
        '201 Created',
        '201 Created',
        '201 Created',
        '201 Created',
      ]);
      const refs = body.entry!.map((e) => refOf(e.response!.location));
      expect(refs.map((x) => x.split('/')[0])).toEqual(['Patient', 'DiagnosticReport', 'Observation', 'Observation']);
      expect(new Set(refs).size).toBe(4);
      for (const e of body.entry!) expect(e.response!.etag).toBe('W/"1"');

      const [patientRef, reportRef, obs1Ref, obs2Ref] = refs;
      const report = await read<DiagnosticReport>(reportRef);
      expect(report.subject?.reference).toBe(patientRef);
      expect(report.result?.map((x) => x.reference)).toEqual([obs1Ref, obs2Ref]);
      expect(report.specimen?.[0].reference).toBe('#blood'); // a contained reference is left alone
      for (const ref of [obs1Ref, obs2Ref]) {
        expect((await read<Observation>(ref)).subject?.reference).toBe(patientRef);
      }
      expect(JSON.stringify(report)).not.toContain('urn:uuid');
      expect(await searchIds('Patient', { identifier: `${RESIDENT_ID}|${residentId}` })).toEqual([
        patientRef.split('/')[1],
      ]);
      // The references are searchable as Type/id: the patient's results are found through the rewritten subject.
      expect((await searchIds('Observation', { subject: patientRef })).sort()).toEqual(
        [obs1Ref, obs2Ref].map((x) => x.split('/')[1]).sort(),
      );
    });

    test('a conditional create (ifNoneExist) reuses the existing patient and references point to it', async () => {
      const residentId = unique('res');
      const existing = await api().post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(newPatient(residentId));
      expect(existing.status).toBe(201);
      const p = uuid();
      const res = await postBundle(
        bundle('transaction', [
          post(p, newPatient(residentId), `identifier=${RESIDENT_ID}|${residentId}`),
          post(uuid(), newObservation(unique('hgb'), p)),
        ]),
      );
      expect(res.status).toBe(200);
      const [pe, oe] = (res.body as Bundle).entry!;
      expect(pe.response!.status).toBe('200 OK');
      expect(refOf(pe.response!.location)).toBe(`Patient/${existing.body.id}`);
      expect(oe.response!.status).toBe('201 Created');
      const obs = await read<Observation>(refOf(oe.response!.location));
      expect(obs.subject?.reference).toBe(`Patient/${existing.body.id}`);
      expect(await searchIds('Patient', { identifier: `${RESIDENT_ID}|${residentId}` })).toEqual([existing.body.id]);
    });

    test('a conditional update entry creates the result the first time and updates it the second time', async () => {
      const resultId = unique('hgb');
      const url = `Observation?identifier=${RESULT_ID}|${resultId}`;
      const first = await postBundle(bundle('transaction', [put(url, newObservation(resultId, 'Patient/p-1001'))]));
      expect(first.status).toBe(200);
      const created = (first.body as Bundle).entry![0].response!;
      expect(created.status).toBe('201 Created');
      const ref = refOf(created.location);

      const corrected = newObservation(resultId, 'Patient/p-1001', {
        status: 'corrected',
        valueQuantity: { value: 138, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' },
      });
      const second = await postBundle(bundle('transaction', [put(url, corrected)]));
      expect(second.status).toBe(200);
      const updated = (second.body as Bundle).entry![0].response!;
      expect(updated.status).toBe('200 OK');
      expect(refOf(updated.location)).toBe(ref);
      expect(updated.etag).toBe('W/"2"');

      const current = await read<Observation>(ref);
      expect(current.status).toBe('corrected');
      expect(current.valueQuantity?.value).toBe(138);
      expect(await searchIds('Observation', { identifier: `${RESULT_ID}|${resultId}` })).toEqual([ref.split('/')[1]]);
      const history = await api().get(`/fhir/${ref}/_history`);
      expect((history.body as Bundle).entry!.map((e) => e.resource!.meta!.versionId)).toEqual(['2', '1']);
    });

    test('a report may reference results written by conditional update entries through their fullUrl', async () => {
      const [o1, o2] = [uuid(), uuid()];
      const [id1, id2] = [unique('hgb'), unique('plt')];
      const res = await postBundle(
        bundle('transaction', [
          post(uuid(), newReport(unique('rep'), 'Patient/p-1001', [o1, o2])),
          put(`Observation?identifier=${RESULT_ID}|${id1}`, newObservation(id1, 'Patient/p-1001'), { fullUrl: o1 }),
          put(`Observation?identifier=${RESULT_ID}|${id2}`, newObservation(id2, 'Patient/p-1001'), { fullUrl: o2 }),
        ]),
      );
      expect(res.status).toBe(200);
      const refs = (res.body as Bundle).entry!.map((e) => refOf(e.response!.location));
      const report = await read<DiagnosticReport>(refs[0]);
      expect(report.result?.map((x) => x.reference)).toEqual([refs[1], refs[2]]);
      expect(await searchIds('Observation', { identifier: `${RESULT_ID}|${id1}` })).toEqual([refs[1].split('/')[1]]);
    });

    test('a conditional reference (Patient?identifier=…) is resolved to the one matching patient', async () => {
      const residentId = unique('res');
      const existing = await api().post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(newPatient(residentId));
      expect(existing.status).toBe(201);
      const res = await postBundle(
        bundle('transaction', [
          post(uuid(), newObservation(unique('hgb'), `Patient?identifier=${RESIDENT_ID}|${residentId}`)),
        ]),
      );
      expect(res.status).toBe(200);
      const obs = await read<Observation>(refOf((res.body as Bundle).entry![0].response!.location));
      expect(obs.subject?.reference).toBe(`Patient/${existing.body.id}`);
    });

    test('a conditional reference that matches no patient is refused and nothing is written', async () => {
      const resultId = unique('hgb');
      const before = await versionCount();
      const res = await postBundle(
        bundle('transaction', [
          post(uuid(), newObservation(resultId, `Patient?identifier=${RESIDENT_ID}|${unique('nobody')}`)),
        ]),
      );
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      expect(expectOutcome(res.body).issue[0].diagnostics).toMatch(/matches 0 resources/);
      expect(await searchIds('Observation', { identifier: `${RESULT_ID}|${resultId}` })).toEqual([]);
      expect(await versionCount()).toBe(before);
    });

    test('is all or nothing: an invalid third entry rejects the bundle with its path and stores nothing', async () => {
      const residentId = unique('res');
      const [p, r, o1, o2] = [uuid(), uuid(), uuid(), uuid()];
      const [reportId, id1, id2] = [unique('rep'), unique('hgb'), unique('wbc')];
      const before = await versionCount();
      const res = await postBundle(
        bundle('transaction', [
          post(p, newPatient(residentId)),
          post(r, newReport(reportId, p, [o1, o2])),
          post(o1, newObservation(id1, p, { status: 'done' as Observation['status'] })),
          post(o2, newObservation(id2, p)),
        ]),
      );
      expect(res.status).toBe(400);
      const oo = expectOutcome(res.body);
      const problem = oo.issue.find((i) => i.expression?.includes('Bundle.entry[2].resource.status'));
      expect(problem, JSON.stringify(oo)).toBeDefined();
      expect(problem!.severity).toBe('error');
      expect(problem!.diagnostics).toContain("'done'");
      expect(problem!.diagnostics).toContain('final');

      expect(await searchIds('Patient', { identifier: `${RESIDENT_ID}|${residentId}` })).toEqual([]);
      expect(await searchIds('DiagnosticReport', { identifier: `${REPORT_ID}|${reportId}` })).toEqual([]);
      expect(await searchIds('Observation', { identifier: `${RESULT_ID}|${id2}` })).toEqual([]);
      expect(await versionCount()).toBe(before);
    });

    test('a profiled result whose performer resolves to a patient entry is refused (422) and nothing is written', async () => {
      // huren-observation: performer is Reference(Organization). A urn:uuid tells nothing until it is resolved.
      const residentId = unique('res');
      const p = uuid();
      const resultId = unique('hgb');
      const profiled = {
        ...hurenObservation(),
        identifier: [{ system: RESULT_ID, value: resultId }],
        subject: { reference: p },
        performer: [{ reference: p }],
      };
      delete profiled.id;
      const before = await versionCount();
      const res = await postBundle(bundle('transaction', [post(p, newPatient(residentId)), post(uuid(), profiled)]));
      expect(res.status).toBe(422);
      const problem = expectOutcome(res.body).issue.find((i) => i.severity === 'error');
      expect(problem?.expression).toEqual(['Bundle.entry[1].resource.performer[0]']);
      expect(problem?.diagnostics).toMatch(/Organization/);
      expect(await searchIds('Patient', { identifier: `${RESIDENT_ID}|${residentId}` })).toEqual([]);
      expect(await searchIds('Observation', { identifier: `${RESULT_ID}|${resultId}` })).toEqual([]);
      expect(await versionCount()).toBe(before);
    });

    test('a reference to a urn:uuid no entry has is refused (400) and nothing is written', async () => {
      const residentId = unique('res');
      const dangling = uuid();
      const before = await versionCount();
      const res = await postBundle(
        bundle('transaction', [
          post(uuid(), newPatient(residentId)),
          post(uuid(), newObservation(unique('x'), dangling)),
        ]),
      );
      expect(res.status).toBe(400);
      const oo = expectOutcome(res.body);
      expect(oo.issue[0].diagnostics).toContain(dangling);
      expect(oo.issue[0].expression).toEqual(['Bundle.entry[1].resource.subject']);
      expect(await searchIds('Patient', { identifier: `${RESIDENT_ID}|${residentId}` })).toEqual([]);
      expect(await versionCount()).toBe(before);
    });

    test('two entries changing the same resource are refused (400) and nothing is written', async () => {
      const id = unique('twice');
      const a = { ...newPatient(unique('res')), id };
      const b = { ...newPatient(unique('res')), id, gender: 'female' as const };
      const before = await versionCount();
      const res = await postBundle(bundle('transaction', [put(`Patient/${id}`, a), put(`Patient/${id}`, b)]));
      expect(res.status).toBe(400);
      expect(expectOutcome(res.body).issue[0].diagnostics).toContain(`Patient/${id}`);
      expect((await api().get(`/fhir/Patient/${id}`)).status).toBe(404);
      expect(await versionCount()).toBe(before);
    });

    test('an ifNoneExist with an unknown search parameter is refused, naming the entry to fix', async () => {
      const residentId = unique('res');
      const res = await postBundle(
        bundle('transaction', [post(uuid(), newPatient(residentId), `resident=${residentId}`)]),
      );
      expect(res.status).toBe(400);
      const issue = expectOutcome(res.body).issue[0];
      expect(issue.diagnostics).toContain("'resident'");
      expect(issue.expression?.[0]).toBe('Bundle.entry[0].request.ifNoneExist');
      expect(await searchIds('Patient', { identifier: `${RESIDENT_ID}|${residentId}` })).toEqual([]);
    });

    test('two conditional creates of the same patient in one bundle are refused promptly (400)', async () => {
      const residentId = unique('res');
      const condition = `identifier=${RESIDENT_ID}|${residentId}`;
      const res = await postBundle(
        bundle('transaction', [
          post(uuid(), newPatient(residentId), condition),
          post(uuid(), newPatient(residentId), condition),
        ]),
      );
      expect(res.status).toBe(400);
      expect(expectOutcome(res.body).issue[0].expression?.[0]).toMatch(/^Bundle\.entry\[1\]/);
      expect(await searchIds('Patient', { identifier: `${RESIDENT_ID}|${residentId}` })).toEqual([]);
    });

    test('a stale If-Match inside a transaction answers 412 and writes nothing', async () => {
      const id = unique('pat');
      const v1 = await api()
        .put(`/fhir/Patient/${id}`)
        .set('Content-Type', FHIR_JSON)
        .send({ ...newPatient(unique('res')), id });
      expect(v1.status).toBe(201);
      const v2 = await api()
        .put(`/fhir/Patient/${id}`)
        .set('Content-Type', FHIR_JSON)
        .send({ ...newPatient(unique('res')), id, gender: 'female' });
      expect(v2.headers.etag).toBe('W/"2"');
      const resultId = unique('hgb');
      const before = await versionCount();

      const stale: Patient = { ...newPatient(unique('res')), id, gender: 'other' };
      const res = await postBundle(
        bundle('transaction', [
          put(`Patient/${id}`, stale, { ifMatch: 'W/"1"' }),
          post(uuid(), newObservation(resultId, `Patient/${id}`)),
        ]),
      );
      expect(res.status).toBe(412);
      const issue = expectOutcome(res.body).issue[0];
      expect(issue.diagnostics).toMatch(/stale/);
      expect(issue.expression).toEqual(['Bundle.entry[0].request.ifMatch']);
      const current = await read<Patient>(`Patient/${id}`);
      expect(current.gender).toBe('female');
      expect(current.meta?.versionId).toBe('2');
      expect(await searchIds('Observation', { identifier: `${RESULT_ID}|${resultId}` })).toEqual([]);
      expect(await versionCount()).toBe(before);
    });

    test('a bundle refused after its conditional create was planned can be sent again at once', async () => {
      // The report's performer is not registered yet, so the bundle is refused after the patient's condition was
      // looked at; once the organization exists the same bundle must go through (not wait for, or trip over, the
      // first attempt).
      const residentId = unique('res');
      const uscc = unique('uscc');
      const p = uuid();
      const push = () =>
        bundle('transaction', [
          post(p, newPatient(residentId), `identifier=${RESIDENT_ID}|${residentId}`),
          post(
            uuid(),
            newObservation(unique('hgb'), p, {
              performer: [{ reference: `Organization?identifier=${USCC}|${uscc}` }],
            }),
          ),
        ]);
      const refused = await postBundle(push());
      expect(refused.status).toBe(412);
      expect(expectOutcome(refused.body).issue[0].diagnostics).toContain(uscc);
      expect(await searchIds('Patient', { identifier: `${RESIDENT_ID}|${residentId}` })).toEqual([]);

      const org = organization();
      delete org.id;
      const registered = await api()
        .post('/fhir/Organization')
        .set('Content-Type', FHIR_JSON)
        .send({ ...org, identifier: [{ system: USCC, value: uscc }] });
      expect(registered.status).toBe(201);

      const accepted = await postBundle(push());
      expect(accepted.status).toBe(200);
      const [pe, oe] = (accepted.body as Bundle).entry!;
      expect([pe.response!.status, oe.response!.status]).toEqual(['201 Created', '201 Created']);
      expect(await searchIds('Patient', { identifier: `${RESIDENT_ID}|${residentId}` })).toEqual([
        refOf(pe.response!.location).split('/')[1],
      ]);
      const obs = await read<Observation>(refOf(oe.response!.location));
      expect(obs.performer?.[0].reference).toBe(`Organization/${registered.body.id}`);
    });

    test('posting the same transaction twice leaves one copy of each resource, unchanged the second time', async () => {
      const residentId = unique('res');
      const [reportId, id1, id2] = [unique('rep'), unique('hgb'), unique('wbc')];
      const [p, r, o1, o2] = [uuid(), uuid(), uuid(), uuid()];
      const push = bundle('transaction', [
        post(p, newPatient(residentId), `identifier=${RESIDENT_ID}|${residentId}`),
        put(`DiagnosticReport?identifier=${REPORT_ID}|${reportId}`, newReport(reportId, p, [o1, o2]), { fullUrl: r }),
        put(`Observation?identifier=${RESULT_ID}|${id1}`, newObservation(id1, p), { fullUrl: o1 }),
        put(`Observation?identifier=${RESULT_ID}|${id2}`, newObservation(id2, p), { fullUrl: o2 }),
      ]);
      const first = await postBundle(structuredClone(push));
      expect(first.status).toBe(200);
      expect((first.body as Bundle).entry!.map((e) => e.response!.status)).toEqual([
        '201 Created',
        '201 Created',
        '201 Created',
        '201 Created',
      ]);
      const firstRefs = (first.body as Bundle).entry!.map((e) => refOf(e.response!.location));

      const again = await postBundle(structuredClone(push));
      expect(again.status).toBe(200);
      const entries = (again.body as Bundle).entry!;
      expect(entries.map((e) => e.response!.status)).toEqual(['200 OK', '200 OK', '200 OK', '200 OK']);
      expect(entries.map((e) => refOf(e.response!.location))).toEqual(firstRefs);
      expect(entries.map((e) => e.response!.etag)).toEqual(['W/"1"', 'W/"1"', 'W/"1"', 'W/"1"']);

      expect(await searchIds('Patient', { identifier: `${RESIDENT_ID}|${residentId}` })).toHaveLength(1);
      expect(await searchIds('DiagnosticReport', { identifier: `${REPORT_ID}|${reportId}` })).toHaveLength(1);
      expect(await searchIds('Observation', { identifier: `${RESULT_ID}|${id1}` })).toHaveLength(1);
      expect(await searchIds('Observation', { identifier: `${RESULT_ID}|${id2}` })).toHaveLength(1);
      for (const ref of firstRefs) {
        const history = await api().get(`/fhir/${ref}/_history`);
        expect((history.body as Bundle).entry, ref).toHaveLength(1);
      }
    });
  });

  describe('batch', () => {
    test('runs independent entries: a failing one gets a 4xx with an outcome, the others succeed', async () => {
      const residentId = unique('res');
      const badResult = unique('hgb');
      const res = await postBundle(
        bundle('batch', [
          post(uuid(), newPatient(residentId)),
          post(uuid(), newObservation(badResult, 'Patient/p-1001', { status: 'done' as Observation['status'] })),
          post(uuid(), newObservation(unique('hgb'), 'Patient/p-1001')),
        ]),
      );
      expect(res.status).toBe(200);
      const body = res.body as Bundle;
      expect(body.type).toBe('batch-response');
      const [ok1, failed, ok2] = body.entry!;
      expect(ok1.response!.status).toBe('201 Created');
      expect(ok2.response!.status).toBe('201 Created');
      expect(failed.response!.status).toMatch(/^4\d\d/);
      const oo = expectOutcome(failed.response!.outcome);
      expect(oo.issue[0].expression?.[0]).toMatch(/status$/);
      expect(oo.issue[0].diagnostics).toContain("'done'");

      expect(await searchIds('Patient', { identifier: `${RESIDENT_ID}|${residentId}` })).toEqual([
        refOf(ok1.response!.location).split('/')[1],
      ]);
      await read(refOf(ok2.response!.location));
      expect(await searchIds('Observation', { identifier: `${RESULT_ID}|${badResult}` })).toEqual([]);
    });

    test('answers GET entries with the resource read and the search result', async () => {
      const residentId = unique('res');
      const created = await api().post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(newPatient(residentId));
      expect(created.status).toBe(201);
      const res = await postBundle(
        bundle('batch', [
          { request: { method: 'GET', url: `Patient/${created.body.id}` } },
          { request: { method: 'GET', url: `Patient?identifier=${RESIDENT_ID}|${residentId}` } },
          { request: { method: 'GET', url: `Patient/${unique('missing')}` } },
          { request: { method: 'GET', url: 'Patient/%E0%A4%A' } },
        ]),
      );
      expect(res.status).toBe(200);
      const [readEntry, searchEntry, missing, garbled] = (res.body as Bundle).entry!;
      expect(readEntry.response!.status).toBe('200 OK');
      expect(readEntry.response!.etag).toBe('W/"1"');
      expect((readEntry.resource as Patient).identifier?.[0].value).toBe(residentId);
      expect(searchEntry.response!.status).toBe('200 OK');
      const found = searchEntry.resource as Bundle;
      expect(found.type).toBe('searchset');
      expect(found.entry?.map((e) => e.resource?.id)).toEqual([created.body.id]);
      expect(missing.response!.status).toMatch(/^404/);
      expectOutcome(missing.response!.outcome);
      expect(garbled.response!.status).toMatch(/^400/);
      expect(expectOutcome(garbled.response!.outcome).issue[0].expression).toEqual(['Bundle.entry[3].request.url']);
    });
  });

  describe('bundle checks', () => {
    test('a Bundle of type collection posted to the base is refused (400)', async () => {
      const residentId = unique('res');
      const res = await postBundle(bundle('collection', [{ fullUrl: uuid(), resource: newPatient(residentId) }]));
      expect(res.status).toBe(400);
      const oo = expectOutcome(res.body);
      expect(oo.issue[0].expression).toEqual(['Bundle.type']);
      expect(oo.issue[0].diagnostics).toMatch(/transaction.*batch/);
      expect(await searchIds('Patient', { identifier: `${RESIDENT_ID}|${residentId}` })).toEqual([]);
    });

    test('a bundle with more entries than HUREN_MAX_BUNDLE_ENTRIES is refused (413) and nothing is written', async () => {
      const small = await createTestApp('fhir-bundle-limit', { HUREN_MAX_BUNDLE_ENTRIES: '3' });
      try {
        const ids = [unique('res'), unique('res'), unique('res'), unique('res')];
        const over = await small
          .as('admin')
          .post('/fhir')
          .set('Content-Type', FHIR_JSON)
          .send(
            bundle(
              'transaction',
              ids.map((id) => post(uuid(), newPatient(id))),
            ),
          );
        expect(over.status).toBe(413);
        expect(expectOutcome(over.body).issue[0].diagnostics).toMatch(/4 entries.*at most 3/);
        const search = await small.as('admin').get('/fhir/Patient').query({ _total: 'accurate' });
        expect(search.body.total).toBe(0);

        const within = await small
          .as('admin')
          .post('/fhir')
          .set('Content-Type', FHIR_JSON)
          .send(
            bundle(
              'batch',
              ids.slice(0, 3).map((id) => post(uuid(), newPatient(id))),
            ),
          );
        expect(within.status).toBe(200);
      } finally {
        await small.close();
      }
    });
  });

  describe('conditional create race', () => {
    test('five parallel identical conditional creates create exactly one patient', async () => {
      const residentId = unique('res');
      const responses = await Promise.all(
        Array.from({ length: 5 }, () =>
          api()
            .post('/fhir/Patient')
            .set('Content-Type', FHIR_JSON)
            .set('If-None-Exist', `identifier=${RESIDENT_ID}|${residentId}`)
            .send(newPatient(residentId)),
        ),
      );
      expect(responses.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 201]);
      const ids = new Set(responses.map((r) => refOf(r.headers.location)));
      expect(ids.size).toBe(1);
      const found = await searchIds('Patient', { identifier: `${RESIDENT_ID}|${residentId}` });
      expect(found).toHaveLength(1);
      expect(`Patient/${found[0]}`).toBe([...ids][0]);
      const history = await api().get(`/fhir/Patient/${found[0]}/_history`);
      expect((history.body as Bundle).entry).toHaveLength(1);
    });
  });
});
