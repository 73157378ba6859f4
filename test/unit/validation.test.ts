import { beforeAll, describe, expect, test } from 'vitest';
import type { Bundle, OperationOutcomeIssue } from 'fhir/r4';
import { hasErrors } from '../../src/fhir/outcomes.js';
import { toJavaRegexSemantics } from '../../src/fhir/validation/schema-validation.js';
import { createValidator, type Validator } from '../../src/fhir/validation/validator.js';
import {
  HR_MARK,
  HUREN_DIAGNOSTIC_REPORT,
  HUREN_OBSERVATION,
  hemoglobin,
  hrMark,
  hurenObservation,
  hurenReport,
  labReport,
  organization,
  patient,
  serviceRequest,
} from '../fixtures/validation/resources.js';

let validator: Validator;
beforeAll(() => {
  validator = createValidator();
}, 60_000);

/** Loosens a typed fixture so that a test can corrupt it in ways the R4 types forbid. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const loose = (resource: object): any => resource;

function validate(resource: unknown, options?: Parameters<Validator['validate']>[1]): OperationOutcomeIssue[] {
  return validator.validate(resource, options);
}

/** Asserts one error issue with this code at this expression, and returns it for more checks. */
function expectError(issues: OperationOutcomeIssue[], code: string, expression: string): OperationOutcomeIssue {
  const found = issues.filter((i) => i.severity === 'error' && i.code === code && i.expression?.[0] === expression);
  expect(found, JSON.stringify(issues, null, 2)).toHaveLength(1);
  return found[0] as OperationOutcomeIssue;
}

describe('valid R4 resources', () => {
  test.each([
    ['a lab DiagnosticReport with a contained Specimen', labReport],
    ['an Observation with valueQuantity', hemoglobin],
    ['a Patient', patient],
    ['an Organization', organization],
    ['a ServiceRequest', serviceRequest],
    ['a report conforming to huren-diagnostic-report', hurenReport],
    ['a result conforming to huren-observation', hurenObservation],
  ])('accepts %s', (_name, make) => {
    expect(validate(make())).toEqual([]);
  });

  test('accepts the expected type', () => {
    expect(validate(patient(), { expectedType: 'Patient' })).toEqual([]);
  });

  test('accepts a primitive present only through its extension', () => {
    const obs = loose(hemoglobin());
    delete obs.status;
    obs._status = {
      extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' }],
    };
    expect(validate(obs)).toEqual([]);
  });

  test('serves conformance resources that are themselves valid', () => {
    const resources = validator.conformanceResources();
    expect(resources.map((r) => `${r.resourceType}/${r.id}`)).toEqual(
      expect.arrayContaining([
        'StructureDefinition/huren-diagnostic-report',
        'StructureDefinition/huren-observation',
        'StructureDefinition/hr-mark',
        'CodeSystem/hr-scope',
        'ValueSet/hr-scope',
      ]),
    );
    for (const resource of resources) expect(validate(resource), resource.id).toEqual([]);
  });

  test('does not modify the resource it validates', () => {
    const report = hurenReport();
    const before = JSON.stringify(report);
    validate(report);
    expect(JSON.stringify(report)).toBe(before);
  });
});

describe('resource type', () => {
  test('reports a resource of another type than expected, once, at resourceType', () => {
    const issues = validate(hemoglobin(), { expectedType: 'DiagnosticReport' });
    expect(issues).toHaveLength(1);
    expect(expectError(issues, 'invalid', 'resourceType').diagnostics).toBe(
      'Expected a DiagnosticReport but got a Observation',
    );
  });

  test('reports a misspelt resourceType with a suggestion', () => {
    const issues = validate({ ...hemoglobin(), resourceType: 'Obsrvation' });
    expect(issues).toHaveLength(1);
    expect(expectError(issues, 'value', 'resourceType').diagnostics).toContain("did you mean 'Observation'");
  });

  test('reports a missing resourceType', () => {
    const obs = loose(hemoglobin());
    delete obs.resourceType;
    const issues = validate(obs, { expectedType: 'Observation' });
    expect(issues).toHaveLength(1);
    expectError(issues, 'required', 'resourceType');
  });

  test.each([
    ['null', null],
    ['a string', 'Observation'],
    ['a number', 42],
    ['an array of resources', [hemoglobin()]],
  ])('rejects %s without throwing', (_name, input) => {
    const issues = validate(input);
    expect(issues).toHaveLength(1);
    expect(hasErrors(issues)).toBe(true);
  });
});

