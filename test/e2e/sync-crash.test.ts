import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { readDemoClients } from '../../src/auth/demo-clients.js';
import { ingestPage } from '../../src/import/ingest.js';
import { parseEndpoint } from '../../src/sync/endpoints.js';
import { HOSPITAL_A, resultsOf } from '../fixtures/connectors.js';
import { createTestApp, TEST_DATA_DIR, type TestApp } from '../support/app.js';

/**
 * `huren sync` killed with SIGKILL in the middle of a pull, then run again: the broker's index ends up exactly as
 * after one uninterrupted pull (nothing lost, nothing twice).
 */

const RESULTS = 50;
let hospital: TestApp;
let server: http.Server;
let base: string;
let mongo: MongoClient;

beforeAll(async () => {
  hospital = await createTestApp('crash_hospital', { HUREN_BASE_URL: '' });
  server = http.createServer(hospital.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
  const all = resultsOf('crash', RESULTS);
  for (let i = 0; i < all.length; i += 20) {
    await ingestPage(
      hospital.deps,
      all.slice(i, i + 20).map((resource, k) => ({ resource, where: `#${i + k}` })),
    );
  }
  mongo = await MongoClient.connect(inject('mongoUri'));
}, 60_000);

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await hospital?.close();
  await mongo?.close();
});

async function registerEndpoint(dbName: string): Promise<void> {
  const his = readDemoClients(TEST_DATA_DIR).find((c) => c.clientId === 'demo-his-hospital-a')!;
  const endpoint = parseEndpoint('hosp-a', {
    institution: HOSPITAL_A,
    baseUrl: base,
    pageSize: 5, // many small pages: the kill lands between two of them or inside one
    auth: {
      type: 'backend-services',
      tokenUrl: base.replace(/\/fhir$/, '/auth/token'),
      clientId: his.clientId,
      privateJwk: his.privateJwk,
      scope: 'system/DiagnosticReport.rs system/Observation.rs system/Patient.rs',
    },
  });
  await mongo
    .db(dbName)
    .collection('sync_endpoints')
    .insertOne(endpoint as never);
}

function runSync(dbName: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'sync', '--hospital', 'hosp-a'], {
    env: {
      ...process.env,
      MONGODB_URI: inject('mongoUri'),
      HUREN_DB_NAME: dbName,
      HUREN_DATA_DIR: TEST_DATA_DIR,
      HUREN_SYNC_LEASE_SECONDS: '5', // the killed process's lease runs out quickly
    },
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

/** The index as a user sees it: every resource with its content and version, and the number of versions. */
async function indexOf(dbName: string) {
  const db = mongo.db(dbName);
  const types = { type: { $in: ['DiagnosticReport', 'Observation', 'Patient'] } };
  const resources = await db.collection('resources').find(types).sort({ _id: 1 }).toArray();
  return {
    resources: resources.map((d) => {
      const { meta, ...content } = d.resource as { meta: { versionId: string } };
      return { id: d._id, vid: d.vid, versionId: meta.versionId, content };
    }),
    versions: await db.collection('history').countDocuments(types),
    pendingLog: await db.collection('ingest_log').countDocuments(),
  };
}

describe('sync crash', () => {
  test('a sync killed with SIGKILL mid-way and run again leaves the same index as an uninterrupted one', async () => {
    const reference = `t_sync_ref_${randomBytes(4).toString('hex')}`;
    const crashed = `t_sync_kill_${randomBytes(4).toString('hex')}`;
    await registerEndpoint(reference);
    await registerEndpoint(crashed);

    const uninterrupted = runSync(reference);
    expect(await uninterrupted.exited, uninterrupted.output()).toBe(0);

    const first = runSync(crashed);
    const reports = mongo.db(crashed).collection('resources');
    for (let i = 0; i < 3000 && (await reports.countDocuments({ type: 'DiagnosticReport' })) < 10; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    first.child.kill('SIGKILL');
    await first.exited;
    const partial = await reports.countDocuments({ type: 'DiagnosticReport' });
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(RESULTS); // the kill really landed in the middle

    const second = runSync(crashed);
    expect(await second.exited, second.output()).toBe(0);

    const expected = await indexOf(reference);
    expect(expected.resources).toHaveLength(2 * RESULTS + 1);
    expect(expected.versions).toBe(2 * RESULTS + 1);
    expect(await indexOf(crashed)).toEqual(expected);
    await mongo.db(reference).dropDatabase();
    await mongo.db(crashed).dropDatabase();
  }, 90_000);
});
