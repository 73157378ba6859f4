import { createServer, type Server } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import type { Bundle, DiagnosticReport, Observation, Patient } from 'fhir/r4';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DECISIONS_COLLECTION, type LedgerEntry } from '../../src/recognition/ledger.js';
import { SYSTEMS } from '../../src/recognition/vocabulary.js';
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
  name: [{ use: 'official', text: '王小红' }],
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

const interpretation = (code: string): Observation['interpretation'] => [
  { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code }] },
];

/** A critical white-cell count in the same CBC: flagged as critical, not by colour alone. */
const wbc: Observation = {
  ...hgb('dv-wbc', 1, 0),
  code: { coding: [{ system: LOINC, code: '6690-2', display: 'Leukocytes [#/volume] in Blood' }], text: '白细胞计数' },
  valueQuantity: { value: 31.2, unit: '10^9/L', system: 'http://unitsofmeasure.org', code: '10*9/L' },
  referenceRange: [{ low: { value: 3.5 }, high: { value: 9.5 } }],
  interpretation: interpretation('HH'),
};

const crpValue: Observation = {
  ...hgb('dv-crp-value', 1, 0),
  code: { coding: [{ system: LOINC, code: '1988-5', display: 'C reactive protein' }], text: 'C反应蛋白' },
  valueQuantity: { value: 25, unit: 'mg/L', system: 'http://unitsofmeasure.org', code: 'mg/L' },
  referenceRange: [{ high: { value: 10 } }],
  interpretation: interpretation('H'),
};

/** The chest CT as a radiology report: findings (检查所见), impression, doctors, report time, a cloud-film link. */
const ctReport = report('dv-ct', '29252-4', 12, {
  conclusion: '双肺未见明显异常。',
  issued: daysAgo(11.9),
  performer: [
    { reference: 'Organization/demo-hospital-a' },
    { reference: 'Practitioner/dv-reviewer', display: '李审核' },
  ],
  resultsInterpreter: [{ reference: 'Practitioner/dv-reporter', display: '赵报告' }],
  presentedForm: [
    {
      contentType: 'text/plain; charset=utf-8',
      data: Buffer.from('双肺纹理清晰，\u3000未见实质性病变。纵隔居中。', 'utf8').toString('base64'),
    },
    { contentType: 'text/html', url: 'https://film.hospital-a.example.org/viewer?study=1.2.3', title: '云胶片' },
  ],
});

