import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type {
  AuditEvent,
  Bundle,
  DiagnosticReport,
  MeasureReport,
  MeasureReportGroupPopulation,
  Observation,
  Parameters,
  ParametersParameter,
  Patient,
} from 'fhir/r4';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createClientAssertion } from '../../src/auth/assertion.js';
import { deriveEpochKey, residentIdCheckChar } from '../../src/recognition/identity.js';
import { HR_MARK_URL, SYSTEMS } from '../../src/recognition/vocabulary.js';
import type { Card } from '../../src/cds/cards.js';
import type { SavingsReport } from '../../src/reports/savings.js';
import { readDemoCdsClient, signCdsJwt } from '../../src/cds/clients.js';
import { priorResults } from '../../src/ui/prior-results.js';
import { createTestApp, TEST_DATA_DIR, type TestApp } from '../support/app.js';
import { launchBrowser, screenshot, watchErrors } from '../support/browser.js';
import { RecordingProxy } from '../support/recording-proxy.js';
import { FHIR_JSON, HOSPITAL_A, HOSPITAL_B, ID_CARD, LOINC, daysAgo } from '../fixtures/recognition.js';

/**
 * Three brokers on loopback — a district's (黄岛区), its city's (青岛市) and the province's (山东省) — each with its own
 * database, linked through the admin endpoints with SMART Backend Services credentials, each behind a recording proxy
 * that keeps every request crossing its boundary. Hospital B is registered at the province broker as a hospital of
 * Jinan (another city); Hospital A pushes its results to the district broker.
 */

/**
 * The province's key hierarchy (docs/federation.md): the custodian's root secret gives one key per epoch. The district
 * broker has already rotated to epoch 2027-01 (and still honours 2026-07); the city and the province have not yet:
 * matches must hold across the rotation.
 */
const ROOT_SECRET = 'shandong-province-root-secret-kept-by-the-key-custodian';
const EPOCH_OLD = deriveEpochKey(ROOT_SECRET, '370000', '2026-07');
const EPOCH_NEW = deriveEpochKey(ROOT_SECRET, '370000', '2027-01');
const KEYS_OF: Record<string, Record<string, string>> = {
  huangdao: { HUREN_PATIENT_KEY_SECRET: EPOCH_NEW, HUREN_PATIENT_KEY_PREVIOUS_SECRETS: EPOCH_OLD },
  qingdao: { HUREN_PATIENT_KEY_SECRET: EPOCH_OLD },
  shandong: { HUREN_PATIENT_KEY_SECRET: EPOCH_OLD },
};
/** Generous for a loaded test machine; the production default is 300 ms. */
const DEADLINE_MS = 2000;

const residentId = (first17: string) => `${first17}${residentIdCheckChar(first17)}`;
const PROVINCIAL_ID = residentId('37021119800101123');
const MUNICIPAL_ID = residentId('37021119850505224');
const UNKNOWN_ID = residentId('37021119900909345');

interface Broker {
  name: string;
  region: string;
  proxy: RecordingProxy;
  t: TestApp;
  server: Server;
  base: string;
  privateJwk: JWK;
  publicJwk: JWK;
}

const brokers: Record<'district' | 'city' | 'province', Broker> = {} as never;

async function startBroker(name: string, region: string): Promise<Broker> {
  const proxy = new RecordingProxy();
  const port = await proxy.listen();
  const base = `http://127.0.0.1:${port}/fhir`;
  const t = await createTestApp(`federation-${name}`, {
    HUREN_BASE_URL: base,
    ...KEYS_OF[name],
    HUREN_FEDERATION_DEADLINE_MS: String(DEADLINE_MS),
  });
  const server = t.app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  proxy.forwardTo((server.address() as AddressInfo).port);
  const { privateKey, publicKey } = await generateKeyPair('ES384', { extractable: true });
  const privateJwk = { ...(await exportJWK(privateKey)), kid: `broker-${name}-1`, alg: 'ES384' };
  const publicJwk = { ...(await exportJWK(publicKey)), kid: `broker-${name}-1`, alg: 'ES384' };
  return { name, region, proxy, t, server, base, privateJwk, publicJwk };
}

/** Registers `to` at `at` as its parent, child or peer: `at`'s client there, and `to`'s client here. */
async function link(at: Broker, to: Broker, relation: 'parent' | 'child', inheritRules = false) {
  const res = await at.t
    .as('admin')
    .put(`/admin/federation/brokers/${to.name}`)
    .set('Content-Type', 'application/json')
    .send({
      relation,
      name: to.name,
      baseUrl: to.base,
      region: to.region,
      timeoutMs: DEADLINE_MS,
      outbound: {
        tokenUrl: to.base.replace(/\/fhir$/, '/auth/token'),
        clientId: `broker-${at.name}`,
        privateJwk: at.privateJwk,
      },
      inbound: { clientId: `broker-${to.name}`, jwks: { keys: [to.publicJwk] } },
      ...(inheritRules ? { inheritRules } : {}),
    });
  expect([200, 201], res.text).toContain(res.status);
  expect(JSON.stringify(res.body)).not.toContain('"d"'); // the private key is never shown back
}

const patient = (id: string, value: string): Patient => ({
  resourceType: 'Patient',
  id,
  identifier: [{ system: ID_CARD, value }],
  managingOrganization: { reference: HOSPITAL_A },
});

