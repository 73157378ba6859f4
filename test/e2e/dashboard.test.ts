import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findDeclineReason } from '../../src/recognition/decline-reasons.js';
import { decisionEntry, promptEntries, type DoctorAction, type LedgerEntry } from '../../src/recognition/ledger.js';
import type { ReuseCheckDoc } from '../../src/recognition/reuse-checks.js';
import { launchBrowser, screenshot, watchErrors } from '../support/browser.js';
import { createTestApp, type TestApp } from '../support/app.js';

/**
 * The bureau dashboard in Debian's chromium, as an analyst uses it: one-click demo sign-in, headline figures that
 * equal the JSON report, a filter that changes them, English, and a CSV download.
 */

const TZ = 'Asia/Shanghai';
let t: TestApp;
let server: Server;
let base: string;
let browser: Browser;
let page: Page;
let errors: string[];

interface Scripted {
  id: string;
  at: string;
  requester: string;
  item: string;
  category: string;
  saving: number;
  action?: DoctorAction;
  reason?: string;
  viewed?: boolean;
  /** The engine's verdict offered (default reusable). */
  decision?: 'reusable' | 'reference-only';
  /** The patient's key (default one per check): a second check of the same patient, item and day is one prompt. */
  patient?: string;
  practitioner?: string;
  department?: string;
}

/** A check and the doctor's actions, as the live path stores them, at a chosen time. */
function entriesOf(s: Scripted): { check: ReuseCheckDoc; entries: LedgerEntry[] } {
  const at = new Date(s.at);
  const check: ReuseCheckDoc = {
    _id: s.id,
    requester: s.requester,
    patientKeys: [s.patient ?? `pk-${s.id}`],
    createdAt: at,
    at,
    context: 'routine',
    outcomes: [
      {
        requestIndex: 0,
        item: s.item,
        decision: s.decision ?? 'reusable',
        result: `DiagnosticReport/${s.id}`,
        performer: 'demo-hospital-a',
        saving: s.saving,
        currency: 'CNY',
      },
    ],
  };
  const entries = promptEntries(check, () => s.category, TZ);
  const rules = t.deps.facts.rules;
  const act = (action: DoctorAction, reason?: string) =>
    decisionEntry({
      check,
      item: s.item,
      action,
      ...(reason ? { reason: findDeclineReason(rules.declineReasons, reason)! } : {}),
      ...(s.practitioner ? { practitioner: s.practitioner } : {}),
      ...(s.department ? { department: s.department } : {}),
      channel: 'seed',
      now: new Date(at.getTime() + 60_000),
      timeZone: TZ,
      category: s.category,
    }) as LedgerEntry;
  if (s.viewed) entries.push(act('viewed'));
  if (s.action) entries.push(act(s.action, s.reason));
  return { check, entries };
}

const SCRIPT: Scripted[] = [
  {
    id: 'd1',
    at: '2026-09-03T02:00:00Z',
    requester: 'demo-hospital-b',
    item: 'HR-LAB-CBC',
    category: 'lab-hematology',
    saving: 30,
    viewed: true,
    action: 'accepted',
  },
  {
    id: 'd2',
    at: '2026-09-20T02:00:00Z',
    requester: 'demo-hospital-b',
    item: 'HR-IMG-CT-CHEST',
    category: 'imaging-ct',
    saving: 207,
    viewed: true,
    action: 'accepted',
  },
  {
    id: 'd3',
    at: '2026-10-08T02:00:00Z',
    requester: 'demo-hospital-c',
    item: 'HR-LAB-HBA1C',
    category: 'lab-chemistry',
    saving: 60,
    viewed: true,
    action: 'declined',
    reason: 'condition-changed',
    practitioner: 'Practitioner/dr-wang',
    department: 'Cardiology outpatient department 心血管内科门诊',
  },
  {
    id: 'd4',
    at: '2026-10-15T02:00:00Z',
    requester: 'demo-hospital-c',
    item: 'HR-LAB-CBC',
    category: 'lab-hematology',
    saving: 30,
    action: 'accepted',
  },
  {
    id: 'd5',
    at: '2026-11-02T02:00:00Z',
    requester: 'demo-hospital-b',
    item: 'HR-LAB-CBC',
    category: 'lab-hematology',
    saving: 30,
  },
  {
    id: 'd6',
    at: '2026-11-10T02:00:00Z',
    requester: 'demo-hospital-c',
    item: 'HR-IMG-CT-CHEST',
    category: 'imaging-ct',
    saving: 207,
    viewed: true,
    action: 'declined',
    reason: 'images-not-received',
    practitioner: 'Practitioner/dr-li',
    department: '放射科',
  },
  // The EHR asked again for d1's patient, item and day (another hook, a re-launch): still one prompt.
  {
    id: 'd1-again',
    at: '2026-09-03T03:00:00Z',
    requester: 'demo-hospital-b',
    item: 'HR-LAB-CBC',
    category: 'lab-hematology',
    saving: 30,
    patient: 'pk-d1',
    viewed: true,
  },
  // A result for reference only, accepted (参考采纳: not 互认) and another declined (not 不予互认).
  {
    id: 'd7',
    at: '2026-11-12T02:00:00Z',
    requester: 'demo-hospital-b',
    item: 'HR-IMG-CT-CHEST',
    category: 'imaging-ct',
    saving: 207,
    decision: 'reference-only',
    action: 'accepted',
  },
  {
    id: 'd8',
    at: '2026-11-13T02:00:00Z',
    requester: 'demo-hospital-c',
    item: 'HR-IMG-CT-CHEST',
    category: 'imaging-ct',
    saving: 207,
    decision: 'reference-only',
    action: 'declined',
    reason: 'condition-changed',
  },
];

