import { setTimeout as sleep } from 'node:timers/promises';
import mongoose, { type Connection } from 'mongoose';
import { Client as PgClient } from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';

/**
 * Proves the database features the broker relies on work on the database the tests run against (FerretDB 1.24
 * on our machines, MongoDB in production): one code path for both.
 */
describe('database', () => {
  let conn: Connection;
  const Fact = new mongoose.Schema(
    { patientKey: String, item: String, month: String, org: String, saving: Number, effective: Date },
    { versionKey: false },
  );
  Fact.index({ patientKey: 1, item: 1, effective: -1 });
  Fact.index({ org: 1, item: 1, patientKey: 1 }, { unique: true });

  beforeAll(async () => {
    conn = await mongoose.createConnection(inject('mongoUri'), { dbName: `t_database_${Date.now()}` }).asPromise();
  });
  afterAll(async () => {
    await conn.dropDatabase();
    await conn.close();
  });

  test('mongoose create, read, update and delete round-trip a document', async () => {
    const M = conn.model('Crud', Fact);
    const created = await M.create({
      patientKey: 'p1',
      item: 'cbc',
      org: 'a',
      saving: 30,
      effective: new Date('2024-03-05T08:00:00Z'),
    });
    const read = await M.findById(created._id).lean();
    expect(read?.saving).toBe(30);
    await M.updateOne({ _id: created._id }, { $set: { saving: 35 } });
    expect((await M.findById(created._id).lean())?.saving).toBe(35);
    await M.deleteOne({ _id: created._id });
    expect(await M.findById(created._id).lean()).toBeNull();
  });

  test('a compound unique index refuses a duplicate and keeps the first document', async () => {
    const M = conn.model('Unique', Fact);
    await M.createIndexes();
    await M.create({ patientKey: 'p1', item: 'cbc', org: 'a', saving: 30 });
    await expect(M.create({ patientKey: 'p1', item: 'cbc', org: 'a', saving: 99 })).rejects.toMatchObject({
      code: 11000,
    });
    await M.create({ patientKey: 'p2', item: 'cbc', org: 'a', saving: 30 }); // differs in one key part: allowed
    const docs = await M.find({ org: 'a' }).sort({ patientKey: 1 }).lean();
    expect(docs.map((d) => [d.patientKey, d.saving])).toEqual([
      ['p1', 30],
      ['p2', 30],
    ]);
  });

  test('aggregation with $match, $group ($sum, $count), $sort and $limit gives exact totals', async () => {
    const M = conn.model('Agg', Fact);
    await M.insertMany([
      { org: 'a', item: 'cbc', month: '2024-01', saving: 30 },
      { org: 'a', item: 'ct', month: '2024-01', saving: 207 },
      { org: 'b', item: 'cbc', month: '2024-02', saving: 30 },
      { org: 'b', item: 'cbc', month: '2024-03', saving: 30 },
    ]);
    // One accumulator per $group: FerretDB 1.24 answers 0 for every accumulator after the first in one $group,
    // so reports run one pipeline per measure (design notes in README).
    const group = (acc: mongoose.AccumulatorOperator) =>
      M.aggregate<{ _id: string; v: number }>([
        { $match: { month: { $gte: '2024-01', $lte: '2024-02' } } },
        { $group: { _id: '$org', v: acc } },
        { $sort: { _id: 1 } },
        { $limit: 10 },
      ]);
    expect(await group({ $sum: '$saving' })).toEqual([
      { _id: 'a', v: 237 },
      { _id: 'b', v: 30 },
    ]);
    expect(await group({ $sum: 1 })).toEqual([
      { _id: 'a', v: 2 },
      { _id: 'b', v: 1 },
    ]);
    const counted = await M.aggregate<{ total: number }>([{ $match: { item: 'cbc' } }, { $count: 'total' }]);
    expect(counted).toEqual([{ total: 3 }]);
  });

  test('a unique insert lets exactly one of several concurrent writers claim a key', async () => {
    // The store claims versions and conditions this way. A filtered update ({ _id, vid: 1 } → vid 2) is NOT an
    // atomic compare-and-set on FerretDB 1.24 (it queries, then updates by _id), so nothing relies on one.
    const claims = conn.collection('claims');
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => claims.insertOne({ _id: 'Observation/x/2' as unknown as never, writer: i })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason.code)).toEqual(
      Array(7).fill(11000),
    );
    expect(await claims.countDocuments({})).toBe(1);
  });
  test('a bulk write replacing 200 existing documents completes (re-projected facts, the layout upgrade)', async () => {
    // FerretDB 1.24 held every statement's pooled connection until the whole command ended: 50 or more replacements
    // of existing documents in one command hung (db/ferretdb/patches.json).
    const facts = conn.collection<{ _id: string; v: number }>('bulk_facts');
    await facts.insertMany(Array.from({ length: 200 }, (_, i) => ({ _id: `f${i}`, v: 1 })));
    const result = await facts.bulkWrite(
      Array.from({ length: 200 }, (_, i) => ({
        replaceOne: { filter: { _id: `f${i}` }, replacement: { v: 2 }, upsert: true },
      })),
      { ordered: false },
    );
    expect(result.matchedCount).toBe(200);
    expect(await facts.countDocuments({ v: 2 })).toBe(200);
  });

  test('$in finds exactly the documents MongoDB would, on scalars, arrays and nested paths', async () => {
    // Our FerretDB build pushes `$in` of strings down as one equality per value (db/ferretdb/patches.json); the
    // answers must stay MongoDB's: a match on any value, in arrays too, never a type-confused match, none for `[]`.
    type Doc = { _id: string; tk?: unknown; meta?: { tag: unknown } };
    const docs = conn.collection<Doc>('in_docs');
    await docs.createIndex({ tk: 1 });
    await docs.insertMany([
      { _id: 'a', tk: ['x|1', 'y|2'], meta: { tag: 'p' } },
      { _id: 'b', tk: 'x|1', meta: { tag: ['p', 'q'] } },
      { _id: 'c', tk: ['z|3'], meta: { tag: 'q' } },
      { _id: 'd', tk: 1, meta: { tag: 1 } },
      { _id: 'e', tk: { v: 'x|1' } },
      { _id: 'f' },
    ]);
    const ids = async (filter: object) => (await docs.find(filter).toArray()).map((d) => d._id).sort();
    expect(await ids({ _id: { $in: ['a', 'c', 'nope'] } })).toEqual(['a', 'c']);
    expect(await ids({ tk: { $in: ['x|1', 'z|3'] } })).toEqual(['a', 'b', 'c']);
    expect(await ids({ tk: { $in: ['1'] } })).toEqual([]);
    expect(await ids({ tk: { $in: [1, 'z|3'] } })).toEqual(['c', 'd']);
    expect(await ids({ 'meta.tag': { $in: ['p'] } })).toEqual(['a', 'b']);
    expect(await ids({ tk: { $in: [] } })).toEqual([]);
    expect(await ids({ _id: { $in: ['a', 'b'] }, tk: 'y|2' })).toEqual(['a']);
    expect(await docs.countDocuments({ tk: { $in: ['x|1'] } })).toBe(2);
  });

  // On MongoDB the server interrupts an operation whose client disconnected; PostgreSQL's view of it is what is shown.
  test.skipIf(inject('postgresUrl') === '')(
    'a query whose client hangs up stops in the database: PostgreSQL is told to cancel it',
    { timeout: 120_000 },
    async () => {
      // A query PostgreSQL alone takes seconds over: 1 000 alternatives (an `$in` our FerretDB build pushes down as
      // one containment test each) against every row of a table without an index on the field.
      const probe = conn.collection<{ _id: number; s: string }>('hangup_probe');
      for (let batch = 0; batch < 15; batch++) {
        await probe.insertMany(Array.from({ length: 2000 }, (_, i) => ({ _id: batch * 2000 + i, s: `row ${i}` })));
      }
      const absent = Array.from({ length: 1000 }, (_, i) => `absent ${i}`);
      const pg = new PgClient({ connectionString: inject('postgresUrl') });
      await pg.connect();
      try {
        const running = async () =>
          Number(
            (
              await pg.query<{ n: string }>(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' AND query ILIKE '%hangup_probe%' AND pid <> pg_backend_pid()",
              )
            ).rows[0]!.n,
          );
        const slowQuery = (signal?: AbortSignal) => probe.find({ s: { $in: absent } }, { signal }).toArray();

        // Run to its end, it keeps PostgreSQL busy for this long:
        let started = Date.now();
        expect(await slowQuery()).toEqual([]);
        const fullRun = Date.now() - started;

        // The same query, abandoned once PostgreSQL is working on it:
        const controller = new AbortController();
        started = Date.now();
        const abandoned = slowQuery(controller.signal).catch((err: unknown) => err);
        while ((await running()) === 0 && Date.now() - started < fullRun) await sleep(10);
        expect(await running(), 'PostgreSQL is running the query').toBe(1);
        controller.abort(new Error('client gone'));
        expect(((await abandoned) as Error).message).toBe('client gone');
        const abortedAt = Date.now();
        while ((await running()) > 0 && Date.now() - abortedAt < fullRun) await sleep(10);
        const stoppedAfter = Date.now() - abortedAt;
        expect(await running(), 'the query stopped').toBe(0);
        // Well before it would have ended on its own (it had most of its run still to go).
        expect(fullRun, 'the query is long enough for this test to mean something').toBeGreaterThan(1500);
        expect(stoppedAfter).toBeLessThan(fullRun / 3);
      } finally {
        await pg.end();
      }
    },
  );
});
