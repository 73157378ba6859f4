import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { Bundle, DiagnosticReport, Observation, Parameters } from 'fhir/r4';
import type { Express } from 'express';
import { Binary, BSON, Long, MongoClient, type Document } from 'mongodb';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApp, type AppDeps } from '../../src/app.js';
import { createClientAssertion } from '../../src/auth/assertion.js';
import { readDemoClients } from '../../src/auth/demo-clients.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { SYSTEMS } from '../../src/recognition/vocabulary.js';
import type { SavingsReport } from '../../src/reports/savings.js';
import { createSearchRegistry } from '../../src/fhir/search/index.js';
import { createServices, resourceIndex } from '../../src/services.js';
import {
  DatabaseUnavailableError,
  legacySqliteData,
  MIGRATE_COMMAND,
  startDatabase,
  startLegacySqlite,
  type DatabaseServer,
} from '../../src/store/database.js';
import { migrateSqlite, OBSOLETE_INDEXES, type MigrationProgress } from '../../src/store/migrate-sqlite.js';
import { STORE_LAYOUT } from '../../src/store/resource-store.js';
import {
  FHIR_JSON,
  HOSPITAL_A,
  HOSPITAL_B,
  ID_CARD,
  LOINC,
  daysAgo,
  finalReport,
  patientWithId,
} from '../fixtures/recognition.js';

/**
 * A data directory of the earlier default (FerretDB over SQLite) is refused by `npm start`, converted by
 * `migrate-sqlite` — also after an interruption — and the broker on the converted database answers as it did: the
 * same searches, resources, versions, rules, ledger, sync endpoints, and the access tokens it had issued.
 *
 * The legacy data is written by this version's broker running over the SQLite files, then taken back to the old
 * resource layout (no `tk` search tokens, no layout marker, the old resource indexes), as the version before
 * PostgreSQL left it. The migration writes them in the current layout.
 */

const BASE = 'http://huren.test/fhir';
const DB_NAME = 'huren';
const ID_NUMBER = '370202199001011237';
const index = resourceIndex(
  createSearchRegistry({ defaultTimeZone: loadConfig({ NODE_ENV: 'test' }).defaultTimeZone }),
);
/** Glucose results of the patient, sent in one transaction. */
const GLUCOSE = 100;

const patient = patientWithId('mig-patient', ID_NUMBER, { gender: 'male', birthDate: '1990-01-01' });
/** A CBC of hospital A taken 10 days ago: beyond the seeded 7-day window, within the 30 days set before migrating. */
const cbc = finalReport('mig-cbc', 'mig-patient', '57021-8', daysAgo(10));
const hemoglobin: Observation = {
  resourceType: 'Observation',
  id: 'mig-hb',
  status: 'final',
  code: { coding: [{ system: LOINC, code: '718-7' }] },
  subject: { reference: `Patient/${patient.id}` },
  effectiveDateTime: daysAgo(10),
  performer: [{ reference: HOSPITAL_A }],
  valueQuantity: { value: 142, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' },
};

interface Broker {
  app: Express;
  deps: AppDeps;
  logLines: string[];
  /** Access tokens of the demo clients by client id, obtained at the token endpoint. */
  tokens: Record<string, string>;
  close(): Promise<void>;
}

/** The broker as `npm start` builds it (demo mode), over the database at `uri`, with its files in `dataDir`. */
async function openBroker(uri: string, dataDir: string): Promise<Broker> {
  const config = loadConfig({ NODE_ENV: 'test', HUREN_BASE_URL: BASE, HUREN_DATA_DIR: dataDir });
  const logLines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(chunk.toString());
      done();
    },
  });
  const deps = await createServices(config, createLogger({ level: 'info', stream }), uri, DB_NAME);
  const app = createApp(deps);
  const tokens: Record<string, string> = {};
  for (const client of readDemoClients(dataDir)) {
    const res = await request(app)
      .post('/auth/token')
      .type('form')
      .send({
        grant_type: 'client_credentials',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await createClientAssertion(
          client.clientId,
          client.privateJwk,
          `${BASE.replace(/\/fhir$/, '')}/auth/token`,
        ),
        scope: client.scopes,
      });
    expect(res.status, res.text).toBe(200);
    tokens[client.clientId] = res.body.access_token as string;
  }
  return { app, deps, logLines, tokens, close: () => deps.connection.close() };
}