const wbc: Observation = {
  resourceType: 'Observation',
  id: 'fed-wbc',
  status: 'final',
  code: { coding: [{ system: LOINC, code: '6690-2', display: 'WBC' }] },
  subject: { reference: 'Patient/fed-p1' },
  effectiveDateTime: daysAgo(1),
  performer: [{ reference: HOSPITAL_A }],
  valueQuantity: { value: 6.4, unit: '10*9/L', system: 'http://unitsofmeasure.org', code: '10*9/L' },
};

const cbc = (id: string, subject: string, scope: 'provincial' | 'municipal'): DiagnosticReport => ({
  resourceType: 'DiagnosticReport',
  id,
  extension: [{ url: HR_MARK_URL, valueCoding: { system: SYSTEMS.hrScope, code: scope } }],
  status: 'final',
  code: { coding: [{ system: LOINC, code: '57021-8' }] },
  subject: { reference: `Patient/${subject}` },
  effectiveDateTime: daysAgo(1),
  issued: daysAgo(1),
  performer: [{ reference: HOSPITAL_A }],
  ...(scope === 'provincial' ? { result: [{ reference: 'Observation/fed-wbc' }] } : {}),
});

const check = (idNumber: string, regionWide = false): Parameters => ({
  resourceType: 'Parameters',
  parameter: [
    { name: 'patient', valueIdentifier: { system: ID_CARD, value: idNumber } },
    { name: 'code', valueCoding: { system: LOINC, code: '57021-8' } },
    { name: 'requester', valueReference: { reference: HOSPITAL_B } },
    ...(regionWide ? [{ name: 'regionWide', valueBoolean: true }] : []),
  ],
});

const HUANGDAO = { code: '370211', name: { zh: '黄岛区', en: 'Huangdao District' } };

const reason = (code: string, zh: string, en: string) => ({
  code,
  display: { zh, en },
  source: 'provincial',
  countsAsDecline: true,
  requiresText: false,
});

/** Moves demo institutions to other districts in one broker's rules (through the rules administration API). */
async function relocate(at: Broker, moves: Record<string, object>) {
  const current = await at.t.as('admin').get('/admin/rules/institutions');
  expect(current.status, current.text).toBe(200);
  const file = current.body as { institutions: { id: string; district: object }[] };
  for (const i of file.institutions) if (moves[i.id]) i.district = moves[i.id]!;
  const moved = await at.t
    .as('admin')
    .put('/admin/rules/institutions')
    .set('Content-Type', 'application/json')
    .set('If-Match', current.headers.etag as string)
    .send(JSON.stringify(file));
  expect(moved.status, moved.text).toBe(200);
}

/** An access token of `from`'s broker client at `at`, obtained the SMART Backend Services way. */
async function brokerToken(from: Broker, at: Broker): Promise<string> {
  const tokenUrl = at.base.replace(/\/fhir$/, '/auth/token');
  const res = await request(at.t.app)
    .post('/auth/token')
    .type('form')
    .send({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await createClientAssertion(`broker-${from.name}`, from.privateJwk, tokenUrl),
      scope: 'system/DiagnosticReport.rs system/Observation.rs',
    });
  expect(res.status, res.text).toBe(200);
  return res.body.access_token as string;
}

const part = (p: ParametersParameter | undefined, name: string) => p?.part?.find((x) => x.name === name);
const outcomeOf = (body: Parameters) => body.parameter?.find((p) => p.name === 'outcome');
const federationOf = (body: Parameters) => body.parameter?.find((p) => p.name === 'federation');

async function reuseCheck(at: Broker, body: Parameters) {
  const res = await at.t
    .as('clinician')
    .post('/fhir/$reuse-check')
    .set('Content-Type', FHIR_JSON)
    .set('Accept-Language', 'en')
    .send(body);
  expect(res.status, res.text).toBe(200);
  return res.body as Parameters;
}