const resources = [
  patient,
  hgb('dv-hgb-old', 5, 108),
  report('dv-cbc-old', '57021-8', 5, { result: [{ reference: 'Observation/dv-hgb-old' }] }),
  hgb('dv-hgb', 1, 121),
  wbc,
  report('dv-cbc', '57021-8', 1, {
    result: [{ reference: 'Observation/dv-hgb' }, { reference: 'Observation/dv-wbc' }],
  }),
  crpValue,
  report('dv-crp', '1988-5', 1, { result: [{ reference: 'Observation/dv-crp-value' }] }),
  report('dv-ua', '24356-8', 1),
  ctReport,
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
/** A launch goes through discovery, authorization, the token and the view's data: on a busy machine, seconds. */
const LOAD = { timeout: 20_000 };

/** Counts the doctor's clicks on the page (the common path must take at most three after the launch). */
let clicks = 0;
async function click(locator: ReturnType<Page['locator']>): Promise<void> {
  clicks++;
  await locator.click();
}

/** Screenshots of the page as it is, in zh-CN and English, at desktop and phone widths. */
async function shots(p: Page, name: string, ctx: Parameters<typeof screenshot>[2]): Promise<void> {
  const before = p.viewportSize()!;
  const lang = await p.locator('#lang').textContent();
  for (const l of lang === 'English' ? ['zh', 'en'] : ['en', 'zh']) {
    for (const width of [1400, 390]) {
      await p.setViewportSize({ width, height: 900 });
      await screenshot(p, `${name}-${l}-${width}`, ctx);
    }
    await p.locator('#lang').click();
  }
  await p.setViewportSize(before);
}

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
      viewport: { width: 1400, height: 900 },
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

  test('the patient banner names the patient masked: 王*红, sex, age, ID first 6 + last 4, the launching hospital', async (ctx) => {
    await page.goto(await registerLaunch());
    await expect.poll(() => page.url(), LOAD).toBe(`${base}/app`);
    await expect.poll(() => card('HR-LAB-CBC').count(), LOAD).toBe(1);
    const banner = page.locator('#patient');
    expect(await banner.isVisible()).toBe(true);
    expect(await banner.locator('.patient-name').textContent()).toBe('王*红');
    expect(await banner.locator('.patient-sex').textContent()).toBe('女');
    expect(await banner.locator('.patient-age').textContent()).toMatch(/^4\d岁$/);
    expect(await banner.locator('.patient-id').textContent()).toBe('身份证 370202********0025');
    expect(await banner.locator('.patient-org').textContent()).toContain('青岛演示医院B');
    // Neither the full name nor the full number reaches the page.
    const html = await page.content();
    expect(html).not.toContain('王小红');
    expect(html).not.toContain(ID_NUMBER);
    await shots(page, 'doctor-view', ctx);
    expect(errors).toEqual([]);
  });

  test('common path in three clicks: open the CBC, reuse, confirm; a reload shows the decision as recorded', async (ctx) => {
    clicks = 0;
    const cbc = card('HR-LAB-CBC');
    expect(await cbc.locator('.tag').textContent()).toBe('可互认');
    expect(await cbc.locator('.reason').first().textContent()).toMatch(/^可互认：青岛演示医院A .*无需重复检查。$/);
    expect(await cbc.locator('.countdown').textContent()).toMatch(/剩余 \d+ 天/);
    expect(await cbc.textContent()).toContain('¥30.00');

    await click(cbc.getByRole('button', { name: '查看结果' }));
    const row = cbc.locator('table.values tbody tr').first();
    await expect.poll(() => row.textContent()).toContain('121 g/L');
    expect(await row.textContent()).toContain('115–150');
    expect(await row.locator('svg.trend').getAttribute('aria-label')).toMatch(/108.*121/);
    // Flags are words, and a critical value stands out.
    expect(await cbc.locator('.flag.critical').textContent()).toBe('↑危急高值');
    await expect
      .poll(async () => (await ledger()).filter((e) => e.event === 'viewed' && e.item === 'HR-LAB-CBC').length)
      .toBe(1);

    // Reuse asks for a confirmation; nothing is recorded before it.
    await click(cbc.getByRole('button', { name: '互认（不再重复检查）' }));
    expect(await cbc.locator('.confirm').textContent()).toContain('青岛演示医院A');
    expect((await ledger()).filter((e) => e.event === 'accepted')).toHaveLength(0);
    await click(cbc.getByRole('button', { name: '确认互认' }));
    await expect.poll(() => cbc.locator('.done').textContent()).toContain('已互认');
    expect(clicks).toBe(3);
    const accepted = (await ledger()).filter((e) => e.event === 'accepted');
    expect(accepted).toHaveLength(1);
    expect(accepted[0]).toMatchObject({ item: 'HR-LAB-CBC', saving: 30, institution: 'demo-hospital-b' });

    await page.reload();
    await expect.poll(() => card('HR-LAB-CBC').locator('.done').textContent(), LOAD).toContain('已互认，节约 ¥30.00');
    expect(await card('HR-LAB-CBC').getByRole('button', { name: '互认（不再重复检查）' }).count()).toBe(0);
    expect(await card('HR-LAB-CBC').getByRole('button', { name: '更正' }).isVisible()).toBe(true);
    await screenshot(page, 'doctor-view-reused', ctx);
  });

  test('a mis-click is corrected within 10 minutes: a new ledger entry supersedes the reuse', async () => {
    const cbc = card('HR-LAB-CBC');
    await cbc.getByRole('button', { name: '更正' }).click();
    await cbc.getByRole('button', { name: '不予互认…' }).click();
    const dialog = page.locator('dialog#decline');
    await dialog.getByRole('button', { name: '病情变化' }).click();
    await expect.poll(() => cbc.locator('.done').textContent()).toContain('不予互认（病情变化）');
    expect(await cbc.locator('.done').textContent()).toContain('已更正');
    expect(await cbc.getByRole('button', { name: '更正' }).count()).toBe(0);
    const entries = (await ledger()).filter((e) => e.item === 'HR-LAB-CBC');
    expect(entries.filter((e) => e.event === 'accepted')).toHaveLength(1);
    expect(entries.find((e) => e.event === 'declined')).toMatchObject({ reason: 'condition-changed' });
    expect(entries.find((e) => e.event === 'declined')!.supersedes).toMatch(/\|HR-LAB-CBC\|decision$/);
    await page.reload();
    await expect.poll(() => card('HR-LAB-CBC').locator('.done').textContent(), LOAD).toContain('（已更正）');
  });

  test('declining with "other" needs the doctor\'s text, which the card then shows; "other" is the last reason', async (ctx) => {
    clicks = 0;
    const crp = card('HR-LAB-CRP');
    await click(crp.getByRole('button', { name: '查看结果' }));
    await expect.poll(() => crp.locator('.flag').textContent()).toBe('↑偏高');
    await click(crp.getByRole('button', { name: '不予互认…' }));
    const dialog = page.locator('dialog#decline');
    await expect.poll(() => dialog.isVisible()).toBe(true);
    const reasons = await dialog.locator('.reason-choice').allTextContents();
    expect(reasons.at(-1)).toBe('其他（须说明）');
    await dialog.getByRole('button', { name: '其他（须说明）' }).click();
    expect(await dialog.locator('#decline-error').textContent()).toBe('该理由须填写说明');
    expect((await ledger()).filter((e) => e.item === 'HR-LAB-CRP' && e.event === 'declined')).toHaveLength(0);
    await screenshot(page, 'doctor-view-decline', ctx);

    await dialog.locator('#reason-text').fill('患者发热加重，需复查');
    await click(dialog.getByRole('button', { name: '其他（须说明）' }));
    await expect.poll(() => dialog.isVisible()).toBe(false);
    expect(clicks).toBe(3);
    await expect.poll(() => crp.locator('.done').textContent()).toBe('已记录：不予互认（患者发热加重，需复查）');
    expect((await ledger()).filter((e) => e.item === 'HR-LAB-CRP' && e.event === 'declined')).toMatchObject([
      { reason: 'other', reasonText: '患者发热加重，需复查', saving: 0 },
    ]);
    await page.reload();
    await expect
      .poll(() => card('HR-LAB-CRP').locator('.done').textContent(), LOAD)
      .toBe('已记录：不予互认（患者发热加重，需复查）');
  });

  test('a reference-only CT is offered for viewing only, with findings, impression, doctors, images and a print view', async (ctx) => {
    const ct = card('HR-IMG-CT-CHEST');
    expect(await ct.locator('.tag').textContent()).toBe('仅供参考');
    expect(await ct.locator('.reason').first().textContent()).toContain('2025-06-30');
    expect(await ct.getByRole('button', { name: /互认/ }).count()).toBe(0);
    expect(await ct.getByRole('button', { name: /不予互认/ }).count()).toBe(0);
    // The rule path is there on demand.
    expect(await ct.locator('details.rule-path').getAttribute('open')).toBeNull();
    await ct.locator('details.rule-path summary').click();
    expect(await ct.locator('details.rule-path li').count()).toBeGreaterThan(2);

    await ct.getByRole('button', { name: '查看（仅供参考）' }).click();
    await expect.poll(() => ct.locator('.findings').textContent()).toContain('双肺纹理清晰，\u3000未见实质性病变。');
    // The rule path stays open while the values open, and names no code-system URL.
    expect(await ct.locator('details.rule-path').getAttribute('open')).not.toBeNull();
    expect(await ct.locator('details.rule-path').textContent()).not.toContain('http');
    expect(await ct.locator('.conclusion').textContent()).toContain('双肺未见明显异常。');
    expect(await ct.locator('.conclusion').textContent()).toContain('不属互认内容');
    expect(await ct.locator('.report-meta').textContent()).toMatch(/报告时间: \d{4}-\d{2}-\d{2} \d{2}:\d{2}/);
    expect(await ct.locator('.report-meta').textContent()).toContain('报告医师: 赵报告');
    expect(await ct.locator('.report-meta').textContent()).toContain('审核医师: 李审核');
    expect(await ct.locator('.images a').getAttribute('href')).toBe(
      'https://film.hospital-a.example.org/viewer?study=1.2.3',
    );
    await expect
      .poll(async () => (await ledger()).filter((e) => e.item === 'HR-IMG-CT-CHEST' && e.event === 'viewed').length)
      .toBe(1);
    expect(
      (await ledger()).filter((e) => e.item === 'HR-IMG-CT-CHEST' && e.event !== 'viewed' && e.event !== 'prompt'),
    ).toEqual([]);
    await shots(page, 'doctor-view-imaging', ctx);

    // The print view: the banner and this report only, without buttons.
    await page.evaluate(
      `document.body.classList.add('printing-one');
       document.querySelector('article[data-item="HR-IMG-CT-CHEST"]').classList.add('print-target')`,
    );
    await page.emulateMedia({ media: 'print' });
    expect(await card('HR-LAB-CBC').isVisible()).toBe(false);
    expect(await ct.isVisible()).toBe(true);
    expect(await page.locator('#patient').isVisible()).toBe(true);
    expect(await ct.getByRole('button').first().isVisible()).toBe(false);
    await screenshot(page, 'doctor-view-print', ctx);
    await page.emulateMedia({ media: 'screen' });
    await page.evaluate(
      `document.body.classList.remove('printing-one');
       document.querySelector('article[data-item="HR-IMG-CT-CHEST"]').classList.remove('print-target')`,
    );
  });

  test('in English: scope, levels, analytes and dates are English, one date format', async () => {
    await page.getByRole('button', { name: 'English' }).click();
    await expect.poll(() => page.locator('h1').textContent()).toContain('Prior results');
    const cbc = card('HR-LAB-CBC');
    const meta = (await cbc.locator('.item-meta').textContent())!;
    expect(meta).toContain('Recognition scope: Municipal HR');
    expect(meta).toContain('Qingdao Demo Hospital A (tertiary grade A)');
    expect(meta).toMatch(/Done on: \d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}/);
    expect(meta).toMatch(/Valid until: \d{1,2} [A-Z][a-z]{2} \d{4} /);
    expect(meta).not.toMatch(/\d{4}[-/]\d{2}[-/]\d{2}/);
    expect(await cbc.locator('.reason').first().textContent()).toMatch(/^Reusable: the CBC/);
    expect(await page.locator('#patient .patient-sex').textContent()).toBe('female');
    if ((await cbc.locator('table.values').count()) === 0)
      await cbc.getByRole('button', { name: 'Show results' }).click();
    expect(await cbc.locator('table.values tbody').textContent()).toContain('Hemoglobin');
    expect(await cbc.locator('.flag.critical').textContent()).toBe('↑Critical high');
    // After a decline with "other" the doctor's own words are shown, not the reason's label.
    expect(await card('HR-LAB-CRP').locator('.done').textContent()).toBe('Recorded: not reused (患者发热加重，需复查)');
    await page.getByRole('button', { name: '中文' }).click();
  });

  test('keyboard: the values open with Enter and focus stays on the toggle', async () => {
    await page.reload();
    const toggle = card('HR-IMG-CT-CHEST').getByRole('button', { name: '查看（仅供参考）' });
    await toggle.focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => card('HR-IMG-CT-CHEST').locator('.conclusion').count(), LOAD).toBe(1);
    expect(await page.evaluate('document.activeElement?.getAttribute("aria-expanded")')).toBe('true');
  });

  test('a launch is used once; opening it again says so', async () => {
    const url = await registerLaunch();
    const first = await browser.newPage();
    await first.goto(url);
    await expect.poll(() => first.locator('article[data-item="HR-LAB-CBC"]').count(), LOAD).toBe(1);
    const again = await browser.newPage();
    await again.goto(url);
    await expect.poll(() => again.locator('#entry-error').textContent(), LOAD).toMatch(/already used/);
    await first.close();
    await again.close();
  });

  test('in demo mode a newcomer opens a patient without an EHR', async (ctx) => {
    const fresh = await browser.newPage({ locale: 'zh-CN' });
    await fresh.goto(`${base}/app`);
    await expect.poll(() => fresh.locator('#demo-form').isVisible(), LOAD).toBe(true);
    await fresh.locator('#demo-id').fill(ID_NUMBER);
    await fresh.getByRole('button', { name: '以演示医生身份打开' }).click();
    await expect.poll(() => fresh.locator('article[data-item="HR-LAB-CBC"]').count(), LOAD).toBe(1);
    expect(await fresh.locator('#patient .patient-name').textContent()).toBe('王*红');
    await screenshot(fresh, 'doctor-view-demo-entry', ctx);
    await fresh.close();
  });

  test('opened from a CDS card link, the view names the ordered item, highlights it and decides on the card check', async () => {
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
    await expect.poll(() => fresh.locator('#demo-form').isVisible(), LOAD).toBe(true);
    expect(await fresh.locator('#demo-id').isVisible()).toBe(false);
    await fresh.getByRole('button', { name: '以演示医生身份打开' }).click();
    const ct = fresh.locator('article[data-item="HR-IMG-CT-CHEST"]');
    await expect.poll(() => ct.getAttribute('class'), LOAD).toContain('highlighted');
    expect(await fresh.locator('#ordered').textContent()).toBe('本次开立：胸部CT平扫');
    await ct.getByRole('button', { name: '查看（仅供参考）' }).click();
    await expect
      .poll(async () => (await ledger()).filter((e) => e.check === checkId && e.event === 'viewed').length)
      .toBe(1);
    await fresh.close();
  });

  test("when hospital B's record says another sex, the banner blocks until the identity is verified, and reuse is not the suggested action", async (ctx) => {
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
    // A new patient visit: an item not decided yet (the CBC of another launch gets a new check).
    await page.goto(await registerLaunch());
    await expect.poll(() => card('HR-LAB-CBC').count(), LOAD).toBe(1);
    const warning = page.locator('#identity');
    expect(await warning.isVisible()).toBe(true);
    expect(await warning.textContent()).toContain('患者身份信息在各机构间不一致');
    expect(await warning.textContent()).toContain('性别：女（青岛演示医院A） ≠ 男（青岛演示医院B）');
    // The banner of the launching hospital B's own record.
    expect(await page.locator('#patient .patient-sex').textContent()).toBe('男');
    expect(await page.locator('#categories').getAttribute('inert')).not.toBeNull();
    await shots(page, 'doctor-view-identity', ctx);

    await warning.getByRole('button', { name: '我已核实患者身份' }).click();
    // The results open once the broker has recorded the verification in the audit trail.
    await expect.poll(() => page.locator('#categories').getAttribute('inert')).toBeNull();
    // Decisions of the day are shown as recorded on a re-launch; the urinalysis is still open.
    expect(await card('HR-LAB-CRP').locator('.done').textContent()).toContain('患者发热加重，需复查');
    const ua = card('HR-LAB-URINE');
    const reuse = ua.getByRole('button', { name: '互认（不再重复检查）' });
    expect(await reuse.getAttribute('class')).not.toContain('primary');
    await reuse.click();
    expect(await ua.locator('.confirm .identity-note').textContent()).toContain('请确认这是同一患者');
    await ua.getByRole('button', { name: '确认互认' }).click();
    await expect.poll(() => ua.locator('.done').textContent()).toContain('已互认');
    await page.reload();
    await expect.poll(() => card('HR-LAB-CBC').count(), LOAD).toBe(1);
    expect(await page.locator('#identity button').isVisible()).toBe(true);
  });

  test('a result for reference only that the hospital system accepted shows as 参考采纳, never as 互认', async () => {
    // The HIS of hospital B accepts the reference-only CT of every check that showed it (the operation allows it).
    const checks = new Set(
      (await ledger())
        .filter((e) => e.item === 'HR-IMG-CT-CHEST' && e.event === 'prompt' && e.institution === 'demo-hospital-b')
        .map((e) => e.check),
    );
    for (const check of checks) {
      const res = await t
        .as('demo-his-hospital-b')
        .post('/fhir/$reuse-decision')
        .set('Content-Type', 'application/fhir+json')
        .send({
          resourceType: 'Parameters',
          parameter: [
            { name: 'check', valueId: check },
            {
              name: 'item',
              valueCoding: {
                system: SYSTEMS.catalogue,
                code: 'HR-IMG-CT-CHEST',
              },
            },
            { name: 'decision', valueCode: 'accepted' },
          ],
        });
      expect(res.status, res.text).toBe(201);
      expect(res.body.parameter.find((p: { name: string }) => p.name === 'reportedAs').valueCode).toBe(
        'reference-accepted',
      );
    }
    await page.reload();
    await expect.poll(() => card('HR-IMG-CT-CHEST').count(), LOAD).toBe(1);
    const ct = card('HR-IMG-CT-CHEST');
    await expect.poll(() => ct.locator('.done').textContent()).toBe('已参考采纳（仅供参考，不计互认）');
    expect(await ct.getByRole('button', { name: /互认/ }).count()).toBe(0);
  });
});
