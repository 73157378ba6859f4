import type { DiagnosticReport, Observation, Patient } from 'fhir/r4';
import type { Collection } from 'mongodb';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { patientKeySecretOf } from '../../src/config.js';
import type { FactDoc } from '../../src/recognition/fact-store.js';
import { patientKeysOf } from '../../src/recognition/identity.js';
import { rebuildFacts } from '../../src/services.js';
import type { IngestLogDoc, WriteOp } from '../../src/store/models.js';
import { createTestApp, type TestApp } from '../support/app.js';

const FHIR_JSON = 'application/fhir+json';
const ID_CARD = 'urn:oid:2.16.156.10011.1.1';
const ID_NUMBER = '11010519491231002X';
const OTHER_ID_NUMBER = '110105198001010032';
const HOSPITAL_A = 'Organization/demo-hospital-a';
const LOINC = 'http://loinc.org';

let seq = 0;
const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;

const patient = (id: string, idNumber = ID_NUMBER): Patient => ({
  resourceType: 'Patient',
  id,
  identifier: [{ system: ID_CARD, value: idNumber }],
  gender: 'female',
  birthDate: '1949-12-31',
  managingOrganization: { reference: HOSPITAL_A },
});

const cbcReport = (id: string, subject: string, overrides: Partial<DiagnosticReport> = {}): DiagnosticReport => ({
  resourceType: 'DiagnosticReport',
  id,
  status: 'final',
  code: { coding: [{ system: LOINC, code: '57021-8', display: 'CBC W Auto Differential panel - Blood' }] },
  subject: { reference: subject },
  effectiveDateTime: '2026-11-20T08:15:00+08:00',
  issued: '2026-11-20T10:02:00+08:00',
  performer: [{ reference: HOSPITAL_A }],
  ...overrides,
});

