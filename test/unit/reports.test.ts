import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { loadRecognitionRules } from '../../src/recognition/load.js';
import { csvField, csvLine, savingsCsv } from '../../src/reports/csv.js';
import { emptyCell, type Cell } from '../../src/reports/rollups.js';
import {
  assembleReport,
  assertPeriod,
  parseBound,
  parseBy,
  type ReportGroup,
  type SavingsQuery,
} from '../../src/reports/savings.js';
import { OperationOutcomeError } from '../../src/fhir/outcomes.js';
import { DEFINITIONS } from '../../src/reports/savings.js';
import { SUPERVISION_DEFINITIONS } from '../../src/reports/supervision.js';

const rules = loadRecognitionRules('seed');
const NOW = new Date('2025-03-01T00:00:00Z');

const group = (key: Record<string, string>, cell: Partial<Cell>, patients: number): ReportGroup => ({
  key,
  cell: { ...emptyCell(), ...cell },
  patients,
});

function outcomeOf(fn: () => unknown): { status: number; expression?: string[]; diagnostics?: string } {
  try {
    fn();
  } catch (e) {
    if (e instanceof OperationOutcomeError) return { status: e.status, ...e.outcome.issue[0] };
    throw e;
  }
  throw new Error('expected an OperationOutcomeError');
}

describe('CSV', () => {
  test('quotes commas, quotes and line breaks, and doubles quotes', () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('two\nlines')).toBe('"two\nlines"');
    expect(csvField(' padded')).toBe('" padded"');
    expect(csvField('血常规(五分类)')).toBe('血常规(五分类)');
    expect(csvLine(['x', 1, null, 0.5])).toBe('x,1,,0.5');
  });

  test('defuses text a spreadsheet would run as a formula, but not numbers', () => {
    expect(csvField('=HYPERLINK("x")')).toBe('"\'=HYPERLINK(""x"")"');
    expect(csvField('+1')).toBe("'+1");
    expect(csvField('@SUM(A1)')).toBe("'@SUM(A1)");
    expect(csvField(-3)).toBe('-3');
  });
});

