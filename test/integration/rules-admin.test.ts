import type { OperationOutcome, Parameters, ParametersParameter } from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { RulesStore } from '../../src/recognition/rules-store.js';
import { SEED_DIR } from '../../src/services.js';
import { createTestApp, type TestApp } from '../support/app.js';
import {
  B_LOCAL,
  FHIR_JSON,
  HOSPITAL_B,
  ID_CARD,
  LOINC,
  daysAgo,
  finalReport,
  patientWithId,
} from '../fixtures/recognition.js';

const ID_NUMBER = '11010519491231002X';
/** Test apps poll the rules this often, so a second instance sees an edit quickly. */
const POLL_MS = 200;

interface CatalogueJson {
  items: { code: string; validityDays: number }[];
}
interface LocalCodesJson {
  maps: { institution: string; codes: { code: string; display?: string; targets: string[] }[] }[];
}

const patient = patientWithId('ra-patient', ID_NUMBER);

/** A CBC of hospital A taken 10 days ago: too old for the seeded 7-day window. */
const cbc = finalReport('ra-cbc', 'ra-patient', '57021-8', daysAgo(10));

const checkBody = (system: string, code: string): Parameters => ({
  resourceType: 'Parameters',
  parameter: [
    { name: 'patient', valueIdentifier: { system: ID_CARD, value: ID_NUMBER } },
    { name: 'code', valueCoding: { system, code } },
    { name: 'requester', valueReference: { reference: HOSPITAL_B } },
  ],
});

/** The decision of the single outcome of a check. */
async function decisionOf(app: TestApp, system: string, code: string): Promise<string | undefined> {
  const res = await app
    .as('clinician')
    .post('/fhir/$reuse-check')
    .set('Content-Type', FHIR_JSON)
    .send(checkBody(system, code));
  expect(res.status, res.text).toBe(200);
  const outcome = (res.body as Parameters).parameter?.find((p) => p.name === 'outcome');
  return outcome?.part?.find((p: ParametersParameter) => p.name === 'decision')?.valueCode;
}

