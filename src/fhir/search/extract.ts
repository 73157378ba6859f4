/**
 * Search values of a resource (`sp`) and sort keys (`so`), computed once at write time and stored with it.
 *
 * Store contract (one document per current resource):
 *   sp[code]  token/reference/string/uri: string | string[]; number: number | number[];
 *             date: { lo: Date, hi: Date } (one envelope); quantity: { v: number | number[], u: string | string[] }
 *   sp[code + ':exact']    string params: the unnormalised strings
 *   sp[code + ':of-type']  identifier params: `typeSystem|typeCode|value` (R4 §3.1.1.4.10 :of-type)
 *   so[code]  one scalar per sortable param, with a sentinel when the resource has no value
 * An array of length 1 is stored as the bare value so that a compound index never sees two arrays in one document
 * (MongoDB refuses to index parallel arrays), and a key is absent when there is no value (so `:missing` is `$exists`).
 *
 *   tk        every token, reference and uri value as one flat list of `Type|param|value` (searchToken), under ONE
 *             index: a search narrows to the documents of its most selective equality with a lookup of one element
 *             (a multikey index on MongoDB, a GIN index on FerretDB over PostgreSQL) and filters the rest on those few
 *             documents (design.md, Database; style.md, Index-served search).
 */
import fhirpath from 'fhirpath';
import { checkResidentId, IDENTIFIER_SYSTEMS } from '../../recognition/identity.js';
import { MAX_DATE_MS, MIN_DATE_MS, parseDateRange, type DateRange, type TimeZone } from './dates.js';
import type { SearchParamDef, SearchRegistry } from './registry.js';
import { normalizeText } from './text.js';

export interface SearchValues {
  sp: Record<string, unknown>;
  so: Record<string, unknown>;
  tk: string[];
}

/** Parameter types whose values are exact-match keys, listed in `tk`. */
const TOKEN_PARAM_TYPES: ReadonlySet<string> = new Set(['token', 'reference', 'uri']);

/** The indexed key of one stored value: `Observation|patient|Patient/1`, `Patient|identifier|urn:oid:…|370…`. */
export function searchToken(resourceType: string, param: string, value: string): string {
  return `${resourceType}|${param}|${value}`;
}

/**
 * The scan buckets of a resource, in `tk` as `Type|_scan|<bucket>`: the first 1, 2 and 3 hexadecimal digits of a
 * hash of its id (16, 256 and 4 096 buckets of about equal size). A search with nothing selective to anchor on pages
 * through a large type bucket by bucket, each page reading a bounded number of documents (interactions.ts, search).
 * Not a search parameter: `_scan` is no FHIR name, and only the paging asks for it.
 */
export const SCAN_PARAM = '_scan';
export const SCAN_LEVELS = 3;

/** The bucket of `id` at `level` (1–3): that many hexadecimal digits of its FNV-1a hash. */
export function scanBucket(id: string, level: number): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) hash = Math.imul(hash ^ id.charCodeAt(i), 0x01000193);
  return ((hash >>> 0) & 0xfff).toString(16).padStart(SCAN_LEVELS, '0').slice(0, level);
}

/** Sort sentinels: a missing value sorts first ascending, with the same BSON type as real values. */
export const SORT_MISSING = {
  date: new Date(MIN_DATE_MS),
  number: -Number.MAX_VALUE,
  string: '',
} as const;

/** One value of an evaluated expression with its FHIR type name (`CodeableConcept`, `dateTime`, `boolean` …). */
interface TypedValue {
  type: string;
  data: unknown;
}

type Json = Record<string, unknown>;

export function extractSearchValues<R extends { readonly resourceType: string }>(
  registry: SearchRegistry,
  resource: R,
): SearchValues {
  const params = registry.params.get(resource.resourceType);
  if (!params) throw new Error(`No search parameters for resource type ${resource.resourceType}`);
  const sp: Record<string, unknown> = {};
  const so: Record<string, unknown> = {};
  const tk: string[] = [];
  for (const def of params.values()) {
    extractParam(def, evaluate(def, resource), registry.timeZone, sp, so);
    if (!TOKEN_PARAM_TYPES.has(def.type) || def.field !== `sp.${def.code}`) continue;
    const stored = sp[def.code];
    for (const value of Array.isArray(stored) ? stored : stored === undefined ? [] : [stored]) {
      tk.push(searchToken(resource.resourceType, def.code, String(value)));
    }
  }
  const id = (resource as { id?: unknown }).id;
  if (typeof id === 'string') {
    for (let level = 1; level <= SCAN_LEVELS; level++) {
      tk.push(searchToken(resource.resourceType, SCAN_PARAM, scanBucket(id, level)));
    }
  }
  return { sp, so, tk };
}

