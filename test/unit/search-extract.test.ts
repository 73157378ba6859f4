import type { DiagnosticReport, Observation, Organization, Patient, ServiceRequest } from 'fhir/r4';
import { describe, expect, test } from 'vitest';
import { createSearchRegistry, extractSearchValues, supportedSearchParams } from '../../src/fhir/search/index.js';

const registry = createSearchRegistry();

const report = {
  resourceType: 'DiagnosticReport',
  id: 'cbc-2024-0305',
  meta: { lastUpdated: '2024-03-05T10:15:00.250+08:00', tag: [{ system: 'urn:huren:source', code: 'hospital-a' }] },
  identifier: [
    {
      system: 'urn:oid:1.2.156.112604.1.2',
      value: 'RPT-778',
      type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'FILL' }] },
    },
  ],
  basedOn: [{ reference: 'ServiceRequest/order-1' }],
  status: 'final',
  category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', code: 'HM' }] }],
  code: {
    coding: [
      { system: 'http://loinc.org', code: '58410-2', display: 'CBC panel' },
      { system: 'urn:huren:item', code: 'CBC' },
    ],
    text: '血常规',
  },
  subject: { reference: 'Patient/p-1/_history/4' },
  effectivePeriod: { start: '2024-03-05T08:00:00+08:00', end: '2024-03-05T09:30:00+08:00' },
  issued: '2024-03-05T02:15:00.250Z',
  performer: [{ reference: 'Organization/hospital-a' }],
  result: [{ reference: 'Observation/hb-1' }, { reference: 'Observation/wbc-1' }],
} satisfies DiagnosticReport;

const hemoglobin = {
  resourceType: 'Observation',
  id: 'hb-1',
  status: 'final',
  category: [
    { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] },
  ],
  code: { coding: [{ system: 'http://loinc.org', code: '718-7' }] },
  subject: { reference: 'Patient/p-1' },
  effectiveDateTime: '2024-03-05',
  performer: [{ reference: 'Organization/hospital-a' }],
  valueQuantity: { value: 13.2, unit: 'g/dL', system: 'http://unitsofmeasure.org', code: 'g/dL' },
} satisfies Observation;

const day = (lo: string, hi: string) => ({ lo: new Date(lo), hi: new Date(hi) });

describe('extractSearchValues: DiagnosticReport', () => {
  const { sp, so } = extractSearchValues(registry, report);

  test('stores each coding as code and system|code, deduplicated', () => {
    expect(sp.code).toEqual(['58410-2', 'http://loinc.org|58410-2', 'CBC', 'urn:huren:item|CBC']);
    expect(sp.category).toEqual(['HM', 'http://terminology.hl7.org/CodeSystem/v2-0074|HM']);
  });

  test('stores code values with an empty system', () => {
    expect(sp.status).toEqual(['final', '|final']);
  });

  test('stores identifiers as system|value and their type for :of-type', () => {
    expect(sp.identifier).toEqual(['RPT-778', 'urn:oid:1.2.156.112604.1.2|RPT-778']);
    expect(sp['identifier:of-type']).toBe('http://terminology.hl7.org/CodeSystem/v2-0203|FILL|RPT-778');
  });

  test('stores references as Type/id without the version, one reference as a bare string', () => {
    expect(sp.subject).toBe('Patient/p-1');
    expect(sp.patient).toBe('Patient/p-1');
    expect(sp.result).toEqual(['Observation/hb-1', 'Observation/wbc-1']);
    expect(sp['based-on']).toBe('ServiceRequest/order-1');
    expect(sp.performer).toBe('Organization/hospital-a');
  });

  test('stores a Period as its envelope and an instant to the millisecond', () => {
    expect(sp.date).toEqual(day('2024-03-05T00:00:00.000Z', '2024-03-05T01:30:00.999Z'));
    expect(sp.issued).toEqual(day('2024-03-05T02:15:00.250Z', '2024-03-05T02:15:00.250Z'));
    expect(sp._lastUpdated).toEqual(day('2024-03-05T02:15:00.250Z', '2024-03-05T02:15:00.250Z'));
  });

  test('leaves out parameters without a value and gives every sortable one a sort key', () => {
    expect(sp).not.toHaveProperty('encounter');
    expect(sp).not.toHaveProperty('conclusion');
    expect(so.encounter).toBe('');
    expect(so.date).toEqual(new Date('2024-03-05T00:00:00.000Z'));
    expect(so.code).toBe('58410-2');
    expect(so.result).toBe('Observation/hb-1');
    expect(Object.keys(so).sort()).toEqual(
      supportedSearchParams(registry, 'DiagnosticReport')
        .map((p) => p.name)
        .sort(),
    );
  });

  test('never stores two arrays among patient, code and date so a compound index can cover them', () => {
    const arrays = ['patient', 'code', 'date'].filter((k) => Array.isArray(sp[k]));
    expect(arrays.length).toBeLessThanOrEqual(1);
    expect(Array.isArray((sp.date as { lo: unknown }).lo)).toBe(false);
  });
});