const RAW = { promoteValues: false, promoteLongs: false, promoteBuffers: false, bsonRegExp: true } as const;

/** Every document (canonical Extended JSON: BSON types included) and index name of every collection of a server. */
async function snapshot(uri: string): Promise<Record<string, { docs: string[]; indexes: string[] }>> {
  const client = await new MongoClient(uri).connect();
  try {
    const out: Record<string, { docs: string[]; indexes: string[] }> = {};
    const { databases } = await client.db('admin').admin().listDatabases({ nameOnly: true });
    for (const { name } of databases) {
      if (['admin', 'local', 'config'].includes(name)) continue;
      for (const { name: coll } of await client.db(name).listCollections({}, { nameOnly: true }).toArray()) {
        const c = client.db(name).collection(coll);
        const docs = (await c.find({}, RAW).toArray()).map((d) => BSON.EJSON.stringify(d, { relaxed: false }));
        const indexes = (await c.listIndexes().toArray()).map((ix: Document) => ix.name as string);
        out[`${name}.${coll}`] = { docs: docs.sort(), indexes: indexes.sort() };
      }
    }
    return out;
  } finally {
    await client.close();
  }
}

describe('migrating a data directory of the SQLite default', () => {
  // PostgreSQL runs as `postgres` when the tests run as root: it must be able to enter every parent directory.
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-migrate-'));
  fs.chmodSync(root, 0o755);
  const dataDir = path.join(root, 'data');
  const sqliteDir = path.join(dataDir, 'ferretdb');
  /** What the broker answered on the SQLite database, to compare with its answers after the migration. */
  const before: { cbc?: DiagnosticReport; history?: Bundle; hisToken?: string; adminToken?: string } = {};
  let legacySnapshot: Awaited<ReturnType<typeof snapshot>>;
  let migrated: DatabaseServer | undefined;
  let broker: Broker | undefined;

  beforeAll(async () => {
    fs.mkdirSync(sqliteDir, { recursive: true });
    const legacy = await startLegacySqlite(sqliteDir);
    try {
      const old = await openBroker(legacy.uri, dataDir);
      const as = (clientId: string) => ({
        put: (url: string, body: object, headers: Record<string, string> = {}) =>
          request(old.app)
            .put(url)
            .set({ Authorization: `Bearer ${old.tokens[clientId]}`, 'Content-Type': FHIR_JSON, ...headers })
            .send(JSON.stringify(body)),
        post: (url: string, body: object) =>
          request(old.app)
            .post(url)
            .set({ Authorization: `Bearer ${old.tokens[clientId]}`, 'Content-Type': FHIR_JSON })
            .send(JSON.stringify(body)),
        get: (url: string) => request(old.app).get(url).set('Authorization', `Bearer ${old.tokens[clientId]}`),
      });
      const his = as('demo-his-hospital-a');
      for (const r of [patient, cbc, hemoglobin]) {
        const res = await his.put(`/fhir/${r.resourceType}/${r.id}`, r);
        expect(res.status, res.text).toBe(201);
      }
      const glucose = await his.post('/fhir', {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: Array.from({ length: GLUCOSE }, (_, i) => ({
          resource: {
            ...hemoglobin,
            id: `mig-glu-${i}`,
            code: { coding: [{ system: LOINC, code: '2345-7' }] },
            effectiveDateTime: daysAgo(20 + i),
            valueQuantity: { value: 5 + i / 100, unit: 'mmol/L', system: 'http://unitsofmeasure.org', code: 'mmol/L' },
          },
          request: { method: 'PUT', url: `Observation/mig-glu-${i}` },
        })),
      } satisfies Bundle);
      expect(glucose.status, glucose.text).toBe(200);
      // A second version of the report: history must come across.
      const v2 = await his.put(`/fhir/DiagnosticReport/${cbc.id}`, { ...cbc, conclusion: 'Within normal limits' });
      expect(v2.status, v2.text).toBe(200);
      before.cbc = (await his.get(`/fhir/DiagnosticReport/${cbc.id}`)).body as DiagnosticReport;
      before.history = (await his.get(`/fhir/DiagnosticReport/${cbc.id}/_history`)).body as Bundle;
      expect(before.history.entry).toHaveLength(2);

      // Rules version 2: a CBC stays valid for 30 days instead of 7.
      const admin = as('demo-admin');
      const catalogue = await admin.get('/admin/rules/catalogue');
      const items = (catalogue.body as { items: { code: string; validityDays: number }[] }).items;
      items.find((i) => i.code === 'HR-LAB-CBC')!.validityDays = 30;
      const edit = await admin.put('/admin/rules/catalogue', catalogue.body as object, {
        'Content-Type': 'application/json',
        'If-Match': catalogue.headers.etag as string,
      });
      expect(edit.status, edit.text).toBe(200);

      // A check by hospital B that offers the CBC, and the doctor's acceptance: the decisions ledger.
      const clinician = as('demo-his-hospital-b');
      const check = await clinician.post('/fhir/$reuse-check', {
        resourceType: 'Parameters',
        parameter: [
          { name: 'patient', valueIdentifier: { system: ID_CARD, value: ID_NUMBER } },
          { name: 'code', valueCoding: { system: LOINC, code: '57021-8' } },
          { name: 'requester', valueReference: { reference: HOSPITAL_B } },
        ],
      } satisfies Parameters);
      expect(check.status, check.text).toBe(200);
      expect(decisionOf(check.body as Parameters)).toBe('reusable');
      const checkId = (check.body as Parameters).parameter!.find((p) => p.name === 'check')!.valueId!;
      const decision = await clinician.post('/fhir/$reuse-decision', {
        resourceType: 'Parameters',
        parameter: [
          { name: 'check', valueId: checkId },
          { name: 'item', valueCoding: { system: SYSTEMS.catalogue, code: 'HR-LAB-CBC' } },
          { name: 'decision', valueCode: 'accepted' },
        ],
      } satisfies Parameters);
      expect(decision.status, decision.text).toBe(201);

      // Sync state: a registered hospital server.
      const endpoint = await admin.put(
        '/admin/sync/endpoints/hosp-a',
        { institution: HOSPITAL_A, baseUrl: 'http://hospital-a.invalid/fhir', pageSize: 25 },
        { 'Content-Type': 'application/json' },
      );
      expect(endpoint.status, endpoint.text).toBe(201);
      before.hisToken = old.tokens['demo-his-hospital-a'];
      before.adminToken = old.tokens['demo-admin'];
      await old.close();

      // Back to the layout of the version before PostgreSQL: no search tokens, no layout marker, its indexes.
      const client = await new MongoClient(legacy.uri).connect();
      const db = client.db(DB_NAME);
      const resources = db.collection('resources');
      await resources.updateMany({}, { $unset: { tk: '' } });
      await resources.dropIndex('tk_1');
      await resources.createIndexes([
        { key: { type: 1, 'sp.patient': 1, 'sp.code': 1, 'sp.date.lo': -1 } },
        { key: { type: 1, 'sp.subject': 1 } },
        { key: { type: 1, 'sp.identifier': 1 } },
        { key: { type: 1, 'sp.url': 1 } },
      ]);
      await db.collection('store_meta').drop();
      expect(await resources.countDocuments({ tk: { $exists: true } })).toBe(0);
      // BSON types a JSON round trip would lose, and a second database: both must come across as they are.
      await client
        .db('huren_extra')
        .collection('odd_types')
        .insertOne({
          _id: 'x' as never,
          big: Long.fromString('9007199254740993'),
          bin: new Binary(Buffer.from([1, 2])),
        });
      await client.close();
      legacySnapshot = await snapshot(legacy.uri);
    } finally {
      await legacy.stop();
    }
  });

  afterAll(async () => {
    await broker?.close();
    await migrated?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  test('npm start refuses the SQLite data directory and names the command that converts it', async () => {
    expect(legacySqliteData(dataDir)).toBe(sqliteDir);
    const start = startDatabase({ dataDir });
    await expect(start).rejects.toThrow(DatabaseUnavailableError);
    await expect(startDatabase({ dataDir })).rejects.toThrow(MIGRATE_COMMAND);
  });

  test('an interrupted migration leaves the directory refused; running it again completes it', async () => {
    const interrupted = migrateSqlite({
      dataDir,
      index,
      durable: false,
      batchSize: 2,
      onProgress: (p) => {
        if (p.collection === 'resources' && p.copied >= 4) throw new Error('power cut');
      },
    });
    await expect(interrupted).rejects.toThrow('power cut');
    // Half the data is in the new cluster, and the SQLite files are where they were: still refused.
    expect(fs.existsSync(path.join(dataDir, 'postgresql', 'data', 'PG_VERSION'))).toBe(true);
    expect(legacySqliteData(dataDir)).toBe(sqliteDir);
    await expect(startDatabase({ dataDir, durable: false })).rejects.toThrow(MIGRATE_COMMAND);

    const progress: MigrationProgress[] = [];
    const messages: string[] = [];
    const result = await migrateSqlite({
      dataDir,
      index,
      durable: false,
      batchSize: 7,
      onProgress: (p) => progress.push(p),
      onMessage: (m) => messages.push(m),
      clock: () => new Date('2026-12-08T09:30:00.123Z'),
    });
    expect(result).toBeDefined();
    // Progress names each collection as it starts, counts as it goes, and every collection ends done.
    expect(progress[0]).toMatchObject({ index: 1, copied: 0, done: false });
    const finished = progress.filter((p) => p.done).map((p) => `${p.database}.${p.collection}`);
    expect(finished.sort()).toEqual(Object.keys(legacySnapshot).sort());
    expect(progress.some((p) => p.collection === 'resources' && p.copied > 0 && !p.done)).toBe(true);
    const documents = Object.values(legacySnapshot).reduce((n, c) => n + c.docs.length, 0);
    expect(result!.documents).toBe(documents);
    // The SQLite files are kept, renamed; the directory now counts as converted.
    expect(result!.keptAt).toBe(path.join(dataDir, 'ferretdb.migrated-2026-12-08T09-30-00Z'));
    expect(
      fs
        .readdirSync(result!.keptAt)
        .filter((f) => f.endsWith('.sqlite'))
        .sort(),
    ).toEqual(['huren.sqlite', 'huren_extra.sqlite']);
    expect(messages.join('\n')).toContain(result!.keptAt);
    expect(fs.existsSync(sqliteDir)).toBe(false);
    expect(legacySqliteData(dataDir)).toBeUndefined();
    // Nothing left to do: a third run is a no-op.
    expect(await migrateSqlite({ dataDir, index, durable: false })).toBeUndefined();
  });

  test('every collection of every database is copied as it was, the resources in the current layout', async () => {
    migrated = await startDatabase({ dataDir, durable: false });
    expect(migrated.description).toContain('PostgreSQL');
    const copy = await snapshot(migrated.uri);
    const resources = `${DB_NAME}.resources`;
    // Plus the layout marker: the resources need no re-indexing at the broker's start.
    expect(Object.keys(copy).sort()).toEqual([...Object.keys(legacySnapshot), `${DB_NAME}.store_meta`].sort());
    expect(copy[`${DB_NAME}.store_meta`]!.docs).toEqual([
      BSON.EJSON.stringify({ _id: 'layout', version: STORE_LAYOUT }, { relaxed: false }),
    ]);
    // Documents with their BSON types; the resources gained their search tokens and nothing else.
    for (const [name, { docs }] of Object.entries(legacySnapshot)) {
      if (name !== resources) expect(copy[name]!.docs, name).toEqual(docs);
    }
    const copied = copy[resources]!.docs.map((d) => BSON.EJSON.parse(d, { relaxed: false }) as Document);
    expect(copied.length).toBeGreaterThan(GLUCOSE + 3);
    for (const doc of copied.filter((d) => !d.deleted)) expect(doc.tk, String(doc._id)).not.toHaveLength(0);
    const withoutTokens = copied.map(({ tk: _tk, ...rest }) => BSON.EJSON.stringify(rest, { relaxed: false }));
    expect(withoutTokens.sort()).toEqual(legacySnapshot[resources]!.docs);
    expect(copy['huren_extra.odd_types']!.docs[0]).toContain('"$numberLong":"9007199254740993"');
    // Indexes: the old layout's resource indexes stay behind; every other index comes across.
    const obsolete = OBSOLETE_INDEXES.resources!;
    expect(legacySnapshot[resources]!.indexes).toEqual(expect.arrayContaining([...obsolete]));
    for (const [name, { indexes }] of Object.entries(legacySnapshot)) {
      const expected = name === resources ? indexes.filter((i) => !obsolete.includes(i)) : indexes;
      expect(copy[name]!.indexes, name).toEqual(expected);
    }
  });

  test('the broker on the migrated database answers as before, with the tokens it issued before', async () => {
    broker = await openBroker(migrated!.uri, dataDir);
    // Nothing left to re-index at its start (the migration wrote the current layout).
    expect(broker.logLines.join('')).not.toContain('Indexing stored resources');
    // A token issued by the broker on the SQLite database: the signing keys came across.
    const his = (url: string) => request(broker!.app).get(url).set('Authorization', `Bearer ${before.hisToken!}`);

    const byPatient = await his(`/fhir/DiagnosticReport?patient=Patient/${patient.id}`);
    expect(byPatient.status, byPatient.text).toBe(200);
    expect((byPatient.body as Bundle).entry?.map((e) => e.resource?.id)).toEqual([cbc.id]);
    const observations = await his(`/fhir/Observation?subject=Patient/${patient.id}&code=${LOINC}|718-7`);
    expect((observations.body as Bundle).entry?.map((e) => e.resource?.id)).toEqual([hemoglobin.id]);
    const glucose = await his(`/fhir/Observation?patient=Patient/${patient.id}&code=${LOINC}|2345-7&_count=1000`);
    expect((glucose.body as Bundle).entry).toHaveLength(GLUCOSE);
    const byIdentifier = await his(`/fhir/Patient?identifier=${ID_CARD}|${ID_NUMBER}`);
    expect((byIdentifier.body as Bundle).entry?.map((e) => e.resource?.id)).toEqual([patient.id]);

    const read = await his(`/fhir/DiagnosticReport/${cbc.id}`);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(before.cbc);
    expect(read.headers.etag).toBe('W/"2"');
    const history = await his(`/fhir/DiagnosticReport/${cbc.id}/_history`);
    expect((history.body as Bundle).entry?.map((e) => e.resource)).toEqual(
      before.history!.entry!.map((e) => e.resource),
    );
    expect((await his(`/fhir/DiagnosticReport/${cbc.id}/_history/1`)).body.conclusion).toBeUndefined();

    // A conditional create finds the migrated patient through its identifier instead of creating a second one.
    const conditional = await request(broker.app)
      .post('/fhir/Patient')
      .set({
        Authorization: `Bearer ${before.hisToken!}`,
        'Content-Type': FHIR_JSON,
        'If-None-Exist': `identifier=${ID_CARD}|${ID_NUMBER}`,
      })
      .send(JSON.stringify({ ...patient, id: undefined }));
    expect(conditional.status, conditional.text).toBe(200);

    // The rules of version 2, the recognition facts and the patient key secret: the 10-day-old CBC is still reusable.
    const check = await request(broker.app)
      .post('/fhir/$reuse-check')
      .set({ Authorization: `Bearer ${broker.tokens['demo-his-hospital-b']!}`, 'Content-Type': FHIR_JSON })
      .send(
        JSON.stringify({
          resourceType: 'Parameters',
          parameter: [
            { name: 'patient', valueIdentifier: { system: ID_CARD, value: ID_NUMBER } },
            { name: 'code', valueCoding: { system: LOINC, code: '57021-8' } },
            { name: 'requester', valueReference: { reference: HOSPITAL_B } },
          ],
        } satisfies Parameters),
      );
    expect(check.status, check.text).toBe(200);
    expect(decisionOf(check.body as Parameters)).toBe('reusable');
    const admin = (url: string) => request(broker!.app).get(url).set('Authorization', `Bearer ${before.adminToken!}`);
    expect((await admin('/admin/rules')).body.version).toBe(2);

    // The ledger: the decision taken before the migration is in the savings report.
    const report = await request(broker.app)
      .get('/reports/savings')
      .query({ from: daysAgo(30).slice(0, 10), to: daysAgo(0).slice(0, 10), by: 'item' })
      .set('Authorization', `Bearer ${broker.tokens['demo-bureau']!}`);
    expect(report.status, report.text).toBe(200);
    expect((report.body as SavingsReport).totals.accepted).toBe(1);

    // Sync state: the registered hospital server.
    const endpoints = await admin('/admin/sync/endpoints');
    expect(endpoints.body).toEqual([expect.objectContaining({ id: 'hosp-a', institution: HOSPITAL_A })]);
  });
});

function decisionOf(body: Parameters): string | undefined {
  const outcome = body.parameter?.find((p) => p.name === 'outcome');
  return outcome?.part?.find((p) => p.name === 'decision')?.valueCode;
}
