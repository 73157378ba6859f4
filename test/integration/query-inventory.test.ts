import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { MongoClient, type Document } from 'mongodb';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { ensureFerretDb } from '../../src/store/database.js';
import { ANCHORS, coverOf, observe, SCANS } from '../../src/store/query-inventory.js';
import { createTestApp, type TestApp } from '../support/app.js';

/**
 * Every indexed query shape of src/store/query-inventory.ts, under `explain`, on a database with every collection and
 * index the broker creates (a test app's). On the embedded database the planner is asked with sequential scans
 * disabled (a second FerretDB on the same PostgreSQL, `enable_seqscan=off`): a plan that still scans means no index
 * can serve the query. On MongoDB (MONGODB_URI) the winning plan must be an IXSCAN and no COLLSCAN.
 */
const onMongo = inject('postgresUrl') === '';

let t: TestApp;
let probe: { client: MongoClient; stop(): Promise<void> };

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** A FerretDB on the run's PostgreSQL whose sessions may not scan sequentially where an index can serve. */
async function planner(): Promise<{ client: MongoClient; stop(): Promise<void> }> {
  if (onMongo) {
    const client = await MongoClient.connect(inject('mongoUri'));
    return { client, stop: () => client.close() };
  }
  const port = await freePort();
  const url = new URL(inject('postgresUrl'));
  url.searchParams.set('enable_seqscan', 'off');
  const child: ChildProcess = spawn(
    await ensureFerretDb(),
    ['-listen', `127.0.0.1:${port}`, '-log-level', 'ERROR+4', '-postgresql-url', url.toString()],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => b.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`FerretDB exited ${code}`)));
  });
  const client = await MongoClient.connect(`mongodb://127.0.0.1:${port}/`);
  return {
    client,
    stop: async () => {
      await client.close();
      child.kill('SIGTERM');
    },
  };
}

/** Plan node types found anywhere in a PostgreSQL (FerretDB) or MongoDB explain output. */
function planNodes(explain: Document): { nodes: string[]; indexes: string[] } {
  const nodes: string[] = [];
  const indexes: string[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) return v.forEach(walk);
    if (typeof v !== 'object' || v === null) return;
    const o = v as Record<string, unknown>;
    if (typeof o['Node Type'] === 'string') nodes.push(o['Node Type']);
    if (typeof o['Index Name'] === 'string') indexes.push(o['Index Name']);
    if (typeof o.stage === 'string') nodes.push(o.stage);
    if (typeof o.indexName === 'string') indexes.push(o.indexName);
    Object.values(o).forEach(walk);
  };
  walk(explain.queryPlanner ?? explain);
  return { nodes, indexes };
}

beforeAll(async () => {
  t = await createTestApp('query-inventory');
  probe = await planner();
  // Every collection of the inventory exists with the broker's indexes (a collection the app creates lazily gets one
  // document here, which creates it with its `_id` index).
  const db = probe.client.db(t.dbName);
  const existing = new Set((await db.listCollections().toArray()).map((c) => c.name));
  for (const name of new Set(ANCHORS.map((a) => a.collection))) {
    if (!existing.has(name)) await db.collection<Document>(name).insertOne({ _id: 'inventory-probe' as never });
  }
});

afterAll(async () => {
  await probe?.stop();
  await t?.close();
});

describe('every indexed query shape of the inventory is served by an index', () => {
  const shapes = ANCHORS.flatMap((a) => [
    [`${a.collection} by ${a.anchor}`, a, { [a.anchor]: a.sample ?? 'inventory-probe-value' }] as const,
    // An `$in` of strings is pushed down as one equality per value (our FerretDB patch).
    ...(a.sample === undefined || typeof a.sample === 'string'
      ? [
          [
            `${a.collection} by ${a.anchor} $in`,
            a,
            { [a.anchor]: { $in: ['inventory-probe-1', 'inventory-probe-2'] } },
          ] as const,
        ]
      : []),
  ]);
  test.each(shapes)('%s', async (_name, anchor, filter) => {
    const explain = await probe.client.db(t.dbName).collection(anchor.collection).find(filter).explain();
    const { nodes, indexes } = planNodes(explain);
    if (onMongo) {
      expect(nodes).toContain('IXSCAN');
      expect(nodes).not.toContain('COLLSCAN');
    } else {
      expect(explain.filterPushdown, 'FerretDB pushes the filter down to PostgreSQL').toBe(true);
      expect(nodes).not.toContain('Seq Scan');
      expect(indexes.length, `an index serves ${anchor.collection} by ${anchor.anchor}`).toBeGreaterThan(0);
    }
  });

  test('a query on a field no index covers is found out (the check can fail)', async () => {
    const explain = await probe.client.db(t.dbName).collection('resources').find({ unindexed: 'x' }).explain();
    const { nodes } = planNodes(explain);
    expect(nodes).toContain(onMongo ? 'COLLSCAN' : 'Seq Scan');
  });
});

describe('the recorded query shapes are judged against the inventory', () => {
  test('an anchored search, an id lookup and a purge are covered; an unindexed filter is not', () => {
    expect(coverOf(observe('resources', { tk: 'Observation|patient|Patient/1', type: 'Observation' }))).toBe(
      ANCHORS.find((a) => a.collection === 'resources' && a.anchor === 'tk'),
    );
    expect(coverOf(observe('facts', { patientKeys: 'k', effectiveAt: { $gte: new Date() } }))).toBeDefined();
    expect(coverOf(observe('seen_jti', { expiresAt: { $lt: new Date() } }))).toBeDefined();
    // An `$in` of strings is an anchor (pushed down, one equality per value; an empty one reads nothing); of other
    // values it is not, nor is an equality on an unindexed field.
    expect(coverOf(observe('facts', { patientKeys: { $in: ['a', 'b'] } }))).toBeDefined();
    expect(coverOf(observe('facts', { patientKeys: { $in: [] } }))).toBeDefined();
    expect(coverOf(observe('facts', { patientKeys: { $in: [1, 2] } }))).toBeUndefined();
    expect(coverOf(observe('decisions', { organization: 'Organization/x' }))).toBeUndefined();
  });

  test('every scan of the inventory says why it is acceptable', () => {
    for (const scan of SCANS)
      expect(scan.why.length, `${scan.collection} {${scan.keys.join(', ')}}`).toBeGreaterThan(10);
  });
});
