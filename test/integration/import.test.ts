import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { AuditEvent, Bundle, DiagnosticReport, OperationOutcome } from 'fhir/r4';
import iconv from 'iconv-lite';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { importPath, type RejectLine } from '../../src/import/import.js';
import { readBundle, readNdjson } from '../../src/import/readers.js';
import { HOSPITAL_A, HOSPITAL_B, observationOf, patientOf, reportOf, resultsOf } from '../fixtures/connectors.js';
import { createTestApp, type TestApp } from '../support/app.js';

/** `huren import`: NDJSON and Bundle files of a Bulk Data export, through the connectors' one ingest path. */

let t: TestApp;
let dir: string;

beforeAll(async () => {
  t = await createTestApp('import');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-import-'));
});
afterAll(async () => {
  await t?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const ndjson = (lines: unknown[]) =>
  lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n';
const readRejects = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as RejectLine & { outcome: OperationOutcome });
const historyCount = () => t.deps.connection.db!.collection('history').countDocuments({ type: { $ne: 'AuditEvent' } });

describe('huren import', () => {
  test('ingests the good lines of an NDJSON file, reports each bad one with its line, and a re-import changes nothing', async () => {
    const file = path.join(dir, 'mixed.ndjson');
    const rejectsFile = path.join(dir, 'mixed.rejects.ndjson');
    const badStatus = { ...reportOf('imp', 90), status: 'done' };
    const noId = { ...observationOf('imp', 91), id: undefined };
    const otherHospital = reportOf('imp', 92, 'normal', HOSPITAL_B);
    fs.writeFileSync(
      file,
      ndjson([
        ...resultsOf('imp', 3), // lines 1-7
        '{"resourceType": "Observation", "id": ', // line 8: truncated JSON
        { resourceType: 'Encounter', id: 'enc-1', status: 'finished' }, // line 9: not indexed
        badStatus, // line 10
        noId, // line 11
        otherHospital, // line 12
      ]),
    );
    const first = await importPath(t.deps, file, { rejectsFile, owner: HOSPITAL_A });
    expect(first.counts).toMatchObject({ created: 7, rejected: 5, unchanged: 0 });

    const rejects = readRejects(rejectsFile);
    expect(rejects.map((r) => r.line)).toEqual([8, 9, 10, 11, 12]);
    expect(rejects.every((r) => r.outcome.resourceType === 'OperationOutcome' && r.file === file)).toBe(true);
    expect(rejects[0].outcome.issue[0].code).toBe('structure');
    expect(rejects[1].outcome.issue[0].expression).toEqual(['resourceType']);
    expect(JSON.stringify(rejects[2].outcome)).toContain('DiagnosticReport.status');
    expect(rejects[3].outcome.issue[0].expression).toEqual(['Observation.id']);
    expect(rejects[4].outcome.issue[0]).toMatchObject({
      code: 'forbidden',
      expression: ['DiagnosticReport.performer'],
    });

    const report = await t.as('his').get('/fhir/DiagnosticReport/imp-dr-1');
    expect(report.status).toBe(200);
    expect((report.body as DiagnosticReport).result?.[0].reference).toBe('Observation/imp-obs-1');

    // The import is in the audit trail: one transaction by the importer, naming what it wrote.
    const audit = await t.as('admin').get('/fhir/AuditEvent?_count=100');
    const events = ((audit.body as Bundle).entry ?? []).map((e) => e.resource as AuditEvent);
    const imported = events.filter((e) => e.agent[0]?.altId === 'import');
    expect(imported).toHaveLength(1);
    expect(imported[0]!.subtype?.[0]?.code).toBe('transaction');
    expect(imported[0]!.entity?.map((e) => e.what?.reference)).toContain('DiagnosticReport/imp-dr-1');

    const versions = await historyCount();
    const again = await importPath(t.deps, file, { rejectsFile, owner: HOSPITAL_A });
    expect(again.counts).toMatchObject({ created: 0, updated: 0, unchanged: 7, rejected: 5 });
    expect(await historyCount()).toBe(versions);
    expect(readRejects(rejectsFile)).toHaveLength(5);
  });

  test('a Bundle file of the same results and a push by the hospital are the same results, not copies', async () => {
    const pushed = reportOf('same', 0);
    const put = await t.as('his').put('/fhir/DiagnosticReport/same-dr-0').send(pushed);
    expect(put.status).toBe(201);
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'collection',
      entry: resultsOf('same', 2).map((resource) => ({ resource })),
    };
    const file = path.join(dir, 'same.json');
    fs.writeFileSync(file, JSON.stringify(bundle, null, 2));
    const summary = await importPath(t.deps, file, { rejectsFile: path.join(dir, 'same.rejects.ndjson') });
    expect(summary.counts).toMatchObject({ created: 4, unchanged: 1, rejected: 0 });
    const history = await t.as('admin').get('/fhir/DiagnosticReport/same-dr-0/_history');
    expect(history.body.entry).toHaveLength(1);
  });

  test('an older version arriving after a newer one keeps the newer', async () => {
    const newer = { ...reportOf('ooo', 0, 'amended'), meta: { lastUpdated: '2024-03-02T10:00:00+08:00' } };
    const older = { ...reportOf('ooo', 0, 'preliminary reading'), meta: { lastUpdated: '2024-03-01T10:00:00+08:00' } };
    const file = path.join(dir, 'ooo.ndjson');
    fs.writeFileSync(file, ndjson([patientOf('ooo'), observationOf('ooo', 0), newer]));
    await importPath(t.deps, file, { rejectsFile: path.join(dir, 'ooo.rejects.ndjson') });
    fs.writeFileSync(file, ndjson([older]));
    const late = await importPath(t.deps, file, { rejectsFile: path.join(dir, 'ooo.rejects.ndjson') });
    expect(late.counts).toMatchObject({ older: 1, updated: 0 });
    const stored = await t.as('admin').get('/fhir/DiagnosticReport/ooo-dr-0');
    expect(stored.body.conclusion).toBe('amended');
    expect(stored.body.meta.versionId).toBe('1');
  });

  test('a directory of per-type NDJSON files is imported, reference targets first', async () => {
    const exportDir = path.join(dir, 'export');
    fs.mkdirSync(exportDir);
    const all = resultsOf('dir', 4);
    for (const type of ['DiagnosticReport', 'Observation', 'Patient']) {
      fs.writeFileSync(path.join(exportDir, `${type}.ndjson`), ndjson(all.filter((r) => r.resourceType === type)));
    }
    const progress: number[] = [];
    const summary = await importPath(t.deps, exportDir, {
      rejectsFile: path.join(dir, 'dir.rejects.ndjson'),
      onProgress: (p) => progress.push(p.bytes / p.totalBytes),
    });
    expect(summary.files.map((f) => path.basename(f))).toEqual([
      'Patient.ndjson',
      'Observation.ndjson',
      'DiagnosticReport.ndjson',
    ]);
    expect(summary.counts).toMatchObject({ created: 9, rejected: 0 });
    expect(progress.at(-1)).toBe(1);
  });

  test('a file that is not a Bundle is reported, not imported', async () => {
    const file = path.join(dir, 'single.json');
    fs.writeFileSync(file, JSON.stringify(patientOf('single')));
    const rejectsFile = path.join(dir, 'single.rejects.ndjson');
    const summary = await importPath(t.deps, file, { rejectsFile });
    expect(summary.counts).toMatchObject({ created: 0, rejected: 1 });
    expect(readRejects(rejectsFile)[0].outcome.issue[0].diagnostics).toMatch(/Not a FHIR Bundle/);
  });
});

