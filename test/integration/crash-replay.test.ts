import type { Bundle, DiagnosticReport, Observation, Patient, Resource } from 'fhir/r4';
import type { Db } from 'mongodb';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { CurrentDoc, HistoryDoc, IngestLogDoc, WriteOp } from '../../src/store/models.js';
import { stripMeta } from '../../src/store/resource-store.js';
import { hemoglobin, labReport, patient } from '../fixtures/validation/resources.js';
import { createTestApp, type TestApp } from '../support/app.js';

const FHIR_JSON = 'application/fhir+json';
const RESIDENT_ID = 'https://huren.example.org/fhir/sid/resident-id';
const RESULT_ID = 'https://huren.example.org/fhir/sid/qd-municipal/result';

let seq = 0;
const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;

function newPatient(id: string, residentId: string, overrides: Partial<Patient> = {}): Patient {
  const p = patient();
  delete p.meta;
  return { ...p, id, identifier: [{ system: RESIDENT_ID, value: residentId }], ...overrides };
}

function newObservation(id: string, resultId: string, subject: string, value = 136): Observation {
  const o = hemoglobin();
  return {
    ...o,
    id,
    identifier: [{ system: RESULT_ID, value: resultId }],
    subject: { reference: subject },
    valueQuantity: { ...o.valueQuantity, value },
  };
}

function newReport(id: string, subject: string, results: string[]): DiagnosticReport {
  const r = labReport();
  delete r.basedOn;
  return { ...r, id, subject: { reference: subject }, result: results.map((reference) => ({ reference })) };
}

const op = (method: WriteOp['method'], resource: Resource, prevVid: number): WriteOp => ({
  type: resource.resourceType,
  id: resource.id!,
  prevVid,
  method,
  resource: method === 'DELETE' ? null : stripMeta(resource, resource.id!),
});

const deleteOp = (type: string, id: string, prevVid: number): WriteOp => ({
  type,
  id,
  prevVid,
  method: 'DELETE',
  resource: null,
});

/** What a client can see of one resource: its current answer and every version in its history. */
async function snapshot(t: TestApp, ref: string) {
  const current = await t.as('admin').get(`/fhir/${ref}`);
  const history = await t.as('admin').get(`/fhir/${ref}/_history`);
  expect(history.status, `history of ${ref}`).toBe(200);
  return {
    status: current.status,
    etag: current.headers.etag as string | undefined,
    resource: current.status === 200 ? (current.body as Resource) : undefined,
    versions: ((history.body as Bundle).entry ?? []).map((e) => ({
      method: e.request?.method,
      vid: e.response?.etag,
      resource: e.resource,
    })),
  };
}

