import type { CodeSystem, CodeSystemConcept, ValueSet, ValueSetExpansionContains } from 'fhir/r4';
import { isObject, quote } from './json.js';

/** The codes of a value set that could be expanded locally. */
export interface ValueSetContents {
  url: string;
  /** `system|code` pairs, for Coding and CodeableConcept. */
  codings: Set<string>;
  /** Bare codes, for elements of type `code`, which carry no system. */
  codes: Set<string>;
}

export interface Terminology {
  /**
   * The value set's codes, or undefined when it is unknown or too complex to expand here (filters, excludes,
   * external code systems).
   */
  expand(valueSetUrl: string): ValueSetContents | undefined;
}

/** Canonical references may carry a version (`…/ValueSet/observation-status|4.0.1`); we hold one version of each. */
export function stripVersion(canonical: string): string {
  const bar = canonical.indexOf('|');
  return bar === -1 ? canonical : canonical.slice(0, bar);
}

/**
 * A minimal local terminology: expands the "simple" value sets that the R4 specification and our profiles define,
 * i.e. lists of codes or whole code systems with `content = complete`. Anything needing a terminology server
 * (filters, SNOMED CT, LOINC, BCP-47, MIME types) is reported as not expandable, and callers then skip the check.
 * Later resources win over earlier ones with the same URL (profiles/ is loaded after the R4 core).
 */
export function createTerminology(resources: Array<CodeSystem | ValueSet>): Terminology {
  const codeSystems = new Map<string, CodeSystem>();
  const valueSets = new Map<string, ValueSet>();
  for (const r of resources) {
    if (!r.url) continue;
    if (r.resourceType === 'CodeSystem') codeSystems.set(r.url, r);
    else valueSets.set(r.url, r);
  }
  const cache = new Map<string, ValueSetContents | undefined>();

  function expand(valueSetUrl: string): ValueSetContents | undefined {
    const url = stripVersion(valueSetUrl);
    if (cache.has(url)) return cache.get(url);
    cache.set(url, undefined); // guards against value sets that include themselves
    const vs = valueSets.get(url);
    const pairs = vs ? expandValueSet(vs) : undefined;
    const contents = pairs && {
      url,
      codings: new Set(pairs.map(([system, code]) => `${system}|${code}`)),
      codes: new Set(pairs.map(([, code]) => code)),
    };
    cache.set(url, contents);
    return contents;
  }

  function expandValueSet(vs: ValueSet): Array<[string, string]> | undefined {
    if (vs.expansion?.contains) return flattenContains(vs.expansion.contains);
    const compose = vs.compose;
    if (!compose || compose.exclude?.length) return undefined;
    const pairs: Array<[string, string]> = [];
    for (const include of compose.include) {
      if (include.filter?.length) return undefined;
      if (include.valueSet?.length) {
        // A system together with value sets means an intersection: not worth supporting here.
        if (include.system) return undefined;
        for (const other of include.valueSet) {
          const inner = expand(other);
          if (!inner) return undefined;
          for (const coding of inner.codings) {
            const bar = coding.indexOf('|');
            pairs.push([coding.slice(0, bar), coding.slice(bar + 1)]);
          }
        }
        continue;
      }
      if (!include.system) return undefined;
      if (include.concept?.length) {
        for (const c of include.concept) pairs.push([include.system, c.code]);
        continue;
      }
      const cs = codeSystems.get(include.system);
      if (!cs || cs.content !== 'complete' || !cs.concept) return undefined;
      for (const code of flattenConcepts(cs.concept)) pairs.push([include.system, code]);
    }
    return pairs;
  }

  return { expand };
}

function flattenConcepts(concepts: CodeSystemConcept[], out: string[] = []): string[] {
  for (const c of concepts) {
    out.push(c.code);
    if (c.concept) flattenConcepts(c.concept, out);
  }
  return out;
}

function flattenContains(
  contains: ValueSetExpansionContains[],
  out: Array<[string, string]> = [],
): Array<[string, string]> {
  for (const c of contains) {
    if (c.system && c.code && !c.abstract) out.push([c.system, c.code]);
    if (c.contains) flattenContains(c.contains, out);
  }
  return out;
}

/**
 * Diagnostics for a coded value outside a value set: what was sent, and what is allowed (with the code system when
 * a Coding was expected and the value set has only one).
 */
export function describeNotInValueSet(
  value: unknown,
  at: string,
  valueSet: string,
  contents: ValueSetContents,
): string {
  const codes = [...contents.codes];
  const listed = codes.length <= 12 ? codes.join(', ') : `${codes.slice(0, 12).join(', ')}, … (${codes.length} codes)`;
  const systems = new Set([...contents.codings].map((c) => c.slice(0, c.lastIndexOf('|'))));
  const expected = typeof value !== 'string' && systems.size === 1 ? `a code of ${[...systems][0]}: ${listed}` : listed;
  return `${describeCoded(value)} at ${at} is not in the value set ${valueSet}: expected ${expected}`;
}

function describeCoded(value: unknown): string {
  if (typeof value === 'string') return `Code ${quote(value)}`;
  if (isObject(value) && ('coding' in value || 'text' in value)) {
    const codings = Array.isArray(value.coding) ? value.coding.filter(isObject) : [];
    return codings.length ? `None of the codings ${codings.map(codingText).join(', ')}` : 'A concept without coding';
  }
  if (isObject(value)) return `Coding ${codingText(value)}`;
  return quote(value);
}

function codingText(coding: Record<string, unknown>): string {
  const system = typeof coding.system === 'string' ? coding.system : '(no system)';
  const code = typeof coding.code === 'string' ? coding.code : '(no code)';
  return quote(`${system}|${code}`);
}

/**
 * Whether a coded value is in the value set. A `code` is a bare string; a Coding needs its system and code to
 * match; a CodeableConcept needs at least one such Coding (FHIR R4 terminologies.html#required: "the concept in
 * this element SHALL be from the specified value set"). Undefined when the value does not look coded at all (the
 * schema reports that).
 */
export function isInValueSet(value: unknown, contents: ValueSetContents): boolean | undefined {
  if (typeof value === 'string') return contents.codes.has(value);
  if (!isObject(value)) return undefined;
  if ('coding' in value || 'text' in value) {
    const codings = Array.isArray(value.coding) ? value.coding : [];
    return codings.some((c) => isCodingIn(c, contents));
  }
  if ('code' in value || 'system' in value) return isCodingIn(value, contents);
  return undefined;
}

function isCodingIn(coding: unknown, contents: ValueSetContents): boolean {
  return (
    isObject(coding) &&
    typeof coding.system === 'string' &&
    typeof coding.code === 'string' &&
    contents.codings.has(`${coding.system}|${coding.code}`)
  );
}
