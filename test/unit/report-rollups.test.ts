import { describe, expect, test } from 'vitest';
import type { LedgerEntry } from '../../src/recognition/ledger.js';
import { emptyTally, mergeTally, planPeriod, tallyPrompts } from '../../src/reports/rollups.js';
import { foldPrompts, type PromptDoc } from '../../src/recognition/prompts.js';
import { groupTally } from '../../src/reports/savings.js';
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

/** Prompts from ledger entries, as the ledger folds them. */
const promptsOf = (entries: LedgerEntry[]): PromptDoc[] => [...foldPrompts(entries, new Map(), (e) => e.day).values()];

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
  entry({ event: 'accepted', day: '2026-02-02', outcome: 'reference-only', institution: 'demo-hospital-c' }),
];

const GROUPINGS: Dimension[][] = [[], ['organization'], ['category'], ['item'], ['month'], ['organization', 'month']];

const sum = (groups: ReturnType<typeof groupTally>['groups'], f: (g: (typeof groups)[number]) => number) =>
  groups.reduce((n, g) => n + f(g), 0);

describe('the report figures from a tally of prompts', () => {
  test.each(GROUPINGS.map((by) => [by.join(',') || '(totals)', by] as const))(
    'grouped by %s, savings are exact in fen and 互认人次 counts distinct (institution, patient, day)',
    (_name, by) => {
      const { groups, patientsTotal } = groupTally(tallyPrompts(promptsOf(LEDGER)), { by });
      // A reference-only acceptance saves nothing the bureau counts.
      expect(sum(groups, (g) => g.cell.savingFen)).toBe(3000 + 8000 + 3000);
      // Visits with an acceptance: B/pk-1 on 01-05 (two items), B/pk-1 on 01-09.
      expect(patientsTotal).toBe(2);
      expect(sum(groups, (g) => g.cell.prompts)).toBe(5);
      expect(sum(groups, (g) => g.cell.accepted)).toBe(3);
      expect(sum(groups, (g) => g.cell.referenceAccepted)).toBe(1);
      expect(sum(groups, (g) => g.cell.offered)).toBe(4);
    },
  );

  test('by category, a visit with two categories counts once in each; by item, each accepted prompt', () => {
    const tally = tallyPrompts(promptsOf(LEDGER));
    const byCategory = groupTally(tally, { by: ['category'] }).groups;
    expect(Object.fromEntries(byCategory.map((g) => [g.key.category, g.patients]))).toEqual({
      'lab-hematology': 2,
      'lab-chemistry': 1,
    });
    const byItem = groupTally(tally, { by: ['item'] }).groups;
    expect(Object.fromEntries(byItem.map((g) => [g.key.item, g.patients]))).toEqual({
      'HR-LAB-CBC': 2,
      'HR-LAB-LFT': 1,
    });
  });

  test('an institution filter keeps only its prompts; a non-counting decline is a reason, not a decline', () => {
    const { groups, patientsTotal } = groupTally(tallyPrompts(promptsOf(LEDGER)), {
      by: ['month'],
      organization: 'demo-hospital-c',
    });
    expect(patientsTotal).toBe(0);
    const feb = groups.find((g) => g.key.month === '2026-02')!;
    expect(feb.cell).toMatchObject({
      prompts: 2,
      offered: 1,
      viewed: 1,
      declined: 0,
      referenceAccepted: 1,
      reasons: { 'images-not-received': 1 },
    });
  });

  test('tallies of separate days merge into the tally of all of them', () => {
    const byDay = new Map<string, PromptDoc[]>();
    for (const p of promptsOf(LEDGER)) byDay.set(p.day, [...(byDay.get(p.day) ?? []), p]);
    const merged = [...byDay.values()].reduce((t, ps) => mergeTally(t, tallyPrompts(ps)), emptyTally());
    for (const by of GROUPINGS) {
      expect(groupTally(merged, { by })).toEqual(groupTally(tallyPrompts(promptsOf(LEDGER)), { by }));
    }
  });

  test('checks, hooks and launches of one patient, item and day are one prompt; the last decision decides', () => {
    const entries = [
      entry({ event: 'prompt', day: '2026-03-02', check: 'select' }),
      entry({ event: 'prompt', day: '2026-03-02', check: 'sign' }),
      entry({ event: 'prompt', day: '2026-03-02', check: 'launch-1' }),
      entry({ event: 'viewed', day: '2026-03-02', check: 'launch-1' }),
      entry({ event: 'prompt', day: '2026-03-02', check: 'launch-2' }),
      entry({ event: 'viewed', day: '2026-03-02', check: 'launch-2' }),
      entry({ event: 'accepted', day: '2026-03-02', check: 'sign', saving: 30 }),
      // Another patient's reference-only result, declined: not 不予互认.
      entry({ event: 'prompt', day: '2026-03-02', patientKey: 'pk-9', outcome: 'reference-only' }),
      entry({
        event: 'declined',
        day: '2026-03-02',
        patientKey: 'pk-9',
        outcome: 'reference-only',
        reason: 'condition-changed',
        countsAsDecline: true,
      }),
    ];
    const { groups } = groupTally(tallyPrompts(promptsOf(entries)), { by: [] });
    expect(groups[0]!.cell).toMatchObject({ prompts: 2, offered: 1, viewed: 1, accepted: 1, declined: 0, reasons: {} });
  });
});

describe('a corrected decision counts once', () => {
  test('a reuse corrected to a decline counts as one decline, on the prompt’s day', () => {
    const prompt = entry({ check: 'k', event: 'prompt', day: '2026-01-31' });
    const first = entry({ _id: 'k|HR-LAB-CBC|decision', check: 'k', event: 'accepted', day: '2026-01-31', saving: 30 });
    const correction = entry({
      _id: 'k|HR-LAB-CBC|correction',
      check: 'k',
      event: 'declined',
      day: '2026-02-01',
      promptDay: '2026-01-31',
      recordedAt: new Date('2026-02-01T00:03:00+08:00'),
      reason: 'condition-changed',
      countsAsDecline: true,
      supersedes: first._id,
      reverses: { event: 'accepted', saving: 30, day: '2026-01-31', month: '2026-01' },
    });
    const prompts = [...foldPrompts([prompt, first, correction], new Map(), (e) => e.promptDay ?? e.day).values()];
    const { groups, patientsTotal } = groupTally(tallyPrompts(prompts), { by: ['month'] });
    expect(
      groups.map((g) => [g.key.month, g.cell.prompts, g.cell.accepted, g.cell.declined, g.cell.savingFen]),
    ).toEqual([['2026-01', 1, 0, 1, 0]]);
    expect(patientsTotal).toBe(0);
  });
});