describe('crash recovery: nothing accepted is lost', () => {
  let t: TestApp;
  const restarted: TestApp[] = [];
  const api = () => t.as('admin');
  const db = (): Db => t.deps.connection.db!;

  /** A new broker process on the same database: createServices replays the ingest log before serving. */
  async function restart(): Promise<TestApp> {
    const next = await createTestApp('crash-replay', {}, { dbName: t.dbName, keepDatabase: true });
    restarted.push(next);
    return next;
  }

  async function put(resource: Resource): Promise<void> {
    const res = await api()
      .put(`/fhir/${resource.resourceType}/${resource.id}`)
      .set('Content-Type', FHIR_JSON)
      .send(resource);
    expect(res.status, res.text).toBeLessThan(300);
  }

  /** The ingest-log entry a crash left behind: accepted (written) but not, or not completely, projected. */
  async function leaveInLog(
    ops: WriteOp[],
    createdAt = new Date(),
    id: string = crypto.randomUUID(),
  ): Promise<{ _id: string; createdAt: Date; ops: WriteOp[] }> {
    const entry = { _id: id, state: 'pending' as const, createdAt, ops };
    const stored: IngestLogDoc = { _id: id, state: 'pending', createdAt, opsJson: JSON.stringify(ops) };
    await db().collection<IngestLogDoc>('ingest_log').insertOne(stored);
    return entry;
  }

  beforeAll(async () => {
    t = await createTestApp('crash-replay');
  });
  afterAll(async () => {
    for (const app of restarted) await app.close();
    await t.close();
  });

  test('a transaction accepted but never projected is applied at start-up, each version exactly once', async () => {
    // Before the crash: a patient at version 1 and a result that the crashed transaction deletes.
    const [pid, oldObs, newObs, rid] = [unique('pat'), unique('obs'), unique('obs'), unique('dr')];
    const residentId = unique('res');
    await put(newPatient(pid, residentId));
    await put(newObservation(oldObs, unique('hgb'), `Patient/${pid}`));

    const acceptedAt = new Date();
    const entry = await leaveInLog(
      [
        op('PUT', newPatient(pid, residentId, { gender: 'female' }), 1),
        op('POST', newObservation(newObs, unique('hgb'), `Patient/${pid}`, 141), 0),
        op('POST', newReport(rid, `Patient/${pid}`, [`Observation/${newObs}`]), 0),
        deleteOp('Observation', oldObs, 1),
      ],
      acceptedAt,
    );

    const after = await restart();
    const patientNow = await snapshot(after, `Patient/${pid}`);
    expect(patientNow.etag).toBe('W/"2"');
    expect((patientNow.resource as Patient).gender).toBe('female');
    expect(patientNow.resource!.meta!.lastUpdated).toBe(acceptedAt.toISOString());
    expect(patientNow.versions.map((v) => v.vid)).toEqual(['W/"2"', 'W/"1"']);

    const obsNow = await snapshot(after, `Observation/${newObs}`);
    expect(obsNow.etag).toBe('W/"1"');
    expect((obsNow.resource as Observation).valueQuantity?.value).toBe(141);
    expect(obsNow.versions).toHaveLength(1);

    const reportNow = await snapshot(after, `DiagnosticReport/${rid}`);
    expect(reportNow.etag).toBe('W/"1"');
    expect((reportNow.resource as DiagnosticReport).result?.[0].reference).toBe(`Observation/${newObs}`);
    expect(reportNow.versions).toHaveLength(1);

    const deleted = await snapshot(after, `Observation/${oldObs}`);
    expect(deleted.status).toBe(410);
    expect(deleted.versions.map((v) => [v.method, v.vid])).toEqual([
      ['DELETE', 'W/"2"'],
      ['PUT', 'W/"1"'],
    ]);

    const search = await after
      .as('admin')
      .get('/fhir/Observation')
      .query({ subject: `Patient/${pid}` });
    expect(((search.body as Bundle).entry ?? []).map((e) => e.resource?.id)).toEqual([newObs]);
    expect(
      await db()
        .collection('ingest_log')
        .countDocuments({ _id: entry._id as never }),
    ).toBe(0);
    const metrics = await after.as('admin').get('/metrics');
    expect(metrics.text).toMatch(/^huren_ingest_replayed_total 1$/m);

    // A crash after projecting but before the log entry was removed replays it once more: nothing changes.
    await leaveInLog(entry.ops, acceptedAt, entry._id);
    const again = await restart();
    for (const ref of [`Patient/${pid}`, `Observation/${newObs}`, `DiagnosticReport/${rid}`, `Observation/${oldObs}`]) {
      expect(await snapshot(again, ref), ref).toEqual(await snapshot(after, ref));
    }
    expect(patientNow).toEqual(await snapshot(again, `Patient/${pid}`));
    expect(await db().collection('ingest_log').countDocuments()).toBe(0);
  });

  test('a transaction interrupted half-way through projecting is completed at start-up without duplicates', async () => {
    const [p, o1, o2, r] = [1, 2, 3, 4].map(() => `urn:uuid:${crypto.randomUUID()}`);
    const residentId = unique('res');
    const [hgb, plt] = [unique('hgb'), unique('plt')];
    const res = await api()
      .post('/fhir')
      .set('Content-Type', FHIR_JSON)
      .send({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          {
            fullUrl: p,
            resource: { ...newPatient('x', residentId), id: undefined },
            request: { method: 'POST', url: 'Patient' },
          },
          {
            fullUrl: r,
            resource: { ...newReport('x', p, [o1, o2]), id: undefined },
            request: { method: 'POST', url: 'DiagnosticReport' },
          },
          {
            fullUrl: o1,
            resource: { ...newObservation('x', hgb, p), id: undefined },
            request: { method: 'POST', url: 'Observation' },
          },
          {
            fullUrl: o2,
            resource: { ...newObservation('x', plt, p, 250), id: undefined },
            request: { method: 'POST', url: 'Observation' },
          },
        ],
      } satisfies Bundle);
    expect(res.status, res.text).toBe(200);
    const refs = (res.body as Bundle).entry!.map(
      (e) => /\/fhir\/(\w+\/[\w.-]+)\/_history/.exec(e.response!.location!)![1],
    );
    const before = await Promise.all(refs.map((ref) => snapshot(t, ref)));

    // Rebuild the crash: the transaction's log entry is back, its first op fully projected, the second one written
    // to `resources` but not yet to `history`, the last two not projected at all.
    const resources = db().collection<CurrentDoc>('resources');
    const history = db().collection<HistoryDoc>('history');
    const docs = await Promise.all(refs.map((ref) => resources.findOne({ _id: ref })));
    const txn = docs[0]!.txn;
    expect(docs.every((d) => d?.txn === txn)).toBe(true);
    const ops = docs.map((d) => op('POST', d!.resource!, 0));
    await history.deleteOne({ _id: `${refs[1]}/1` });
    for (const ref of refs.slice(2)) {
      await resources.deleteOne({ _id: ref });
      await history.deleteOne({ _id: `${ref}/1` });
    }
    await leaveInLog(ops, docs[0]!.lastUpdated, txn);
    expect((await api().get(`/fhir/${refs[3]}`)).status).toBe(404); // what a crash would have left

    const after = await restart();
    const now = await Promise.all(refs.map((ref) => snapshot(after, ref)));
    expect(now).toEqual(before);
    for (const s of now) {
      expect(s.etag).toBe('W/"1"');
      expect(s.versions).toHaveLength(1);
    }
    const patients = await after
      .as('admin')
      .get('/fhir/Patient')
      .query({ identifier: `${RESIDENT_ID}|${residentId}` });
    expect(((patients.body as Bundle).entry ?? []).map((e) => `Patient/${e.resource?.id}`)).toEqual([refs[0]]);
    for (const value of [hgb, plt]) {
      const found = await after
        .as('admin')
        .get('/fhir/Observation')
        .query({ identifier: `${RESULT_ID}|${value}` });
      expect((found.body as Bundle).entry ?? [], value).toHaveLength(1);
    }
    expect((now[1].resource as DiagnosticReport).result?.map((x) => x.reference)).toEqual([refs[2], refs[3]]);
  });

  test('an accepted update replayed after another write landed keeps both versions', async () => {
    const pid = unique('pat');
    const residentId = unique('res');
    await put(newPatient(pid, residentId));
    // Accepted against version 1, then the process died; meanwhile (another broker process) version 2 was written.
    await leaveInLog([op('PUT', newPatient(pid, residentId, { gender: 'female' }), 1)]);
    await put(newPatient(pid, residentId, { gender: 'other' }));

    const after = await restart();
    const now = await snapshot(after, `Patient/${pid}`);
    expect(now.versions.map((v) => v.vid)).toEqual(['W/"3"', 'W/"2"', 'W/"1"']);
    expect(now.versions.map((v) => (v.resource as Patient).gender)).toEqual(['female', 'other', 'male']);
    expect(now.etag).toBe('W/"3"');
  });

  test('two parallel updates of one resource without If-Match both land: versions 2 and 3, the last current', async () => {
    const pid = unique('pat');
    const residentId = unique('res');
    await put(newPatient(pid, residentId));
    const [a, b] = await Promise.all(
      (['female', 'other'] as const).map((gender) =>
        api()
          .put(`/fhir/Patient/${pid}`)
          .set('Content-Type', FHIR_JSON)
          .send(newPatient(pid, residentId, { gender })),
      ),
    );
    expect([a.status, b.status]).toEqual([200, 200]);
    expect([a.headers.etag, b.headers.etag].sort()).toEqual(['W/"2"', 'W/"3"']);
    const last = a.headers.etag === 'W/"3"' ? a : b;

    const now = await snapshot(t, `Patient/${pid}`);
    expect(now.versions.map((v) => v.vid)).toEqual(['W/"3"', 'W/"2"', 'W/"1"']);
    expect(new Set(now.versions.slice(0, 2).map((v) => (v.resource as Patient).gender))).toEqual(
      new Set(['female', 'other']),
    );
    expect(now.etag).toBe('W/"3"');
    expect((now.resource as Patient).gender).toBe((last.body as Patient).gender);
  });
  test('five parallel updates of one resource all land, each with its own version', async () => {
    const pid = unique('pat');
    const residentId = unique('res');
    await put(newPatient(pid, residentId));
    const names = ['甲', '乙', '丙', '丁', '戊'];
    const responses = await Promise.all(
      names.map((text) =>
        api()
          .put(`/fhir/Patient/${pid}`)
          .set('Content-Type', FHIR_JSON)
          .send(newPatient(pid, residentId, { name: [{ text }] })),
      ),
    );
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(responses.map((r) => r.headers.etag).sort()).toEqual(['W/"2"', 'W/"3"', 'W/"4"', 'W/"5"', 'W/"6"']);

    const now = await snapshot(t, `Patient/${pid}`);
    expect(now.versions.map((v) => v.vid)).toEqual(['W/"6"', 'W/"5"', 'W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']);
    // Every accepted name is in history under the version its writer was told.
    for (const r of responses) {
      const version = now.versions.find((v) => v.vid === r.headers.etag);
      expect((version?.resource as Patient).name?.[0].text).toBe((r.body as Patient).name?.[0].text);
    }
    expect(now.etag).toBe('W/"6"');
    expect(now.resource).toEqual(now.versions[0].resource);
  });
});