describe('extractSearchValues: Observation', () => {
  test('stores a quantity as value and unit tokens', () => {
    const { sp, so } = extractSearchValues(registry, hemoglobin);
    expect(sp['value-quantity']).toEqual({ v: 13.2, u: ['http://unitsofmeasure.org|g/dL', 'g/dL', '|g/dL'] });
    expect(so['value-quantity']).toBe(13.2);
    expect(so['component-value-quantity']).toBe(-Number.MAX_VALUE);
  });

  test('reads a date without zone as the whole day in the default zone (+08:00)', () => {
    const { sp } = extractSearchValues(registry, hemoglobin);
    expect(sp.date).toEqual(day('2024-03-04T16:00:00.000Z', '2024-03-05T15:59:59.999Z'));
  });

  test.each([
    ['2024', '2023-12-31T16:00:00.000Z', '2024-12-31T15:59:59.999Z'],
    ['2024-02', '2024-01-31T16:00:00.000Z', '2024-02-29T15:59:59.999Z'],
    ['2024-03-05T10:20:30+08:00', '2024-03-05T02:20:30.000Z', '2024-03-05T02:20:30.999Z'],
    ['2024-03-05T10:20:30Z', '2024-03-05T10:20:30.000Z', '2024-03-05T10:20:30.999Z'],
    ['2024-03-05T10:20:30.5-05:00', '2024-03-05T15:20:30.500Z', '2024-03-05T15:20:30.599Z'],
    ['2024-03-05T10:20:30', '2024-03-05T02:20:30.000Z', '2024-03-05T02:20:30.999Z'],
  ])('gives %s the range of its precision', (effectiveDateTime, lo, hi) => {
    const { sp } = extractSearchValues(registry, { ...hemoglobin, effectiveDateTime });
    expect(sp.date).toEqual(day(lo, hi));
  });

  test('honours another default zone, by offset or IANA name', () => {
    const utc = extractSearchValues(createSearchRegistry({ defaultTimeZone: 'Z' }), hemoglobin).sp;
    expect(utc.date).toEqual(day('2024-03-05T00:00:00.000Z', '2024-03-05T23:59:59.999Z'));
    const shanghai = extractSearchValues(createSearchRegistry({ defaultTimeZone: 'Asia/Shanghai' }), hemoglobin).sp;
    expect(shanghai.date).toEqual(day('2024-03-04T16:00:00.000Z', '2024-03-05T15:59:59.999Z'));
    // New York switches to daylight saving time on 2024-03-10: that day has 23 hours.
    const ny = createSearchRegistry({ defaultTimeZone: 'America/New_York' });
    const dst = extractSearchValues(ny, { ...hemoglobin, effectiveDateTime: '2024-03-10' }).sp;
    expect(dst.date).toEqual(day('2024-03-10T05:00:00.000Z', '2024-03-11T03:59:59.999Z'));
  });

  test('rejects an unknown default zone at start-up', () => {
    expect(() => createSearchRegistry({ defaultTimeZone: 'Mars/Olympus' })).toThrow(/Unknown time zone/);
  });

  test('stores an open Period end as the far future', () => {
    const { effectiveDateTime: _, ...rest } = hemoglobin;
    const { sp } = extractSearchValues(registry, { ...rest, effectivePeriod: { start: '2024-03-05' } });
    expect(sp.date).toEqual({ lo: new Date('2024-03-04T16:00:00.000Z'), hi: new Date(8.64e15) });
  });

  test('indexes patient only when the subject is a Patient', () => {
    const group = extractSearchValues(registry, { ...hemoglobin, subject: { reference: 'Group/g-1' } }).sp;
    expect(group.subject).toBe('Group/g-1');
    expect(group).not.toHaveProperty('patient');
    const absolute = { reference: 'http://other.example/fhir/Patient/9/_history/1' };
    const remote = extractSearchValues(registry, { ...hemoglobin, subject: absolute }).sp;
    expect(remote.patient).toBe('http://other.example/fhir/Patient/9');
  });

  test('indexes a CodeableConcept value and its text', () => {
    const { valueQuantity: _, ...rest } = hemoglobin;
    const value = { coding: [{ system: 'http://snomed.info/sct', code: '260385009' }], text: 'Négatif' };
    const { sp } = extractSearchValues(registry, { ...rest, valueCodeableConcept: value });
    expect(sp['value-concept']).toEqual(['260385009', 'http://snomed.info/sct|260385009']);
    expect(sp['value-string']).toBe('negatif');
    expect(sp['value-string:exact']).toBe('Négatif');
    expect(sp).not.toHaveProperty('value-quantity');
  });
});