describe('recognition rules administration', () => {
  let t: TestApp;

  const getPart = async (part: string) => {
    const res = await t.as('admin').get(`/admin/rules/${part}`);
    expect(res.status, res.text).toBe(200);
    return { json: res.body as unknown, etag: res.headers.etag as string };
  };
  const putPart = (part: string, body: unknown, ifMatch?: string) => {
    const req = t.as('admin').put(`/admin/rules/${part}`).set('Content-Type', 'application/json');
    if (ifMatch) req.set('If-Match', ifMatch);
    return req.send(JSON.stringify(body));
  };

  beforeAll(async () => {
    t = await createTestApp('rules-admin', { HUREN_RULES_POLL_MS: String(POLL_MS) });
    for (const r of [patient, cbc]) {
      const res = await t.as('his').put(`/fhir/${r.resourceType}/${r.id}`).set('Content-Type', FHIR_JSON).send(r);
      expect([200, 201], res.text).toContain(res.status);
    }
  });
  afterAll(async () => {
    await t.close();
  });

  test('an administrator reads the current version, its parts and a part with its ETag', async () => {
    const res = await t.as('admin').get('/admin/rules');
    expect(res.status, res.text).toBe(200);
    expect(res.headers.etag).toBe('W/"1"');
    expect(res.body).toMatchObject({
      version: 1,
      changedBy: 'seed',
      changedParts: expect.arrayContaining(['catalogue']),
    });
    expect(Object.keys(res.body.parts as object).sort()).toEqual([
      'acceptance-matrix',
      'catalogue',
      'decline-reasons',
      'institutions',
      'local-codes',
    ]);
    expect(res.body.parts.catalogue).toMatchObject({ version: 1, url: '/admin/rules/catalogue' });
    const { json, etag } = await getPart('catalogue');
    expect(etag).toBe('W/"1"');
    expect((json as CatalogueJson).items.find((i) => i.code === 'HR-LAB-CBC')?.validityDays).toBe(7);
  });

  test('without a token 401, and only the admin role may read or change the rules (403)', async () => {
    const anonymous = await t.as('admin').get('/admin/rules').set('Authorization', '');
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.resourceType).toBe('OperationOutcome');
    for (const who of ['his', 'clinician', 'bureau']) {
      const read = await t.as(who).get('/admin/rules/catalogue');
      expect(read.status, who).toBe(403);
      expect((read.body as OperationOutcome).issue[0]?.code).toBe('forbidden');
      const write = await t.as(who).put('/admin/rules/catalogue').set('If-Match', 'W/"1"').send({});
      expect(write.status, who).toBe(403);
    }
  });

  test('an unknown part is a 404 OperationOutcome naming the parts', async () => {
    const res = await t.as('admin').get('/admin/rules/prices');
    expect(res.status).toBe(404);
    expect((res.body as OperationOutcome).issue[0]?.diagnostics).toContain('local-codes');
  });

  test('a change without If-Match is refused (428), with a stale one 412; nothing is saved', async () => {
    const { json } = await getPart('catalogue');
    const changed = structuredClone(json) as CatalogueJson;
    changed.items[0]!.validityDays += 1;
    const missing = await putPart('catalogue', changed);
    expect(missing.status).toBe(428);
    expect((missing.body as OperationOutcome).issue[0]?.expression).toEqual(['If-Match']);
    const stale = await putPart('catalogue', changed, 'W/"0"');
    expect(stale.status).toBe(412);
    expect((stale.body as OperationOutcome).issue[0]?.diagnostics).toContain('version 1');
    expect((await t.as('admin').get('/admin/rules')).body.version).toBe(1);
  });

  test('rules that do not hold are refused with 422 listing every problem; nothing is saved', async () => {
    const { json, etag } = await getPart('catalogue');
    const broken = structuredClone(json) as { items: Record<string, unknown>[] };
    broken.items[0]!.validityDays = 'seven';
    broken.items[1]!.validityDays = -1;
    const res = await putPart('catalogue', broken, etag);
    expect(res.status, res.text).toBe(422);
    const issues = (res.body as OperationOutcome).issue;
    expect(issues.length).toBeGreaterThanOrEqual(2);
    expect(issues.map((i) => i.expression?.[0])).toEqual(
      expect.arrayContaining(['catalogue/items/0/validityDays', 'catalogue/items/1/validityDays']),
    );
    // Checked together with the other parts: a local code naming an item that does not exist.
    const codes = (await getPart('local-codes')).json as LocalCodesJson;
    codes.maps[0]!.codes.push({ code: 'NOPE', targets: ['HR-LAB-NO-SUCH-ITEM'] });
    const cross = await putPart('local-codes', codes, etag);
    expect(cross.status).toBe(422);
    expect(JSON.stringify(cross.body)).toContain('HR-LAB-NO-SUCH-ITEM');
    const bad = await t
      .as('admin')
      .put('/admin/rules/catalogue')
      .set('If-Match', etag)
      .type('json')
      .send('{"items": [');
    expect(bad.status).toBe(400);
    expect((await t.as('admin').get('/admin/rules')).body.version).toBe(1);
  });

  test('a longer CBC window saved by an administrator changes the next $reuse-check at once', async () => {
    expect(await decisionOf(t, LOINC, '57021-8')).toBe('expired');
    const { json, etag } = await getPart('catalogue');
    const catalogue = json as CatalogueJson;
    catalogue.items.find((i) => i.code === 'HR-LAB-CBC')!.validityDays = 14;
    const res = await putPart('catalogue', catalogue, etag);
    expect(res.status, res.text).toBe(200);
    expect(res.headers.etag).toBe('W/"2"');
    expect(res.body).toMatchObject({ version: 2, changedParts: ['catalogue'], changedBy: 'demo-admin' });
    expect(await decisionOf(t, LOINC, '57021-8')).toBe('reusable');
    // The old ETag is stale now for another change.
    catalogue.items.find((i) => i.code === 'HR-LAB-CBC')!.validityDays = 15;
    expect((await putPart('catalogue', catalogue, etag)).status).toBe(412);
  });

  test('saving identical content makes no new version: 200 with the current ETag', async () => {
    const before = (await t.as('admin').get('/admin/rules')).body.version as number;
    const { json, etag } = await getPart('catalogue');
    // Key order and formatting do not matter: the same JSON is the same content.
    const reordered = Object.fromEntries(Object.entries(json as object).reverse());
    const res = await putPart('catalogue', reordered, etag);
    expect(res.status, res.text).toBe(200);
    expect(res.headers.etag).toBe(etag);
    expect(res.body).toMatchObject({ changed: false, version: before });
    // A retried save whose first attempt succeeded (its ETag now stale) is answered the same way.
    expect((await putPart('catalogue', json, 'W/"1"')).status).toBe(200);
    expect((await t.as('admin').get('/admin/rules/_history')).body.versions[0].version).toBe(before);
  });

  test('the fact index is re-projected in the background and its progress shown', async () => {
    await t.deps.rules.reindexing;
    const res = await t.as('admin').get('/admin/rules');
    expect(res.body.reindex).toMatchObject({ state: 'done', done: 1, total: 1 });
    expect(res.body.parts.catalogue.version).toBe(2);
    expect(res.body.parts.institutions.version).toBe(1);
  });

  test('a second broker process on the same database picks up a local code added by the first', async () => {
    const second = await createTestApp(
      'rules-admin-2',
      { HUREN_RULES_POLL_MS: String(POLL_MS) },
      {
        dbName: t.dbName,
        keepDatabase: true,
      },
    );
    try {
      expect(await decisionOf(second, LOINC, '57021-8')).toBe('reusable'); // version 2 at its start
      const before = await second
        .as('clinician')
        .post('/fhir/$reuse-check')
        .set('Content-Type', FHIR_JSON)
        .send(checkBody(B_LOCAL, 'XCG-NEW'));
      const { json, etag } = await getPart('local-codes');
      const codes = json as LocalCodesJson;
      codes.maps
        .find((m) => m.institution === 'demo-hospital-b')!
        .codes.push({
          code: 'XCG-NEW',
          display: '血常规（新编码）',
          targets: ['HR-LAB-CBC'],
        });
      const res = await putPart('local-codes', codes, etag);
      expect(res.status, res.text).toBe(200);
      expect(await decisionOf(t, B_LOCAL, 'XCG-NEW')).toBe('reusable');
      expect(JSON.stringify(before.body)).not.toContain('"reusable"');
      await new Promise((resolve) => setTimeout(resolve, POLL_MS + 50));
      expect(await decisionOf(second, B_LOCAL, 'XCG-NEW')).toBe('reusable');
      await t.deps.rules.reindexing;
    } finally {
      await second.close();
    }
  });

  test('two processes starting on an empty database agree on one version 1', async () => {
    const db = t.deps.connection.getClient().db(`${t.dbName}_race`);
    try {
      const [a, b] = await Promise.all(
        [1, 2].map((n) => new RulesStore(db, t.deps.log, { seedDir: SEED_DIR, clock: () => n }).init()),
      );
      expect(a.version).toBe(1);
      expect(b.version).toBe(1);
      expect(await db.collection('recognition_rules').countDocuments()).toBe(1);
    } finally {
      await db.dropDatabase();
    }
  });

  test('the history lists every version with who changed which part and when', async () => {
    const res = await t.as('admin').get('/admin/rules/_history');
    expect(res.status).toBe(200);
    const versions = res.body.versions as {
      version: number;
      changedParts: string[];
      changedBy: string;
      changedAt: string;
    }[];
    expect(versions.map((v) => v.version)).toEqual([3, 2, 1]);
    expect(versions[0]).toMatchObject({ changedParts: ['local-codes'], changedBy: 'demo-admin' });
    expect(versions[1]).toMatchObject({ changedParts: ['catalogue'], changedBy: 'demo-admin' });
    expect(Date.parse(versions[0]!.changedAt)).toBeGreaterThanOrEqual(Date.parse(versions[1]!.changedAt));
  });

  test('every version is readable with its parts and a diff against the one before', async () => {
    const v2 = await t.as('admin').get('/admin/rules/_history/2');
    expect(v2.status, v2.text).toBe(200);
    expect(v2.body).toMatchObject({ version: 2, previousVersion: 1, changedParts: ['catalogue'] });
    const cbc = (v2.body.parts.catalogue as CatalogueJson).items.find((i) => i.code === 'HR-LAB-CBC');
    expect(cbc?.validityDays).toBe(14);
    expect(Object.keys(v2.body.diff)).toEqual(['catalogue']);
    expect(v2.body.diff.catalogue).toMatch(/^-\s+"validityDays": 7,?$/m);
    expect(v2.body.diff.catalogue).toMatch(/^\+\s+"validityDays": 14,?$/m);
    const v1 = await t.as('admin').get('/admin/rules/_history/1');
    expect(v1.body).toMatchObject({ version: 1, previousVersion: null, diff: {}, changedBy: 'seed' });
    expect((v1.body.parts.catalogue as CatalogueJson).items.find((i) => i.code === 'HR-LAB-CBC')?.validityDays).toBe(7);
    expect((await t.as('admin').get('/admin/rules/_history/99')).status).toBe(404);
    const bad = await t.as('admin').get('/admin/rules/_history/two');
    expect(bad.status).toBe(400);
    expect((bad.body as OperationOutcome).issue[0]?.expression).toEqual(['version']);
  });
});