const observation = (id: string, subject: string, code: string, overrides: Partial<Observation> = {}): Observation => ({
  resourceType: 'Observation',
  id,
  status: 'final',
  code: { coding: [{ system: LOINC, code }] },
  subject: { reference: subject },
  effectiveDateTime: '2026-11-20T08:15:00+08:00',
  performer: [{ reference: HOSPITAL_A }],
  valueQuantity: { value: 135, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' },
  ...overrides,
});

describe('the recognition fact index follows the store', () => {
  let t: TestApp;
  const restarted: TestApp[] = [];
  let secret: string;
  const facts = (): Collection<FactDoc> => t.deps.connection.db!.collection<FactDoc>('facts');
  const factsOf = (source: string) => facts().find({ source }).sort({ _id: 1 }).toArray();

  async function put(resource: Patient | DiagnosticReport | Observation, expected = [200, 201]): Promise<void> {
    const res = await t
      .as('his')
      .put(`/fhir/${resource.resourceType}/${resource.id}`)
      .set('Content-Type', FHIR_JSON)
      .send(resource);
    expect(expected, res.text).toContain(res.status);
  }

  beforeAll(async () => {
    t = await createTestApp('recognition-facts');
    secret = patientKeySecretOf(t.deps.config);
  });
  afterAll(async () => {
    for (const app of restarted) await app.close();
    await t.close();
  });

  test('the demo secret is generated once, private, and at least 16 bytes', async () => {
    const fs = await import('node:fs');
    const path = await import('node:path');
    const file = path.join(t.deps.config.dataDir, 'patient-key-secret');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(Buffer.byteLength(secret)).toBeGreaterThanOrEqual(16);
    expect(patientKeySecretOf(t.deps.config)).toBe(secret);
  });

  test('a CBC report and its analytes give facts keyed by the patient, at the effective time, by the performer', async () => {
    const [pid, rid, hb, alt] = [unique('pat'), unique('cbc'), unique('hb'), unique('alt')];
    await put(patient(pid), [201]);
    await put(cbcReport(rid, `Patient/${pid}`), [201]);
    await put(observation(hb, `Patient/${pid}`, '718-7'), [201]);
    await put(observation(alt, `Patient/${pid}`, '1742-6', { valueQuantity: { value: 20, unit: 'U/L' } }), [201]);

    const keys = patientKeysOf(secret, [{ system: ID_CARD, value: ID_NUMBER }]);
    expect(keys).toHaveLength(1);
    const [cbc] = await factsOf(`DiagnosticReport/${rid}`);
    expect(cbc).toMatchObject({
      _id: `DiagnosticReport/${rid}#HR-LAB-CBC`,
      item: 'HR-LAB-CBC',
      patientKeys: keys,
      performer: 'demo-hospital-a',
      status: 'final',
      sourceVersion: '1',
      effective: '2026-11-20T00:15:00.000Z',
      effectiveDay: '2026-11-20',
    });
    expect(cbc!.effectiveAt).toEqual(new Date('2026-11-20T00:15:00Z'));
    // No raw identifier is stored with a fact.
    expect(JSON.stringify(cbc)).not.toContain(ID_NUMBER);

    // Haemoglobin alone is not a catalogue item (the CBC is): no fact, the write stands.
    expect(await factsOf(`Observation/${hb}`)).toEqual([]);
    const [altFact] = await factsOf(`Observation/${alt}`);
    expect(altFact).toMatchObject({ item: 'HR-LAB-ALT', patientKeys: keys, performer: 'demo-hospital-a' });

    // The index the recognition query uses.
    const indexes = await facts().indexes();
    expect(indexes.map((i) => i.key)).toContainEqual({ patientKeys: 1, item: 1, effectiveAt: -1 });
  });

  test('an amended version replaces the facts; entered-in-error and delete remove them', async () => {
    const [pid, rid, rid2] = [unique('pat'), unique('cbc'), unique('cbc')];
    await put(patient(pid));
    await put(cbcReport(rid, `Patient/${pid}`));
    await put(cbcReport(rid2, `Patient/${pid}`));
    expect(await factsOf(`DiagnosticReport/${rid}`)).toHaveLength(1);

    await put(cbcReport(rid, `Patient/${pid}`, { status: 'amended', effectiveDateTime: '2026-11-21T09:00:00+08:00' }));
    const amended = await factsOf(`DiagnosticReport/${rid}`);
    expect(amended).toHaveLength(1);
    expect(amended[0]).toMatchObject({ status: 'amended', sourceVersion: '2', effectiveDay: '2026-11-21' });
    expect(amended[0]!.effectiveAt).toEqual(new Date('2026-11-21T01:00:00Z'));

    await put(cbcReport(rid, `Patient/${pid}`, { status: 'entered-in-error' }));
    expect(await factsOf(`DiagnosticReport/${rid}`)).toEqual([]);

    const del = await t.as('his').delete(`/fhir/DiagnosticReport/${rid2}`);
    expect(del.status, del.text).toBeLessThan(300);
    expect(await factsOf(`DiagnosticReport/${rid2}`)).toEqual([]);
  });

  test('a result for an unknown patient is stored and gives no facts', async () => {
    const rid = unique('cbc');
    await put(cbcReport(rid, `Patient/${unique('nobody')}`), [201]);
    expect(await factsOf(`DiagnosticReport/${rid}`)).toEqual([]);
    expect((await t.as('his').get(`/fhir/DiagnosticReport/${rid}`)).status).toBe(200);
  });

  test("a Patient's changed identifier moves its results to the new key", async () => {
    const [pid, rid] = [unique('pat'), unique('cbc')];
    await put(patient(pid));
    await put(cbcReport(rid, `Patient/${pid}`));
    await put(patient(pid, OTHER_ID_NUMBER));
    const [fact] = await factsOf(`DiagnosticReport/${rid}`);
    expect(fact!.patientKeys).toEqual(patientKeysOf(secret, [{ system: ID_CARD, value: OTHER_ID_NUMBER }]));
  });

  test('the patient index finds the records of a key, follows identifier changes and deletes', async () => {
    const pid = unique('pat-index');
    const keyOf = (idNumber: string) => patientKeysOf(secret, [{ system: ID_CARD, value: idNumber }]);
    const lookup = (idNumber: string) => t.deps.facts.patients.lookup(keyOf(idNumber));
    const third = '110105198001010016';
    await put(patient(pid, third));
    expect(await lookup(third)).toEqual([
      { ref: `Patient/${pid}`, organization: 'demo-hospital-a', sex: 'female', birthDate: '1949-12-31' },
    ]);
    await put(patient(pid, OTHER_ID_NUMBER));
    expect(await lookup(third)).toEqual([]);
    expect((await lookup(OTHER_ID_NUMBER)).map((r) => r.ref)).toContain(`Patient/${pid}`);
    expect((await t.as('his').delete(`/fhir/Patient/${pid}`)).status).toBe(200);
    expect((await lookup(OTHER_ID_NUMBER)).map((r) => r.ref)).not.toContain(`Patient/${pid}`);
    // Rebuilt from the stored Patients, the index says the same.
    await t.deps.connection.db!.collection('patient_index').deleteMany({});
    await t.deps.facts.patients.rebuild(t.deps.store);
    expect((await lookup(ID_NUMBER)).length).toBeGreaterThan(0);
    expect((await lookup(OTHER_ID_NUMBER)).map((r) => r.ref)).not.toContain(`Patient/${pid}`);
  });

  test('a write whose projection fails is still accepted and the failure is logged without identifiers', async () => {
    const [pid, rid] = [unique('pat'), unique('cbc')];
    await put(patient(pid));
    const original = t.deps.facts.facts.replaceFacts.bind(t.deps.facts.facts);
    t.deps.facts.facts.replaceFacts = () => Promise.reject(new Error(`boom ${ID_NUMBER}`));
    try {
      await put(cbcReport(rid, `Patient/${pid}`), [201]);
    } finally {
      t.deps.facts.facts.replaceFacts = original;
    }
    expect((await t.as('his').get(`/fhir/DiagnosticReport/${rid}`)).status).toBe(200);
    const line = t.logLines.find((l) => l.includes('Derived indexes not updated') && l.includes(rid));
    expect(line).toBeDefined();
    expect(line).not.toContain(ID_NUMBER);
    // A rebuild repairs the index.
    expect(await factsOf(`DiagnosticReport/${rid}`)).toEqual([]);
    await rebuildFacts(t.deps);
    expect(await factsOf(`DiagnosticReport/${rid}`)).toHaveLength(1);
  });

  test('replay after a crash projects the facts of the replayed versions', async () => {
    const [pid, rid] = [unique('pat'), unique('cbc')];
    await put(patient(pid));
    const ops: WriteOp[] = [
      {
        type: 'DiagnosticReport',
        id: rid,
        prevVid: 0,
        method: 'PUT',
        resource: cbcReport(rid, `Patient/${pid}`),
      },
    ];
    // An entry of the format before `opsJson` (ops as documents): still replayed.
    await t.deps.connection
      .db!.collection<IngestLogDoc>('ingest_log')
      .insertOne({ _id: crypto.randomUUID(), state: 'pending', createdAt: new Date(), ops });
    expect(await factsOf(`DiagnosticReport/${rid}`)).toEqual([]);

    const after = await createTestApp('recognition-facts', {}, { dbName: t.dbName, keepDatabase: true });
    restarted.push(after);
    const [fact] = await factsOf(`DiagnosticReport/${rid}`);
    expect(fact).toMatchObject({ item: 'HR-LAB-CBC', sourceVersion: '1' });
    expect(fact!.patientKeys).toEqual(patientKeysOf(secret, [{ system: ID_CARD, value: ID_NUMBER }]));
  });

  test('rebuildFacts reproduces the same facts after the collection is emptied', async () => {
    const before = await facts().find({}).sort({ _id: 1 }).toArray();
    expect(before.length).toBeGreaterThan(2);
    // A fact whose result is gone is dropped by the rebuild.
    await facts().insertOne({
      ...before[0]!,
      _id: 'DiagnosticReport/gone#HR-LAB-CBC',
      source: 'DiagnosticReport/gone',
    });
    await facts().deleteMany({ source: { $ne: 'DiagnosticReport/gone' } });

    const progress: number[] = [];
    const result = await rebuildFacts(t.deps, (p) => progress.push(p.done));
    expect(result.done).toBe(result.total);
    expect(result.facts).toBe(before.length);
    expect(progress.at(-1)).toBe(result.total);
    expect(await facts().find({}).sort({ _id: 1 }).toArray()).toEqual(before);
  });
});
