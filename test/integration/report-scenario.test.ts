import { createHash, randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Bundle, MeasureReport, MeasureReportGroupPopulation, Parameters, ServiceRequest } from 'fhir/r4';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Card } from '../../src/cds/cards.js';
import { readDemoCdsClient, signCdsJwt, type DemoCdsClientFile } from '../../src/cds/clients.js';
import { DECLINE_REASON_SYSTEM } from '../../src/recognition/decline-reasons.js';
import { localDate } from '../../src/recognition/time.js';
import type { SavingsReport } from '../../src/reports/savings.js';
import { createTestApp, TEST_DATA_DIR, type TestApp } from '../support/app.js';
import { launchBrowser, screenshot, watchErrors } from '../support/browser.js';
import {
  B_LOCAL,
  FHIR_JSON,
  ID_CARD,
  LOINC,
  daysAgo,
  checkIdOf,
  decisionParameters,
  finalReport,
  patientWithId,
  reuseCheckParameters,
} from '../fixtures/recognition.js';

/**
 * The bureau's figures for one chatty day at hospital B (issue 20), as the EHR, the doctor's view and the HIS really
 * make them: one CBC order seen by order-select, order-sign and two launches of the view (opened in both), accepted
 * on its card; a urinalysis card dismissed without a reason; a chest CT for reference only accepted through
 * $reuse-decision; a head CT for reference only declined. JSON, CSV (both languages) and the MeasureReport must give
 * exactly the same de-duplicated counts.
 */
const ID_NUMBER = '11010519491231002X';
const ORIGIN = 'http://huren.test';
const SELECT = 'huren-reuse-order-select';
const SIGN = 'huren-reuse-order-sign';
const TODAY = localDate(Date.now(), 'Asia/Shanghai');

const patient = patientWithId('sc-patient', ID_NUMBER, { gender: 'female', birthDate: '1949-12-31' });
const report = (id: string, code: string, days: number) => finalReport(id, 'sc-patient', code, daysAgo(days));
// Hospital A's CT qualification lapsed (seed/institutions.json): its CTs are for reference only.
const RESULTS = [
  report('sc-cbc', '57021-8', 2),
  report('sc-urine', '24356-8', 1),
  report('sc-ct-chest', '29252-4', 10),
  report('sc-ct-head', '24725-4', 5),
];

const draft = (id: string, system: string, code: string): ServiceRequest => ({
  resourceType: 'ServiceRequest',
  id,
  status: 'draft',
  intent: 'order',
  code: { coding: [{ system, code }] },
  subject: { reference: 'Patient/sc-patient' },
});
const ORDER = [draft('sc-order-cbc', B_LOCAL, 'XCG'), draft('sc-order-urine', LOINC, '24356-8')];

function hookBody(hook: string): Record<string, unknown> {
  const draftOrders: Bundle = {
    resourceType: 'Bundle',
    type: 'collection',
    entry: ORDER.map((resource) => ({ resource })),
  };
  return {
    hook,
    hookInstance: crypto.randomUUID(),
    context: {
      userId: 'Practitioner/dr-b',
      patientId: 'sc-patient',
      ...(hook === 'order-select' ? { selections: ORDER.map((o) => `ServiceRequest/${o.id}`) } : {}),
      draftOrders,
    },
    prefetch: { patient },
  };
}

/** What every view of the report must show for the day (hospital B). */
const EXPECTED = {
  prompts: 4, // CBC, urinalysis, chest CT, head CT: one each, however many checks showed them
  offered: 2, // CBC and urinalysis are reusable
  viewed: 1, // the CBC, opened in two launches
  accepted: 1, // the CBC
  referenceAccepted: 1, // the chest CT
  patients: 1,
  declined: 0, // the head CT was for reference only; the urinalysis card was dismissed
};

