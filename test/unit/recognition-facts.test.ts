import { fileURLToPath } from 'node:url';
import type { DiagnosticReport, Observation, Reference } from 'fhir/r4';
import { describe, expect, test } from 'vitest';
import { projectFacts, type ProjectionContext } from '../../src/recognition/facts.js';
import { IDENTIFIER_SYSTEMS, patientKey, patientKeysOf } from '../../src/recognition/identity.js';
import { loadRecognitionRules } from '../../src/recognition/load.js';
import { HR_MARK_URL, SYSTEMS } from '../../src/recognition/vocabulary.js';

const rules = loadRecognitionRules(fileURLToPath(new URL('../../seed', import.meta.url)));
const SECRET = 'test-secret-of-at-least-32-bytes!!';
const ID_NUMBER = '11010519491231002X';

/** The resolver the wiring will give: identifiers from the reference itself (a stored Patient in production). */
const resolvePatientKeys = (subject: Reference) =>
  patientKeysOf(SECRET, subject.identifier ? [subject.identifier] : []);
const context: ProjectionContext = { index: rules.index, resolvePatientKeys };
const subject: Reference = { identifier: { system: IDENTIFIER_SYSTEMS.residentIdCard, value: ID_NUMBER } };

function cbcReport(overrides: Partial<DiagnosticReport> = {}): DiagnosticReport {
  return {
    resourceType: 'DiagnosticReport',
    id: 'cbc-1',
    meta: { versionId: '1' },
    status: 'final',
    code: { coding: [{ system: SYSTEMS.loinc, code: '57021-8', display: 'CBC W Auto Differential panel - Blood' }] },
    subject,
    effectiveDateTime: '2026-11-24T08:15:00+08:00',
    issued: '2026-11-24T10:02:00+08:00',
    performer: [{ reference: 'Organization/demo-hospital-a' }],
    ...overrides,
  };
}

function observation(code: string, overrides: Partial<Observation> = {}): Observation {
  return {
    resourceType: 'Observation',
    id: `obs-${code}`,
    status: 'final',
    code: { coding: [{ system: SYSTEMS.loinc, code }] },
    subject,
    effectiveDateTime: '2026-11-24T08:15:00+08:00',
    performer: [{ reference: 'Organization/demo-hospital-a' }],
    valueQuantity: { value: 42, unit: 'U/L' },
    ...overrides,
  };
}

describe('projection of a released result', () => {
  test('a final CBC report becomes one fact with the patient key, effective day, performer and HR mark', () => {
    const report = cbcReport({
      extension: [{ url: HR_MARK_URL, valueCoding: { system: SYSTEMS.hrScope, code: 'municipal' } }],
    });
    const p = projectFacts(report, context);
    expect(p.source).toBe('DiagnosticReport/cbc-1');
    expect(p.skipped).toBeUndefined();
    expect(p.facts).toEqual([
      {
        id: 'DiagnosticReport/cbc-1#HR-LAB-CBC',
        source: 'DiagnosticReport/cbc-1',
        sourceVersion: '1',
        patientKeys: [patientKey(SECRET, IDENTIFIER_SYSTEMS.residentIdCard, ID_NUMBER)],
        item: 'HR-LAB-CBC',
        category: 'lab-hematology',
        matchedBy: 'code',
        matchVerified: true,
        matchedCode: { system: SYSTEMS.loinc, code: '57021-8' },
        effective: '2026-11-24T00:15:00.000Z',
        effectiveSent: '2026-11-24T08:15:00+08:00',
        effectivePrecision: 'time',
        effectiveDay: '2026-11-24',
        issued: '2026-11-24T02:02:00.000Z',
        performer: 'demo-hospital-a',
        status: 'final',
        hrMark: 'municipal',
      },
    ]);
  });

  test('facts carry no name or raw identifier of the patient', () => {
    const text = JSON.stringify(projectFacts(cbcReport(), context));
    expect(text).not.toContain(ID_NUMBER);
    expect(text).not.toContain('110105');
  });

  test('re-projecting the same result gives the same fact ids, so the store can replace them idempotently', () => {
    const first = projectFacts(cbcReport(), context);
    const second = projectFacts(cbcReport(), context);
    expect(second).toEqual(first);
  });

  test('an amended or corrected result keeps its facts, with the new status and version', () => {
    for (const status of ['amended', 'corrected', 'appended'] as const) {
      const p = projectFacts(cbcReport({ status, meta: { versionId: '2' } }), context);
      expect(p.facts).toHaveLength(1);
      expect(p.facts[0]).toMatchObject({ id: 'DiagnosticReport/cbc-1#HR-LAB-CBC', status, sourceVersion: '2' });
    }
  });
});

