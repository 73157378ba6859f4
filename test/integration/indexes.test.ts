import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.js';

// Which database runs the suite decides whether query plans can be checked (see below).
const probe = await MongoClient.connect(inject('mongoUri'));
const isFerretDb =
  ((await probe.db('admin').command({ buildInfo: 1 })) as { ferretdbVersion?: string }).ferretdbVersion !== undefined;
await probe.close();

describe('indexes of the resource store', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp('indexes');
  });
  afterAll(async () => {
    await t.close();
  });

  test('the hot recognition lookup (patient + code + date) and identifier lookups have indexes', async () => {
    const keys = (await t.deps.connection.db!.collection('resources').indexes()).map((i) => i.key);
    expect(keys).toContainEqual({ type: 1, 'sp.patient': 1, 'sp.code': 1, 'sp.date.lo': -1 });
    expect(keys).toContainEqual({ type: 1, 'sp.identifier': 1 });
    const history = (await t.deps.connection.db!.collection('history').indexes()).map((i) => i.key);
    expect(history).toContainEqual({ type: 1, id: 1, vid: -1 });
  });

  // Every write and every read by id looks a document up by _id. FerretDB 1.24's SQLite backend pushed that lookup
  // down on an expression its own _id index does not match, scanning the table; db/ferretdb/patches.json fixes it.
  test.runIf(isFerretDb)('on the embedded FerretDB a lookup by _id searches the _id index', async () => {
    const plan = await t.deps.connection
      .db!.collection<{ _id: string }>('resources')
      .find({ _id: 'Patient/p1' })
      .explain();
    const text = JSON.stringify(plan.queryPlanner);
    expect(text).toMatch(/SEARCH \S+ USING INDEX \S+__id_/);
    expect(text).not.toMatch(/detail=SCAN/);
  });

  // FerretDB 1.24's SQLite backend pushes down only _id lookups and scans otherwise, so the plan can only be
  // checked on MongoDB (run the suite with MONGODB_URI pointing at a mongod to see it).
  test.skipIf(isFerretDb)('on MongoDB the hot lookup walks the compound index, never the collection', async () => {
    const plan = await t.deps.connection
      .db!.collection('resources')
      .find({
        type: 'Observation',
        'sp.patient': 'Patient/p1',
        'sp.code': 'http://loinc.org|718-7',
        'sp.date.lo': { $gte: new Date('2026-01-01') },
      })
      .sort({ 'sp.date.lo': -1 })
      .explain();
    const text = JSON.stringify(plan);
    expect(text).toContain('IXSCAN');
    expect(text).toContain('type_1_sp.patient_1_sp.code_1_sp.date.lo_-1');
    expect(text).not.toContain('COLLSCAN');
  });
});
