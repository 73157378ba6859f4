import { MongoClient, type Collection } from 'mongodb';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { InsertBatcher } from '../../src/store/insert-batcher.js';

interface Doc {
  _id: string;
  n: number;
}

describe('insert batcher (group commit of hot-path inserts)', () => {
  let client: MongoClient;
  let col: Collection<Doc>;
  let insertCommands = 0;

  beforeAll(async () => {
    client = await MongoClient.connect(inject('mongoUri'), { monitorCommands: true });
    client.on('commandStarted', (e) => {
      if (e.commandName === 'insert') insertCommands++;
    });
    col = client.db(`t_batcher_${Date.now()}`).collection<Doc>('docs');
    await col.insertOne({ _id: 'warm-up', n: 0 });
  });
  afterAll(async () => {
    await col.db.dropDatabase();
    await client.close();
  });

  test('many concurrent callers are stored in a few round trips, and each learns when its own documents are in', async () => {
    const batcher = new InsertBatcher(col);
    insertCommands = 0;
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => batcher.insert([{ _id: `c${i}`, n: i }])));
    expect(results.every((r) => r.duplicates.length === 0)).toBe(true);
    expect(await col.countDocuments({ _id: { $regex: /^c/ } })).toBe(50);
    // The first caller goes alone; the 49 that came while it was in flight share the next insert.
    expect(insertCommands).toBeLessThanOrEqual(3);
  });

  test('a lone caller is written at once, without waiting for company', async () => {
    const batcher = new InsertBatcher(col);
    insertCommands = 0;
    await batcher.insert([{ _id: 'alone', n: 1 }]);
    expect(insertCommands).toBe(1);
    expect(await col.findOne({ _id: 'alone' })).toMatchObject({ n: 1 });
  });

  test('a document whose _id exists is reported to its caller only; the others of the batch are stored', async () => {
    const batcher = new InsertBatcher(col);
    await col.insertOne({ _id: 'taken', n: 0 });
    const [first, second] = await Promise.all([
      batcher.insert([{ _id: 'b1', n: 1 }]),
      batcher.insert([
        { _id: 'b2', n: 2 },
        { _id: 'taken', n: 9 },
        { _id: 'b3', n: 3 },
      ]),
    ]);
    expect(first.duplicates).toEqual([]);
    expect(second.duplicates).toEqual([1]);
    expect(await col.countDocuments({ _id: { $in: ['b1', 'b2', 'b3'] } })).toBe(3);
    expect(await col.findOne({ _id: 'taken' })).toMatchObject({ n: 0 });
  });
});
