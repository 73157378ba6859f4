import type {
  DiagnosticReport,
  MeasureReport,
  MeasureReportGroupPopulation,
  OperationOutcome,
  Parameters,
  ParametersParameter,
  Patient,
} from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findDeclineReason } from '../../src/recognition/decline-reasons.js';
import { decisionEntry, promptEntries, type DoctorAction, type LedgerEntry } from '../../src/recognition/ledger.js';
import type { ReuseCheckDoc, StoredOutcome } from '../../src/recognition/reuse-checks.js';
import { localDate } from '../../src/recognition/time.js';
import { SYSTEMS } from '../../src/recognition/vocabulary.js';
import type { Dimension, SavingsReport, SavingsRow } from '../../src/reports/savings.js';
import { createTestApp, type TestApp } from '../support/app.js';
import { FHIR_JSON, ID_CARD, LOINC, daysAgo, checkIdOf, reuseCheckParameters } from '../fixtures/recognition.js';

const ID_NUMBER = '11010519491231002X';
const DECLINE = 'https://huren.example.org/fhir/CodeSystem/hr-decline-reason';
const TZ = 'Asia/Shanghai';
const TODAY = localDate(Date.now(), TZ);
const FROM = '2024-11-01';

const patient: Patient = {
  resourceType: 'Patient',
  id: 'rp-patient',
  identifier: [{ system: ID_CARD, value: ID_NUMBER }],
  gender: 'female',
  birthDate: '1949-12-31',
  managingOrganization: { reference: 'Organization/demo-hospital-a' },
};
const report = (id: string, code: string): DiagnosticReport => ({
  resourceType: 'DiagnosticReport',
  id,
  status: 'final',
  code: { coding: [{ system: LOINC, code }] },
  subject: { reference: `Patient/${patient.id}` },
  effectiveDateTime: daysAgo(1),
  issued: daysAgo(1),
  performer: [{ reference: 'Organization/demo-hospital-a' }],
});

type Tally = {
  prompts: number;
  offered: number;
  viewed: number;
  accepted: number;
  referenceAccepted: number;
  declined: number;
  fen: number;
  visits: Set<string>;
  reasons: Record<string, number>;
};
const FIELD = { organization: 'institution', category: 'category', item: 'item', month: 'month' } as const;

interface ExpectedPrompt {
  institution: string;
  category: string;
  item: string;
  month: string;
  day: string;
  patientKey: string;
  outcome: string;
  viewed: boolean;
  decision?: LedgerEntry;
}

/**
 * The prompts computed independently, straight from the ledger documents: one per (institution, patient, item, day
 * of the check), viewed when any view was recorded, the decision recorded last in force.
 */
function expectedPrompts(entries: LedgerEntry[]): ExpectedPrompt[] {
  const checkDay = new Map<string, string>();
  for (const e of entries) if (e.event === 'prompt') checkDay.set(`${e.check}|${e.item}`, e.day);
  const prompts = new Map<string, ExpectedPrompt>();
  const byTime = [...entries].sort((a, b) => a.recordedAt.getTime() - b.recordedAt.getTime());
  for (const e of byTime) {
    const day = checkDay.get(`${e.check}|${e.item}`)!;
    const key = `${e.institution}|${e.patientKey}|${e.item}|${day}`;
    let p = prompts.get(key);
    if (!p) {
      p = { ...e, day, month: day.slice(0, 7), outcome: e.outcome, viewed: false };
      prompts.set(key, p);
    }
    if (e.event === 'viewed') p.viewed = true;
    if (e.event === 'accepted' || e.event === 'declined') {
      p.decision = e;
      p.outcome = e.outcome;
    }
  }
  return [...prompts.values()];
}

/** The report computed independently from the expected prompts. */
function expectedReport(entries: LedgerEntry[], by: Dimension[], from: string, to: string, org?: string) {
  const empty = (): Tally => ({
    prompts: 0,
    offered: 0,
    viewed: 0,
    accepted: 0,
    referenceAccepted: 0,
    declined: 0,
    fen: 0,
    visits: new Set(),
    reasons: {},
  });
  const groups = new Map<string, Tally>();
  const total = empty();
  for (const p of expectedPrompts(entries)) {
    if (p.day < from || p.day > to || (org && p.institution !== org)) continue;
    const key = by.map((d) => p[FIELD[d]]).join('|');
    let g = groups.get(key);
    if (!g) groups.set(key, (g = empty()));
    const reusable = p.outcome === 'reusable';
    const d = p.decision;
    for (const t of [g, total]) {
      t.prompts++;
      if (reusable) t.offered++;
      if (p.viewed) t.viewed++;
      if (d?.event === 'accepted' && reusable) {
        t.accepted++;
        t.fen += Math.round(d.saving * 100);
        t.visits.add(`${p.institution}|${p.patientKey}|${p.day}`);
      }
      if (d?.event === 'accepted' && !reusable) t.referenceAccepted++;
      if (d?.event === 'declined' && reusable) {
        if (d.countsAsDecline !== false) t.declined++;
        t.reasons[d.reason!] = (t.reasons[d.reason!] ?? 0) + 1;
      }
    }
  }
  return { groups, total };
}

