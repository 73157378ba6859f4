import { describe, expect, test } from 'vitest';
import type { LedgerEntry } from '../../src/recognition/ledger.js';
import { addEntries, aggregatesOf, emptyTally, mergeTally, planPeriod } from '../../src/reports/rollups.js';
import type { Dimension } from '../../src/reports/savings.js';

describe('planPeriod: which rollups a period is read from', () => {
  test('a year up to today: closed months whole, the edges by day, today and yesterday from the ledger', () => {
    const plan = planPeriod('2025-12-05', '2026-12-04', '2026-12-04');
    expect(plan.months).toEqual([
      '2026-01',
      '2026-02',
      '2026-03',
      '2026-04',
      '2026-05',
      '2026-06',
      '2026-07',
      '2026-08',
      '2026-09',
      '2026-10',
      '2026-11',
    ]);
    expect(plan.days).toHaveLength(27 + 2); // 2025-12-05..31 and 2026-12-01..02
    expect(plan.days[0]).toBe('2025-12-05');
    expect(plan.days.at(-1)).toBe('2026-12-02');
    expect(plan.openDays).toEqual(['2026-12-03', '2026-12-04']);
  });

  test('a month is closed two days after its last day, not one', () => {
    expect(planPeriod('2026-11-01', '2026-11-30', '2026-12-02').months).toEqual(['2026-11']);
    const oneDayAfter = planPeriod('2026-11-01', '2026-11-30', '2026-12-01');
    expect(oneDayAfter.months).toEqual([]);
    expect(oneDayAfter.days.at(-1)).toBe('2026-11-29');
    expect(oneDayAfter.openDays).toEqual(['2026-11-30']);
  });

  test('days after tomorrow have nothing recorded yet and are not read', () => {
    const plan = planPeriod('2026-12-01', '2027-03-31', '2026-12-04');
    expect(plan.months).toEqual([]);
    expect(plan.days).toEqual(['2026-12-01', '2026-12-02']);
    expect(plan.openDays).toEqual(['2026-12-03', '2026-12-04', '2026-12-05']);
  });

  test('a leap February and a year boundary are cut at the right days', () => {
    const plan = planPeriod('2024-02-10', '2025-01-05', '2026-01-01');
    expect(plan.months).toContain('2024-03');
    expect(plan.months).not.toContain('2024-02');
    expect(plan.days.filter((d) => d.startsWith('2024-02'))).toHaveLength(20); // 10..29
    expect(plan.days.filter((d) => d.startsWith('2025-01'))).toEqual([
      '2025-01-01',
      '2025-01-02',
      '2025-01-03',
      '2025-01-04',
      '2025-01-05',
    ]);
  });
});

function entry(over: Partial<LedgerEntry> & Pick<LedgerEntry, 'event' | 'day'>): LedgerEntry {
  return {
    _id: Math.random().toString(36),
    check: 'c',
    item: 'HR-LAB-CBC',
    category: 'lab-hematology',
    outcome: 'reusable',
    institution: 'demo-hospital-b',
    patientKey: 'pk-1',
    context: 'routine',
    saving: 0,
    offered: 30,
    currency: 'CNY',
    channel: 'seed',
    recordedAt: new Date(`${over.day}T10:00:00+08:00`),
    month: over.day.slice(0, 7),
    year: over.day.slice(0, 4),
    ...over,
  };
}

/** A small ledger with the cases that matter: two visits of one patient, one visit with two items, declines. */
const LEDGER: LedgerEntry[] = [
  entry({ event: 'prompt', day: '2026-01-05' }),
  entry({ event: 'accepted', day: '2026-01-05', saving: 30 }),
  entry({ event: 'prompt', day: '2026-01-05', item: 'HR-LAB-LFT', category: 'lab-chemistry' }),
  entry({ event: 'accepted', day: '2026-01-05', item: 'HR-LAB-LFT', category: 'lab-chemistry', saving: 80 }),
  entry({ event: 'prompt', day: '2026-01-09' }),
  entry({ event: 'accepted', day: '2026-01-09', saving: 30 }),
  entry({ event: 'prompt', day: '2026-02-01', institution: 'demo-hospital-c', patientKey: 'pk-2' }),
  entry({ event: 'viewed', day: '2026-02-01', institution: 'demo-hospital-c', patientKey: 'pk-2' }),
  entry({
    event: 'declined',
    day: '2026-02-01',
    institution: 'demo-hospital-c',
    patientKey: 'pk-2',
    reason: 'images-not-received',
    countsAsDecline: false,
  }),
  entry({ event: 'prompt', day: '2026-02-02', outcome: 'reference-only', institution: 'demo-hospital-c' }),
  entry({
    event: 'accepted',
    day: '2026-02-02',
    outcome: 'reference-only',
    institution: 'demo-hospital-c',
    saving: 421.2,
  }),
];