describe('schema layer (HL7 R4 JSON schema)', () => {
  test('reports an unknown element', () => {
    const issues = validate({ ...hemoglobin(), foo: 'bar' });
    expect(issues).toHaveLength(1);
    expect(expectError(issues, 'structure', 'Observation.foo').diagnostics).toBe(
      "Unknown element 'foo' in Observation",
    );
  });

  test('reports a misspelt nested element with a suggestion', () => {
    const obs = loose(hemoglobin());
    obs.code.coding[0] = { sytem: 'http://loinc.org', code: '718-7' };
    const issue = expectError(validate(obs), 'structure', 'Observation.code.coding[0].sytem');
    expect(issue.diagnostics).toContain("did you mean 'system'");
  });

  test('reports a bad enum value with the allowed codes', () => {
    const issues = validate({ ...hemoglobin(), status: 'finalx' });
    expect(issues).toHaveLength(1);
    expect(expectError(issues, 'value', 'Observation.status').diagnostics).toMatch(
      /^Invalid value 'finalx' for Observation.status: expected one of registered, preliminary, final, amended/,
    );
  });

  test('reports a wrong JSON type once', () => {
    const obs = loose(hemoglobin());
    obs.valueQuantity.value = '136';
    const issues = validate(obs);
    expect(issues).toHaveLength(1);
    expectError(issues, 'structure', 'Observation.valueQuantity.value');
  });

  test('reports a single object where an array is expected', () => {
    const obs = loose(hemoglobin());
    obs.performer = obs.performer[0];
    expect(expectError(validate(obs), 'structure', 'Observation.performer').diagnostics).toContain(
      'must be a JSON array',
    );
  });

  test('reports JSON values of the wrong kind for complex elements, which the schema leaves untyped', () => {
    const obs = loose(hemoglobin());
    obs.subject = [obs.subject];
    obs.code = 'Hemoglobin';
    const issues = validate(obs);
    expect(issues).toHaveLength(2);
    expectError(issues, 'structure', 'Observation.subject');
    expectError(issues, 'structure', 'Observation.code');
  });

  test('reports a badly formatted dateTime with the expected format', () => {
    const issues = validate({ ...hemoglobin(), effectiveDateTime: '2024-03-01 09:12' });
    expect(expectError(issues, 'value', 'Observation.effectiveDateTime').diagnostics).toContain('YYYY-MM-DD');
  });

  test('reports hour 24', () => {
    const issues = validate({ ...hemoglobin(), issued: '2024-03-01T24:00:00+08:00' });
    expect(issues).toHaveLength(1);
    expect(expectError(issues, 'value', 'Observation.issued').diagnostics).toContain('hour 24');
  });

  test('reports a problem in a contained resource at its own path, without one error per resource type', () => {
    const report = loose(labReport());
    report.contained[0].colour = 'red';
    const issues = validate(report);
    expect(issues).toHaveLength(1);
    expectError(issues, 'structure', 'DiagnosticReport.contained[0].colour');
  });

  test('reports an unknown type of contained resource', () => {
    const report = loose(labReport());
    report.contained[0].resourceType = 'Specimn';
    const issues = validate(report);
    expect(issues).toHaveLength(1);
    expectError(issues, 'value', 'DiagnosticReport.contained[0].resourceType');
  });

  test('reports a contained resource that is not an object', () => {
    const report = loose(labReport());
    report.contained.push('Specimen/blood');
    expectError(validate(report), 'structure', 'DiagnosticReport.contained[1]');
  });

  test('checks every entry of a Bundle at its path', () => {
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: patient(), request: { method: 'PUT', url: 'Patient/p-1001' } },
        { resource: { ...hemoglobin(), status: 'done' } as never, request: { method: 'POST', url: 'Observation' } },
      ],
    };
    const issues = validate(bundle);
    expect(issues).toHaveLength(1);
    expectError(issues, 'value', 'Bundle.entry[1].resource.status');
  });
});