function evaluate(def: SearchParamDef, resource: object): TypedValue[] {
  const values: TypedValue[] = [];
  for (const part of def.parts) {
    let raw: unknown[];
    try {
      raw = part.evaluate(resource);
    } catch (err) {
      throw new Error(`Cannot evaluate search parameter ${def.resourceType}.${def.code} (${part.expression})`, {
        cause: err,
      });
    }
    const types = fhirpath.types(raw);
    for (let i = 0; i < raw.length; i++) {
      const data: unknown = fhirpath.util.valData(raw[i]);
      // Metadata-only primitives (an `_element` with extensions but no value) carry no data.
      if (data === null || data === undefined) continue;
      const value = { type: typeName(types[i] ?? ''), data };
      if (part.resolveIs && !isReferenceTo(value, part.resolveIs)) continue;
      values.push(value);
    }
  }
  return values;
}

/** `FHIR.CodeableConcept` → `CodeableConcept`; `System.String` → `string` (FHIRPath system types). */
function typeName(fhirpathType: string): string {
  if (fhirpathType.startsWith('FHIR.')) return fhirpathType.slice(5);
  const system = fhirpathType.replace(/^System\./, '');
  return system === 'DateTime' ? 'dateTime' : system.charAt(0).toLowerCase() + system.slice(1);
}

function extractParam(
  def: SearchParamDef,
  values: TypedValue[],
  zone: TimeZone,
  sp: Record<string, unknown>,
  so: Record<string, unknown>,
): void {
  const code = def.code;
  switch (def.type) {
    case 'token': {
      const tokens = new Set<string>();
      const ofType = new Set<string>();
      for (const v of values) collectTokens(v, tokens, ofType);
      setCompact(sp, code, [...tokens]);
      setCompact(sp, `${code}:of-type`, [...ofType]);
      if (def.sortable) so[code] = first(tokens) ?? SORT_MISSING.string;
      return;
    }
    case 'reference': {
      const refs = new Set<string>();
      for (const v of values) collectReference(v, refs);
      setCompact(sp, code, [...refs]);
      if (def.sortable) so[code] = first(refs) ?? SORT_MISSING.string;
      return;
    }
    case 'uri': {
      const uris = new Set<string>();
      for (const v of values) if (typeof v.data === 'string') uris.add(v.data);
      setCompact(sp, code, [...uris]);
      if (def.sortable) so[code] = first(uris) ?? SORT_MISSING.string;
      return;
    }
    case 'string': {
      const exact = new Set<string>();
      for (const v of values) collectStrings(v, exact);
      const normalized = new Set([...exact].map(normalizeText));
      setCompact(sp, code, [...normalized]);
      setCompact(sp, `${code}:exact`, [...exact]);
      if (def.sortable) so[code] = first(normalized) ?? SORT_MISSING.string;
      return;
    }
    case 'number': {
      const numbers = new Set<number>();
      for (const v of values) if (typeof v.data === 'number' && Number.isFinite(v.data)) numbers.add(v.data);
      setCompact(sp, code, [...numbers]);
      if (def.sortable) so[code] = numbers.size > 0 ? Math.min(...numbers) : SORT_MISSING.number;
      return;
    }
    case 'quantity': {
      const numbers = new Set<number>();
      const units = new Set<string>();
      for (const v of values) collectQuantities(v, numbers, units);
      if (numbers.size > 0) {
        const q: Record<string, unknown> = {};
        setCompact(q, 'v', [...numbers]);
        setCompact(q, 'u', [...units]);
        sp[code] = q;
      }
      if (def.sortable) so[code] = numbers.size > 0 ? Math.min(...numbers) : SORT_MISSING.number;
      return;
    }
    case 'date': {
      let envelope: DateRange | undefined;
      for (const v of values) {
        for (const range of dateRanges(v, zone)) {
          if (!envelope) envelope = { lo: range.lo, hi: range.hi };
          else {
            if (range.lo < envelope.lo) envelope.lo = range.lo;
            if (range.hi > envelope.hi) envelope.hi = range.hi;
          }
        }
      }
      if (envelope) sp[code] = envelope;
      if (def.sortable) so[code] = envelope?.lo ?? SORT_MISSING.date;
      return;
    }
  }
}

