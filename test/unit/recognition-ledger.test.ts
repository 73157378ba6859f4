import { describe, expect, test } from 'vitest';
import type { DeclineReason } from '../../src/recognition/decline-reasons.js';
import {
  correctionEntry,
  correctionId,
  decisionEntry,
  finalDecisions,
  dimensionsOf,
  promptEntries,
  sameDecision,
  type LedgerEntry,
} from '../../src/recognition/ledger.js';
import type { ReuseCheckDoc } from '../../src/recognition/reuse-checks.js';

const TZ = 'Asia/Shanghai';

const check: ReuseCheckDoc = {
  _id: 'chk-1',
  requester: 'demo-hospital-b',
  clientId: 'demo-his-hospital-b',
  patientKeys: ['pk-1'],
  createdAt: new Date('2026-03-31T16:30:00Z'), // 2026-04-01 00:30 in Qingdao
  at: new Date('2026-03-31T16:30:00Z'),
  context: 'routine',
  outcomes: [
    {
      requestIndex: 0,
      item: 'HR-LAB-CBC',
      decision: 'reusable',
      result: 'DiagnosticReport/a',
      performer: 'demo-hospital-a',
      saving: 30,
      currency: 'CNY',
    },
    {
      requestIndex: 1,
      item: 'HR-IMG-CT-CHEST',
      decision: 'reference-only',
      result: 'DiagnosticReport/c',
      performer: 'demo-hospital-a',
      saving: 0,
      currency: 'CNY',
    },
    {
      requestIndex: 2,
      item: 'HR-LAB-HBA1C',
      decision: 'expired',
      result: 'DiagnosticReport/h',
      saving: 0,
      currency: 'CNY',
    },
    { requestIndex: 3, decision: 'not-recognized', saving: 0, currency: 'CNY' },
    {
      requestIndex: 4,
      item: 'HR-LAB-CBC',
      decision: 'reusable',
      result: 'DiagnosticReport/a',
      performer: 'demo-hospital-a',
      saving: 30,
      currency: 'CNY',
    },
  ],
};

const reason = (code: string, extra: Partial<DeclineReason> = {}): DeclineReason => ({
  code,
  display: { zh: code, en: code },
  source: 'national',
  countsAsDecline: true,
  requiresText: false,
  ...extra,
});

const base = {
  check,
  channel: 'operation' as const,
  now: new Date('2026-04-02T01:00:00Z'),
  timeZone: TZ,
  category: 'lab-hematology',
};