describe('the bureau’s figures for one chatty day (issue 20 scenario)', () => {
  let t: TestApp;
  let demo: DemoCdsClientFile;
  let cbcSaving = 0;

  const jwtFor = (path: string) => signCdsJwt(demo.iss, demo.privateJwk, `${ORIGIN}${path}`);
  async function hook(service: string, body: unknown) {
    const path = `/cds-services/${service}`;
    const res = await request(t.app)
      .post(path)
      .set('Authorization', `Bearer ${await jwtFor(path)}`)
      .send(body as object);
    expect(res.status, res.text).toBe(200);
    return (res.body as { cards: Card[] }).cards;
  }
  async function feedback(service: string, body: unknown) {
    const path = `/cds-services/${service}/feedback`;
    const res = await request(t.app)
      .post(path)
      .set('Authorization', `Bearer ${await jwtFor(path)}`)
      .send(body as object);
    expect(res.status, res.text).toBe(200);
    return res.body as { recorded?: { decision: string; status: string }[] };
  }
  const cardFor = (cards: Card[], item: string) => cards.find((c) => c.source.topic?.code === item)!;

  /** The doctor's view launched from the EHR (SMART EHR launch with PKCE): its token and its data. */
  async function launchView(): Promise<{ token: string; check: string }> {
    const launch = await t
      .as('clinician')
      .post('/auth/launch')
      .send({ patient: [{ system: ID_CARD, value: ID_NUMBER }], practitioner: 'Practitioner/dr-b' });
    expect(launch.status, launch.text).toBe(201);
    const verifier = randomBytes(32).toString('base64url');
    const auth = await request(t.app)
      .get('/auth/authorize')
      .query({
        response_type: 'code',
        client_id: 'huren-app',
        redirect_uri: `${ORIGIN}/app`,
        scope: 'launch openid fhirUser user/*.rs',
        state: 's',
        aud: `${ORIGIN}/fhir`,
        launch: launch.body.launch as string,
        code_challenge: createHash('sha256').update(verifier).digest('base64url'),
        code_challenge_method: 'S256',
      });
    expect(auth.status, auth.text).toBe(302);
    const code = new URL(auth.headers.location as string).searchParams.get('code')!;
    const token = await request(t.app)
      .post('/auth/token')
      .type('form')
      .send({
        grant_type: 'authorization_code',
        code,
        redirect_uri: `${ORIGIN}/app`,
        client_id: 'huren-app',
        code_verifier: verifier,
      });
    expect(token.status, token.text).toBe(200);
    const view = await request(t.app)
      .get('/app/api/prior-results')
      .set('Authorization', `Bearer ${token.body.access_token}`);
    expect(view.status, view.text).toBe(200);
    const cbc = (view.body.categories as { items: { item: string; check: string }[] }[])
      .flatMap((c) => c.items)
      .find((i) => i.item === 'HR-LAB-CBC')!;
    return { token: token.body.access_token as string, check: cbc.check };
  }

  const decisionBody = (check: string, item: string, decision: string, reason?: string) =>
    decisionParameters(
      check,
      item,
      decision,
      reason ? [{ name: 'reason', valueCoding: { system: DECLINE_REASON_SYSTEM, code: reason } }] : [],
    );

  beforeAll(async () => {
    t = await createTestApp('report-scenario');
    demo = readDemoCdsClient(TEST_DATA_DIR)!;
    for (const r of [patient, ...RESULTS]) {
      const res = await t.as('his').put(`/fhir/${r.resourceType}/${r.id}`).set('Content-Type', FHIR_JSON).send(r);
      expect([200, 201], res.text).toContain(res.status);
    }

    // The EHR: order-select, then order-sign of the same order (CBC and urinalysis).
    await hook(SELECT, hookBody('order-select'));
    const signCards = await hook(SIGN, hookBody('order-sign'));
    const cbcCard = cardFor(signCards, 'HR-LAB-CBC');
    const urineCard = cardFor(signCards, 'HR-LAB-URINE');
    expect(urineCard.indicator).toBe('info');

    // The doctor launches the view twice from the EHR and opens the CBC each time.
    for (let i = 0; i < 2; i++) {
      const view = await launchView();
      const viewed = await request(t.app)
        .post('/fhir/$reuse-decision')
        .set('Authorization', `Bearer ${view.token}`)
        .set('Content-Type', FHIR_JSON)
        .send(decisionBody(view.check, 'HR-LAB-CBC', 'viewed'));
      expect([200, 201], viewed.text).toContain(viewed.status);
    }

    // On the signing card: the CBC is reused; the urinalysis card is dismissed without a reason.
    const now = new Date().toISOString();
    await feedback(SIGN, {
      feedback: [
        {
          card: cbcCard.uuid,
          outcome: 'accepted',
          acceptedSuggestions: [{ id: cbcCard.suggestions![0]!.uuid }],
          outcomeTimestamp: now,
        },
        { card: urineCard.uuid, outcome: 'overridden', outcomeTimestamp: now },
      ],
    });
    const accepted = await t.deps.ledger!.collection.findOne({ card: cbcCard.uuid, event: 'accepted' });
    cbcSaving = accepted!.saving;
    expect(cbcSaving).toBeGreaterThan(0);

    // The HIS asks about the two CTs: both for reference only. One is accepted for reference, one declined.
    const check = await t
      .as('demo-his-hospital-b')
      .post('/fhir/$reuse-check')
      .set('Content-Type', FHIR_JSON)
      .send(reuseCheckParameters(ID_NUMBER, ['29252-4', '24725-4']));
    expect(check.status, check.text).toBe(200);
    const checkId = checkIdOf(check.body);
    const decide = (item: string, decision: string, reason?: string) =>
      t
        .as('demo-his-hospital-b')
        .post('/fhir/$reuse-decision')
        .set('Content-Type', FHIR_JSON)
        .send(decisionBody(checkId, item, decision, reason));
    const chest = await decide('HR-IMG-CT-CHEST', 'accepted');
    expect(chest.status, chest.text).toBe(201);
    const out = (chest.body as Parameters).parameter!;
    expect(out.find((p) => p.name === 'outcome')?.valueCode).toBe('reference-only');
    expect(out.find((p) => p.name === 'reportedAs')?.valueCode).toBe('reference-accepted');
    expect(out.find((p) => p.name === 'saving')?.valueMoney?.value).toBe(0);
    const head = await decide('HR-IMG-CT-HEAD', 'declined', 'condition-changed');
    expect(head.status, head.text).toBe(201);
    expect((head.body as Parameters).parameter!.find((p) => p.name === 'reportedAs')?.valueCode).toBe('not-counted');
  });
  afterAll(async () => {
    await t?.close();
  });

  test('the ledger keeps every call; the report counts one prompt per patient, item and day', async () => {
    // The trail: the CBC was offered by at least three checks (two hooks, the view), each with its own prompt entry.
    const cbcPrompts = await t.deps.ledger!.collection.countDocuments({ item: 'HR-LAB-CBC', event: 'prompt' });
    expect(cbcPrompts).toBeGreaterThanOrEqual(3);
    const res = await t.as('bureau').get('/reports/savings').query({ from: TODAY, to: TODAY, by: 'organization' });
    expect(res.status, res.text).toBe(200);
    const body = res.body as SavingsReport;
    expect(body.rows).toHaveLength(1);
    expect(body.rows[0]!.organization!.code).toBe('demo-hospital-b');
    for (const figures of [body.rows[0]!, body.totals]) {
      expect(figures).toMatchObject({
        ...EXPECTED,
        recognitionRate: 0.5,
        retrievalRate: 0.25,
        saving: cbcSaving,
      });
      expect(Object.values(figures.declinedByReason).every((n) => n === 0)).toBe(true);
    }
    expect(body.definitions.prompts.en).toMatch(/one per \(requesting institution, patient, item, local day\)/);
  });

  test('by item: each item once, and 互认率 never above 100 %', async () => {
    const res = await t.as('bureau').get('/reports/savings').query({ from: TODAY, to: TODAY, by: 'item' });
    const rows = (res.body as SavingsReport).rows;
    const byItem = Object.fromEntries(rows.map((r) => [r.item!.code, r]));
    expect(Object.keys(byItem).sort()).toEqual(['HR-IMG-CT-CHEST', 'HR-IMG-CT-HEAD', 'HR-LAB-CBC', 'HR-LAB-URINE']);
    expect(byItem['HR-LAB-CBC']).toMatchObject({ prompts: 1, offered: 1, viewed: 1, accepted: 1, recognitionRate: 1 });
    expect(byItem['HR-LAB-URINE']).toMatchObject({ prompts: 1, offered: 1, viewed: 0, accepted: 0, declined: 0 });
    expect(byItem['HR-IMG-CT-CHEST']).toMatchObject({ offered: 0, accepted: 0, referenceAccepted: 1, saving: 0 });
    expect(byItem['HR-IMG-CT-HEAD']).toMatchObject({ offered: 0, declined: 0, recognitionRate: null });
    for (const r of rows) if (r.recognitionRate !== null) expect(r.recognitionRate).toBeLessThanOrEqual(1);
  });

  test('the CSV has the same counts, headed in Chinese by default and in English with lang=en', async () => {
    for (const [lang, columns] of [
      ['zh', ['提醒次数', '可互认提醒', '调阅', '互认项次', '参考采纳', '互认人次', '不予互认']],
      [
        'en',
        [
          'Prompts',
          'Reusable offered',
          'Viewed',
          'Items reused',
          'Reference acceptances',
          'Patient visits',
          'Declined',
        ],
      ],
    ] as const) {
      const res = await t
        .as('bureau')
        .get('/reports/savings')
        .query({ from: TODAY, to: TODAY, by: 'organization', format: 'csv', ...(lang === 'en' ? { lang } : {}) });
      expect(res.status, res.text).toBe(200);
      expect(res.text.startsWith('\uFEFF')).toBe(true);
      const lines = res.text.slice(1).split('\r\n');
      expect(lines.at(-1)).toBe(''); // CRLF after every line, nothing after
      expect(lines).toHaveLength(4); // one header row, hospital B, the total
      const header = lines[0]!.split(',');
      const row = lines[1]!.split(',');
      expect(row[0]).toBe('demo-hospital-b');
      expect(lines[2]!.split(',')[0]).toBe(lang === 'zh' ? '合计' : 'Total');
      const counts = columns.map((c) => Number(row[header.indexOf(c)]));
      expect(counts).toEqual(Object.values(EXPECTED));
      expect(Number(row[header.indexOf(lang === 'zh' ? '互认率' : 'Recognition rate')])).toBe(0.5);
    }
  });

  test('the MeasureReport has the same counts', async () => {
    const res = await t
      .as('bureau')
      .get('/fhir/Measure/reuse-savings/$evaluate-measure')
      .query({ periodStart: TODAY, periodEnd: TODAY });
    expect(res.status, res.text).toBe(200);
    const pops = (res.body as MeasureReport).group![0]!.population!;
    const count = (code: string) =>
      pops.find((p: MeasureReportGroupPopulation) => p.code?.coding?.[0]?.code === code)?.count;
    expect({
      prompts: count('initial-population'),
      offered: count('reusable-offered'),
      viewed: count('viewed'),
      accepted: count('measure-population'),
      referenceAccepted: count('reference-accepted'),
      patients: count('patients'),
      declined: count('declined'),
    }).toEqual(EXPECTED);
    expect((res.body as MeasureReport).group![0]!.measureScore?.value).toBe(cbcSaving);
  });

  test('supervision: the CDS decision is the hook user’s, and a reference-only decline is no case', async () => {
    const res = await t.as('bureau').get('/reports/savings').query({ from: TODAY, to: TODAY, by: 'practitioner' });
    expect(res.status, res.text).toBe(200);
    const rows = res.body.rows as { practitioner: { code: string }; decided: number; declined: number }[];
    expect(rows).toEqual([
      expect.objectContaining({ practitioner: { code: 'Practitioner/dr-b' }, decided: 1, declined: 0 }),
    ]);
    const cases = await t.as('bureau').get('/reports/supervision/cases').query({ from: TODAY, to: TODAY });
    expect(cases.body.cases).toEqual([]);
  });

  test('the dashboard shows the same counts (Debian chromium)', async (ctx) => {
    const server: Server = t.app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const browser = await launchBrowser();
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const page = await browser.newPage({ viewport: { width: 1400, height: 900 }, locale: 'zh-CN' });
      const errors = watchErrors(page);
      await page.goto(`${base}/dashboard?from=${TODAY}&to=${TODAY}`);
      await page.locator('#demo-signin').click();
      await expect.poll(() => page.locator('#h-prompts').textContent()).toBe(String(EXPECTED.prompts));
      expect(await page.locator('#h-accepted').textContent()).toBe(String(EXPECTED.accepted));
      expect(await page.locator('#h-reference').textContent()).toBe(String(EXPECTED.referenceAccepted));
      expect(await page.locator('#h-patients').textContent()).toBe(String(EXPECTED.patients));
      expect(await page.locator('#h-recognition').textContent()).toBe('50.0%');
      expect(await page.locator('#h-retrieval').textContent()).toBe('25.0%');
      const cells = await page.locator('#table tbody tr[data-organization="demo-hospital-b"] td').allTextContents();
      expect(cells.slice(0, 7).map(Number)).toEqual(Object.values(EXPECTED));
      await screenshot(page, 'scenario-dashboard-zh', ctx);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