describe('a province–city–district federation of brokers', () => {
  beforeAll(async () => {
    brokers.district = await startBroker('huangdao', '370211');
    brokers.city = await startBroker('qingdao', '370200');
    brokers.province = await startBroker('shandong', '370000');
    const { district, city, province } = brokers;
    await link(district, city, 'parent');
    await link(city, district, 'child');
    await link(city, province, 'parent');
    await link(province, city, 'child');

    // A district broker speaks for its own district: there hospitals A and B are hospitals of Huangdao. At the
    // province broker Hospital B is a hospital of Jinan (历下区), another city of the province.
    await relocate(district, { 'demo-hospital-a': HUANGDAO, 'demo-hospital-b': HUANGDAO });
    await relocate(province, { 'demo-hospital-b': { code: '370102', name: { zh: '历下区', en: 'Lixia District' } } });

    for (const r of [
      patient('fed-p1', PROVINCIAL_ID),
      patient('fed-p2', MUNICIPAL_ID),
      wbc,
      cbc('fed-cbc-provincial', 'fed-p1', 'provincial'),
      cbc('fed-cbc-municipal', 'fed-p2', 'municipal'),
    ]) {
      const res = await district.t
        .as('his')
        .put(`/fhir/${r.resourceType}/${r.id}`)
        .set('Content-Type', FHIR_JSON)
        .send(r);
      expect([200, 201], res.text).toContain(res.status);
    }
  }, 120_000);

  afterAll(async () => {
    for (const b of Object.values(brokers)) {
      await b.proxy.close().catch(() => undefined);
      await new Promise((resolve) => b.server.close(resolve));
      await b.t.close();
    }
  });

  test('a 本省HR result pushed to the district broker is reusable at a hospital of another city, named by absolute reference', async () => {
    const { district, province } = brokers;
    const body = await reuseCheck(province, check(PROVINCIAL_ID));
    const outcome = outcomeOf(body);
    expect(part(outcome, 'decision')?.valueCode).toBe('reusable');
    expect(part(outcome, 'result')?.valueReference?.reference).toBe(
      `${district.base}/DiagnosticReport/fed-cbc-provincial`,
    );
    expect(part(outcome, 'performer')?.valueReference).toEqual({
      reference: `${district.base}/Organization/demo-hospital-a`,
      display: 'Qingdao Demo Hospital A',
    });
    expect(part(outcome, 'saving')?.valueMoney?.value).toBeGreaterThan(0);
    expect(part(federationOf(body), 'status')?.valueCode).toBe('complete');
  });

  test('a 本市HR result never leaves its city: the province hospital gets no result, the city’s own hospital does', async () => {
    const { district, city, province } = brokers;
    const elsewhere = outcomeOf(await reuseCheck(province, check(MUNICIPAL_ID)));
    expect(part(elsewhere, 'decision')?.valueCode).toBe('none');
    expect(part(elsewhere, 'result')).toBeUndefined();

    // Hospital B at the city broker is a Qingdao hospital: the same result is recognised there.
    const inCity = outcomeOf(await reuseCheck(city, check(MUNICIPAL_ID)));
    expect(part(inCity, 'decision')?.valueCode).toBe('reusable');
    expect(part(inCity, 'result')?.valueReference?.reference).toBe(
      `${district.base}/DiagnosticReport/fed-cbc-municipal`,
    );

    // Nothing of it crossed into the province broker's answers, nor onto the wire toward it.
    const toProvince = province.proxy.records.filter((r) => r.url.startsWith('/federation/')).map((r) => r.body);
    expect(toProvince.join('\n')).not.toContain('fed-cbc-municipal');
  });

  test('the doctor at the other city opens the remote result; both brokers audit the read', async () => {
    const { district, province } = brokers;
    const reference = `${district.base}/DiagnosticReport/fed-cbc-provincial`;
    const res = await province.t.as('clinician').get(`/federation/remote?reference=${encodeURIComponent(reference)}`);
    expect(res.status, res.text).toBe(200);
    const bundle = res.body as Bundle;
    expect(bundle.entry?.[0]?.fullUrl).toBe(reference);
    expect((bundle.entry?.[0]?.resource as DiagnosticReport).code.coding?.[0]?.code).toBe('57021-8');

    // A 本市HR result is not served to the other city, even by its exact reference.
    const refused = await province.t
      .as('clinician')
      .get(`/federation/remote?reference=${encodeURIComponent(`${district.base}/DiagnosticReport/fed-cbc-municipal`)}`);
    expect(refused.status).toBe(404);

    // The holder's trail: the result read by a broker of the federation (the city, on the province's behalf).
    const held = await district.t
      .as('admin')
      .get('/fhir/AuditEvent?entity=DiagnosticReport/fed-cbc-provincial&_count=100');
    expect(held.status, held.text).toBe(200);
    const heldEvents = ((held.body as Bundle).entry ?? []).map((e) => e.resource as AuditEvent);
    expect(heldEvents.some((e) => e.agent[0]?.altId === 'broker-qingdao' && e.action === 'R')).toBe(true);
    expect(heldEvents.some((e) => e.agent[0]?.altId === 'broker-qingdao' && e.action === 'E')).toBe(true);
    // The requester's trail: its clinician read the remote result.
    const asked = await province.t.as('admin').get(`/fhir/AuditEvent?_count=200`);
    const askedEvents = ((asked.body as Bundle).entry ?? []).map((e) => e.resource as AuditEvent);
    expect(
      askedEvents.some(
        (e) =>
          e.agent[0]?.altId === 'demo-clinician-hospital-b' && e.entity?.some((x) => x.what?.reference === reference),
      ),
    ).toBe(true);
    expect(askedEvents.some((e) => e.entity?.some((x) => x.name === 'federation-facts'))).toBe(true);
  });

  /**
   * The doctor's view at the province's hospital B for the patient of a check just asked there (the keys the view
   * derives from the patient's identifier when the doctor opens it); with that check as prompted earlier or not.
   */
  async function provinceView(jti: string, prompted: boolean) {
    const { province } = brokers;
    const body = await reuseCheck(province, check(PROVINCIAL_ID));
    const checkDoc = await province.t.deps.reuseChecks!.get(body.parameter!.find((p) => p.name === 'check')!.valueId!);
    const access = {
      clientId: 'demo-clinician-hospital-b',
      organization: HOSPITAL_B,
      role: 'clinician' as const,
      scope: 'system/*.rs',
      jti,
    };
    return priorResults(
      { ...province.t.deps, access },
      {
        organization: 'demo-hospital-b',
        patientKeys: checkDoc!.patientKeys,
        clientId: access.clientId,
        now: new Date(),
        ...(prompted ? { earlier: [checkDoc!] } : {}),
      },
    );
  }

  test('the doctor’s view at the other city shows the remote report’s values and its institution', async () => {
    const { district } = brokers;
    const view = await provinceView('federation-view-test', true);
    const item = view.categories.flatMap((c) => c.items).find((i) => i.item === 'HR-LAB-CBC');
    expect(item?.result).toBe(`${district.base}/DiagnosticReport/fed-cbc-provincial`);
    expect(item?.performer?.name.en).toBe('Qingdao Demo Hospital A');
    expect(item?.values.find((v) => v.code === '6690-2')?.value).toBe(6.4);
  });

  test('the doctor’s view at the other city lists the results other regions hold, without a check having prompted it', async () => {
    const { district } = brokers;
    const view = await provinceView('federation-list-test', false);
    const items = view.categories.flatMap((c) => c.items);
    expect(items.map((i) => [i.item, i.result, i.decision])).toEqual([
      ['HR-LAB-CBC', `${district.base}/DiagnosticReport/fed-cbc-provincial`, 'reusable'],
    ]);
    // The 本市HR result (another patient) never shows at the other city.
    expect(JSON.stringify(view)).not.toContain('fed-cbc-municipal');
  });

  test('the doctor at the other city reuses it: the province’s rolled-up report counts the recognition once, at the requester’s broker', async () => {
    const { province } = brokers;
    const body = await reuseCheck(province, check(PROVINCIAL_ID));
    const checkId = body.parameter?.find((p) => p.name === 'check')?.valueId;
    const decided = await province.t
      .as('demo-his-hospital-b')
      .post('/fhir/$reuse-decision')
      .set('Content-Type', FHIR_JSON)
      .send({
        resourceType: 'Parameters',
        parameter: [
          { name: 'check', valueId: checkId },
          { name: 'item', valueCoding: { system: SYSTEMS.catalogue, code: 'HR-LAB-CBC' } },
          { name: 'decision', valueCode: 'accepted' },
        ],
      });
    expect(decided.status, decided.text).toBe(201);

    const today = new Date(Date.now() + 8 * 3600_000).toISOString().slice(0, 10);
    const res = await province.t.as('bureau').get('/reports/federated').query({ from: today, to: today });
    expect(res.status, res.text).toBe(200);
    const report = res.body as {
      regions: {
        totals: { accepted: number; saving: number };
        children: {
          broker: string;
          answered: boolean;
          totals: { accepted: number };
          children: { broker: string; totals: { accepted: number } }[];
        }[];
      };
      total: { accepted: number; saving: number };
      missing: string[];
    };
    expect(report.missing).toEqual([]);
    expect(report.regions.totals.accepted).toBe(1);
    const city = report.regions.children[0]!;
    expect(city.broker).toBe('qingdao');
    expect(city.answered).toBe(true);
    expect(city.totals.accepted).toBe(0);
    expect(city.children[0]?.broker).toBe('huangdao');
    expect(city.children[0]?.totals.accepted).toBe(0);
    expect(report.total.accepted).toBe(1);
    expect(report.total.saving).toBe(30);
    // The recognition crossed regions: imported by the province's own hospital from the district that holds it.
    expect((res.body as { crossRegion: unknown }).crossRegion).toEqual([
      { from: '370211', to: 'this broker', accepted: 1, saving: 30 },
    ]);
    // Audited on both sides: the province asked its city, the district was asked by its city; no patient in either.
    const figuresEvents = async (at: Broker, altid: string) =>
      (((await at.t.as('admin').get(`/fhir/AuditEvent?altid=${altid}&_count=100`)).body as Bundle).entry ?? [])
        .map((e) => e.resource as AuditEvent)
        .filter((e) => e.entity?.some((x) => x.name === 'federation-figures'));
    const outbound = await figuresEvents(province, 'federation');
    expect(outbound.flatMap((e) => e.entity!.map((x) => x.description))).toContainEqual(
      expect.stringMatching(/^child qingdao \(370200\) for .*: answered$/),
    );
    const inbound = await figuresEvents(brokers.district, 'broker-qingdao');
    expect(inbound.length).toBeGreaterThan(0);
    expect(inbound.every((e) => !e.entity?.some((x) => x.what?.reference?.startsWith('Patient/')))).toBe(true);
    // Figures go up only: a child cannot read its parent's.
    const asChild = await request(brokers.city.t.app)
      .post('/federation/figures')
      .set('Authorization', `Bearer ${await brokerToken(brokers.district, brokers.city)}`)
      .set('Content-Type', 'application/json')
      .send({ from: today, to: today });
    expect(asChild.status).toBe(403);
  });

  test('the province’s savings report over the federation breaks the figures down by region, institution, item and month: the recognition once, and exported by the district', async () => {
    const { district, city, province } = brokers;
    const today = new Date(Date.now() + 8 * 3600_000).toISOString().slice(0, 10);
    const month = today.slice(0, 7);
    const res = await province.t
      .as('bureau')
      .get('/reports/savings')
      .query({ from: today, to: today, scope: 'federation', by: 'region,organization,item,month' });
    expect(res.status, res.text).toBe(200);
    const report = res.body as SavingsReport;
    expect(report.scope).toBe('federation');
    // Every region of the tree, in tree order, each answered.
    expect(report.federation!.regions.map((r) => [r.code, r.depth, r.answered])).toEqual([
      ['370000', 0, true],
      ['370200', 1, true],
      ['370211', 2, true],
    ]);
    expect(report.federation!.missing).toEqual([]);
    // The recognition is in exactly one row: the province's own Jinan hospital, the blood count, this month.
    const reused = report.rows.filter((r) => (r.accepted ?? 0) > 0);
    expect(reused).toHaveLength(1);
    expect(reused[0]).toMatchObject({
      region: { code: '370000' },
      organization: { code: 'demo-hospital-b', reference: 'Organization/demo-hospital-b' },
      item: { code: 'HR-LAB-CBC' },
      month: { code: month },
      accepted: 1,
      saving: 30,
    });
    expect(report.totals.accepted).toBe(1);
    expect(report.totals.saving).toBe(30);
    // The city's own prompts (its hospital checked the 本市HR result) are the city's, named by the city's broker.
    const cityRows = report.rows.filter((r) => r.region?.code === '370200');
    expect(cityRows.length).toBeGreaterThan(0);
    expect(cityRows[0]!.organization).toMatchObject({
      code: 'demo-hospital-b',
      reference: `${city.base}/Organization/demo-hospital-b`,
    });
    expect(report.totals.prompts).toBe(report.rows.reduce((n, r) => n + (r.prompts ?? 0), 0));
    // Across regions: exported by the district (which holds the result), imported by the province.
    expect(report.federation!.crossRegion).toEqual([
      {
        from: { code: '370211', name: { zh: 'huangdao', en: 'huangdao' } },
        to: { code: '370000', name: { zh: '本级', en: 'This broker' } },
        organization: expect.objectContaining({ code: 'demo-hospital-b' }),
        item: expect.objectContaining({ code: 'HR-LAB-CBC' }),
        month: { code: month },
        accepted: 1,
        saving: 30,
        suppressed: [],
      },
    ]);

    // One region: the district's own figures hold no recognition, its export is still shown.
    const one = await province.t
      .as('bureau')
      .get('/reports/savings')
      .query({ from: today, to: today, scope: 'federation', region: '370211' });
    expect(one.status, one.text).toBe(200);
    expect((one.body as SavingsReport).totals.accepted).toBe(0);
    expect((one.body as SavingsReport).filters.region?.code).toBe('370211');
    expect((one.body as SavingsReport).federation!.crossRegion).toMatchObject([
      { from: { code: '370211' }, to: { code: '370000' }, accepted: 1 },
    ]);

    // The same as CSV, in the columns of the local report with the region's.
    const csv = await province.t
      .as('bureau')
      .get('/reports/savings')
      .query({ from: today, to: today, scope: 'federation', by: 'region,item', format: 'csv', lang: 'en' });
    expect(csv.status, csv.text).toBe(200);
    expect(csv.headers['content-type']).toMatch(/^text\/csv/);
    const lines = csv.text
      .replace(/^\uFEFF/, '')
      .trim()
      .split('\r\n');
    expect(lines[0]).toMatch(/^Region code,Region,Item code,Item,/);
    expect(lines.find((l) => l.startsWith('370000,This broker,HR-LAB-CBC,'))).toBeDefined();
    expect(lines.at(-1)).toMatch(/^Total,/);

    // The city's report covers the city and its district, not the province above it.
    const atCity = await city.t
      .as('bureau')
      .get('/reports/savings')
      .query({ from: today, to: today, scope: 'federation', by: 'region' });
    expect(atCity.status, atCity.text).toBe(200);
    expect((atCity.body as SavingsReport).federation!.regions.map((r) => r.code)).toEqual(['370200', '370211']);
    expect((atCity.body as SavingsReport).totals.accepted).toBe(0);

    // Clear refusals: region without the federation, a region outside the tree, grouping by region locally.
    const refused = async (query: Record<string, string>, expression: string) => {
      const r = await province.t
        .as('bureau')
        .get('/reports/savings')
        .query({ from: today, to: today, ...query });
      expect(r.status, r.text).toBe(400);
      expect(r.body.issue[0].expression).toEqual([expression]);
    };
    await refused({ region: '370211' }, 'region');
    await refused({ scope: 'federation', region: '370300' }, 'region');
    await refused({ by: 'region' }, 'by');
    await refused({ scope: 'everywhere' }, 'scope');
    void district;
  });

  test('the province’s dashboard shows every region, the cross-region recognition, and one region on its own (en, zh)', async (context) => {
    const { province } = brokers;
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
      const errors = watchErrors(page);
      const today = new Date(Date.now() + 8 * 3600_000).toISOString().slice(0, 10);
      const origin = province.base.replace(/\/fhir$/, '');
      await page.goto(`${origin}/dashboard?from=${today}&to=${today}&scope=federation&lang=en`);
      await page.fill('#token', province.t.tokens.bureau!);
      await page.click('#token-form button[type=submit]');
      await page.waitForSelector('#regions-card:not([hidden])');
      await page.waitForSelector('#cross-table tbody tr td:nth-child(3)');
      const regionRows = await page
        .locator('#regions-table tbody tr')
        .evaluateAll((rows) =>
          rows.map((r) => [r.getAttribute('data-region'), r.querySelector('th')!.textContent!.trim()]),
        );
      expect(regionRows).toEqual([
        ['370000', 'This broker (370000)'],
        ['370200', 'qingdao (370200)'],
        ['370211', 'huangdao (370211)'],
      ]);
      expect(await page.locator('#regions-missing').isHidden()).toBe(true);
      // The whole federation: the one recognition, and where its result came from.
      expect(await page.locator('#h-accepted').textContent()).toBe('1');
      expect(await page.locator('#cross-table tbody tr').first().textContent()).toMatch(
        /^huangdao \(370211\)This broker \(370000\)1CN¥30\.00$/,
      );
      await screenshot(page, 'federation-dashboard-en-1400', context);

      // One region: the district's own figures have no recognition.
      await page.selectOption('#region', '370211');
      await expect.poll(() => page.url()).toContain('region=370211');
      await expect.poll(() => page.locator('#h-accepted').textContent()).toBe('0');
      expect(page.url()).toContain('scope=federation');

      await page.click('#lang');
      expect(await page.locator('#regions-card h2').first().textContent()).toBe('各地区明细');
      expect(await page.locator('#region option[value="*"]').textContent()).toBe('本级及全部下级');
      await page.setViewportSize({ width: 390, height: 800 });
      await screenshot(page, 'federation-dashboard-zh-390', context);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  test('$evaluate-measure over the federation: populations include the children’s figures, a stratum per region', async () => {
    const { city, province } = brokers;
    const today = new Date(Date.now() + 8 * 3600_000).toISOString().slice(0, 10);
    const evaluate = (query: Record<string, string>) =>
      province.t
        .as('bureau')
        .get('/fhir/Measure/reuse-savings/$evaluate-measure')
        .query({ periodStart: today, periodEnd: today, ...query });
    const res = await evaluate({ scope: 'federation' });
    expect(res.status, res.text).toBe(200);
    const mr = res.body as MeasureReport;
    expect(province.t.deps.validator.validate(mr).filter((i) => i.severity === 'error')).toEqual([]);
    expect(mr).toMatchObject({ resourceType: 'MeasureReport', type: 'summary', status: 'complete' });
    const count = (pops: MeasureReportGroupPopulation[] | undefined, code: string) =>
      pops?.find((p) => p.code?.coding?.[0]?.code === code)?.count;
    const federated = (
      await province.t.as('bureau').get('/reports/savings').query({ from: today, to: today, scope: 'federation' })
    ).body as SavingsReport;
    const own = (await province.t.as('bureau').get('/reports/savings').query({ from: today, to: today }))
      .body as SavingsReport;
    const group = mr.group![0]!;
    // The federation's figures, the same as its JSON report, and more prompts than the province's own.
    expect(count(group.population, 'initial-population')).toBe(federated.totals.prompts);
    expect(count(group.population, 'measure-population')).toBe(1);
    expect(group.measureScore?.value).toBe(30);
    expect(federated.totals.prompts!).toBeGreaterThan(own.totals.prompts!);
    const local = (await evaluate({})).body as MeasureReport;
    expect(count(local.group![0]!.population, 'initial-population')).toBe(own.totals.prompts);
    expect(local.group![0]!.stratifier).toHaveLength(2);
    // A stratum per region, in tree order; the city's institution by absolute reference.
    const [institutions, , regions] = group.stratifier!;
    expect(regions!.code?.[0]?.text).toBe('region');
    expect(regions!.stratum!.map((s) => s.value?.coding?.[0]?.code)).toEqual(['370000', '370200', '370211']);
    expect(count(regions!.stratum![0]!.population, 'measure-population')).toBe(1);
    expect(count(regions!.stratum![1]!.population, 'measure-population')).toBe(0);
    expect(institutions!.stratum!.map((s) => s.value?.text)).toContain(`${city.base}/Organization/demo-hospital-b`);
    const bad = await evaluate({ scope: 'all' });
    expect(bad.status).toBe(400);
    expect(bad.body.issue[0].expression).toEqual(['scope']);
  });

  test('the city applies the province’s catalogue with its own stricter windows; a change upstream reaches it', async () => {
    const { city, province } = brokers;
    await link(city, province, 'parent', true);
    const additions = await city.t
      .as('admin')
      .put('/admin/federation/rules/additions')
      .set('Content-Type', 'application/json')
      .send({
        windows: { 'HR-LAB-ESR': 3, 'HR-LAB-CBC': 30 },
        regions: [{ region: '370200', policy: 'higher-or-peer', allianceMembersAccept: true }],
        reasons: [
          reason('city-referral-review', '市级转诊复核', 'City referral review'),
          reason('condition-changed', '城市改写的名称', 'A city rewording'),
        ],
      });
    expect(additions.status, additions.text).toBe(200);
    // A reason the rules would refuse is refused when saved, naming reasons.
    const badReason = await city.t
      .as('admin')
      .put('/admin/federation/rules/additions')
      .set('Content-Type', 'application/json')
      .send({ reasons: [{ code: 'Not A Code', display: { zh: '坏', en: 'bad' } }] });
    expect(badReason.status).toBe(400);
    expect(badReason.body.issue[0].expression).toEqual(['reasons']);

    // The province adds a decline reason of its own.
    const reasonsNow = await province.t.as('admin').get('/admin/rules/decline-reasons');
    const provinceReasons = reasonsNow.body as { reasons: { code: string }[] };
    provinceReasons.reasons.push(reason('province-audit', '省级质控抽查', 'Provincial QC audit'));
    const reasonsEdited = await province.t
      .as('admin')
      .put('/admin/rules/decline-reasons')
      .set('Content-Type', 'application/json')
      .set('If-Match', reasonsNow.headers.etag as string)
      .send(JSON.stringify(provinceReasons));
    expect(reasonsEdited.status, reasonsEdited.text).toBe(200);

    // The province shortens the CRP window from 3 days to 2.
    const current = await province.t.as('admin').get('/admin/rules/catalogue');
    const catalogue = current.body as { items: { code: string; validityDays: number }[] };
    catalogue.items.find((i) => i.code === 'HR-LAB-CRP')!.validityDays = 2;
    const edited = await province.t
      .as('admin')
      .put('/admin/rules/catalogue')
      .set('Content-Type', 'application/json')
      .set('If-Match', current.headers.etag as string)
      .send(JSON.stringify(catalogue));
    expect(edited.status, edited.text).toBe(200);

    const pulled = await city.t.as('admin').post('/admin/federation/rules/$pull');
    expect(pulled.status, pulled.text).toBe(200);
    expect(pulled.body).toMatchObject({ parent: 'shandong', changed: true });
    const effective = await city.t.as('admin').get('/admin/rules/catalogue');
    const days = (code: string) =>
      (effective.body as typeof catalogue).items.find((i) => i.code === code)?.validityDays;
    expect(days('HR-LAB-CRP')).toBe(2); // the province's change
    expect(days('HR-LAB-ESR')).toBe(3); // the city's stricter window
    expect(days('HR-LAB-CBC')).toBe(7); // a longer window than the province's is not applied
    // The city's own regional acceptance rule, on the province's matrix.
    const matrix = await city.t.as('admin').get('/admin/rules/acceptance-matrix');
    const regions = (matrix.body as { regions: { region: string; policy: string }[] }).regions;
    expect(regions.filter((r) => r.region === '370200')).toEqual([
      { region: '370200', policy: 'higher-or-peer', allianceMembersAccept: true },
    ]);
    // The decline reasons: the province's (its new one too), then the city's own; a province code keeps its name.
    const cityReasons = (await city.t.as('admin').get('/admin/rules/decline-reasons')).body as {
      reasons: { code: string; display: { zh: string } }[];
    };
    const codes = cityReasons.reasons.map((r) => r.code);
    expect(codes.slice(-2)).toEqual(['province-audit', 'city-referral-review']);
    expect(cityReasons.reasons.find((r) => r.code === 'condition-changed')?.display.zh).toBe('病情变化');
    expect(codes.filter((c) => c === 'condition-changed')).toHaveLength(1);
    // Pulled again with nothing new upstream: no new version.
    const again = await city.t.as('admin').post('/admin/federation/rules/$pull');
    expect(again.body).toMatchObject({ changed: false, version: pulled.body.version });
  });

  test('a broker token reaches /federation only, and a child speaks only for requesters of its own region', async () => {
    const { district, city } = brokers;
    const token = await brokerToken(district, city);
    const facts = (requesterDistrict: string) =>
      request(city.t.app)
        .post('/federation/facts')
        .set('Authorization', `Bearer ${token}`)
        .set('Content-Type', 'application/json')
        .send({
          patientKeys: ['0'.repeat(64)],
          items: ['HR-LAB-CBC'],
          from: new Date(Date.now() - 30 * 86400_000).toISOString(),
          until: new Date().toISOString(),
          requester: { district: requesterDistrict, level: '三级甲等' },
          path: [district.base],
          deadlineMs: 500,
        });
    expect((await facts('370211')).status).toBe(200);
    const outside = await facts('370102');
    expect(outside.status).toBe(403);
    expect(outside.body.issue[0].expression).toEqual(['requester.district']);

    const fhir = await request(city.t.app).get('/fhir/DiagnosticReport').set('Authorization', `Bearer ${token}`);
    expect(fhir.status).toBe(403);
    // A hospital's token is no broker's.
    const asHospital = await city.t
      .as('clinician')
      .post('/federation/facts')
      .set('Content-Type', 'application/json')
      .send({});
    expect(asHospital.status).toBe(403);
  });

  test('the admin endpoints refuse a broker definition with the field at fault', async () => {
    const { city } = brokers;
    const put = (body: object) =>
      city.t.as('admin').put('/admin/federation/brokers/x').set('Content-Type', 'application/json').send(body);
    const bad = await put({ relation: 'sibling' });
    expect(bad.status).toBe(400);
    expect(bad.body.issue[0].expression).toEqual(['relation']);
    const region = await put({ relation: 'peer', baseUrl: 'https://yantai.example/fhir', region: '3706' });
    expect(region.body.issue[0].expression).toEqual(['region']);
    const listed = await city.t.as('admin').get('/admin/federation/brokers');
    expect(listed.status).toBe(200);
    expect((listed.body as { id: string }[]).map((b) => b.id).sort()).toEqual(['huangdao', 'shandong']);
    expect(JSON.stringify(listed.body)).not.toContain('"d":');
    expect((await city.t.as('clinician').get('/admin/federation/brokers')).status).toBe(403);
  });

  test('no resident ID number crosses a broker boundary or reaches a log', () => {
    const wire = Object.values(brokers)
      .flatMap((b) => b.proxy.records)
      .map((r) => `${r.method} ${r.url}\n${r.headers}\n${r.body}`)
      .join('\n');
    expect(wire).toContain('/federation/facts'); // the federation did talk
    const logs = Object.values(brokers)
      .flatMap((b) => b.t.logLines)
      .join('\n');
    for (const id of [PROVINCIAL_ID, MUNICIPAL_ID, UNKNOWN_ID]) {
      expect(wire).not.toContain(id);
      expect(logs).not.toContain(id);
    }
    // Nor a secret of the key hierarchy.
    for (const secret of [ROOT_SECRET, EPOCH_OLD, EPOCH_NEW]) {
      expect(wire).not.toContain(secret);
      expect(logs).not.toContain(secret);
    }
  });

  test('a province broker that hangs leaves the city’s answer partial, within the deadline, with a clear note', async () => {
    const { city, province } = brokers;
    province.proxy.blackhole();
    const started = Date.now();
    const body = await reuseCheck(city, check(PROVINCIAL_ID, true));
    expect(Date.now() - started).toBeLessThan(DEADLINE_MS + 1500);
    // The district still answered: the result is found.
    expect(part(outcomeOf(body), 'decision')?.valueCode).toBe('reusable');
    const federation = federationOf(body);
    expect(part(federation, 'status')?.valueCode).toBe('partial');
    expect(part(federation, 'note')?.valueString).toContain('shandong (370000: no answer within');
  });

  test('at order entry (CDS Hooks) with the province hanging, the card names the remote result and a note says who did not answer', async () => {
    const { city } = brokers;
    const demo = readDemoCdsClient(TEST_DATA_DIR)!;
    const path = '/cds-services/huren-reuse-order-select';
    const started = Date.now();
    const res = await request(city.t.app)
      .post(path)
      .set(
        'Authorization',
        `Bearer ${await signCdsJwt(demo.iss, demo.privateJwk, `${city.base.replace(/\/fhir$/, '')}${path}`)}`,
      )
      .set('Accept-Language', 'en')
      .send({
        hook: 'order-select',
        hookInstance: crypto.randomUUID(),
        context: {
          userId: 'Practitioner/dr-b',
          patientId: 'fed-p1',
          selections: ['ServiceRequest/fed-order'],
          draftOrders: {
            resourceType: 'Bundle',
            type: 'collection',
            entry: [
              {
                resource: {
                  resourceType: 'ServiceRequest',
                  id: 'fed-order',
                  status: 'draft',
                  intent: 'order',
                  code: { coding: [{ system: LOINC, code: '57021-8' }] },
                  subject: { reference: 'Patient/fed-p1' },
                },
              },
            ],
          },
        },
        prefetch: { patient: patient('fed-p1', PROVINCIAL_ID) },
      });
    expect(res.status, res.text).toBe(200);
    expect(Date.now() - started).toBeLessThan(DEADLINE_MS + 1500);
    const cards = (res.body as { cards: Card[] }).cards;
    const texts = cards.map((c) => `${c.summary}\n${c.detail ?? ''}`).join('\n');
    expect(texts).toMatch(/Qingdao Demo Hospital A|青岛演示医院A/);
    expect(texts).toContain('shandong (370000: no answer within');
  });

  test('with the city broker down, the province’s federated report lists the city as missing, in JSON and CSV', async () => {
    const { city, province } = brokers;
    await city.proxy.close();
    const today = new Date(Date.now() + 8 * 3600_000).toISOString().slice(0, 10);
    const res = await province.t
      .as('bureau')
      .get('/reports/savings')
      .query({ from: today, to: today, scope: 'federation', by: 'region' });
    expect(res.status, res.text).toBe(200);
    const report = res.body as SavingsReport;
    expect(report.federation!.missing).toMatchObject([{ code: '370200', broker: 'qingdao', answered: false }]);
    expect(report.federation!.missing[0]!.reason).toMatch(/connection failed/);
    // The province's own figures are still there, and only they.
    expect(report.rows.map((r) => r.region?.code)).toEqual(['370000']);
    const csv = await province.t
      .as('bureau')
      .get('/reports/savings')
      .query({ from: today, to: today, scope: 'federation', format: 'csv' });
    expect(csv.text).toContain('未应答地区：qingdao (370200): connection failed');
    // The MeasureReport says so too: the city's stratum has no counts (not reported), and why.
    const measure = await province.t
      .as('bureau')
      .get('/fhir/Measure/reuse-savings/$evaluate-measure')
      .query({ periodStart: today, periodEnd: today, scope: 'federation' });
    expect(measure.status, measure.text).toBe(200);
    const cityStratum = (measure.body as MeasureReport).group![0]!.stratifier![2]!.stratum!.find(
      (s) => s.value?.coding?.[0]?.code === '370200',
    )!;
    expect(cityStratum.value?.text).toMatch(/did not answer \(connection failed/);
    expect(cityStratum.population!.every((p) => p.count === undefined)).toBe(true);
  });

  test('with its parent down the district broker answers local-only at once, never an error', async () => {
    const { district } = brokers;
    const body = await reuseCheck(district, check(UNKNOWN_ID));
    expect(part(outcomeOf(body), 'decision')?.valueCode).toBe('none');
    const federation = federationOf(body);
    expect(part(federation, 'status')?.valueCode).toBe('local-only');
    expect(part(federation, 'note')?.valueString).toContain("this answer covers this broker's results only");
  });
});