describe('decisions ledger entries', () => {
  test('a check prompts once per item with a prior result, dated in local time', () => {
    const prompts = promptEntries(check, () => 'cat', TZ);
    expect(prompts.map((p) => [p._id, p.outcome, p.offered])).toEqual([
      ['chk-1|HR-LAB-CBC|prompt', 'reusable', 30],
      ['chk-1|HR-IMG-CT-CHEST|prompt', 'reference-only', 0],
    ]);
    // 16:30 UTC on 31 March is already 1 April in Qingdao.
    expect(prompts[0]).toMatchObject({
      day: '2026-04-01',
      month: '2026-04',
      year: '2026',
      saving: 0,
      patientKey: 'pk-1',
    });
  });

  test('accepting counts the requester price; viewing and declining count nothing', () => {
    const accepted = decisionEntry({ ...base, item: 'HR-LAB-CBC', action: 'accepted' }) as LedgerEntry;
    expect(accepted).toMatchObject({ _id: 'chk-1|HR-LAB-CBC|decision', event: 'accepted', saving: 30, offered: 30 });
    const viewed = decisionEntry({ ...base, item: 'HR-LAB-CBC', action: 'viewed' }) as LedgerEntry;
    expect(viewed).toMatchObject({ _id: 'chk-1|HR-LAB-CBC|viewed', saving: 0 });
    const declined = decisionEntry({
      ...base,
      item: 'HR-LAB-CBC',
      action: 'declined',
      reason: reason('images-not-received', { countsAsDecline: false }),
    }) as LedgerEntry;
    expect(declined).toMatchObject({
      event: 'declined',
      saving: 0,
      reason: 'images-not-received',
      countsAsDecline: false,
    });
    expect(declined.day).toBe('2026-04-02');
    // The decision belongs to the prompt of the check's day, not of the day it was recorded.
    expect(declined.promptDay).toBe('2026-04-01');
  });

  test('accepting a result for reference only is a reference acceptance: it saves nothing the bureau counts', () => {
    // The requester's price of the CT is offered (¥207), yet the reference acceptance counts no saving.
    const priced = {
      ...check,
      outcomes: check.outcomes.map((o) => (o.item === 'HR-IMG-CT-CHEST' ? { ...o, saving: 207 } : o)),
    };
    const accepted = decisionEntry({
      ...base,
      check: priced,
      item: 'HR-IMG-CT-CHEST',
      action: 'accepted',
      category: 'imaging-ct',
    }) as LedgerEntry;
    expect(accepted).toMatchObject({ event: 'accepted', outcome: 'reference-only', offered: 207, saving: 0 });
  });

  test('every refusal names its rule', () => {
    const kind = (input: Partial<Parameters<typeof decisionEntry>[0]>) =>
      (decisionEntry({ ...base, item: 'HR-LAB-CBC', action: 'accepted', ...input }) as { kind?: string }).kind;
    expect(kind({ item: 'HR-LAB-TSH' })).toBe('unknown-item');
    expect(kind({ item: 'HR-LAB-HBA1C' })).toBe('nothing-to-decide');
    expect(kind({ action: 'declined' })).toBe('reason-required');
    expect(kind({ reason: reason('emergency') })).toBe('reason-not-allowed');
    expect(kind({ action: 'declined', reason: reason('other', { requiresText: true }) })).toBe('text-required');
    expect(kind({ action: 'declined', reason: reason('other', { requiresText: true }), reasonText: '  ' })).toBe(
      'text-required',
    );
    expect(kind({ action: 'declined', reason: reason('other', { requiresText: true }), reasonText: 'why' })).toBe(
      undefined,
    );
  });

  test('a retry is the same decision; another action or reason is not', () => {
    const a = decisionEntry({
      ...base,
      item: 'HR-LAB-CBC',
      action: 'declined',
      reason: reason('emergency'),
    }) as LedgerEntry;
    const b = decisionEntry({
      ...base,
      item: 'HR-LAB-CBC',
      action: 'declined',
      reason: reason('emergency'),
      now: new Date(),
    }) as LedgerEntry;
    const c = decisionEntry({
      ...base,
      item: 'HR-LAB-CBC',
      action: 'declined',
      reason: reason('appraisal'),
    }) as LedgerEntry;
    const d = decisionEntry({ ...base, item: 'HR-LAB-CBC', action: 'accepted' }) as LedgerEntry;
    expect(sameDecision(a, b)).toBe(true);
    expect(sameDecision(a, c)).toBe(false);
    expect(sameDecision(a, d)).toBe(false);
  });

  test('local calendar dimensions at the day boundary', () => {
    expect(dimensionsOf(new Date('2026-12-31T15:59:59Z'), TZ)).toEqual({
      day: '2026-12-31',
      month: '2026-12',
      year: '2026',
    });
    expect(dimensionsOf(new Date('2026-12-31T16:00:00Z'), TZ)).toEqual({
      day: '2027-01-01',
      month: '2027-01',
      year: '2027',
    });
  });
});

describe('correcting a decision', () => {
  const first = decisionEntry({ ...base, item: 'HR-LAB-CBC', action: 'accepted' }) as LedgerEntry;
  const decline = decisionEntry({
    ...base,
    item: 'HR-LAB-CBC',
    action: 'declined',
    reason: reason('condition-changed'),
    now: new Date(base.now.getTime() + 5 * 60_000),
  }) as LedgerEntry;

  test('within 10 minutes: a new entry that names the first and what it counted', () => {
    const c = correctionEntry(first, decline, new Date(base.now.getTime() + 5 * 60_000)) as LedgerEntry;
    expect(c).toMatchObject({
      _id: correctionId('chk-1', 'HR-LAB-CBC'),
      event: 'declined',
      reason: 'condition-changed',
      supersedes: 'chk-1|HR-LAB-CBC|decision',
      reverses: { event: 'accepted', saving: 30, day: first.day, month: first.month },
    });
    expect(finalDecisions([first, c]).get('HR-LAB-CBC')).toBe(c);
    expect(finalDecisions([c, first]).get('HR-LAB-CBC')).toBe(c);
  });

  test('after 10 minutes, or of a view, it is refused', () => {
    const late = correctionEntry(first, decline, new Date(base.now.getTime() + 10 * 60_000 + 1));
    expect(late).toMatchObject({ kind: 'not-correctable' });
    const viewed = decisionEntry({ ...base, item: 'HR-LAB-CBC', action: 'viewed' }) as LedgerEntry;
    expect(correctionEntry(viewed, decline, base.now)).toMatchObject({ kind: 'not-correctable' });
  });
});