describe('files from Chinese systems', () => {
  const patients = () =>
    ['欧阳\u3000娜娜', '张三', '𠮷野家'].map((name, i) => ({
      ...patientOf(`gb-${i}`),
      name: [{ text: name }],
      address: [{ text: '山东省青岛市市南区香港中路' }],
    }));

  test('a GB18030 export read as UTF-8 is refused with a clear error, nothing garbled stored', async () => {
    const file = path.join(dir, 'gb18030-as-utf8.ndjson');
    fs.writeFileSync(file, iconv.encode(ndjson(patients()), 'gb18030'));
    const rejectsFile = path.join(dir, 'gb18030-as-utf8.rejects.ndjson');
    const summary = await importPath(t.deps, file, { rejectsFile, owner: HOSPITAL_A });
    expect(summary.counts).toMatchObject({ created: 0, updated: 0, rejected: 1 });
    expect(readRejects(rejectsFile)[0].outcome.issue[0].diagnostics).toMatch(/not UTF-8.*--encoding gb18030/);
    const stored = await t.as('admin').get('/fhir/Patient/gb-0-pat');
    expect(stored.status).toBe(404);
  });

  test('a patient whose resident ID has a wrong check character is refused, naming the identifier', async () => {
    const file = path.join(dir, 'wrong-id.ndjson');
    const wrong = {
      ...patientOf('wrong-id'),
      identifier: [{ system: 'urn:oid:2.16.156.10011.1.1', value: '370202199001011234' }],
    };
    fs.writeFileSync(file, ndjson([wrong]));
    const rejectsFile = path.join(dir, 'wrong-id.rejects.ndjson');
    const summary = await importPath(t.deps, file, { rejectsFile, owner: HOSPITAL_A });
    expect(summary.counts).toMatchObject({ created: 0, rejected: 1 });
    const issue = readRejects(rejectsFile)[0].outcome.issue[0];
    expect(issue.expression).toEqual(['Patient.identifier[0].value']);
    expect(issue.diagnostics).toMatch(/check character/);
  });

  test('--encoding gb18030 converts the export: names, full-width spaces and characters beyond the BMP intact', async () => {
    for (const [name, write] of [
      ['gb18030.ndjson', (p: object[]) => ndjson(p)],
      [
        'gb18030.json',
        (p: object[]) =>
          JSON.stringify({ resourceType: 'Bundle', type: 'collection', entry: p.map((resource) => ({ resource })) }),
      ],
    ] as const) {
      const file = path.join(dir, name);
      fs.writeFileSync(file, iconv.encode(write(patients()), 'gb18030'));
      const summary = await importPath(t.deps, file, {
        rejectsFile: path.join(dir, `${name}.rejects.ndjson`),
        owner: HOSPITAL_A,
        encoding: 'gb18030',
      });
      expect(summary.counts.rejected, name).toBe(0);
    }
    for (const [i, p] of patients().entries()) {
      const res = await t.as('admin').get(`/fhir/Patient/gb-${i}-pat`);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ name: p.name, address: p.address });
    }
  });
});

