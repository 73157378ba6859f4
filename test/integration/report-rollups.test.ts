import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findDeclineReason } from '../../src/recognition/decline-reasons.js';
import {
  correctionEntry,
  decisionEntry,
  promptEntries,
  type DoctorAction,
  type LedgerEntry,
} from '../../src/recognition/ledger.js';
import type { ReuseCheckDoc } from '../../src/recognition/reuse-checks.js';
import { localDate } from '../../src/recognition/time.js';
import { ROLLUPS_COLLECTION } from '../../src/reports/rollups.js';
import type { SavingsReport } from '../../src/reports/savings.js';
import { createTestApp, type TestApp } from '../support/app.js';

const TZ = 'Asia/Shanghai';
const TODAY = localDate(Date.now(), TZ);

describe('report rollups of the decisions ledger', () => {
  let t: TestApp;
  let n = 0;

  /** A check at `at` by hospital C offering one reusable CBC, its prompt recorded through the ledger. */
  async function promptedCheck(at: Date, id: string, patientKey: string): Promise<ReuseCheckDoc> {
    const check: ReuseCheckDoc = {
      _id: id,
      requester: 'demo-hospital-c',
      patientKeys: [patientKey],
      createdAt: at,
      at,
      context: 'routine',
      outcomes: [
        {
          requestIndex: 0,
          item: 'HR-LAB-CBC',
          decision: 'reusable',
          performer: 'demo-hospital-a',
          saving: 30,
          currency: 'CNY',
        },
      ],
    };
    await t.deps.ledger!.recordPrompts(promptEntries(check, () => 'lab-hematology', TZ));
    return check;
  }

  /** A check of `day` at hospital C with one CBC prompt and the doctor's actions, recorded through the ledger. */
  async function pastDecision(day: string, actions: DoctorAction[], patientKey = `pk-${++n}`): Promise<void> {
    const at = new Date(`${day}T10:00:00+08:00`);
    const check = await promptedCheck(at, `rollup-check-${++n}`, patientKey);
    for (const action of actions) {
      const entry = decisionEntry({
        check,
        item: 'HR-LAB-CBC',
        action,
        channel: 'seed',
        now: new Date(at.getTime() + 60_000),
        timeZone: TZ,
        category: 'lab-hematology',
      });
      if ('kind' in entry) throw new Error(entry.message);
      await t.deps.ledger!.record(entry);
    }
  }

  async function byMonth(from: string): Promise<SavingsReport> {
    const res = await t.as('bureau').get(`/reports/savings?from=${from}&to=${TODAY}&by=month`);
    expect(res.status, res.text).toBe(200);
    return res.body as SavingsReport;
  }

  const rollupIds = async () =>
    (await t.deps.connection.db!.collection(ROLLUPS_COLLECTION).find({}).toArray()).map((d) => String(d._id)).sort();

  beforeAll(async () => {
    t = await createTestApp('report-rollups');
    await pastDecision('2025-03-03', ['viewed', 'accepted']);
    await pastDecision('2025-03-31', ['accepted']);
    await pastDecision('2025-04-15', ['viewed']);
  });
  afterAll(async () => {
    await t.close();
  });

  test('a closed month is summed up once and read from its rollup afterwards, with the same figures', async () => {
    const first = await byMonth('2025-03-01');
    const march = first.rows.find((r) => r.month?.code === '2025-03')!;
    expect(march).toMatchObject({ prompts: 2, viewed: 1, accepted: 2, patients: 2, saving: 60 });
    expect(await rollupIds()).toEqual(expect.arrayContaining(['month:2025-03', 'month:2025-04']));
    const builtAt = (
      await t.deps.connection.db!.collection(ROLLUPS_COLLECTION).findOne({ _id: 'month:2025-03' as never })
    )?.builtAt;
    const second = await byMonth('2025-03-01');
    expect(second.rows).toEqual(first.rows);
    expect(second.totals).toEqual(first.totals);
    // Read, not rebuilt.
    const again = await t.deps.connection.db!.collection(ROLLUPS_COLLECTION).findOne({ _id: 'month:2025-03' as never });
    expect(again?.builtAt).toEqual(builtAt);
  });

  test('a decision recorded late for a closed month is in the next report: its rollup is rebuilt', async () => {
    const before = (await byMonth('2025-03-01')).rows.find((r) => r.month?.code === '2025-03')!;
    await pastDecision('2025-03-20', ['accepted']);
    const after = (await byMonth('2025-03-01')).rows.find((r) => r.month?.code === '2025-03')!;
    expect(after.prompts).toBe(before.prompts! + 1);
    expect(after.accepted).toBe(before.accepted! + 1);
    expect(after.saving).toBe(before.saving! + 30);
  });

  test('a decision made today on a prompt of a closed month changes that month: its rollup is rebuilt', async () => {
    const before = (await byMonth('2025-03-01')).rows.find((r) => r.month?.code === '2025-04')!;
    const check = await promptedCheck(new Date('2025-04-25T09:00:00+08:00'), 'rollup-check-late', 'pk-late');
    expect((await byMonth('2025-03-01')).rows.find((r) => r.month?.code === '2025-04')!.prompts).toBe(
      before.prompts! + 1,
    );
    const entry = decisionEntry({
      check,
      item: 'HR-LAB-CBC',
      action: 'accepted',
      channel: 'operation',
      now: new Date(),
      timeZone: TZ,
      category: 'lab-hematology',
    }) as LedgerEntry;
    await t.deps.ledger!.record(entry);
    const after = (await byMonth('2025-03-01')).rows.find((r) => r.month?.code === '2025-04')!;
    expect(after).toMatchObject({ prompts: before.prompts! + 1, accepted: before.accepted! + 1 });
    // Rollups hold numbers, never a patient key.
    const docs = await t.deps.connection.db!.collection(ROLLUPS_COLLECTION).find({}).toArray();
    expect(JSON.stringify(docs)).not.toMatch(/pk-/);
  });

  test('a ledger recorded under the old definitions is re-tallied once: prompts built, old rollups dropped', async () => {
    const before = await byMonth('2025-03-01');
    const db = t.deps.connection.db!;
    // As an older version left it: no prompts, no definitions mark, rollups of the old shape.
    await t.deps.ledger!.prompts.deleteMany({});
    await t.deps.ledger!.marks.deleteOne({ _id: 'definitions' });
    await db.collection(ROLLUPS_COLLECTION).insertOne({ _id: 'month:2024-01', stamp: null, funnel: [] } as never);
    // Entries from before prompts existed carry no prompt day.
    await t.deps.ledger!.collection.updateMany({}, { $unset: { promptDay: '' } });
    // The next start of the broker re-tallies, says so in its log, and answers the same figures.
    const restarted = await createTestApp('report-rollups-restart', {}, { dbName: t.dbName, keepDatabase: true });
    try {
      const line = restarted.logLines.find((l) => l.includes('Report figures re-tallied'));
      expect(line).toBeDefined();
      expect(JSON.parse(line!)).toMatchObject({ entries: expect.any(Number), prompts: expect.any(Number) });
      expect(await rollupIds()).toEqual([]);
      const after = await restarted.as('bureau').get(`/reports/savings?from=2025-03-01&to=${TODAY}&by=month`);
      expect(after.body.rows).toEqual(before.rows);
      expect(after.body.totals).toEqual(before.totals);
      // Once: a further start changes nothing.
      expect(await restarted.deps.rollups!.retallyOnce()).toBeUndefined();
    } finally {
      await restarted.close();
    }
  });

  test('a period that starts mid-month reads that month by day, and agrees with the whole-month figures', async () => {
    const fromMid = await byMonth('2025-03-15');
    const march = fromMid.rows.find((r) => r.month?.code === '2025-03')!;
    // 2025-03-20 and 2025-03-31 are in the period, 2025-03-03 is not.
    expect(march).toMatchObject({ prompts: 2, accepted: 2, saving: 60 });
    expect(await rollupIds()).toEqual(expect.arrayContaining(['day:2025-03-20', 'day:2025-03-31']));
  });

  test('groupings asked at once on a period not summed up yet all answer, with the same totals', async () => {
    // The dashboard asks four groupings together; each needs the same rollups built.
    await t.deps.rollups!.clear();
    const answers = await Promise.all(
      ['month', 'organization', 'category', ''].map((by) =>
        t.as('bureau').get(`/reports/savings?from=2025-03-01&to=${TODAY}${by ? `&by=${by}` : ''}`),
      ),
    );
    for (const res of answers) expect(res.status, res.text).toBe(200);
    const totals = answers.map((res) => (res.body as SavingsReport).totals);
    for (const other of totals.slice(1)) expect(other).toEqual(totals[0]);
  });

  test('a reuse at 23:58 on 31 May corrected to a decline at 00:03 on 1 June counts once, on the prompt’s day', async () => {
    const at = new Date('2025-05-31T23:58:00+08:00');
    const check = await promptedCheck(at, 'rollup-check-midnight', 'pk-midnight');
    const base = { check, item: 'HR-LAB-CBC', channel: 'seed' as const, timeZone: TZ, category: 'lab-hematology' };
    const accepted = decisionEntry({ ...base, action: 'accepted', now: at }) as LedgerEntry;
    await t.deps.ledger!.record(accepted);
    const later = new Date('2025-06-01T00:03:00+08:00');
    const reason = findDeclineReason(t.deps.facts.rules.declineReasons, 'condition-changed')!;
    const declined = decisionEntry({ ...base, action: 'declined', reason, now: later }) as LedgerEntry;
    const correction = correctionEntry(accepted, declined, later) as LedgerEntry;
    expect(correction.supersedes).toBe(accepted._id);
    await t.deps.ledger!.record(correction);

    const report = await t.as('bureau').get(`/reports/savings?from=2025-05-01&to=2025-06-30&by=month`);
    expect(report.status, report.text).toBe(200);
    const body = report.body as SavingsReport;
    const row = (m: string) => body.rows.find((r) => r.month?.code === m)!;
    // Every figure of a prompt counts on its day: the decline of 1 June is May's.
    expect(row('2025-05')).toMatchObject({ prompts: 1, accepted: 0, patients: 0, saving: 0, declined: 1 });
    expect(row('2025-06')).toBeUndefined();
    expect(body.totals).toMatchObject({ prompts: 1, accepted: 0, patients: 0, saving: 0, declined: 1 });
    // Both months now come from rollups, built on this request: asked again, the same figures.
    expect(await rollupIds()).toEqual(expect.arrayContaining(['month:2025-05', 'month:2025-06']));
    const again = await t.as('bureau').get(`/reports/savings?from=2025-05-01&to=2025-06-30&by=month`);
    expect((again.body as SavingsReport).totals).toEqual(body.totals);
  });

  test('today is read from the ledger as it is: a check asked now counts at once', async () => {
    const before = (await byMonth('2025-03-01')).totals.prompts!;
    await pastDecision(TODAY, []);
    expect((await byMonth('2025-03-01')).totals.prompts).toBe(before + 1);
  });
});