describe('report assembly', () => {
  const query: SavingsQuery = { from: '2025-01-01', to: '2025-02-28', by: ['organization', 'month'] };
  const a = { organization: 'demo-hospital-a' };
  const b = { organization: 'demo-hospital-b' };
  const groups: ReportGroup[] = [
    group(
      { ...b, month: '2025-02' },
      {
        prompts: 6,
        offered: 4,
        viewed: 3,
        accepted: 3,
        referenceAccepted: 1,
        declined: 1,
        reasons: { 'condition-changed': 1, 'images-not-received': 1 },
        savingFen: 84250,
      },
      2,
    ),
    group(
      { ...a, month: '2025-01' },
      { prompts: 2, offered: 2, accepted: 1, declined: 1, reasons: { 'legacy-code': 1 }, savingFen: 20 },
      1,
    ),
  ];

  test('counts the funnel per group, with rates, names and a stable order', () => {
    const report = assembleReport(query, groups, 3, rules, 0, NOW);
    expect(report.rows.map((r) => `${r.organization!.code} ${r.month!.code}`)).toEqual([
      'demo-hospital-a 2025-01',
      'demo-hospital-b 2025-02',
    ]);
    const rowB = report.rows[1];
    expect(rowB).toMatchObject({
      prompts: 6,
      offered: 4,
      viewed: 3,
      accepted: 3,
      referenceAccepted: 1,
      patients: 2,
      declined: 1,
      recognitionRate: 0.75,
      retrievalRate: 0.5,
      saving: 842.5,
    });
    expect(rowB.organization).toEqual({
      code: 'demo-hospital-b',
      reference: 'Organization/demo-hospital-b',
      name: { zh: '青岛演示医院B', en: expect.any(String) },
    });
    expect(rowB.declinedByReason).toMatchObject({ 'condition-changed': 1, 'images-not-received': 1, emergency: 0 });
    expect(report.rows[0].retrievalRate).toBe(0);
    expect(report.definitions.patients.en).toMatch(/per group/);
    expect(report.definitions.recognitionRate.zh).toMatch(/不会超过100%/);
  });

  test('totals are the exact sums of the rows, in fen, and list unknown reasons too', () => {
    const report = assembleReport(query, groups, 3, rules, 0, NOW);
    expect(report.totals).toMatchObject({ prompts: 8, accepted: 4, declined: 2, patients: 3, saving: 842.7 });
    expect(report.declineReasons.at(-1)).toEqual({
      code: 'legacy-code',
      name: { zh: 'legacy-code', en: 'legacy-code' },
      countsAsDecline: true,
    });
    expect(report.declineReasons.find((r) => r.code === 'serial-monitoring')?.countsAsDecline).toBe(false);
  });

  test('without a grouping the answer is its totals alone', () => {
    const report = assembleReport({ ...query, by: [] }, groups, 3, rules, 0, NOW);
    expect(report.rows).toEqual([]);
    expect(report.totals.prompts).toBe(8);
    const csv = savingsCsv(report);
    expect(
      csv.startsWith(
        '\uFEFF提醒次数,可互认提醒,调阅,互认项次,参考采纳,互认人次,不予互认,互认率,调阅率,节约费用（元）,',
      ),
    ).toBe(true);
    expect(csv.split('\r\n')).toHaveLength(3); // header, total, final newline
    const en = savingsCsv(report, 'en');
    expect(
      en.startsWith('\uFEFFPrompts,Reusable offered,Viewed,Items reused,Reference acceptances,Patient visits,'),
    ).toBe(true);
  });

  test('suppression hides small counts and a second cell per column, and what derives from them', () => {
    const report = assembleReport(query, groups, 3, rules, 3, NOW);
    const [rowA, rowB] = report.rows;
    // Row A: prompts 2 and accepted 1 are small; row B's prompts (5) and accepted (3) are hidden with them, or else
    // total minus row B would give row A away.
    expect(rowA.prompts).toBeNull();
    expect(rowB.prompts).toBeNull();
    expect(rowA.accepted).toBeNull();
    expect(rowA.saving).toBeNull();
    expect(rowA.recognitionRate).toBeNull();
    expect(rowB.viewed).toBe(3);
    expect(rowA.suppressed).toEqual(expect.arrayContaining(['prompts', 'accepted', 'saving', 'recognitionRate']));
    // Declines and their counting reasons are hidden together (declined is their sum).
    expect(rowB.declined).toBeNull();
    expect(rowB.declinedByReason['condition-changed']).toBeNull();
    expect(report.totals.prompts).toBe(8);
    const csv = savingsCsv(report);
    expect(csv).toContain('<3');
  });
});

describe('query input', () => {
  test('partial dates cover whole months and years', () => {
    expect(parseBound('2024-02', 'to', 'end')).toBe('2024-02-29');
    expect(parseBound('2025-02', 'from', 'start')).toBe('2025-02-01');
    expect(parseBound('2024', 'to', 'end')).toBe('2024-12-31');
    expect(outcomeOf(() => parseBound('2025-13', 'to', 'end'))).toMatchObject({ status: 400, expression: ['to'] });
    expect(outcomeOf(() => parseBound('01/02/2025', 'from', 'start')).status).toBe(400);
  });

  test('periods are at most five years and never reversed', () => {
    expect(() => assertPeriod('2020-03-01', '2025-02-28', { from: 'from', to: 'to' })).not.toThrow();
    expect(outcomeOf(() => assertPeriod('2020-03-01', '2025-03-01', { from: 'from', to: 'to' })).diagnostics).toMatch(
      /longer than 5 years/,
    );
    expect(outcomeOf(() => assertPeriod('2025-03-02', '2025-03-01', { from: 'from', to: 'to' })).diagnostics).toMatch(
      /reversed/,
    );
  });

  test('groupings are comma-separated or repeated, each once', () => {
    expect(parseBy('organization,month')).toEqual(['organization', 'month']);
    expect(parseBy(['item', 'category'])).toEqual(['item', 'category']);
    expect(parseBy(undefined)).toEqual([]);
    expect(outcomeOf(() => parseBy('district')).expression).toEqual(['by']);
  });
});

describe('figure definitions', () => {
  test('the README states every figure exactly as the report and the dashboard define it', () => {
    const readme = readFileSync('README.md', 'utf8').replace(/\s+/g, ' ');
    for (const [name, def] of Object.entries({ ...DEFINITIONS, ...SUPERVISION_DEFINITIONS })) {
      expect(readme, name).toContain(def.en.replace(/\|/g, '\\|'));
      expect(def.zh.length, name).toBeGreaterThan(5);
    }
  });
});
