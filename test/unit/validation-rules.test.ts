import { describe, expect, test } from 'vitest';
import type { StructureDefinition, ValueSet } from 'fhir/r4';
import { explainImpossibleDate } from '../../src/fhir/validation/dates.js';
import { createInvariantCompiler } from '../../src/fhir/validation/invariants.js';
import { createProfileSet } from '../../src/fhir/validation/profile-rules.js';
import { createTerminology } from '../../src/fhir/validation/terminology.js';

describe('calendar dates', () => {
  test.each([
    ['2024-02-29', undefined],
    ['2023-02-29', 'February 2023 has 28 days'],
    ['2024-02-30', 'February 2024 has 29 days'],
    ['2024-04-31T10:00:00+08:00', 'April 2024 has 30 days'],
    ['2000-02-29', undefined],
    ['1900-02-29', 'February 1900 has 28 days'],
    ['2024-00', 'there is no month 00'],
    ['2024-03-01T23:59:60Z', undefined],
    ['2024', undefined],
    ['not a date', undefined],
  ])('%s → %s', (value, why) => {
    expect(explainImpossibleDate(value)).toBe(why);
  });
});

const LAB = { system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' };

/** A lab-only Observation profile using what the Huren profiles do not: pattern, fixed, max 0, derivation. */
const labProfile: StructureDefinition = {
  resourceType: 'StructureDefinition',
  id: 'lab-observation',
  url: 'https://example.org/StructureDefinition/lab-observation',
  name: 'LabObservation',
  status: 'draft',
  kind: 'resource',
  abstract: false,
  type: 'Observation',
  baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Observation',
  derivation: 'constraint',
  differential: {
    element: [
      { id: 'Observation.category', path: 'Observation.category', min: 1, patternCodeableConcept: { coding: [LAB] } },
      {
        id: 'Observation.valueQuantity.system',
        path: 'Observation.valueQuantity.system',
        fixedUri: 'http://unitsofmeasure.org',
      },
      { id: 'Observation.bodySite', path: 'Observation.bodySite', max: '0' },
      {
        id: 'Observation.interpretation',
        path: 'Observation.interpretation',
        binding: { strength: 'required', valueSet: 'https://example.org/ValueSet/normal-or-high' },
      },
    ],
  },
};

/** Derives from labProfile: its rules apply too. */
const glucoseProfile: StructureDefinition = {
  ...labProfile,
  id: 'glucose',
  url: 'https://example.org/StructureDefinition/glucose',
  name: 'Glucose',
  baseDefinition: labProfile.url,
  differential: {
    element: [
      {
        id: 'Observation.code',
        path: 'Observation.code',
        patternCodeableConcept: { coding: [{ system: 'http://loinc.org', code: '2345-7' }] },
      },
    ],
  },
};

const normalOrHigh: ValueSet = {
  resourceType: 'ValueSet',
  url: 'https://example.org/ValueSet/normal-or-high',
  status: 'draft',
  compose: {
    include: [
      {
        system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation',
        concept: [{ code: 'N' }, { code: 'H' }],
      },
    ],
  },
};

describe('profile rules', () => {
  const profiles = createProfileSet(
    [labProfile, glucoseProfile],
    createTerminology([normalOrHigh]),
    createInvariantCompiler(),
  );
  const glucose = () => ({
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ ...LAB, display: 'Laboratory' }], text: '检验' }],
    code: { coding: [{ system: 'http://loinc.org', code: '2345-7' }] },
    valueQuantity: { value: 5.2, unit: 'mmol/L', system: 'http://unitsofmeasure.org', code: 'mmol/L' },
    interpretation: [
      { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'N' }] },
    ],
  });
  const check = (resource: Record<string, unknown>) => {
    const profile = profiles.get(`${glucoseProfile.url}|1.0`);
    if (!profile) throw new Error('profile not loaded');
    return profiles.checkResource(profile, resource, 'Observation', { resource, rootResource: resource });
  };

  test('accepts a resource matching patterns and fixed values', () => {
    expect(check(glucose())).toEqual([]);
  });

  test('reports a value that does not match a pattern, from the base profile too', () => {
    const obs = { ...glucose(), category: [{ coding: [{ ...LAB, code: 'vital-signs' }] }] };
    expect(check(obs)).toEqual([expect.objectContaining({ code: 'value', expression: ['Observation.category[0]'] })]);
  });

  test('reports a value different from a fixed one', () => {
    const obs = glucose();
    obs.valueQuantity.system = 'http://example.org/units';
    expect(check(obs)).toEqual([
      expect.objectContaining({ code: 'value', expression: ['Observation.valueQuantity.system'] }),
    ]);
  });

  test('reports an element the profile forbids', () => {
    const obs = { ...glucose(), bodySite: { text: '左臂' } };
    expect(check(obs)).toEqual([expect.objectContaining({ code: 'structure', expression: ['Observation.bodySite'] })]);
  });

  test('reports a CodeableConcept without a coding from the bound value set', () => {
    const obs = glucose();
    obs.interpretation[0]!.coding[0]!.code = 'L';
    const issues = check(obs);
    expect(issues).toEqual([
      expect.objectContaining({ code: 'code-invalid', expression: ['Observation.interpretation[0]'] }),
    ]);
    expect(issues[0]?.diagnostics).toContain(
      'expected a code of http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation: N, H',
    );
  });
});