describe('results that must not be recognised', () => {
  test('entered-in-error and cancelled results project to no facts, which removes the earlier ones', () => {
    for (const status of ['entered-in-error', 'cancelled'] as const) {
      const p = projectFacts(cbcReport({ status }), context);
      expect(p).toMatchObject({ source: 'DiagnosticReport/cbc-1', facts: [], skipped: { reason: 'withdrawn' } });
    }
  });

  test('preliminary, partial and registered results are not recognised yet', () => {
    for (const status of ['preliminary', 'partial', 'registered'] as const) {
      expect(projectFacts(cbcReport({ status }), context).skipped?.reason).toBe('not-released');
    }
  });

  test('an Observation without a value (dataAbsentReason) gives no fact', () => {
    const haemolysed = observation('1742-6', {
      valueQuantity: undefined,
      dataAbsentReason: {
        coding: [{ system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', code: 'error' }],
      },
    });
    expect(projectFacts(haemolysed, context).skipped?.reason).toBe('no-result-value');
  });

  test('a subject without a resident ID card, e-health card or insurance code gives no fact', () => {
    const onlyRecordNumber: Reference = { identifier: { system: 'urn:oid:1.2.156.112604.1.2', value: 'MRN-778' } };
    const p = projectFacts(cbcReport({ subject: onlyRecordNumber }), context);
    expect(p.skipped?.reason).toBe('no-patient-key');
  });

  test('a code outside the catalogue gives no fact', () => {
    const p = projectFacts(cbcReport({ code: { coding: [{ system: SYSTEMS.loinc, code: '2345-7' }] } }), context);
    expect(p.skipped?.reason).toBe('not-recognized');
  });
});

describe('effective time', () => {
  test('windows count from effectivePeriod.start when the report gives a period', () => {
    const p = projectFacts(
      cbcReport({
        effectiveDateTime: undefined,
        effectivePeriod: { start: '2026-11-23T23:40:00+08:00', end: '2026-11-24T00:20:00+08:00' },
      }),
      context,
    );
    expect(p.facts[0]).toMatchObject({ effective: '2026-11-23T15:40:00.000Z', effectiveDay: '2026-11-23' });
  });

  test('a date-only effective time is placed at the start of that local day', () => {
    const p = projectFacts(cbcReport({ effectiveDateTime: '2026-11-24' }), context);
    expect(p.facts[0]).toMatchObject({
      effective: '2026-11-23T16:00:00.000Z',
      effectivePrecision: 'day',
      effectiveDay: '2026-11-24',
    });
  });

  test('a time without an offset is read as Beijing time and noted', () => {
    const p = projectFacts(cbcReport({ effectiveDateTime: '2026-11-24T08:15:00' }), context);
    expect(p.facts[0]?.effective).toBe('2026-11-24T00:15:00.000Z');
    expect(p.notes).toEqual(['Effective time without an offset, read in Asia/Shanghai']);
  });

  test('a result without an effective time, or with only a month, gives no fact', () => {
    expect(projectFacts(cbcReport({ effectiveDateTime: undefined }), context).skipped?.reason).toBe(
      'no-effective-time',
    );
    const monthOnly = projectFacts(cbcReport({ effectiveDateTime: '2026-11' }), context);
    expect(monthOnly.skipped).toEqual({
      reason: 'no-effective-time',
      message: "Effective time '2026-11' does not name a day: windows need at least a full date",
    });
  });

  test('an Observation effectiveInstant is used', () => {
    const obs = observation('1742-6', { effectiveDateTime: undefined, effectiveInstant: '2026-11-24T01:00:00Z' });
    expect(projectFacts(obs, context).facts[0]?.effectiveDay).toBe('2026-11-24');
  });
});

describe('matching items', () => {
  test('a lipid panel report gives a panel fact and its Observations give analyte facts', () => {
    const panel = projectFacts(
      cbcReport({ id: 'lipid', code: { coding: [{ system: SYSTEMS.loinc, code: '57698-3' }] } }),
      context,
    );
    expect(panel.facts.map((f) => f.item)).toEqual(['HR-LAB-LIPID4']);
    const ldl = projectFacts(observation('18262-6'), context);
    expect(ldl.facts.map((f) => [f.item, f.category])).toEqual([['HR-LAB-LDL', 'lab-chemistry']]);
  });

  test("the performing hospital's local code is recognised, another hospital's is not", () => {
    const aCode = { system: 'https://demo-hospital-a.example.org/fhir/CodeSystem/lis-test', code: 'A-0501' };
    const fromA = projectFacts(cbcReport({ code: { coding: [aCode] } }), context);
    expect(fromA.facts.map((f) => [f.item, f.matchedBy])).toEqual([['HR-LAB-HBA1C', 'local']]);
    const fromB = projectFacts(
      cbcReport({ code: { coding: [aCode] }, performer: [{ reference: 'Organization/demo-hospital-b' }] }),
      context,
    );
    expect(fromB.skipped?.reason).toBe('not-recognized');
  });

  test('a report naming no performing Organization is attributed to the submitting hospital', () => {
    const p = projectFacts(cbcReport({ performer: [{ reference: 'Practitioner/dr-wang' }] }), {
      ...context,
      submitter: 'demo-hospital-c',
    });
    expect(p.facts[0]?.performer).toBe('demo-hospital-c');
  });

  test('an absolute or versioned Organization reference names the performer', () => {
    const p = projectFacts(
      cbcReport({ performer: [{ reference: 'https://his.example.org/fhir/Organization/demo-hospital-e/_history/3' }] }),
      context,
    );
    expect(p.facts[0]?.performer).toBe('demo-hospital-e');
  });

  test('a CT report of chest and abdomen, keyed by modality, body part and method, gives two facts', () => {
    const ct = cbcReport({
      id: 'ct-1',
      category: [{ coding: [{ system: SYSTEMS.dicom, code: 'CT' }] }],
      code: {
        coding: [
          { system: 'https://demo-hospital-c.example.org/pacs', code: 'CT-CA-01', display: '胸腹部CT平扫' },
          { system: SYSTEMS.bodyPart, code: 'CHEST' },
          { system: SYSTEMS.bodyPart, code: 'abdomen' },
          { system: SYSTEMS.imagingMethod, code: 'plain' },
        ],
      },
      performer: [{ reference: 'Organization/demo-hospital-c' }],
    });
    const p = projectFacts(ct, context);
    expect(p.facts.map((f) => [f.id, f.category, f.matchedCode.code])).toEqual([
      ['DiagnosticReport/ct-1#HR-IMG-CT-ABD', 'imaging-ct', 'CT|ABDOMEN|plain'],
      ['DiagnosticReport/ct-1#HR-IMG-CT-CHEST', 'imaging-ct', 'CT|CHEST|plain'],
    ]);
  });

  test('an ultrasound Observation is matched by its bodySite and method', () => {
    const us = observation('us', {
      code: { coding: [{ system: SYSTEMS.dicom, code: 'US' }] },
      bodySite: { coding: [{ system: SYSTEMS.bodyPart, code: 'THYROID' }] },
      method: { coding: [{ system: SYSTEMS.imagingMethod, code: 'conventional' }] },
      valueString: '甲状腺双侧叶未见明显异常',
    });
    expect(projectFacts(us, context).facts.map((f) => f.item)).toEqual(['HR-IMG-US-THYROID']);
  });

  test('an exam without a method is not guessed to be plain', () => {
    const ct = cbcReport({
      code: {
        coding: [
          { system: SYSTEMS.dicom, code: 'CT' },
          { system: SYSTEMS.bodyPart, code: 'CHEST' },
        ],
      },
    });
    expect(projectFacts(ct, context).skipped?.reason).toBe('not-recognized');
  });

  test('when codings disagree the catalogue code wins and the disagreement is noted', () => {
    const p = projectFacts(
      cbcReport({
        code: {
          coding: [
            { system: SYSTEMS.loinc, code: '30341-2' },
            { system: SYSTEMS.catalogue, code: 'HR-LAB-CBC' },
          ],
        },
      }),
      context,
    );
    expect(p.facts.map((f) => [f.item, f.matchedBy])).toEqual([['HR-LAB-CBC', 'catalogue']]);
    expect(p.notes[0]).toContain('ignored HR-LAB-ESR (http://loinc.org|30341-2)');
  });

  test('a match on an unverified code is marked so', () => {
    const ct = cbcReport({ code: { coding: [{ system: SYSTEMS.loinc, code: '29252-4' }] } });
    expect(projectFacts(ct, context).facts[0]).toMatchObject({ item: 'HR-IMG-CT-CHEST', matchVerified: false });
  });
});