describe('streaming readers', () => {
  test('read a large NDJSON and Bundle file one resource at a time, in bounded memory', async () => {
    const count = 20_000;
    const obs = observationOf('big', 0);
    const ndjsonFile = path.join(dir, 'big.ndjson');
    const bundleFile = path.join(dir, 'big-bundle.json');
    // Written line by line so the test itself holds no copy; notes with brackets and quotes test the scanner.
    const line = (i: number) => JSON.stringify({ ...obs, id: `big-${i}`, note: [{ text: 'x"}{]['.repeat(20) }] });
    const nd = fs.openSync(ndjsonFile, 'w');
    const bu = fs.openSync(bundleFile, 'w');
    fs.writeSync(bu, '{"resourceType":"Bundle","type":"collection","link":[{"relation":"self","url":"x"}],"entry":[\n');
    for (let i = 0; i < count; i++) {
      fs.writeSync(nd, `${line(i)}\n`);
      fs.writeSync(bu, `${i ? ',\n' : ''}{"fullUrl":"urn:x","resource":${line(i)}}`);
    }
    fs.writeSync(bu, '\n]}');
    fs.closeSync(nd);
    fs.closeSync(bu);
    expect(fs.statSync(bundleFile).size).toBeGreaterThan(10 * 1024 * 1024);
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    for (const read of [readNdjson, readBundle]) {
      const file = read === readNdjson ? ndjsonFile : bundleFile;
      gc();
      const before = process.memoryUsage().heapUsed;
      let n = 0;
      let peak = 0;
      let last = '';
      for await (const item of read(file, { bytes: 0 })) {
        expect('resource' in item).toBe(true);
        if ('resource' in item) last = (item.resource as { id: string }).id;
        if (++n % 2000 === 0) {
          gc();
          peak = Math.max(peak, process.memoryUsage().heapUsed - before);
        }
      }
      expect(n).toBe(count);
      expect(last).toBe(`big-${count - 1}`);
      // The file is > 10 MB; holding it (or its parsed entries) would take several times that.
      expect(peak).toBeLessThan(5 * 1024 * 1024);
    }
  });
});