describe('base rules the schema misses', () => {
  test('reports an impossible date (2024-02-30)', () => {
    const issues = validate({ ...hemoglobin(), effectiveDateTime: '2024-02-30' });
    expect(issues).toHaveLength(1);
    expect(expectError(issues, 'value', 'Observation.effectiveDateTime').diagnostics).toBe(
      "Impossible dateTime '2024-02-30' at Observation.effectiveDateTime: February 2024 has 29 days",
    );
  });

  test('reports impossible dates inside data types and in every date type', () => {
    const report = loose(labReport());
    report.effectivePeriod.start = '2023-02-29T09:12:00+08:00';
    report.issued = '2024-04-31T10:05:31+08:00';
    report.contained[0].collection.collectedDateTime = '2024-13-01';
    const issues = validate(report);
    expectError(issues, 'value', 'DiagnosticReport.effectivePeriod.start');
    expectError(issues, 'value', 'DiagnosticReport.issued');
    expectError(issues, 'value', 'DiagnosticReport.contained[0].collection.collectedDateTime');
    expect(validate({ ...patient(), birthDate: '2023-02-29' })).toEqual([
      expect.objectContaining({ code: 'value', expression: ['Patient.birthDate'] }),
    ]);
  });

  test('reports a missing required element of the base resource', () => {
    const obs = loose(hemoglobin());
    delete obs.status;
    const issues = validate(obs);
    expect(issues).toHaveLength(1);
    expect(expectError(issues, 'required', 'Observation.status').diagnostics).toContain(
      "Missing required element 'status'",
    );
  });

  test('reports a missing element the schema also requires only once', () => {
    const report = loose(labReport());
    delete report.code;
    const issues = validate(report);
    expect(issues).toHaveLength(1);
    expectError(issues, 'required', 'DiagnosticReport.code');
  });

  test('reports a required element missing inside a backbone element', () => {
    const bundle = { resourceType: 'Bundle', type: 'batch', entry: [{ request: { url: 'Patient/p-1001' } }] };
    expectError(validate(bundle), 'required', 'Bundle.entry[0].request.method');
  });

  test('reports dataAbsentReason together with a value (obs-6)', () => {
    const obs = { ...hemoglobin(), dataAbsentReason: { text: '标本溶血' } };
    const issues = validate(obs);
    expect(issues).toHaveLength(1);
    expect(expectError(issues, 'invariant', 'Observation').diagnostics).toMatch(/^Constraint obs-6 failed/);
  });

  test('reports a period that ends before it starts (per-1)', () => {
    const report = loose(labReport());
    report.effectivePeriod.end = '2024-03-01T08:00:00+08:00';
    expect(expectError(validate(report), 'invariant', 'DiagnosticReport.effectivePeriod').diagnostics).toContain(
      'per-1',
    );
  });

  test('reports a reference to a missing contained resource (ref-1) and an unreferenced one (dom-3)', () => {
    const report = loose(labReport());
    report.specimen = [{ reference: '#serum' }];
    const issues = validate(report);
    expect(expectError(issues, 'invariant', 'DiagnosticReport.specimen[0]').diagnostics).toContain('ref-1');
    expect(expectError(issues, 'invariant', 'DiagnosticReport.contained[0]').diagnostics).toContain('dom-3');
  });

  test('reports two types of one choice element', () => {
    const issues = validate({ ...hemoglobin(), valueString: '136 g/L' });
    expectError(issues, 'structure', 'Observation.value');
  });

  test('reports an empty string', () => {
    const p = loose(patient());
    p.name[0].family = '';
    const issues = validate(p);
    expect(issues).toHaveLength(1);
    expect(expectError(issues, 'value', 'Patient.name[0].family').diagnostics).toContain('Empty string');
  });

  test('reports empty objects, empty arrays and null', () => {
    const obs = loose(hemoglobin());
    obs.note = [{}];
    obs.interpretation = [];
    obs.method = null;
    const issues = validate(obs);
    expectError(issues, 'structure', 'Observation.note[0]');
    expectError(issues, 'structure', 'Observation.interpretation');
    expectError(issues, 'structure', 'Observation.method');
  });

  test('reports a code outside a required binding the schema has no enum for', () => {
    const issues = validate({ ...serviceRequest(), intent: 'wish' });
    expect(issues).toHaveLength(1);
    expect(expectError(issues, 'code-invalid', 'ServiceRequest.intent').diagnostics).toContain(
      'http://hl7.org/fhir/ValueSet/request-intent',
    );
  });

  test('reports narrative that is not XHTML (txt-1)', () => {
    const report = loose(labReport());
    report.text.div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>血常规</p><script>alert(1)</script></div>';
    const issues = validate(report);
    expect(issues.map((i) => i.expression)).toEqual(issues.map(() => ['DiagnosticReport.text.div']));
    expect(issues.map((i) => i.diagnostics)).toContainEqual(expect.stringMatching(/^Constraint txt-1 failed/));
  });
});