const GROUPINGS: Dimension[][] = [[], ['organization'], ['category'], ['item'], ['month'], ['organization', 'month']];

describe('aggregatesOf: the report figures from a tally', () => {
  test.each(GROUPINGS.map((by) => [by.join(',') || '(totals)', by] as const))(
    'grouped by %s, savings are exact in fen and 互认人次 counts distinct (institution, patient, day)',
    (_name, by) => {
      const agg = aggregatesOf(addEntries(emptyTally(), LEDGER), { by });
      const saving = agg.savings.reduce((n, g) => n + Math.round(g.n * 100), 0);
      expect(saving).toBe(3000 + 8000 + 3000 + 42120);
      // Visits with an acceptance: B/pk-1 on 01-05 (two items), B/pk-1 on 01-09, C/pk-1 on 02-02.
      expect(agg.patientsTotal).toBe(3);
      const funnelTotal = agg.funnel.reduce((n, g) => n + g.n, 0);
      expect(funnelTotal).toBe(LEDGER.length);
    },
  );

  test('by category, a visit with two categories counts once in each', () => {
    const agg = aggregatesOf(addEntries(emptyTally(), LEDGER), { by: ['category'] });
    const byCategory = Object.fromEntries(agg.patients.map((g) => [g._id!.category, g.n]));
    expect(byCategory).toEqual({ 'lab-hematology': 3, 'lab-chemistry': 1 });
  });

  test('an institution filter keeps only its entries', () => {
    const agg = aggregatesOf(addEntries(emptyTally(), LEDGER), { by: ['month'], organization: 'demo-hospital-c' });
    expect(agg.patientsTotal).toBe(1);
    expect(agg.savings).toEqual([{ _id: { month: '2026-02' }, n: 421.2 }]);
    const declines = agg.funnel.filter((g) => g._id.event === 'declined');
    expect(declines).toEqual([
      {
        _id: {
          month: '2026-02',
          event: 'declined',
          outcome: 'reusable',
          reason: 'images-not-received',
          countsAsDecline: false,
        },
        n: 1,
      },
    ]);
  });

  test('tallies of separate days merge into the tally of all of them', () => {
    const byDay = new Map<string, LedgerEntry[]>();
    for (const e of LEDGER) byDay.set(e.day, [...(byDay.get(e.day) ?? []), e]);
    const merged = [...byDay.values()].reduce((t, es) => mergeTally(t, addEntries(emptyTally(), es)), emptyTally());
    for (const by of GROUPINGS) {
      expect(aggregatesOf(merged, { by })).toEqual(aggregatesOf(addEntries(emptyTally(), LEDGER), { by }));
    }
  });
});

describe('a corrected decision counts once', () => {
  test('a reuse at 23:58 on 31 January corrected to a decline at 00:03 counts as one decline, in any rollups', () => {
    const first = entry({ _id: 'k|HR-LAB-CBC|decision', check: 'k', event: 'accepted', day: '2026-01-31', saving: 30 });
    const correction = entry({
      _id: 'k|HR-LAB-CBC|correction',
      check: 'k',
      event: 'declined',
      day: '2026-02-01',
      reason: 'condition-changed',
      countsAsDecline: true,
      supersedes: first._id,
      reverses: { event: 'accepted', saving: 30, day: '2026-01-31', month: '2026-01' },
    });
    const prompt = entry({ check: 'k', event: 'prompt', day: '2026-01-31' });
    const whole = aggregatesOf(addEntries(emptyTally(), [prompt, first, correction]), { by: [] });
    // The same entries summed in two rollups (January's and 1 February's), then merged.
    const split = aggregatesOf(
      mergeTally(addEntries(emptyTally(), [prompt, first]), addEntries(emptyTally(), [correction])),
      { by: [] },
    );
    for (const agg of [whole, split]) {
      const n = (event: string) => agg.funnel.filter((g) => g._id.event === event).reduce((s, g) => s + g.n, 0);
      expect(n('accepted')).toBe(0);
      expect(n('declined')).toBe(1);
      expect(n('prompt')).toBe(1);
      expect(agg.savings.reduce((s, g) => s + g.n, 0)).toBe(0);
      expect(agg.patientsTotal).toBe(0);
    }
    // By month, January keeps its prompt and no reuse; February has the decline.
    const byMonth = aggregatesOf(addEntries(emptyTally(), [prompt, first, correction]), { by: ['month'] });
    expect(byMonth.funnel.map((g) => [g._id.month, g._id.event, g.n]).sort()).toEqual([
      ['2026-01', 'prompt', 1],
      ['2026-02', 'declined', 1],
    ]);
  });
});