function setCompact(target: Record<string, unknown>, key: string, values: unknown[]): void {
  if (values.length === 1) target[key] = values[0];
  else if (values.length > 1) target[key] = values;
}

function first<T>(set: Set<T>): T | undefined {
  for (const v of set) return v;
  return undefined;
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/**
 * The form a resident ID number is matched in (18 characters, ASCII, upper-case X), for a value of the resident ID
 * system that is a valid number; undefined otherwise. Used on both sides: stored tokens and search values.
 */
export function residentIdMatchForm(system: string | undefined, value: string): string | undefined {
  if (system?.trim() !== IDENTIFIER_SYSTEMS.residentIdCard) return undefined;
  const check = checkResidentId(value);
  return check.valid ? check.value : undefined;
}

/**
 * R4 §3.1.1.4.10 (token): Coding → system|code, CodeableConcept → each coding, Identifier → system|value,
 * ContactPoint → value (its `system` is a code such as `phone`, not a URI), code/string/uri/id/boolean → the value.
 * Each token is stored as `code` (any system) and `system|code` (`|code` when there is no system).
 */
function collectTokens(v: TypedValue, tokens: Set<string>, ofType: Set<string>): void {
  const add = (system: string | undefined, code: string | undefined) => {
    if (code === undefined) return;
    tokens.add(code);
    tokens.add(`${system ?? ''}|${code}`);
  };
  const d = v.data;
  if (typeof d === 'boolean' || typeof d === 'number') return add(undefined, String(d));
  if (typeof d === 'string') return add(undefined, d === '' ? undefined : d);
  if (!isObject(d)) return;
  switch (v.type) {
    case 'Coding':
      return add(str(d.system), str(d.code));
    case 'CodeableConcept':
      for (const c of Array.isArray(d.coding) ? d.coding : []) if (isObject(c)) add(str(c.system), str(c.code));
      return;
    case 'Identifier': {
      const value = str(d.value);
      add(str(d.system), value);
      // A resident ID number written otherwise than it is matched (15 digits, full-width, lower-case x) is also
      // found by its 18-digit form, the form search values are turned into (parse.ts).
      const matched = value === undefined ? undefined : residentIdMatchForm(str(d.system), value);
      if (matched && matched !== value) add(str(d.system), matched);
      const type = isObject(d.type) && Array.isArray(d.type.coding) ? d.type.coding : [];
      if (value !== undefined) {
        for (const c of type) if (isObject(c) && str(c.code)) ofType.add(`${str(c.system) ?? ''}|${c.code}|${value}`);
      }
      return;
    }
    case 'ContactPoint':
      return add(undefined, str(d.value));
    default:
      // Unknown complex types carry no token semantics in R4; better absent than wrong.
      return;
  }
}

/** `Patient/1/_history/2` and `http://h/fhir/Patient/1/_history/2` lose the version; the rest is kept as given. */
const REFERENCE_RE =
  /^((?:[a-z][a-z0-9+.-]*:\/\/[^?#]*\/)?([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64}))(?:\/_history\/[^/]+)?$/;

/** `Type/id` or an absolute URL to be matched as given; canonical `url|version` loses the version. */
export function normalizeReference(reference: string): string {
  const m = REFERENCE_RE.exec(reference);
  return m ? m[1]! : reference;
}

/** The resource type a reference points to, when its form says so. */
export function referenceTargetType(reference: string): string | undefined {
  return REFERENCE_RE.exec(reference)?.[2];
}

function collectReference(v: TypedValue, refs: Set<string>): void {
  const d = v.data;
  if (typeof d === 'string') {
    // canonical / uri: R4 §3.1.1.4.11 canonical references match on the URL; versions are not indexed.
    const url = d.split('|')[0]!;
    if (url !== '') refs.add(url);
    return;
  }
  if (!isObject(d)) return;
  const reference = str(d.reference);
  // Contained references (`#id`) point inside the resource and cannot be searched for from outside.
  if (reference === undefined || reference.startsWith('#')) return;
  refs.add(normalizeReference(reference));
}

function isReferenceTo(v: TypedValue, type: string): boolean {
  if (!isObject(v.data)) return false;
  const reference = str(v.data.reference);
  const target = reference !== undefined ? referenceTargetType(reference) : undefined;
  return (target ?? str(v.data.type)) === type;
}

/** R4 §3.1.1.4.7 (string): HumanName and Address match on any of their parts. */
function collectStrings(v: TypedValue, out: Set<string>): void {
  const d = v.data;
  const add = (s: unknown) => {
    if (typeof s === 'string' && s !== '') out.add(s);
    else if (Array.isArray(s)) for (const x of s) add(x);
  };
  if (typeof d === 'string') return add(d);
  if (!isObject(d)) return;
  if (v.type === 'HumanName') {
    add(d.family);
    add(d.given);
    add(d.text);
    add(d.prefix);
    add(d.suffix);
  } else if (v.type === 'Address') {
    add(d.line);
    add(d.city);
    add(d.district);
    add(d.state);
    add(d.postalCode);
    add(d.country);
    add(d.text);
  }
}

const QUANTITY_TYPES = new Set(['Quantity', 'SimpleQuantity', 'MoneyQuantity', 'Age', 'Duration', 'Distance', 'Count']);

/**
 * R4 §3.1.1.4.6 (quantity): the value with unit tokens `system|code`, `code` and `unit` (so `5.4||mg` matches a
 * code or a unit) and `|unit`. Range contributes its low and high; Money its currency (ISO 4217). SampledData has no
 * single value and is skipped.
 */
function collectQuantities(v: TypedValue, numbers: Set<number>, units: Set<string>): void {
  const d = v.data;
  if (!isObject(d)) return;
  const addQuantity = (q: unknown, type: string) => {
    if (!isObject(q) || typeof q.value !== 'number' || !Number.isFinite(q.value)) return;
    numbers.add(q.value);
    if (type === 'Money') {
      const currency = str(q.currency);
      if (currency) {
        units.add(`urn:iso:std:iso:4217|${currency}`);
        units.add(currency);
      }
      return;
    }
    const system = str(q.system);
    const code = str(q.code);
    const unit = str(q.unit);
    if (system && code) units.add(`${system}|${code}`);
    if (code) units.add(code);
    if (unit) {
      units.add(unit);
      units.add(`|${unit}`);
    }
  };
  if (QUANTITY_TYPES.has(v.type) || v.type === 'Money') addQuantity(d, v.type);
  else if (v.type === 'Range') {
    addQuantity(d.low, 'Quantity');
    addQuantity(d.high, 'Quantity');
  }
}

const FAR_PAST = new Date(MIN_DATE_MS);
const FAR_FUTURE = new Date(MAX_DATE_MS);

/** R4 §3.1.1.4.2 (date): date/dateTime/instant by precision, Period start..end (open ends unbounded), Timing events. */
function dateRanges(v: TypedValue, zone: TimeZone): DateRange[] {
  const d = v.data;
  if (typeof d === 'string') {
    const r = parseDateRange(d, zone);
    return r ? [r] : [];
  }
  if (!isObject(d)) return [];
  if (v.type === 'Period') return periodRange(d, zone);
  if (v.type === 'Timing') {
    const ranges: DateRange[] = [];
    for (const e of Array.isArray(d.event) ? d.event : []) {
      const r = typeof e === 'string' ? parseDateRange(e, zone) : undefined;
      if (r) ranges.push(r);
    }
    const repeat = isObject(d.repeat) ? d.repeat : undefined;
    if (repeat && isObject(repeat.boundsPeriod)) ranges.push(...periodRange(repeat.boundsPeriod, zone));
    return ranges;
  }
  return [];
}

function periodRange(p: Json, zone: TimeZone): DateRange[] {
  const start = typeof p.start === 'string' ? parseDateRange(p.start, zone) : undefined;
  const end = typeof p.end === 'string' ? parseDateRange(p.end, zone) : undefined;
  if (!start && !end) return [];
  return [{ lo: start?.lo ?? FAR_PAST, hi: end?.hi ?? FAR_FUTURE }];
}