describe('Huren profiles', () => {
  test('reports a report without performer', () => {
    const report = loose(hurenReport());
    delete report.performer;
    const issues = validate(report);
    expect(issues).toHaveLength(1);
    expect(expectError(issues, 'required', 'DiagnosticReport.performer').diagnostics).toContain(
      'huren-diagnostic-report',
    );
  });

  test('applies a profile asked for by the caller', () => {
    const report = loose(labReport());
    const issues = validate(report, { profiles: [HUREN_DIAGNOSTIC_REPORT] });
    expectError(issues, 'required', 'DiagnosticReport.identifier');
    expect(issues).toHaveLength(1);
  });

  test('reports a performer that is not an Organization', () => {
    const report = loose(hurenReport());
    report.performer = [{ reference: 'Practitioner/dr-li' }];
    expectError(validate(report), 'value', 'DiagnosticReport.performer[0]');
  });

  test('reports a status the profile does not accept', () => {
    const issues = validate({ ...hurenReport(), status: 'preliminary' });
    expect(issues).toHaveLength(1);
    expect(expectError(issues, 'code-invalid', 'DiagnosticReport.status').diagnostics).toContain('huren-report-status');
  });

  test('reports a status outside both the R4 codes and the profile once', () => {
    const issues = validate({ ...hurenReport(), status: 'finalx' });
    expect(issues).toHaveLength(1);
    expectError(issues, 'value', 'DiagnosticReport.status');
  });

  test('reports an identifier without system', () => {
    const report = loose(hurenReport());
    delete report.identifier[0].system;
    expectError(validate(report), 'required', 'DiagnosticReport.identifier[0].system');
  });

  test('reports a type of effective[x] the profile does not allow', () => {
    const obs = loose(hurenObservation());
    delete obs.effectiveDateTime;
    obs.effectiveInstant = '2024-03-01T09:12:00+08:00';
    expectError(validate(obs), 'structure', 'Observation.effectiveInstant');
  });

  test('reports a result with neither value nor dataAbsentReason (huren-obs-1)', () => {
    const obs = loose(hurenObservation());
    delete obs.valueQuantity;
    delete obs.referenceRange;
    const issues = validate(obs);
    expect(issues).toHaveLength(1);
    expect(expectError(issues, 'invariant', 'Observation').diagnostics).toContain('huren-obs-1');
  });

  test('reports a bad HR-mark code', () => {
    const report = loose(hurenReport());
    report.extension = [hrMark('global', '全球HR')];
    const issues = validate(report);
    expect(issues).toHaveLength(1);
    expect(expectError(issues, 'code-invalid', 'DiagnosticReport.extension[0].valueCoding').diagnostics).toContain(
      'national, provincial, municipal',
    );
  });

  test('checks an HR mark wherever it appears, even without a claimed profile', () => {
    const obs = loose(hemoglobin());
    obs.extension = [{ url: HR_MARK, valueCode: 'national' }];
    expectError(validate(obs), 'structure', 'Observation.extension[0].valueCode');
    expectError(
      validate({ ...patient(), extension: [hrMark('national', '全国HR')] }),
      'structure',
      'Patient.extension[0]',
    );
  });

  test('reports two HR marks', () => {
    const report = loose(hurenReport());
    report.extension.push(hrMark('municipal', '本市HR'));
    expectError(validate(report), 'structure', 'DiagnosticReport.extension');
  });

  test('warns about an unknown profile without rejecting the resource', () => {
    const obs = { ...hemoglobin(), meta: { profile: ['http://example.org/StructureDefinition/other'] } };
    const issues = validate(obs);
    expect(issues).toEqual([
      expect.objectContaining({ severity: 'warning', expression: ['Observation.meta.profile[0]'] }),
    ]);
    expect(hasErrors(issues)).toBe(false);
  });

  test('reports a profile claimed by a resource of another type', () => {
    const obs = { ...hurenObservation(), meta: { profile: [HUREN_DIAGNOSTIC_REPORT] } };
    expectError(validate(obs), 'invalid', 'Observation.meta.profile[0]');
  });

  test('checks the profile of a Bundle entry', () => {
    const report = loose(hurenReport());
    delete report.issued;
    const bundle = { resourceType: 'Bundle', type: 'collection', entry: [{ resource: report }] };
    expectError(validate(bundle), 'required', 'Bundle.entry[0].resource.issued');
  });

  test('accepts the observation profile when claimed with a version', () => {
    const obs = { ...hurenObservation(), meta: { profile: [`${HUREN_OBSERVATION}|0.1.0`] } };
    expect(validate(obs)).toEqual([]);
  });
});

