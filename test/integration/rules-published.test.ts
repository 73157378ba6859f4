import type { Bundle, CapabilityStatement, CodeSystem, ConceptMap, Organization, Resource } from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ORGANIZATION_EXTENSIONS } from '../../src/recognition/rules-resources.js';
import { createTestApp, type TestApp } from '../support/app.js';

const ROLES = ['his', 'clinician', 'bureau', 'supervisor', 'admin'];

describe('recognition rules published as FHIR resources', () => {
  let t: TestApp;

  const errorsOf = (r: Resource) =>
    t.deps.validator.validate(r, { expectedType: r.resourceType }).filter((i) => i.severity === 'error');

  beforeAll(async () => {
    t = await createTestApp('rules-published');
  });
  afterAll(async () => {
    await t.close();
  });

  test('every role reads the catalogue, category and decline-reason CodeSystems and the catalogue ValueSet', async () => {
    for (const who of ROLES) {
      for (const path of [
        'CodeSystem/hr-catalogue',
        'CodeSystem/hr-category',
        'CodeSystem/hr-decline-reason',
        'ValueSet/hr-catalogue',
      ]) {
        const res = await t.as(who).get(`/fhir/${path}`);
        expect(res.status, `${who} ${path}: ${res.text.slice(0, 200)}`).toBe(200);
        expect(errorsOf(res.body as Resource), path).toEqual([]);
      }
    }
    const catalogue = (await t.as('his').get('/fhir/CodeSystem/hr-catalogue')).body as CodeSystem;
    const cbc = catalogue.concept?.find((c) => c.code === 'HR-LAB-CBC');
    expect(cbc?.property?.find((p) => p.code === 'validity-days')?.valueInteger).toBe(7);
  });

  test('local codes are a ConceptMap per institution, found by search, and the identifying codes one more', async () => {
    for (const who of ROLES) {
      const res = await t
        .as(who)
        .get('/fhir/ConceptMap?url=https://huren.example.org/fhir/ConceptMap/local-codes-demo-hospital-b');
      expect(res.status, who).toBe(200);
      const map = (res.body as Bundle).entry?.[0]?.resource as ConceptMap;
      expect(map.group?.[0]?.element?.find((e) => e.code === 'XCG')?.target?.[0]?.code, who).toBe('HR-LAB-CBC');
      expect(errorsOf(map)).toEqual([]);
    }
    const codes = await t.as('clinician').get('/fhir/ConceptMap/hr-catalogue-codes');
    expect(codes.status).toBe(200);
    expect(errorsOf(codes.body as ConceptMap)).toEqual([]);
    const all = await t.as('admin').get('/fhir/ConceptMap?_count=50');
    const ids = ((all.body as Bundle).entry ?? []).map((e) => e.resource?.id);
    expect(ids).toEqual(
      expect.arrayContaining(['hr-catalogue-codes', 'local-codes-demo-hospital-a', 'local-codes-demo-hospital-b']),
    );
  });

  test('each institution is an Organization with names, level, district, alliances and HR qualifications', async () => {
    for (const who of [...ROLES, 'demo-his-hospital-b']) {
      const res = await t.as(who).get('/fhir/Organization/demo-hospital-a');
      expect(res.status, `${who}: ${res.text.slice(0, 300)}`).toBe(200);
    }
    const org = (await t.as('demo-his-hospital-b').get('/fhir/Organization/demo-hospital-a')).body as Organization;
    expect(errorsOf(org)).toEqual([]);
    expect(org.name).toBe('青岛演示医院A');
    expect(JSON.stringify((org as { _name?: unknown })._name)).toContain('Qingdao Demo Hospital A');
    const ext = (url: string) => (org.extension ?? []).filter((e) => e.url === url);
    expect(ext(ORGANIZATION_EXTENSIONS.level)[0]?.valueCode).toBe('三级甲等');
    expect(ext(ORGANIZATION_EXTENSIONS.alliance).map((e) => e.valueCoding?.code)).toEqual(['alliance-shinan']);
    expect(org.address?.[0]).toMatchObject({ city: '青岛市', district: '市南区' });
    const ct = ext(ORGANIZATION_EXTENSIONS.qualification).find((q) =>
      q.extension?.some((s) => s.url === 'category' && s.valueCoding?.code === 'imaging-ct'),
    );
    // Hospital A's CT qualification lapsed on 2025-06-30 (seed/README.md).
    expect(ct?.extension?.find((s) => s.url === 'validTo')?.valueDate).toBe('2025-06-30');
    // A hospital system sees the whole directory when it searches, not only its own institution.
    const search = await t.as('his').get('/fhir/Organization?_count=50');
    expect(search.status).toBe(200);
    const found = ((search.body as Bundle).entry ?? []).map((e) => e.resource?.id);
    expect(found).toEqual(expect.arrayContaining(['demo-hospital-a', 'demo-hospital-b', 'demo-chc-huangdao']));
  });

  test('the $reuse-check and $reuse-decision OperationDefinitions are listed, valid and named by the metadata', async () => {
    const res = await t.as('bureau').get('/fhir/OperationDefinition');
    expect(res.status).toBe(200);
    const defs = ((res.body as Bundle).entry ?? []).map((e) => e.resource as Resource & { url?: string });
    const urls = defs.map((d) => d.url);
    expect(urls).toEqual(
      expect.arrayContaining([
        'https://huren.example.org/fhir/OperationDefinition/reuse-check',
        'https://huren.example.org/fhir/OperationDefinition/reuse-decision',
      ]),
    );
    for (const d of defs) expect(errorsOf(d), d.id).toEqual([]);
    const metadata = await t.as('bureau').get('/fhir/metadata');
    const ops = (metadata.body as CapabilityStatement).rest?.[0]?.operation?.map((o) => o.definition) ?? [];
    expect(ops).toContain('https://huren.example.org/fhir/OperationDefinition/reuse-check');
    for (const url of ops.filter((u) => u.startsWith('https://huren.example.org'))) expect(urls).toContain(url);
  });

  test('an edit publishes a new version of what changed; a restart on unchanged rules publishes nothing new', async () => {
    const part = await t.as('admin').get('/admin/rules/institutions');
    const institutions = part.body as { institutions: { id: string; name: { zh: string; en: string } }[] };
    institutions.institutions.find((i) => i.id === 'demo-hospital-a')!.name.en = 'Qingdao Demo Hospital A (renamed)';
    const put = await t
      .as('admin')
      .put('/admin/rules/institutions')
      .set('If-Match', part.headers.etag as string)
      .type('json')
      .send(JSON.stringify(institutions));
    expect(put.status, put.text).toBe(200);
    const history = async (path: string) =>
      ((await t.as('admin').get(`/fhir/${path}/_history`)).body as Bundle).entry?.length ?? 0;
    expect(await history('Organization/demo-hospital-a')).toBe(2);
    expect(await history('Organization/demo-hospital-b')).toBe(1);
    const org = (await t.as('clinician').get('/fhir/Organization/demo-hospital-a')).body as Organization;
    expect(JSON.stringify(org)).toContain('(renamed)');

    const restarted = await createTestApp(
      'rules-published-2',
      {},
      { dbName: t.dbName, keepDatabase: true, fetchTokens: false },
    );
    await restarted.close();
    expect(await history('Organization/demo-hospital-a')).toBe(2);
    expect(await history('CodeSystem/hr-catalogue')).toBe(1);
  });
});