describe('extractSearchValues: other types', () => {
  test('Patient names and addresses are searchable by every part, normalised and exact', () => {
    const patient = {
      resourceType: 'Patient',
      id: 'p-1',
      active: true,
      name: [{ family: 'Zhāng', given: ['Wěi'], text: '张伟' }],
      telecom: [
        { system: 'phone', value: '+86 138 0000 0000' },
        { system: 'email', value: 'zhang.wei@example.cn' },
      ],
      gender: 'male',
      birthDate: '1980-05',
      address: [{ line: ['香港中路 1 号'], city: 'Qingdao', state: 'Shandong', country: 'CN' }],
      managingOrganization: { reference: 'Organization/hospital-a' },
    } satisfies Patient;
    const { sp } = extractSearchValues(registry, patient);
    expect(sp.name).toEqual(['zhang', 'wei', '张伟']);
    expect(sp['name:exact']).toEqual(['Zhāng', 'Wěi', '张伟']);
    expect(sp.family).toBe('zhang');
    expect(sp.address).toEqual(['香港中路 1 号', 'qingdao', 'shandong', 'cn']);
    expect(sp['address-city']).toBe('qingdao');
    expect(sp.active).toEqual(['true', '|true']);
    expect(sp.deceased).toEqual(['false', '|false']);
    expect(sp.phone).toEqual(['+86 138 0000 0000', '|+86 138 0000 0000']);
    expect(sp.email).toEqual(['zhang.wei@example.cn', '|zhang.wei@example.cn']);
    expect(sp.birthdate).toEqual(day('1980-04-30T16:00:00.000Z', '1980-05-31T15:59:59.999Z'));
    expect(sp.organization).toBe('Organization/hospital-a');
  });

  test('Organization name covers the alias', () => {
    const org = {
      resourceType: 'Organization',
      id: 'o',
      name: 'Qingdao Hospital',
      alias: ['青岛医院'],
    } satisfies Organization;
    expect(extractSearchValues(registry, org).sp.name).toEqual(['qingdao hospital', '青岛医院']);
  });

  test('ServiceRequest canonical references drop the version; Timing gives the envelope of its events', () => {
    const order = {
      resourceType: 'ServiceRequest',
      id: 'order-1',
      status: 'active',
      intent: 'order',
      subject: { reference: 'Patient/p-1' },
      instantiatesCanonical: ['http://huren.example/PlanDefinition/cbc|2.0'],
      occurrenceTiming: { event: ['2024-03-05', '2024-03-07T08:00:00+08:00'] },
    } satisfies ServiceRequest;
    const { sp } = extractSearchValues(registry, order);
    expect(sp['instantiates-canonical']).toBe('http://huren.example/PlanDefinition/cbc');
    expect(sp.occurrence).toEqual(day('2024-03-04T16:00:00.000Z', '2024-03-07T00:00:00.999Z'));
  });
});

describe('supportedSearchParams', () => {
  test('declares each supported parameter with its official definition, and no composite ones', () => {
    const params = supportedSearchParams(registry, 'Observation');
    expect(params).toContainEqual({
      name: 'value-quantity',
      type: 'quantity',
      definition: 'http://hl7.org/fhir/SearchParameter/Observation-value-quantity',
      documentation: expect.any(String),
    });
    const code = params.find((p) => p.name === 'code')!;
    expect(code.definition).toBe('http://hl7.org/fhir/SearchParameter/clinical-code');
    expect(code.documentation).toBe('The code of the observation type');
    expect(params.find((p) => p.name === 'subject')!.target).toEqual(['Group', 'Device', 'Patient', 'Location']);
    expect(params.map((p) => p.name)).not.toContain('code-value-quantity');
    expect(params.map((p) => p.name)).not.toContain('_text');
  });
});