describe('FHIR text as the specification defines it (Java regular expressions)', () => {
  test('full-width and no-break spaces are text, not whitespace: names and indented reports are valid', () => {
    const p = { ...patient(), name: [{ text: '张\u3000三', family: '张', given: ['三'] }] };
    expect(validate(p)).toEqual([]);
    const r = { ...labReport(), conclusion: '\u3000\u3000双肺纹理清晰。\n\u3000\u3000心影不大。\u00a0' };
    expect(validate(r)).toEqual([]);
  });

  test('codes and URIs still refuse ASCII whitespace, and only that', () => {
    expectError(validate({ ...hemoglobin(), status: 'final ' }), 'value', 'Observation.status');
    expect(toJavaRegexSemantics('^[^\\s]+(\\s[^\\s]+)*$')).toBe('^[^\\t-\\r ]+([\\t-\\r ][^\\t-\\r ]+)*$');
    expect(new RegExp(toJavaRegexSemantics('^\\S*$'), 'u').test('urn:x:张\u3000')).toBe(true);
    expect(new RegExp(toJavaRegexSemantics('^\\S*$'), 'u').test('urn:x: ')).toBe(false);
  });

  test('base64 must decode: padding only at the end', () => {
    const r = { ...labReport(), presentedForm: [{ contentType: 'text/plain', data: 'AAA=AAAA' }] };
    expectError(validate(r), 'value', 'DiagnosticReport.presentedForm[0].data');
    const ok = { ...labReport(), presentedForm: [{ contentType: 'text/plain', data: 'AAAA AAA=' }] };
    expect(validate(ok)).toEqual([]);
  });

  test('control characters and lone surrogates are refused wherever the resource comes from', () => {
    expectError(validate({ ...patient(), name: [{ text: '张\u0001三' }] }), 'value', 'Patient.name[0].text');
    expectError(validate({ ...patient(), name: [{ text: '张\ud800三' }] }), 'value', 'Patient.name[0].text');
    expect(validate({ ...patient(), name: [{ text: '𠮷野家' }] })).toEqual([]);
  });
});

describe('HL7 extensions and core profiles', () => {
  test('an HL7 extension outside its declared context is refused', () => {
    const p = loose(patient());
    p._gender = {
      extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/patient-birthTime', valueDateTime: '1990-01-01' }],
    };
    const issue = expectError(validate(p), 'structure', 'Patient.gender.extension[0]');
    expect(issue.diagnostics).toMatch(/Patient\.birthDate/);
    const ok = loose(patient());
    ok._birthDate = {
      extension: [
        {
          url: 'http://hl7.org/fhir/StructureDefinition/patient-birthTime',
          valueDateTime: '1990-01-01T08:30:00+08:00',
        },
      ],
    };
    expect(validate(ok)).toEqual([]);
  });

  test('a core profile claimed in meta.profile is applied', () => {
    const p = { ...patient(), meta: { profile: ['http://hl7.org/fhir/StructureDefinition/vitalsigns'] } };
    expectError(validate(p), 'invalid', 'Patient.meta.profile[0]');
  });
});
