import { createServer, type Server } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import type { Bundle, DiagnosticReport, Observation, Patient } from 'fhir/r4';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DECISIONS_COLLECTION, type LedgerEntry } from '../../src/recognition/ledger.js';
import { launchBrowser, screenshot, watchErrors } from '../support/browser.js';
import { createTestApp, type TestApp } from '../support/app.js';
import { ID_CARD, LOINC, daysAgo } from '../fixtures/recognition.js';

/**
 * The doctor's prior-results view in Debian's chromium, launched the SMART way (the EHR registers a launch, the view
 * authorizes with PKCE and exchanges the code), showing hospital A's results to a doctor of hospital B, and
 * recording the doctor's decisions in the ledger.
 */

const ID_NUMBER = '370202198003150025';

let t: TestApp;
let server: HttpServer;
let base: string;
let browser: Browser;
let page: Page;
let errors: string[];

async function freePort(): Promise<number> {
  const probe: Server = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

const patient: Patient = {
  resourceType: 'Patient',
  id: 'dv-patient',
  identifier: [{ system: ID_CARD, value: ID_NUMBER }],
  gender: 'female',
  birthDate: '1980-03-15',
  managingOrganization: { reference: 'Organization/demo-hospital-a' },
};

const hgb = (id: string, days: number, value: number): Observation => ({
  resourceType: 'Observation',
  id,
  status: 'final',
  code: { coding: [{ system: LOINC, code: '718-7', display: 'Hemoglobin' }], text: '血红蛋白' },
  subject: { reference: 'Patient/dv-patient' },
  effectiveDateTime: daysAgo(days),
  valueQuantity: { value, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' },
  referenceRange: [{ low: { value: 115, unit: 'g/L' }, high: { value: 150, unit: 'g/L' } }],
  interpretation: [
    {
      coding: [
        {
          system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation',
          code: value < 115 ? 'L' : 'N',
        },
      ],
    },
  ],
  performer: [{ reference: 'Organization/demo-hospital-a' }],
});

const report = (id: string, code: string, days: number, extra: Partial<DiagnosticReport> = {}): DiagnosticReport => ({
  resourceType: 'DiagnosticReport',
  id,
  status: 'final',
  code: { coding: [{ system: LOINC, code }] },
  subject: { reference: 'Patient/dv-patient' },
  effectiveDateTime: daysAgo(days),
  issued: daysAgo(days),
  performer: [{ reference: 'Organization/demo-hospital-a' }],
  ...extra,
});

const resources = [
  patient,
  hgb('dv-hgb-old', 5, 108),
  report('dv-cbc-old', '57021-8', 5, { result: [{ reference: 'Observation/dv-hgb-old' }] }),
  hgb('dv-hgb', 1, 121),
  report('dv-cbc', '57021-8', 1, { result: [{ reference: 'Observation/dv-hgb' }] }),
  report('dv-ct', '29252-4', 12, { conclusion: '双肺未见明显异常。' }),
];

async function ledger(): Promise<LedgerEntry[]> {
  return t.deps.connection.db!.collection<LedgerEntry>(DECISIONS_COLLECTION).find({}).toArray();
}

/** The EHR of hospital B registers a launch for the patient; the URL it opens. */
async function registerLaunch(): Promise<string> {
  const res = await t
    .as('clinician')
    .post('/auth/launch')
    .send({ patient: [{ system: ID_CARD, value: ID_NUMBER }] });
  expect(res.status, res.text).toBe(201);
  const url = new URL(res.body.url as string);
  expect(url.searchParams.get('iss')).toBe(`${base}/fhir`);
  return url.toString();
}

const card = (item: string) => page.locator(`article[data-item="${item}"]`);

describe('doctor prior-results view in a real browser', () => {
  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    t = await createTestApp('doctor-view', { HUREN_BASE_URL: `${base}/fhir` });
    server = t.app.listen(port, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: resources.map((resource) => ({
        resource,
        request: { method: 'PUT' as const, url: `${resource.resourceType}/${resource.id}` },
      })),
    };
    const pushed = await t
      .as('demo-his-hospital-a')
      .post('/fhir')
      .set('Content-Type', 'application/fhir+json')
      .send(bundle);
    expect(pushed.status, pushed.text).toBe(200);
    browser = await launchBrowser();
    page = await browser.newPage({
      viewport: { width: 1200, height: 900 },
      locale: 'zh-CN',
      timezoneId: 'Asia/Shanghai',
    });
    errors = watchErrors(page);
  });
  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => server.close(resolve));
    await t.close();
  });

  test('launched from the EHR, the view shows hospital A results grouped by category with their verdicts', async (ctx) => {
    await page.goto(await registerLaunch());
    await expect.poll(() => page.url()).toBe(`${base}/app`);
    await expect.poll(() => card('HR-LAB-CBC').count()).toBe(1);

    const cbc = card('HR-LAB-CBC');
    expect(await cbc.locator('.tag').textContent()).toBe('可互认');
    expect(await cbc.textContent()).toContain('青岛演示医院A');
    expect(await cbc.locator('.countdown').textContent()).toMatch(/剩余 \d+ 天/);
    expect(await cbc.textContent()).toContain('¥30.00');
    const ct = card('HR-IMG-CT-CHEST');
    expect(await ct.locator('.tag').textContent()).toBe('仅供参考');
    expect(await ct.textContent()).toContain('2025-06-30');
    const headings = await page.locator('.category h2').allTextContents();
    expect(headings.length).toBe(2);

    // Opening the values records that the doctor viewed them; the trend spans both CBCs.
    await cbc.getByRole('button', { name: '查看结果' }).click();
    const row = cbc.locator('table.values tbody tr').first();
    await expect.poll(() => row.textContent()).toContain('121 g/L');
    expect(await row.textContent()).toContain('115–150');
    expect(await row.locator('svg.trend').getAttribute('aria-label')).toMatch(/108.*121/);
    await expect
      .poll(async () => (await ledger()).filter((e) => e.event === 'viewed' && e.item === 'HR-LAB-CBC').length)
      .toBe(1);
    await screenshot(page, 'doctor-view', ctx);
    expect(errors).toEqual([]);
  });

  test('reusing the CBC records an accepted decision with hospital B price', async () => {
    await card('HR-LAB-CBC').getByRole('button', { name: '互认（不再重复检查）' }).click();
    await expect.poll(() => card('HR-LAB-CBC').locator('.done').textContent()).toContain('已互认');
    const accepted = (await ledger()).filter((e) => e.event === 'accepted');
    expect(accepted).toHaveLength(1);
    expect(accepted[0]).toMatchObject({
      item: 'HR-LAB-CBC',
      saving: 30,
      institution: 'demo-hospital-b',
      channel: 'operation',
    });
  });

  test('the decline dialog requires a reason, and an explanation for "other"', async (ctx) => {
    const ct = card('HR-IMG-CT-CHEST');
    await ct.getByRole('button', { name: '不予互认…' }).click();
    const dialog = page.locator('dialog#decline');
    await expect.poll(() => dialog.isVisible()).toBe(true);
    await dialog.getByRole('button', { name: '确认不予互认' }).click();
    expect(await dialog.locator('#decline-error').textContent()).toBe('请选择理由');
    await dialog.getByLabel('其他（须说明）').check();
    await dialog.getByRole('button', { name: '确认不予互认' }).click();
    expect(await dialog.locator('#decline-error').textContent()).toBe('该理由须填写说明');
    expect((await ledger()).filter((e) => e.event === 'declined')).toHaveLength(0);
    await screenshot(page, 'doctor-view-decline', ctx);

    await dialog.locator('#reason-text').fill('外院影像未能调阅原片');
    await dialog.getByRole('button', { name: '确认不予互认' }).click();
    await expect.poll(() => dialog.isVisible()).toBe(false);
    await expect.poll(() => ct.locator('.done').textContent()).toContain('不予互认');
    const declined = (await ledger()).filter((e) => e.event === 'declined');
    expect(declined).toMatchObject([
      { item: 'HR-IMG-CT-CHEST', reason: 'other', reasonText: '外院影像未能调阅原片', saving: 0 },
    ]);
  });

  test('usable with the keyboard and in English', async () => {
    await page.getByRole('button', { name: 'English' }).click();
    await expect.poll(() => page.locator('h1').textContent()).toContain('Prior results');
    const toggle = card('HR-IMG-CT-CHEST').getByRole('button', { name: 'Show results' });
    await toggle.focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => card('HR-IMG-CT-CHEST').locator('.conclusion').textContent()).toContain('双肺');
    // The previous doctor's conclusion is shown for reference, and said not to be recognised.
    expect(await card('HR-IMG-CT-CHEST').locator('.conclusion').textContent()).toContain('not recognised');
    expect(await page.evaluate('document.activeElement?.getAttribute("aria-expanded")')).toBe('true');
    await page.getByRole('button', { name: '中文' }).click();
  });

  test('a launch is used once; opening it again says so', async () => {
    const url = await registerLaunch();
    const first = await browser.newPage();
    await first.goto(url);
    await expect.poll(() => first.locator('article[data-item="HR-LAB-CBC"]').count()).toBe(1);
    const again = await browser.newPage();
    await again.goto(url);
    await expect.poll(() => again.locator('#entry-error').textContent()).toMatch(/already used/);
    await first.close();
    await again.close();
  });

  test('in demo mode a newcomer opens a patient without an EHR', async (ctx) => {
    const fresh = await browser.newPage({ locale: 'zh-CN' });
    await fresh.goto(`${base}/app`);
    await expect.poll(() => fresh.locator('#demo-form').isVisible()).toBe(true);
    await fresh.locator('#demo-id').fill(ID_NUMBER);
    await fresh.getByRole('button', { name: '以演示医生身份打开' }).click();
    await expect.poll(() => fresh.locator('article[data-item="HR-LAB-CBC"]').count()).toBe(1);
    await screenshot(fresh, 'doctor-view-demo-entry', ctx);
    await fresh.close();
  });

  test('opened from a CDS card link, the view highlights the card item and decides on the card check', async () => {
    const check = await t
      .as('clinician')
      .post('/fhir/$reuse-check')
      .set('Content-Type', 'application/fhir+json')
      .send({
        resourceType: 'Parameters',
        parameter: [
          { name: 'patient', valueIdentifier: { system: ID_CARD, value: ID_NUMBER } },
          { name: 'code', valueCoding: { system: LOINC, code: '29252-4' } },
          { name: 'requester', valueReference: { reference: 'Organization/demo-hospital-b' } },
        ],
      });
    expect(check.status, check.text).toBe(200);
    const checkId = (check.body as { parameter: { name: string; valueId?: string }[] }).parameter.find(
      (p) => p.name === 'check',
    )!.valueId!;

    const fresh = await browser.newPage({ locale: 'zh-CN' });
    await fresh.goto(`${base}/app?check=${checkId}&item=HR-IMG-CT-CHEST`);
    await expect.poll(() => fresh.locator('#demo-form').isVisible()).toBe(true);
    expect(await fresh.locator('#demo-id').isVisible()).toBe(false);
    await fresh.getByRole('button', { name: '以演示医生身份打开' }).click();
    const ct = fresh.locator('article[data-item="HR-IMG-CT-CHEST"]');
    await expect.poll(() => ct.getAttribute('class')).toContain('highlighted');
    await ct.getByRole('button', { name: '查看结果' }).click();
    await expect
      .poll(async () => (await ledger()).filter((e) => e.check === checkId && e.event === 'viewed').length)
      .toBe(1);
    await fresh.close();
  });

  test("when hospital B's own record of the patient says another sex, the view asks to verify the identity", async (ctx) => {
    const own = await t
      .as('demo-his-hospital-b')
      .put('/fhir/Patient/dv-patient-at-b')
      .set('Content-Type', 'application/fhir+json')
      .send({
        ...patient,
        id: 'dv-patient-at-b',
        gender: 'male',
        managingOrganization: { reference: 'Organization/demo-hospital-b' },
      } satisfies Patient);
    expect([200, 201], own.text).toContain(own.status);
    await page.goto(await registerLaunch());
    await expect.poll(() => card('HR-LAB-CBC').count()).toBe(1);
    const warning = page.locator('#identity');
    expect(await warning.isVisible()).toBe(true);
    expect(await warning.textContent()).toContain('患者身份信息在各机构间不一致');
    expect(await warning.textContent()).toContain('性别：女（青岛演示医院A） ≠ 男（青岛演示医院B）');
    await screenshot(page, 'doctor-view-identity', ctx);
  });
});