async function reportJson(query: string): Promise<{ totals: Record<string, number | null> }> {
  const res = await t.as('bureau').get(`/reports/savings?${query}`);
  expect(res.status, res.text).toBe(200);
  return res.body as { totals: Record<string, number | null> };
}

async function headline(id: string): Promise<string> {
  return (await page.locator(`#${id}`).textContent())?.trim() ?? '';
}

const yuan = (n: number) =>
  new Intl.NumberFormat('zh-CN', { style: 'currency', currency: 'CNY', maximumFractionDigits: 2 }).format(n);

describe('bureau dashboard in a real browser', () => {
  beforeAll(async () => {
    t = await createTestApp('dashboard');
    const db = t.deps.connection.db!;
    for (const s of SCRIPT) {
      const { check, entries } = entriesOf(s);
      await db.collection<ReuseCheckDoc>('reuse_checks').insertOne(check);
      await t.deps.ledger!.recordHistory(entries);
    }
    server = t.app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await launchBrowser();
    page = await browser.newPage({
      viewport: { width: 1360, height: 900 },
      acceptDownloads: true,
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

  test('one click signs the analyst in; the headline figures are the report totals', async (ctx) => {
    await page.goto(`${base}/dashboard`);
    await page.getByRole('button', { name: '以演示卫健委身份进入' }).click();
    await page.locator('#from').fill('2026-09-01');
    await page.locator('#to').fill('2026-11-30');
    await page.getByRole('button', { name: '查询' }).click();

    const totals = (await reportJson('from=2026-09-01&to=2026-11-30&by=organization')).totals;
    expect(totals).toMatchObject({
      prompts: 8,
      offered: 6,
      viewed: 4,
      accepted: 3,
      referenceAccepted: 1,
      declined: 1,
      saving: 267,
    });
    await expect.poll(() => headline('h-saving')).toBe(yuan(267));
    expect(await headline('h-accepted')).toBe('3');
    expect(await headline('h-prompts')).toBe('8');
    expect(await headline('h-reference')).toBe('1');
    expect(await headline('h-recognition')).toBe('50.0%');
    expect(await headline('h-retrieval')).toBe('50.0%');
    // Every figure's name carries its exact definition.
    expect(await page.locator('.figure [data-def="prompts"]').getAttribute('title')).toMatch(/同一患者/);
    // The filters and the period are in the URL.
    expect(new URL(page.url()).searchParams.get('from')).toBe('2026-09-01');

    // The table: one row per institution, totals row equal to the headline.
    const rows = page.locator('#table tbody tr');
    await expect.poll(() => rows.count()).toBe(2);
    expect(await page.locator('#totals-row td').last().textContent()).toBe(yuan(267));
    expect(await page.locator('#table tbody tr[data-organization="demo-hospital-b"] td').last().textContent()).toBe(
      yuan(237),
    );

    // Charts are drawn (ECharts renders to canvas).
    for (const id of ['chart-funnel', 'chart-month', 'chart-organization', 'chart-category', 'chart-reasons']) {
      await expect.poll(() => page.locator(`#${id} canvas`).count()).toBeGreaterThan(0);
    }
    await screenshot(page, 'dashboard-zh', ctx);
    expect(errors).toEqual([]);
  });

  test('filtering one institution changes the figures to its own', async (ctx) => {
    await page.locator('#organization').selectOption('demo-hospital-c');
    await page.getByRole('button', { name: '查询' }).click();
    const totals = (await reportJson('from=2026-09-01&to=2026-11-30&by=organization&organization=demo-hospital-c'))
      .totals;
    expect(totals.saving).toBe(30);
    await expect.poll(() => headline('h-saving')).toBe(yuan(30));
    expect(await headline('h-accepted')).toBe('1');
    await expect.poll(() => page.locator('#table tbody tr').count()).toBe(1);
    await screenshot(page, 'dashboard-filtered', ctx);
  });

  test('in English, with a CSV download of the same period', async (ctx) => {
    await page.locator('#organization').selectOption('');
    await page.getByRole('button', { name: '查询' }).click();
    await page.getByRole('button', { name: 'English' }).click();
    await expect.poll(() => page.locator('h1').textContent()).toContain('Result recognition dashboard');
    await expect.poll(() => headline('h-saving')).toContain('267');

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download CSV' }).click(),
    ]);
    const stream = await download.createReadStream();
    let csv = '';
    for await (const chunk of stream) csv += chunk.toString();
    expect(csv).toMatch(/saving/i);
    expect(csv).toContain('demo-hospital-b');
    await screenshot(page, 'dashboard-en', ctx);
    expect(errors).toEqual([]);
  });

  test('the language switch re-labels the institution filter, and the URL brings the same view back', async () => {
    // English now (previous test): the filter's options are English names, not the Chinese ones of the first load.
    const options = await page.locator('#organization option').allTextContents();
    expect(options.join('|')).toMatch(/Hospital/);
    expect(options.join('|')).not.toMatch(/医院/);
    const url = new URL(page.url());
    expect(url.searchParams.get('lang')).toBe('en');
    expect(url.searchParams.get('to')).toBe('2026-11-30');
    const again = await browser.newPage({ viewport: { width: 1400, height: 900 }, locale: 'zh-CN' });
    await again.goto(page.url());
    await again.getByRole('button', { name: 'Enter as the demo health bureau' }).click();
    await expect.poll(() => again.locator('#h-prompts').textContent()).toBe('8');
    expect(await again.locator('#from').inputValue()).toBe('2026-09-01');
    await again.close();
  });

  test('an empty period says so instead of drawing bare axes', async (ctx) => {
    await page.locator('#from').fill('2020-01-01');
    await page.locator('#to').fill('2020-03-31');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => page.locator('#no-data').isVisible()).toBe(true);
    expect(await page.locator('#no-data').textContent()).toBe('No data for this period');
    for (const id of ['chart-funnel', 'chart-month', 'chart-organization', 'chart-category', 'chart-reasons']) {
      expect(await page.locator(`#${id}`).isVisible()).toBe(false);
      expect(await page.locator(`#${id} + .no-data`).isVisible()).toBe(true);
    }
    await screenshot(page, 'dashboard-empty-en', ctx);
  });

  test.for([
    ['zh', 1400],
    ['en', 1400],
    ['zh', 390],
    ['en', 390],
  ] as const)('in %s at %i px, the page fits its width and every label is whole', async ([lang, width], ctx) => {
    const p = await browser.newPage({ viewport: { width, height: 900 }, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
    const pageErrors = watchErrors(p);
    await p.goto(`${base}/dashboard?from=2026-09-01&to=2026-11-30&lang=${lang}`);
    await p.locator('#demo-signin').click();
    await expect.poll(() => p.locator('#h-prompts').textContent()).toBe('8');
    // Nothing sticks out sideways (the table scrolls inside its card).
    expect(await p.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(width);
    await screenshot(p, `dashboard-${lang}-${width}`, ctx);
    expect(pageErrors).toEqual([]);
    await p.close();
  });

  test('the supervision page: declines by institution, department and doctor, the cases, and a case opened', async (ctx) => {
    for (const [lang, width] of [
      ['zh', 1400],
      ['en', 390],
      ['zh', 390],
      ['en', 1400],
    ] as const) {
      const p = await browser.newPage({
        viewport: { width, height: 900 },
        locale: 'zh-CN',
        timezoneId: 'Asia/Shanghai',
      });
      const pageErrors = watchErrors(p);
      await p.goto(`${base}/dashboard/supervision?from=2026-09-01&to=2026-11-30&lang=${lang}`);
      await p.locator('#demo-signin').click();
      // Decisions on reusable results by institution, department and doctor (the acceptances named no doctor);
      // two reusable results declined (the reference-only decline is not one): two cases.
      await expect.poll(() => p.locator('#groups tbody tr').count()).toBe(4);
      await expect.poll(() => p.locator('#cases tbody tr').count()).toBe(2);
      expect(await p.locator('#h-declined').textContent()).toBe('1'); // images-not-received is no decline
      expect(await p.locator('#h-decided').textContent()).toBe('5');
      const text = await p.locator('#cases').textContent();
      expect(text).toContain('Practitioner/dr-wang');
      expect(text).not.toMatch(/pk-d/);
      await p.locator('#cases tbody tr').first().getByRole('button').click();
      await expect.poll(() => p.locator('#detail').isVisible()).toBe(true);
      await expect.poll(() => p.locator('#detail-body').textContent()).toMatch(/Practitioner\/dr-/);
      expect(await p.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(width);
      await screenshot(p, `supervision-${lang}-${width}`, ctx);
      expect(pageErrors).toEqual([]);
      await p.close();
    }
  });

  test('without a session the page asks to sign in, and a bad token gets a readable error', async () => {
    const fresh = await browser.newPage();
    await fresh.goto(`${base}/dashboard`);
    await expect.poll(() => fresh.locator('#signin').isVisible()).toBe(true);
    await fresh.locator('#token').fill('not-a-token');
    await fresh.getByRole('button', { name: '使用令牌' }).click();
    await expect.poll(() => fresh.locator('#signin-error').textContent()).not.toBe('');
    await fresh.close();
  });
});
