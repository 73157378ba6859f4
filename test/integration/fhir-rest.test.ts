import type { Observation, Patient } from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.js';

const FHIR_JSON = 'application/fhir+json';
const ID_CARD = 'urn:oid:2.16.156.10011.1.1';

function observation(overrides: Partial<Observation> = {}): Observation {
  return {
    resourceType: 'Observation',
    identifier: [{ system: 'urn:huren:test:lis', value: `obs-${Math.random().toString(36).slice(2)}` }],
    status: 'final',
    category: [
      { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] },
    ],
    code: { coding: [{ system: 'http://loinc.org', code: '718-7', display: 'Hemoglobin [Mass/volume] in Blood' }] },
    subject: { reference: 'Patient/p1' },
    effectiveDateTime: '2026-11-20T08:30:00+08:00',
    valueQuantity: { value: 135, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' },
    ...overrides,
  } satisfies Observation;
}

describe('FHIR REST interactions', () => {
  let t: TestApp;
  const api = () => t.as('admin');

  beforeAll(async () => {
    t = await createTestApp('fhir-rest');
  });
  afterAll(async () => {
    await t.close();
  });

  test('create returns 201 with Location, ETag and the stored resource with server-assigned meta', async () => {
    const res = await api().post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation());
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toContain(FHIR_JSON);
    expect(res.headers.etag).toBe('W/"1"');
    expect(res.headers.location).toMatch(/^http:\/\/huren\.test\/fhir\/Observation\/[\w-]+\/_history\/1$/);
    expect(res.body.meta.versionId).toBe('1');
    expect(new Date(res.body.meta.lastUpdated).getTime()).toBeGreaterThan(Date.now() - 60000);
    const read = await api().get(`/fhir/Observation/${res.body.id}`);
    expect(read.status).toBe(200);
    expect(read.body.valueQuantity.value).toBe(135);
    expect(read.headers.etag).toBe('W/"1"');
  });

  test('a client-supplied id on create is replaced by a server id', async () => {
    const res = await api()
      .post('/fhir/Observation')
      .set('Content-Type', FHIR_JSON)
      .send({ ...observation(), id: 'mine' });
    expect(res.status).toBe(201);
    expect(res.body.id).not.toBe('mine');
  });

  test('update creates a new version; vread returns each version; history lists them newest first', async () => {
    const created = await api().post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation());
    const id = created.body.id as string;
    const v2 = await api()
      .put(`/fhir/Observation/${id}`)
      .set('Content-Type', FHIR_JSON)
      .set('If-Match', 'W/"1"')
      .send({ ...created.body, status: 'amended', valueQuantity: { ...created.body.valueQuantity, value: 128 } });
    expect(v2.status).toBe(200);
    expect(v2.headers.etag).toBe('W/"2"');
    expect(v2.body.meta.versionId).toBe('2');

    expect((await api().get(`/fhir/Observation/${id}/_history/1`)).body.valueQuantity.value).toBe(135);
    expect((await api().get(`/fhir/Observation/${id}/_history/2`)).body.valueQuantity.value).toBe(128);
    expect((await api().get(`/fhir/Observation/${id}/_history/3`)).status).toBe(404);

    const hist = await api().get(`/fhir/Observation/${id}/_history`);
    expect(hist.body.type).toBe('history');
    expect(hist.body.entry.map((e: { resource: Observation }) => e.resource.meta?.versionId)).toEqual(['2', '1']);
    expect(hist.body.entry[1].request).toEqual({ method: 'POST', url: 'Observation' });
  });

  test('an update with a stale If-Match is refused with 412 and changes nothing', async () => {
    const created = await api().post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation());
    const id = created.body.id as string;
    await api()
      .put(`/fhir/Observation/${id}`)
      .set('Content-Type', FHIR_JSON)
      .send({ ...created.body, status: 'amended' });
    const stale = await api()
      .put(`/fhir/Observation/${id}`)
      .set('Content-Type', FHIR_JSON)
      .set('If-Match', 'W/"1"')
      .send({ ...created.body, status: 'corrected' });
    expect(stale.status).toBe(412);
    expect(stale.body.resourceType).toBe('OperationOutcome');
    expect(stale.body.issue[0].diagnostics).toMatch(/stale.*version 2/);
    expect((await api().get(`/fhir/Observation/${id}`)).body.status).toBe('amended');
  });

  test('of two parallel updates with the same If-Match, one wins and the other gets 412', async () => {
    const created = await api().post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation());
    const id = created.body.id as string;
    const [a, b] = await Promise.all(
      ['amended', 'corrected'].map((status) =>
        api()
          .put(`/fhir/Observation/${id}`)
          .set('Content-Type', FHIR_JSON)
          .set('If-Match', 'W/"1"')
          .send({ ...created.body, status }),
      ),
    );
    expect([a.status, b.status].sort()).toEqual([200, 412]);
    const winner = a.status === 200 ? a : b;
    const hist = await api().get(`/fhir/Observation/${id}/_history`);
    expect(hist.body.entry).toHaveLength(2);
    expect((await api().get(`/fhir/Observation/${id}`)).body.status).toBe(winner.body.status);
  });

  test('POST _search with a form body ANDs repeated parameters like GET does', async () => {
    const ident = `form-${Date.now()}`;
    for (const day of ['01', '10', '20']) {
      await api()
        .post('/fhir/Observation')
        .set('Content-Type', FHIR_JSON)
        .send(
          observation({
            identifier: [{ system: 'urn:huren:test:form', value: `${ident}-${day}` }],
            effectiveDateTime: `2024-03-${day}T08:00:00+08:00`,
          }),
        );
    }
    const res = await api()
      .post('/fhir/Observation/_search')
      .type('form')
      .send(
        `identifier=urn:huren:test:form|${ident}-01,urn:huren:test:form|${ident}-10,urn:huren:test:form|${ident}-20&date=ge2024-03-05&date=lt2024-03-15&_total=accurate`,
      );
    expect(res.status).toBe(200);
    expect(res.body.total).toBe(1);
    expect(res.body.entry[0].resource.effectiveDateTime).toBe('2024-03-10T08:00:00+08:00');
  });

  test('pushing identical content again keeps the current version (duplicate push)', async () => {
    const created = await api().post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation());
    const again = await api()
      .put(`/fhir/Observation/${created.body.id}`)
      .set('Content-Type', FHIR_JSON)
      .send(created.body);
    expect(again.status).toBe(200);
    expect(again.headers.etag).toBe('W/"1"');
    const hist = await api().get(`/fhir/Observation/${created.body.id}/_history`);
    expect(hist.body.entry).toHaveLength(1);
  });

  test('update to a new id creates the resource (update as create) with 201', async () => {
    const res = await api()
      .put('/fhir/Patient/pat-new-1')
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Patient', id: 'pat-new-1', gender: 'female' } satisfies Patient);
    expect(res.status).toBe(201);
    expect(res.body.meta.versionId).toBe('1');
  });

  test('delete makes the resource gone (410) while its versions stay readable; deleting again is fine', async () => {
    const created = await api().post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(observation());
    const id = created.body.id as string;
    const del = await api().delete(`/fhir/Observation/${id}`);
    expect(del.status).toBe(200);
    expect(del.body.resourceType).toBe('OperationOutcome');
    const read = await api().get(`/fhir/Observation/${id}`);
    expect(read.status).toBe(410);
    expect(read.body.resourceType).toBe('OperationOutcome');
    expect((await api().get(`/fhir/Observation/${id}/_history/1`)).status).toBe(200);
    const hist = await api().get(`/fhir/Observation/${id}/_history`);
    expect(hist.body.entry[0].request.method).toBe('DELETE');
    expect((await api().delete(`/fhir/Observation/${id}`)).status).toBe(200);
    // A new version may be written over the tombstone.
    const revived = await api()
      .put(`/fhir/Observation/${id}`)
      .set('Content-Type', FHIR_JSON)
      .send({ ...observation(), id });
    expect(revived.status).toBe(201);
    expect(revived.body.meta.versionId).toBe('3');
  });

  test('reading an unknown resource is 404 with an OperationOutcome', async () => {
    const res = await api().get('/fhir/Observation/does-not-exist');
    expect(res.status).toBe(404);
    expect(res.body.issue[0].code).toBe('not-found');
  });

  test('conditional create with If-None-Exist returns the existing resource instead of a copy', async () => {
    const identifier = [{ system: ID_CARD, value: '370202199001011237' }];
    const first = await api()
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .set('If-None-Exist', `identifier=${ID_CARD}|370202199001011237`)
      .send({ resourceType: 'Patient', identifier });
    expect(first.status).toBe(201);
    const second = await api()
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .set('If-None-Exist', `identifier=${ID_CARD}|370202199001011237`)
      .send({ resourceType: 'Patient', identifier, gender: 'male' });
    expect(second.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);
    const found = await api().get(`/fhir/Patient?identifier=${ID_CARD}|370202199001011237&_total=accurate`);
    expect(found.body.total).toBe(1);
  });

  test('parallel identical conditional creates make exactly one resource', async () => {
    const identifier = [{ system: ID_CARD, value: '370202198502020014' }];
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        api()
          .post('/fhir/Patient')
          .set('Content-Type', FHIR_JSON)
          .set('If-None-Exist', `identifier=${ID_CARD}|370202198502020014`)
          .send({ resourceType: 'Patient', identifier }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 201]);
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
    const found = await api().get(`/fhir/Patient?identifier=${ID_CARD}|370202198502020014&_total=accurate`);
    expect(found.body.total).toBe(1);
  });

  test('50 identical conditional creates at once make exactly one resource, and none is refused', async () => {
    const value = '370202198502020022';
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        api()
          .post('/fhir/Patient')
          .set('Content-Type', FHIR_JSON)
          .set('If-None-Exist', `identifier=${ID_CARD}|${value}`)
          .send({ resourceType: 'Patient', identifier: [{ system: ID_CARD, value }] }),
      ),
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(results.filter((r) => r.status === 200)).toHaveLength(49);
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
    const found = await api().get(`/fhir/Patient?identifier=${ID_CARD}|${value}&_total=accurate`);
    expect(found.body.total).toBe(1);
  });

  test('a claim whose owner stopped renewing it (a crash) is taken over: the create goes through', async () => {
    const value = '370202198502020049';
    const condition = `identifier=${ID_CARD}|${value}`;
    // What a process killed between claiming and writing leaves: a claim whose lease ran out, and no write.
    await t.deps.connection.db!.collection('conditional_claims').insertOne({
      _id: `Patient?${condition}` as never,
      ref: 'Patient/never-written',
      createdAt: new Date(Date.now() - 60_000),
      until: new Date(Date.now() - 30_000),
    });
    const res = await api()
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .set('If-None-Exist', condition)
      .send({ resourceType: 'Patient', identifier: [{ system: ID_CARD, value }] });
    expect(res.status).toBe(201);
    expect(res.body.id).not.toBe('never-written');
  });

  test('conditional update by identifier creates, then updates the same resource', async () => {
    const ident = { system: 'urn:huren:test:lis', value: 'lis-cond-1' };
    const url = `/fhir/Observation?identifier=${ident.system}|${ident.value}`;
    const created = await api()
      .put(url)
      .set('Content-Type', FHIR_JSON)
      .send(observation({ identifier: [ident] }));
    expect(created.status).toBe(201);
    const updated = await api()
      .put(url)
      .set('Content-Type', FHIR_JSON)
      .send(observation({ identifier: [ident], status: 'amended' }));
    expect(updated.status).toBe(200);
    expect(updated.body.id).toBe(created.body.id);
    expect(updated.body.meta.versionId).toBe('2');
  });

  test('conditional update matching several resources is refused with 412', async () => {
    const ident = { system: 'urn:huren:test:lis', value: 'shared-ident' };
    for (let i = 0; i < 2; i++) {
      await api()
        .post('/fhir/Observation')
        .set('Content-Type', FHIR_JSON)
        .send(observation({ identifier: [ident] }));
    }
    const res = await api()
      .put(`/fhir/Observation?identifier=${ident.system}|${ident.value}`)
      .set('Content-Type', FHIR_JSON)
      .send(observation({ identifier: [ident] }));
    expect(res.status).toBe(412);
    expect(res.body.issue[0].code).toBe('multiple-matches');
  });

  test('Prefer return=minimal answers without a body; return=OperationOutcome with an outcome', async () => {
    const minimal = await api()
      .post('/fhir/Observation')
      .set('Content-Type', FHIR_JSON)
      .set('Prefer', 'return=minimal')
      .send(observation());
    expect(minimal.status).toBe(201);
    expect(minimal.text).toBe('');
    expect(minimal.headers.location).toContain('/fhir/Observation/');
    const oo = await api()
      .post('/fhir/Observation')
      .set('Content-Type', FHIR_JSON)
      .set('Prefer', 'return=OperationOutcome')
      .send(observation());
    expect(oo.status).toBe(201);
    expect(oo.body.resourceType).toBe('OperationOutcome');
  });

  test('plain application/json is accepted and _format=json is honoured', async () => {
    const res = await api()
      .post('/fhir/Observation?_format=json')
      .set('Content-Type', 'application/json')
      .send(observation());
    expect(res.status).toBe(201);
  });

  test('type history lists creates across resources, paged with link.next', async () => {
    const res = await api().get('/fhir/Observation/_history?_count=2');
    expect(res.status).toBe(200);
    expect(res.body.entry).toHaveLength(2);
    const next = res.body.link.find((l: { relation: string }) => l.relation === 'next');
    expect(next).toBeDefined();
    const page2 = await api().get(new URL(next.url).pathname + new URL(next.url).search);
    expect(page2.status).toBe(200);
    const ids1 = res.body.entry.map(
      (e: { response: { etag: string }; fullUrl: string }) => e.fullUrl + e.response.etag,
    );
    const ids2 = page2.body.entry.map(
      (e: { response: { etag: string }; fullUrl: string }) => e.fullUrl + e.response.etag,
    );
    expect(ids1.filter((x: string) => ids2.includes(x))).toEqual([]);
  });

  test('methods an endpoint does not support answer 405 with Allow', async () => {
    const res = await api().patch('/fhir/Observation/x').set('Content-Type', FHIR_JSON).send('{}');
    expect(res.status).toBe(405);
    expect(res.headers.allow).toContain('GET');
    expect(res.body.resourceType).toBe('OperationOutcome');
  });
});