const figuresOf = (t: Tally) => ({
  prompts: t.prompts,
  offered: t.offered,
  viewed: t.viewed,
  accepted: t.accepted,
  referenceAccepted: t.referenceAccepted,
  declined: t.declined,
  saving: t.fen / 100,
  patients: t.visits.size,
});
const rowKey = (row: SavingsRow, by: Dimension[]) => by.map((d) => row[d]!.code).join('|');
const rowFigures = (
  r: Pick<
    SavingsRow,
    'prompts' | 'offered' | 'viewed' | 'accepted' | 'referenceAccepted' | 'declined' | 'saving' | 'patients'
  >,
) => ({
  prompts: r.prompts,
  offered: r.offered,
  viewed: r.viewed,
  accepted: r.accepted,
  referenceAccepted: r.referenceAccepted,
  declined: r.declined,
  saving: r.saving,
  patients: r.patients,
});

/** RFC 4180 parser for the test (quoted fields, doubled quotes, CRLF). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i++;
    } else field += ch;
  }
  return rows;
}

function csvRecords(text: string): Record<string, string>[] {
  const [header, ...rows] = parseCsv(text);
  return rows.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i]])));
}

const populationCount = (pops: MeasureReportGroupPopulation[] | undefined, code: string) =>
  pops?.find((p) => p.code?.coding?.[0]?.code === code)?.count;

function measureFigures(pops: MeasureReportGroupPopulation[] | undefined, score: number | undefined) {
  return {
    prompts: populationCount(pops, 'initial-population'),
    offered: populationCount(pops, 'reusable-offered'),
    viewed: populationCount(pops, 'viewed'),
    accepted: populationCount(pops, 'measure-population'),
    referenceAccepted: populationCount(pops, 'reference-accepted'),
    declined: populationCount(pops, 'declined'),
    saving: score,
    patients: populationCount(pops, 'patients'),
  };
}

describe('savings reports', () => {
  let t: TestApp;
  let ledger: LedgerEntry[];

  const savings = (query: Record<string, string>, who = 'bureau') => t.as(who).get('/reports/savings').query(query);
  const evaluate = (query: Record<string, string>, who = 'bureau') =>
    t.as(who).get('/fhir/Measure/reuse-savings/$evaluate-measure').query(query);

  async function decide(check: string, item: string, decision: DoctorAction, reason?: string): Promise<void> {
    const parameter: ParametersParameter[] = [
      { name: 'check', valueId: check },
      { name: 'item', valueCoding: { system: SYSTEMS.catalogue, code: item } },
      { name: 'decision', valueCode: decision },
    ];
    if (reason) parameter.push({ name: 'reason', valueCoding: { system: DECLINE, code: reason } });
    const res = await t
      .as('demo-his-hospital-b')
      .post('/fhir/$reuse-decision')
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Parameters', parameter } satisfies Parameters);
    expect(res.status, res.text).toBe(201);
  }

  async function askCheck(): Promise<string> {
    const res = await t
      .as('demo-his-hospital-b')
      .post('/fhir/$reuse-check')
      .set('Content-Type', FHIR_JSON)
      .send(reuseCheckParameters(ID_NUMBER, ['57021-8', '29252-4']));
    expect(res.status, res.text).toBe(200);
    return checkIdOf(res.body);
  }

  /** An older check and its decisions, written with the ledger's pure functions (the HTTP path records "now"). */
  async function pastCheck(
    id: string,
    requester: string,
    patientKey: string,
    at: string,
    items: { item: string; decision: StoredOutcome['decision']; saving: number; actions: [DoctorAction, string?][] }[],
  ): Promise<void> {
    const rules = t.deps.facts.rules;
    const createdAt = new Date(`${at}T10:00:00+08:00`);
    const check: ReuseCheckDoc = {
      _id: id,
      requester,
      patientKeys: [patientKey],
      createdAt,
      at: createdAt,
      context: 'routine',
      outcomes: items.map((x, i) => ({
        requestIndex: i,
        item: x.item,
        decision: x.decision,
        performer: 'demo-hospital-a',
        saving: x.saving,
        currency: 'CNY',
      })),
    };
    const categoryOf = (item: string) => rules.index.items.get(item)!.category;
    await t.deps.ledger!.recordPrompts(promptEntries(check, categoryOf, TZ));
    for (const x of items) {
      for (const [action, reason] of x.actions) {
        const entry = decisionEntry({
          check,
          item: x.item,
          action,
          ...(reason ? { reason: findDeclineReason(rules.declineReasons, reason)! } : {}),
          channel: 'seed',
          now: new Date(createdAt.getTime() + 600_000),
          timeZone: TZ,
          category: categoryOf(x.item),
        });
        if ('kind' in entry) throw new Error(entry.message);
        expect((await t.deps.ledger!.record(entry)).status).toBe('created');
      }
    }
  }

  beforeAll(async () => {
    t = await createTestApp('reports');
    for (const r of [patient, report('rp-cbc', '57021-8'), report('rp-ct', '29252-4')]) {
      const res = await t.as('his').put(`/fhir/${r.resourceType}/${r.id}`).set('Content-Type', FHIR_JSON).send(r);
      expect([200, 201], res.text).toContain(res.status);
    }
    // Today, through the API: hospital B reuses hospital A's CBC twice (one patient visit) and declines the CT.
    const first = await askCheck();
    await decide(first, 'HR-LAB-CBC', 'viewed');
    await decide(first, 'HR-LAB-CBC', 'accepted');
    await decide(first, 'HR-IMG-CT-CHEST', 'viewed');
    await decide(first, 'HR-IMG-CT-CHEST', 'declined', 'condition-changed');
    const second = await askCheck();
    await decide(second, 'HR-LAB-CBC', 'accepted');
    await decide(second, 'HR-IMG-CT-CHEST', 'declined', 'images-not-received');
    // Earlier months, written directly: other institutions, categories, a reason that is not a decline.
    const cbc = { item: 'HR-LAB-CBC', decision: 'reusable' as const, saving: 30 };
    const mr = { item: 'HR-IMG-MR-HEAD', decision: 'reusable' as const, saving: 421.2 };
    const lft = { item: 'HR-LAB-LFT', decision: 'reference-only' as const, saving: 80 };
    await pastCheck('past-1', 'demo-hospital-c', 'pk-1', '2024-11-05', [
      { ...cbc, actions: [['viewed'], ['accepted']] },
      { ...mr, actions: [['viewed'], ['accepted']] },
    ]);
    await pastCheck('past-2', 'demo-hospital-c', 'pk-1', '2024-11-05', [{ ...mr, actions: [['accepted']] }]);
    await pastCheck('past-3', 'demo-hospital-d', 'pk-2', '2024-12-31', [
      { ...cbc, actions: [['declined', 'rapid-change']] },
      { ...lft, actions: [['viewed']] },
    ]);
    await pastCheck('past-4', 'demo-hospital-d', 'pk-2', '2025-01-01', [
      { ...mr, actions: [['viewed'], ['accepted']] },
      { ...lft, actions: [['declined', 'serial-monitoring']] },
    ]);
    await pastCheck('past-5', 'demo-hospital-b', 'pk-3', '2024-12-10', [{ ...cbc, actions: [] }]);
    ledger = await t.deps.ledger!.collection.find({}).toArray();
  });
  afterAll(async () => {
    await t.close();
  });

  const GROUPINGS: Dimension[][] = [
    [],
    ['organization'],
    ['category'],
    ['item'],
    ['month'],
    ['organization', 'month'],
    ['category', 'organization'],
  ];

  test.each(GROUPINGS.map((by) => [by.join(',') || '(totals)', by] as const))(
    'grouped by %s, the JSON and the CSV agree with sums computed from the ledger',
    async (_name, by) => {
      const query = { from: FROM, to: TODAY, by: by.join(',') };
      const res = await savings(query);
      expect(res.status, res.text).toBe(200);
      const body = res.body as SavingsReport;
      const expected = expectedReport(ledger, by, FROM, TODAY);
      // Every group of the ledger is a row, once (without a grouping, the answer is its totals alone).
      const keys = body.rows.map((r) => rowKey(r, by));
      expect(new Set(keys)).toEqual(new Set(by.length ? expected.groups.keys() : []));
      expect(keys).toHaveLength(new Set(keys).size);
      for (const row of body.rows) {
        expect(rowFigures(row), rowKey(row, by)).toEqual(figuresOf(expected.groups.get(rowKey(row, by))!));
      }
      expect(rowFigures(body.totals)).toEqual(figuresOf(expected.total));
      expect(body.totals.declinedByReason).toMatchObject(expected.total.reasons);
      expect(body.totals.recognitionRate).toBe(
        Math.round((expected.total.accepted / expected.total.offered) * 1e4) / 1e4,
      );

      const csv = await savings({ ...query, format: 'csv' });
      expect(csv.status, csv.text).toBe(200);
      expect(csv.headers['content-type']).toMatch(/^text\/csv; charset=utf-8/);
      expect(csv.text.startsWith('\uFEFF')).toBe(true);
      // One header row in Chinese, the columns named as on the dashboard.
      const records = csvRecords(csv.text.slice(1));
      expect(records).toHaveLength(body.rows.length + 1);
      const codeColumn = { organization: '医疗机构编码', category: '类别编码', item: '项目编码', month: '月份' };
      body.rows.forEach((row, i) => {
        const rec = records[i];
        for (const d of by) expect(rec[codeColumn[d]]).toBe(row[d]!.code);
        if (by.includes('organization')) expect(rec['医疗机构']).toBe(row.organization!.name!.zh);
        expect(Number(rec['互认项次'])).toBe(row.accepted);
        expect(Number(rec['参考采纳'])).toBe(row.referenceAccepted);
        expect(Number(rec['提醒次数'])).toBe(row.prompts);
        expect(Number(rec['互认人次'])).toBe(row.patients);
        expect(rec['节约费用（元）']).toBe(row.saving!.toFixed(2));
      });
      const totalRow = records.at(-1)!;
      if (by.length) expect(Object.values(totalRow)[0]).toBe('合计');
      expect(Number(totalRow['节约费用（元）'])).toBe(expected.total.fen / 100);
      // Today's CT is for reference only at hospital B: declining it (twice) is no 不予互认 under any reason.
      expect(totalRow['拒绝理由：未收到影像（不计为拒绝）']).toBe('0');
      expect(totalRow['拒绝理由：病情变化']).toBe('0');
      expect(totalRow['拒绝理由：检查检验结果在疾病进程中变化较快']).toBe('1');
      expect(Number(totalRow['互认率'])).toBeLessThanOrEqual(1);
    },
  );

  test('the MeasureReport agrees with the JSON report and the ledger, in total and per institution and category', async () => {
    const res = await evaluate({ periodStart: FROM, periodEnd: TODAY });
    expect(res.status, res.text).toBe(200);
    const mr = res.body as MeasureReport;
    expect(t.deps.validator.validate(mr).filter((i) => i.severity === 'error')).toEqual([]);
    expect(mr).toMatchObject({
      type: 'summary',
      status: 'complete',
      measure: 'https://huren.example.org/fhir/Measure/reuse-savings',
    });
    expect(mr.period).toEqual({ start: FROM, end: TODAY });
    const group = mr.group![0];
    const all = expectedReport(ledger, [], FROM, TODAY);
    expect(measureFigures(group.population, group.measureScore?.value)).toEqual(figuresOf(all.total));
    expect(group.measureScore?.code).toBe('CNY');

    for (const [dimension, stratifier] of [
      ['organization', group.stratifier![0]],
      ['category', group.stratifier![1]],
    ] as const) {
      const expected = expectedReport(ledger, [dimension], FROM, TODAY);
      const json = (await savings({ from: FROM, to: TODAY, by: dimension })).body as SavingsReport;
      expect(stratifier.stratum).toHaveLength(expected.groups.size);
      for (const [i, stratum] of stratifier.stratum!.entries()) {
        const code = stratum.value!.coding![0].code!;
        expect(code).toBe(json.rows[i][dimension]!.code);
        const figures = measureFigures(stratum.population, stratum.measureScore?.value);
        expect(figures, code).toEqual(figuresOf(expected.groups.get(code)!));
        expect(figures).toEqual(rowFigures(json.rows[i]));
      }
    }
    const c = group.stratifier![0].stratum!.find((s) => s.value?.coding?.[0].code === 'demo-hospital-c')!;
    expect(c.value?.text).toBe('Organization/demo-hospital-c');
    expect(c.measureScore?.value).toBe(451.2); // 30 + 421.2: the head MR of two checks of one day is one prompt
  });

  test('a period and an institution restrict every view alike', async () => {
    const query = { from: '2024-12', to: '2025-01', organization: 'demo-hospital-d' };
    const json = (await savings({ ...query, by: 'month,item' })).body as SavingsReport;
    const expected = expectedReport(ledger, ['month', 'item'], '2024-12-01', '2025-01-31', 'demo-hospital-d');
    expect(json.period).toEqual({ from: '2024-12-01', to: '2025-01-31' });
    expect(json.filters.organization).toMatchObject({
      code: 'demo-hospital-d',
      reference: 'Organization/demo-hospital-d',
    });
    expect(json.rows.map((r) => rowKey(r, ['month', 'item']))).toEqual([
      '2024-12|HR-LAB-CBC',
      '2024-12|HR-LAB-LFT',
      '2025-01|HR-LAB-LFT',
      '2025-01|HR-IMG-MR-HEAD',
    ]);
    for (const row of json.rows)
      expect(rowFigures(row)).toEqual(figuresOf(expected.groups.get(rowKey(row, ['month', 'item']))!));
    // rapid-change of a reusable CBC counts; serial-monitoring of a reference-only LFT is no decline at all.
    expect(json.totals.declinedByReason['serial-monitoring']).toBe(0);
    expect(json.totals.declinedByReason['rapid-change']).toBe(1);
    expect(json.totals.declined).toBe(1);

    const mr = (
      await evaluate({ periodStart: '2024-12', periodEnd: '2025-01', subject: 'Organization/demo-hospital-d' })
    ).body as MeasureReport;
    expect(mr.reporter?.reference).toBe('Organization/demo-hospital-d');
    expect(measureFigures(mr.group![0].population, mr.group![0].measureScore?.value)).toEqual(rowFigures(json.totals));
    expect(mr.group![0].stratifier![0].stratum!.map((s) => s.value?.coding?.[0].code)).toEqual(['demo-hospital-d']);
  });

  test('an empty period answers zeros, not an error', async () => {
    const res = await savings({ from: '2020-01-01', to: '2020-12-31', by: 'organization' });
    expect(res.status).toBe(200);
    expect((res.body as SavingsReport).rows).toEqual([]);
    expect(rowFigures((res.body as SavingsReport).totals)).toMatchObject({
      prompts: 0,
      accepted: 0,
      saving: 0,
      patients: 0,
    });
    expect((res.body as SavingsReport).totals.recognitionRate).toBeNull();
  });

  test.each([
    ['reversed dates', { from: '2025-02-01', to: '2025-01-01' }, 'from'],
    ['a ten-year period', { from: '2015-01-01', to: '2024-12-31' }, 'from'],
    ['an unknown grouping', { from: FROM, to: TODAY, by: 'organization,hospital' }, 'by'],
    ['a grouping named twice', { from: FROM, to: TODAY, by: 'month,month' }, 'by'],
    ['an impossible date', { from: '2024-02-30', to: TODAY }, 'from'],
    ['a missing period', { by: 'month' }, 'from'],
    ['an unknown format', { from: FROM, to: TODAY, format: 'xlsx' }, 'format'],
    ['an unknown institution', { from: FROM, to: TODAY, organization: 'nowhere' }, 'organization'],
    ['an unknown parameter', { from: FROM, to: TODAY, grouping: 'month' }, 'grouping'],
  ])('%s is a 400 OperationOutcome naming the parameter', async (_name, query, expression) => {
    const res = await savings(query as Record<string, string>);
    expect(res.status, res.text).toBe(400);
    const oo = res.body as OperationOutcome;
    expect(oo.resourceType).toBe('OperationOutcome');
    expect(oo.issue[0].expression).toContain(expression);
    expect(oo.issue[0].diagnostics).toBeTruthy();
  });

  test('a five-year period is answered; one day more is refused', async () => {
    expect((await savings({ from: '2021-01-01', to: '2025-12-31' })).status).toBe(200);
    const res = await savings({ from: '2021-01-01', to: '2026-01-01' });
    expect(res.status).toBe(400);
    expect((res.body as OperationOutcome).issue[0].diagnostics).toMatch(/longer than 5 years/);
  });

  test('only the bureau and administrators read reports; others get 403, no token 401', async () => {
    const query = { from: FROM, to: TODAY };
    for (const who of ['his', 'clinician']) {
      const res = await savings(query, who);
      expect(res.status, who).toBe(403);
      expect((res.body as OperationOutcome).issue[0].code).toBe('forbidden');
      expect((await evaluate({ periodStart: FROM, periodEnd: TODAY }, who)).status, who).toBe(403);
    }
    expect((await savings(query, 'admin')).status).toBe(200);
    const anonymous = await t.as('bureau').get('/reports/savings').set('Authorization', '').query(query);
    expect(anonymous.status).toBe(401);
    expect((anonymous.body as OperationOutcome).resourceType).toBe('OperationOutcome');
  });

  test.each([
    ['reversed dates', { periodStart: '2025-02-01', periodEnd: '2025-01-01' }, 400],
    ['a ten-year period', { periodStart: '2015-01-01', periodEnd: '2024-12-31' }, 400],
    ['a patient subject', { periodStart: FROM, periodEnd: TODAY, subject: 'Patient/x' }, 400],
    ['an unknown institution', { periodStart: FROM, periodEnd: TODAY, subject: 'Organization/nowhere' }, 400],
    ['a patient-level report type', { periodStart: FROM, periodEnd: TODAY, reportType: 'subject-list' }, 400],
    ['no period', {}, 400],
  ])('$evaluate-measure with %s is a clear error', async (_name, query, status) => {
    const res = await evaluate(query as Record<string, string>);
    expect(res.status, res.text).toBe(status);
    expect((res.body as OperationOutcome).issue[0].diagnostics).toBeTruthy();
  });

  test('$evaluate-measure exists only for the reuse-savings Measure, with GET', async () => {
    const other = await t
      .as('bureau')
      .get('/fhir/Measure/other/$evaluate-measure')
      .query({ periodStart: FROM, periodEnd: TODAY });
    expect(other.status).toBe(404);
    const post = await t
      .as('bureau')
      .post('/fhir/Measure/reuse-savings/$evaluate-measure')
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Parameters' });
    expect(post.status).toBe(405);
    const measure = await t.as('bureau').get('/fhir/Measure/reuse-savings');
    expect(measure.status).toBe(200);
    expect(measure.body).toMatchObject({
      resourceType: 'Measure',
      url: 'https://huren.example.org/fhir/Measure/reuse-savings',
    });
  });

  describe('with small-cell suppression', () => {
    let s: TestApp;
    beforeAll(async () => {
      s = await createTestApp(
        'reports-suppressed',
        { HUREN_REPORT_MIN_CELL: '3' },
        { dbName: t.dbName, keepDatabase: true },
      );
    });
    afterAll(async () => {
      await s.close();
    });

    test('small counts are hidden, no hidden cell can be worked out from the totals, and totals stay exact', async () => {
      const query = { from: FROM, to: TODAY, by: 'organization' };
      const open = (await savings(query)).body as SavingsReport;
      const res = await s.as('bureau').get('/reports/savings').query(query);
      expect(res.status).toBe(200);
      const hidden = res.body as SavingsReport;
      expect(hidden.minCell).toBe(3);
      expect(hidden.totals).toEqual(open.totals);
      for (const [i, row] of hidden.rows.entries()) {
        for (const f of [
          'prompts',
          'offered',
          'viewed',
          'accepted',
          'referenceAccepted',
          'patients',
          'declined',
        ] as const) {
          if (row[f] === null) expect(row.suppressed).toContain(f);
          else expect(row[f]).toBe(open.rows[i][f]);
          if (row[f] !== null) expect(row[f] === 0 || row[f]! >= 3).toBe(true);
        }
        if (row.accepted === null) expect(row.saving).toBeNull();
      }
      for (const f of [
        'prompts',
        'offered',
        'viewed',
        'accepted',
        'referenceAccepted',
        'patients',
        'declined',
      ] as const) {
        expect(hidden.rows.filter((r) => r[f] === null).length, f).not.toBe(1);
      }
      const csv = await s
        .as('bureau')
        .get('/reports/savings')
        .query({ ...query, format: 'csv' });
      expect(csv.text).toContain('<3');
      const mr = (
        await s
          .as('bureau')
          .get('/fhir/Measure/reuse-savings/$evaluate-measure')
          .query({ periodStart: FROM, periodEnd: TODAY })
      ).body as MeasureReport;
      expect(mr.group![0].measureScore?.value).toBe(open.totals.saving);
      const strata = mr.group![0].stratifier![0].stratum!;
      expect(strata.some((st) => populationCount(st.population, 'measure-population') === undefined)).toBe(true);
    });
  });
});
