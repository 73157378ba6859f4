/**
 * Systematic corruptions of a valid resource, one per class of error a validator must catch, for the differential
 * comparison of $validate with the reference validator. Each is applied to a fresh copy; a class that does not apply
 * to a resource (no required element to remove, say) is left out for it.
 */

export type MutationKind =
  | 'required-removed'
  | 'wrong-json-type'
  | 'unknown-element'
  | 'invalid-required-code'
  | 'impossible-date'
  | 'bad-base64'
  | 'control-character'
  | 'lone-surrogate'
  | 'empty-array'
  | 'empty-object'
  | 'extension-out-of-context'
  | 'claimed-profile-violated'
  | 'full-width-space-text';

export interface Mutation {
  kind: MutationKind;
  resource: Record<string, unknown>;
}

type Json = Record<string, unknown>;

/** Elements of 1..1 cardinality in R4 for the types of the corpus. */
const REQUIRED: Record<string, string[]> = {
  Observation: ['status', 'code'],
  DiagnosticReport: ['status', 'code'],
  ServiceRequest: ['status', 'intent', 'subject'],
};

/** An element bound to a required value set, with a code outside it. */
const REQUIRED_CODE: Record<string, [string, string]> = {
  Observation: ['status', 'done'],
  DiagnosticReport: ['status', 'done'],
  ServiceRequest: ['intent', 'wish'],
  Patient: ['gender', 'man'],
};

const BIRTH_TIME = 'http://hl7.org/fhir/StructureDefinition/patient-birthTime';

export function mutationsOf(original: object): Mutation[] {
  const type = String((original as Json).resourceType);
  const out: Mutation[] = [];
  const add = (kind: MutationKind, change: (r: Json) => boolean | void) => {
    const resource = structuredClone(original) as Json;
    if (change(resource) !== false) out.push({ kind, resource });
  };

  const required = REQUIRED[type]?.[0];
  if (required) add('required-removed', (r) => void delete r[required]);
  add('wrong-json-type', (r) => {
    if (r.status !== undefined) r.status = 42;
    else r.active = 'yes';
  });
  add('unknown-element', (r) => void (r.colour = 'red'));
  const code = REQUIRED_CODE[type];
  if (code) add('invalid-required-code', (r) => void (r[code[0]] = code[1]));
  add('impossible-date', (r) => {
    if (type === 'Patient') r.birthDate = '1990-02-30';
    else if (typeof r.effectiveDateTime === 'string') r.effectiveDateTime = '2024-02-30T09:00:00+08:00';
    else if (type === 'DiagnosticReport' || type === 'Observation') r.issued = '2024-02-30T09:00:00+08:00';
    else if (type === 'ServiceRequest') r.authoredOn = '2024-02-30';
    else return false;
  });
  if (type === 'DiagnosticReport') {
    add('bad-base64', (r) => void (r.presentedForm = [{ contentType: 'text/plain', data: 'AAA=AAAA' }]));
  } else if (type === 'Patient') {
    add('bad-base64', (r) => void (r.photo = [{ contentType: 'image/png', data: 'iVBO=Rw0' }]));
  }
  add('control-character', (r) => void (r.text = narrative('报告\u0001')));
  add('lone-surrogate', (r) => void (r.text = narrative('报告\ud800')));
  add('empty-array', (r) => void (r.identifier = []));
  add('empty-object', (r) => void (r.meta = {}));
  add('extension-out-of-context', (r) => {
    const ext = { url: BIRTH_TIME, valueDateTime: '1990-01-01T08:00:00+08:00' };
    r.extension = [...((r.extension as unknown[]) ?? []), ext];
  });
  add('claimed-profile-violated', (r) => {
    // vitalsigns on anything but an Observation, and on an Observation that is not one (no vital-signs category).
    r.meta = { ...((r.meta as Json) ?? {}), profile: ['http://hl7.org/fhir/StructureDefinition/vitalsigns'] };
    if (type === 'Observation') delete r.category;
  });
  add('full-width-space-text', (r) => {
    // Not an error: text indented with U+3000 as Chinese reports are. Both validators must accept it.
    if (type === 'DiagnosticReport') r.conclusion = '\u3000\u3000双肺纹理清晰。\n\u3000\u3000心影不大。';
    else if (type === 'Patient') r.name = [{ text: '张\u3000三' }];
    else if (type === 'Observation') r.note = [{ text: '\u3000\u3000标本轻度溶血。' }];
    else return false;
  });
  return out;
}

function narrative(text: string): Json {
  return { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${text}</div>` };
}
