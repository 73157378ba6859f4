/**
 * Parsing and validation of a FHIR R4 search query (§3.1.1) into a SearchRequest. Every value is checked here, so the
 * filter builder never sees anything it cannot translate; errors are OperationOutcomes naming the parameter.
 */
import { createHash } from 'node:crypto';
import { badRequest, error, issue, notSupported } from '../outcomes.js';
import { parseDateRange } from './dates.js';
import { normalizeReference, residentIdMatchForm } from './extract.js';
import { decodeCursor } from './paging.js';
import { getSearchParam, isSearchableType, type SearchParamDef, type SearchRegistry } from './registry.js';
import type {
  ChainTarget,
  DateValue,
  IncludeSpec,
  NumberValue,
  Prefix,
  QuantityValue,
  SearchFilter,
  SearchRequest,
  SortKey,
  TokenValue,
} from './request.js';
import { normalizeText, splitUnescaped, unescapeValue } from './text.js';

export interface ParseSearchOptions {
  /** `Prefer: handling=lenient` (R4 §3.1.1.2.1): ignore unknown/unsupported parameters, reporting them as warnings. */
  lenient: boolean;
  defaultCount: number;
  maxCount: number;
  /** Reference point of `ap` on dates (10% of the gap to now); injectable for tests. */
  now?: Date;
}

export type SearchQuery = Record<string, string | string[] | undefined>;

/** Parameters handled by the HTTP layer, accepted and ignored here (R4 §3.1.1.2 / §2.21.0.x). */
const IGNORED_PARAMS = new Set(['_format', '_pretty']);

const MODIFIERLESS_RESULT_PARAMS = new Set(['_count', '_sort', '_total', '_summary', '_elements', '_cursor']);

/** Result parameters (R4 §3.1.1.5.x) do not select or order matches, so they are left out of the cursor binding. */
const NON_SELECTING_PARAMS = new Set([
  '_cursor',
  '_count',
  '_total',
  '_summary',
  '_elements',
  '_include',
  '_include:iterate',
  '_revinclude',
  '_revinclude:iterate',
  '_format',
  '_pretty',
]);

const PREFIXES = new Set<string>(['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap']);
const NUMBER_RE = /^[+-]?(?:\d+(?:\.(\d+))?|\.(\d+))(?:[eE]([+-]?\d+))?$/;
const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;
const TYPED_REFERENCE_RE = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;
const ABSOLUTE_RE = /^[a-z][a-z0-9+.-]*:/i;
const ELEMENT_RE = /^[A-Za-z][A-Za-z0-9]*$/;

interface Context {
  registry: SearchRegistry;
  options: ParseSearchOptions;
  ignored: SearchRequest['ignored'];
}

export function parseSearchRequest(
  registry: SearchRegistry,
  resourceType: string,
  query: SearchQuery,
  options: ParseSearchOptions,
): SearchRequest {
  if (!isSearchableType(registry, resourceType)) {
    throw notSupported(`Search is not supported for resource type '${resourceType}'`, 'resourceType');
  }
  const ctx: Context = { registry, options, ignored: [] };
  const req = emptyRequest(resourceType, options.defaultCount);
  req.ignored = ctx.ignored;
  let cursor: string | undefined;
  const use = (key: string, value: string) => (req.used[key] ??= []).push(value);

  for (const [key, raw] of Object.entries(query)) {
    if (raw === undefined) continue;
    const values = asStrings(key, raw);
    const [base, modifier] = splitModifier(key);
    if (modifier !== undefined && MODIFIERLESS_RESULT_PARAMS.has(base)) {
      unsupported(ctx, key, `Parameter '${base}' takes no modifier`);
      continue;
    }
    switch (base) {
      case '_count':
        req.count = Math.min(parseCount(key, single(key, values)), options.maxCount);
        use(key, values[0]!);
        continue;
      case '_sort':
        // Used as the sort keys that were understood (lenient handling may have dropped some of them).
        for (const v of values) parseSort(ctx, req, key, v);
        continue;
      case '_include':
      case '_revinclude':
        for (const v of values) if (parseInclude(ctx, req, key, base, modifier, v)) use(key, v);
        continue;
      case '_total':
        req.total = parseTotal(key, single(key, values));
        use(key, values[0]!);
        continue;
      case '_summary':
        if (parseSummary(ctx, req, key, single(key, values))) use(key, values[0]!);
        continue;
      case '_elements':
        req.elements = parseElements(key, values);
        for (const v of values) use(key, v);
        continue;
      case '_cursor':
        cursor = single(key, values);
        continue;
    }
    if (IGNORED_PARAMS.has(base)) continue;
    for (const value of values) {
      const filter = parseFilter(ctx, resourceType, key, value, key);
      if (filter) {
        req.filters.push(filter);
        use(key, value);
      }
    }
  }
  if (req.sort.length > 0) req.used._sort = [req.sort.map((s) => (s.dir === -1 ? '-' : '') + s.param).join(',')];

  // Bound to what was used, so that a next link (which carries only that) matches the search it was made for.
  req.fingerprint = fingerprint(resourceType, req.used);
  if (cursor !== undefined) {
    decodeCursor(req, cursor);
    req.cursor = cursor;
  }
  return req;
}

function emptyRequest(resourceType: string, count: number): SearchRequest {
  return {
    resourceType,
    filters: [],
    sort: [],
    count,
    include: [],
    revinclude: [],
    total: 'none',
    ignored: [],
    used: {},
    fingerprint: '',
  };
}

function asStrings(key: string, raw: string | string[]): string[] {
  const values = Array.isArray(raw) ? raw : [raw];
  if (!values.every((v) => typeof v === 'string')) throw badRequest(`Invalid value for parameter '${key}'`, key);
  return values;
}

function single(key: string, values: string[]): string {
  if (values.length !== 1) throw badRequest(`Parameter '${key}' may appear only once`, key);
  return values[0]!;
}

function splitModifier(name: string): [string, string | undefined] {
  const i = name.indexOf(':');
  return i < 0 ? [name, undefined] : [name.slice(0, i), name.slice(i + 1)];
}

/** Unknown or unsupported: an error, or under lenient handling a warning and the parameter is skipped. */
function unsupported(ctx: Context, name: string, diagnostics: string): undefined {
  if (!ctx.options.lenient) throw notSupported(diagnostics, name);
  ctx.ignored.push(issue('warning', 'not-supported', `${diagnostics}; the parameter was ignored`, name));
  return undefined;
}

function unknownParam(ctx: Context, resourceType: string, code: string, name: string): undefined {
  const reason = ctx.registry.unsupported.get(resourceType)?.get(code);
  if (reason)
    return unsupported(ctx, name, `Search parameter '${code}' of ${resourceType} is not supported: ${reason}`);
  const supported = [...(ctx.registry.params.get(resourceType)?.keys() ?? [])];
  const similar = supported.filter((s) => editDistance(s, code) <= 2);
  const hint = similar.length > 0 ? ` Did you mean ${similar.map((s) => `'${s}'`).join(' or ')}?` : '';
  return unsupported(
    ctx,
    name,
    `Unknown search parameter '${code}' for ${resourceType}.${hint} Supported: ${supported.join(', ')}`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Filters

/**
 * One occurrence of a search parameter: `code[:modifier][.chained]=v1,v2`. `name` is the query key as sent, used in
 * every message (for a chained parameter: the whole chain).
 */
function parseFilter(
  ctx: Context,
  resourceType: string,
  key: string,
  rawValue: string,
  name: string,
): SearchFilter | undefined {
  const dot = key.indexOf('.');
  const [code, modifier] = splitModifier(dot < 0 ? key : key.slice(0, dot));
  const def = getSearchParam(ctx.registry, resourceType, code);
  if (!def) return unknownParam(ctx, resourceType, code, name);
  if (dot >= 0) return parseChain(ctx, def, modifier, key.slice(dot + 1), rawValue, name);

  if (rawValue === '') {
    // An empty value cannot select anything; reported rather than failing a whole query sent by a form.
    ctx.ignored.push(issue('warning', 'invalid', `Parameter '${name}' has an empty value and was ignored`, name));
    return undefined;
  }
  const base = { name, param: def.code };
  if (modifier === 'missing') {
    if (rawValue !== 'true' && rawValue !== 'false') throw badRequest(`'${name}' must be true or false`, name);
    return { ...base, kind: 'missing', missing: rawValue === 'true' };
  }
  const values = splitUnescaped(rawValue, ',');
  if (values.some((v) => v === '')) throw badRequest(`'${name}' has an empty value in its comma-separated list`, name);

  switch (def.type) {
    case 'token': {
      if (modifier !== undefined && modifier !== 'not' && modifier !== 'of-type') {
        return unsupportedModifier(ctx, def, modifier, name, ['missing', 'not', 'of-type']);
      }
      if (modifier === 'of-type' && !/(^|\.)identifier$/.test(def.expression)) {
        return unsupportedModifier(ctx, def, modifier, name, ['missing', 'not']);
      }
      return {
        ...base,
        kind: 'token',
        ...(modifier ? { modifier } : {}),
        values: values.map((v) => parseToken(v, modifier, name)),
      };
    }
    case 'reference': {
      if (modifier !== undefined && !def.targets.includes(modifier)) {
        if (/^[A-Z]/.test(modifier))
          throw badRequest(`'${def.code}' cannot refer to ${modifier} (targets: ${def.targets.join(', ')})`, name);
        return unsupportedModifier(ctx, def, modifier, name, ['missing', '[type]']);
      }
      return {
        ...base,
        kind: 'reference',
        values: [...new Set(values.flatMap((v) => parseReference(def, modifier, v, name)))],
      };
    }
    case 'date':
      if (modifier !== undefined) return unsupportedModifier(ctx, def, modifier, name, ['missing']);
      return { ...base, kind: 'date', values: values.map((v) => parseDate(ctx, v, name)) };
    case 'number':
      if (modifier !== undefined) return unsupportedModifier(ctx, def, modifier, name, ['missing']);
      return { ...base, kind: 'number', values: values.map((v) => parseNumber(v, name)) };
    case 'quantity':
      if (modifier !== undefined) return unsupportedModifier(ctx, def, modifier, name, ['missing']);
      return { ...base, kind: 'quantity', values: values.map((v) => parseQuantity(v, name)) };
    case 'string': {
      if (modifier !== undefined && modifier !== 'exact' && modifier !== 'contains') {
        return unsupportedModifier(ctx, def, modifier, name, ['missing', 'exact', 'contains']);
      }
      const exact = modifier === 'exact';
      return {
        ...base,
        kind: 'string',
        modifier: modifier ?? 'starts-with',
        values: values.map((v) => (exact ? unescapeValue(v) : normalizeText(unescapeValue(v)))),
      };
    }
    case 'uri':
      if (modifier !== undefined && modifier !== 'below' && modifier !== 'above') {
        return unsupportedModifier(ctx, def, modifier, name, ['missing', 'below', 'above']);
      }
      return { ...base, kind: 'uri', modifier: modifier ?? 'exact', values: values.map(unescapeValue) };
  }
}

function unsupportedModifier(
  ctx: Context,
  def: SearchParamDef,
  modifier: string,
  name: string,
  supported: string[],
): undefined {
  return unsupported(
    ctx,
    name,
    `Modifier ':${modifier}' is not supported on ${def.type} parameter '${def.code}' (supported: ${supported
      .map((m) => `:${m}`)
      .join(', ')})`,
  );
}

/**
 * Chained parameters (R4 §3.1.1.4.13), one level: `subject:Patient.identifier=…` or `patient.name=…`. Without a
 * type modifier every searchable target type that defines the chained parameter is tried.
 */
function parseChain(
  ctx: Context,
  def: SearchParamDef,
  typeModifier: string | undefined,
  chained: string,
  rawValue: string,
  name: string,
): SearchFilter | undefined {
  if (def.type !== 'reference')
    throw badRequest(`Only reference parameters can be chained; '${def.code}' is a ${def.type}`, name);
  if (chained.includes('.')) return unsupported(ctx, name, `Only one level of chaining is supported in '${name}'`);
  const [innerCode] = splitModifier(chained);
  if (typeModifier !== undefined && !def.targets.includes(typeModifier)) {
    throw badRequest(`'${def.code}' cannot refer to ${typeModifier} (targets: ${def.targets.join(', ')})`, name);
  }
  const candidates = (typeModifier ? [typeModifier] : def.targets).filter((t) => isSearchableType(ctx.registry, t));
  const types = candidates.filter((t) => getSearchParam(ctx.registry, t, innerCode));
  if (types.length === 0) {
    if (candidates.length === 1) return unknownParam(ctx, candidates[0]!, innerCode, name);
    return unsupported(ctx, name, `No searchable target of '${def.code}' has a search parameter '${innerCode}'`);
  }
  const targets: ChainTarget[] = [];
  for (const type of types) {
    const filter = parseFilter(ctx, type, chained, rawValue, name);
    if (!filter) return undefined;
    targets.push({ resourceType: type, request: { ...emptyRequest(type, ctx.options.maxCount), filters: [filter] } });
  }
  return { name, param: def.code, kind: 'chain', targets };
}

function parseToken(raw: string, modifier: string | undefined, name: string): TokenValue {
  const parts = splitUnescaped(raw, '|').map(unescapeValue);
  if (modifier === 'of-type') {
    // R4 §3.1.1.4.10 :of-type — `typeSystem|typeCode|value`; stored the same way (see extract.ts).
    if (parts.length !== 3 || parts.some((p) => p === '')) {
      throw badRequest(`'${name}' expects [type-system]|[type-code]|[value]`, name);
    }
    return { system: parts[0], code: `${parts[1]}|${parts[2]}` };
  }
  if (parts.length === 1) return { code: parts[0] };
  if (parts.length === 2 && (parts[0] !== '' || parts[1] !== '')) {
    if (parts[1] === '') return { system: parts[0] };
    // A resident ID number is searched in the form it is stored and matched in: `system|370202800315002` (15 digits)
    // or full-width digits find the same patient as its 18-digit number.
    return { system: parts[0], code: residentIdMatchForm(parts[0], parts[1]!) ?? parts[1] };
  }
  throw badRequest(`'${name}' expects [code], [system]|[code], |[code] or [system]| (escape a literal | as \\|)`, name);
}

/** R4 §3.1.1.4.11 (reference): `id` (any target type), `Type/id`, an absolute URL, or `:Type` with an id. */
function parseReference(def: SearchParamDef, typeModifier: string | undefined, raw: string, name: string): string[] {
  const value = unescapeValue(raw);
  if (ABSOLUTE_RE.test(value)) {
    // Canonical references are indexed without their |version, so the version of a search value is dropped too.
    return [normalizeReference(value.split('|')[0]!)];
  }
  const typed = TYPED_REFERENCE_RE.exec(value);
  if (typed) {
    const type = typed[1]!;
    if ((typeModifier && type !== typeModifier) || (def.targets.length > 0 && !def.targets.includes(type))) {
      throw badRequest(`'${def.code}' cannot refer to ${type} (targets: ${def.targets.join(', ')})`, name);
    }
    return [`${type}/${typed[2]}`];
  }
  if (!ID_RE.test(value)) {
    throw badRequest(`'${name}' expects an id, [type]/[id] or an absolute URL; got '${value}'`, name);
  }
  const types = typeModifier ? [typeModifier] : def.targets;
  if (types.length === 0) throw badRequest(`'${name}' needs a typed reference ([type]/[id])`, name);
  return types.map((t) => `${t}/${value}`);
}

/** Splits a leading comparison prefix (R4 §3.1.1.4); a two-letter start that is not a prefix is an error. */
function splitPrefix(raw: string, name: string): [Prefix, string] {
  const head = raw.slice(0, 2);
  if (PREFIXES.has(head)) return [head as Prefix, raw.slice(2)];
  if (/^[a-z]{2}/i.test(raw)) {
    throw badRequest(`Unknown prefix '${head}' in '${name}' (use eq, ne, gt, lt, ge, le, sa, eb or ap)`, name);
  }
  return ['eq', raw];
}

function parseDate(ctx: Context, raw: string, name: string): DateValue {
  const [prefix, text] = splitPrefix(raw, name);
  const range = parseDateRange(text, ctx.registry.timeZone);
  if (!range) {
    throw badRequest(
      `Invalid date '${text}' in '${name}': expected a real date as yyyy, yyyy-mm, yyyy-mm-dd or ` +
        `yyyy-mm-ddThh:mm[:ss][Z|(+|-)hh:mm]`,
      name,
    );
  }
  if (prefix !== 'ap') return { prefix, lo: range.lo, hi: range.hi };
  // R4 §3.1.1.4 ap: "the recommended value for the approximation is 10% … (for a date, 10% of the gap between now
  // and the date)".
  const now = (ctx.options.now ?? new Date()).getTime();
  const gap = Math.abs(now - range.lo.getTime()) * 0.1;
  return { prefix, lo: new Date(range.lo.getTime() - gap), hi: new Date(range.hi.getTime() + gap) };
}

/** Rounds away binary noise (5.4 - 0.05 = 5.3500000000000005). */
function clean(x: number): number {
  return Number(x.toPrecision(15));
}

function parseNumber(raw: string, name: string): NumberValue {
  const [prefix, text] = splitPrefix(raw, name);
  const m = NUMBER_RE.exec(text);
  if (!m) throw badRequest(`Invalid number '${text}' in '${name}'`, name);
  const value = Number(text);
  // R4 §3.1.1.4.1: the precision of the value gives its implicit range — 100 is [99.5, 100.5), 1e2 is ±50.
  const decimals = (m[1] ?? m[2] ?? '').length - Number(m[3] ?? 0);
  const half = 0.5 * 10 ** -decimals;
  // 1e400 is Infinity and 1e-400 is 0 in a double: neither may reach a database filter (an Infinity dropped the
  // connection), and no stored value is that large or that small but not zero.
  const isZero = !/[1-9]/.test(text.replace(/e.*$/i, ''));
  const magnitude = Math.abs(value);
  if (!Number.isFinite(half) || magnitude > 1e300 || (isZero ? false : magnitude < 1e-300)) {
    throw error(
      400,
      'value',
      `The number '${text.slice(0, 40)}' of '${name}' is out of range: search numbers must be finite doubles (magnitude between 1e-300 and 1e300)`,
      name,
    );
  }
  if (prefix === 'ap') {
    const delta = Math.max(Math.abs(value) * 0.1, half);
    return { prefix, value, lo: clean(value - delta), hi: clean(value + delta) };
  }
  return { prefix, value, lo: clean(value - half), hi: clean(value + half) };
}

/** R4 §3.1.1.4.6: `[prefix][number]|[system]|[code]`; `5.4||mg` matches a code or unit. */
function parseQuantity(raw: string, name: string): QuantityValue {
  const parts = splitUnescaped(raw, '|').map(unescapeValue);
  if (parts.length !== 1 && parts.length !== 3) {
    throw badRequest(`'${name}' expects [prefix][number] or [prefix][number]|[system]|[code]`, name);
  }
  const number = parseNumber(parts[0]!, name);
  const system = parts[1] || undefined;
  const code = parts[2] || undefined;
  return { ...number, ...(system !== undefined ? { system } : {}), ...(code !== undefined ? { code } : {}) };
}

// ---------------------------------------------------------------------------------------------------------------
// Result parameters

function parseCount(name: string, value: string): number {
  if (!/^\d{1,9}$/.test(value)) throw badRequest(`'${name}' must be a non-negative integer`, name);
  return Number(value);
}

function parseTotal(name: string, value: string): SearchRequest['total'] {
  // R4 §3.1.1.5.8 _total: estimate may be answered like none.
  if (value === 'accurate') return 'accurate';
  if (value === 'none' || value === 'estimate') return 'none';
  throw badRequest(`'${name}' must be none, estimate or accurate`, name);
}

/** Whether the value was used (false: ignored under lenient handling). */
function parseSummary(ctx: Context, req: SearchRequest, name: string, value: string): boolean {
  if (value === 'count' || value === 'false') {
    req.summary = value;
    return true;
  }
  if (value === 'true' || value === 'text' || value === 'data') {
    unsupported(ctx, name, `_summary=${value} is not supported (supported: count, false)`);
    return false;
  }
  throw badRequest(`'${name}' must be one of true, text, data, count, false`, name);
}

function parseElements(name: string, values: string[]): string[] {
  const elements = values.flatMap((v) => v.split(',')).map((e) => e.trim());
  const bad = elements.find((e) => !ELEMENT_RE.test(e));
  if (bad !== undefined) throw badRequest(`'${name}' expects comma-separated element names; '${bad}' is not one`, name);
  return [...new Set(elements)];
}

function parseSort(ctx: Context, req: SearchRequest, name: string, value: string): void {
  for (const item of value.split(',')) {
    const desc = item.startsWith('-');
    const code = desc ? item.slice(1) : item;
    if (code === '') throw badRequest(`'${name}' has an empty sort key`, name);
    const def = getSearchParam(ctx.registry, req.resourceType, code);
    if (!def || !def.sortable) {
      unsupported(ctx, name, `Cannot sort ${req.resourceType} by '${code}': not a supported search parameter`);
      continue;
    }
    if (req.sort.some((s) => s.param === code)) continue;
    req.sort.push({ param: code, dir: desc ? -1 : 1, field: def.sortField, kind: sortKind(def) });
  }
}

/** The BSON type of the sort key: dates and `so` numbers (number, quantity) keep their type, the rest are strings. */
function sortKind(def: SearchParamDef): SortKey['kind'] {
  if (def.type === 'date') return 'date';
  if (def.type === 'number' || def.type === 'quantity') return 'number';
  return 'string';
}

/**
 * R4 §3.1.1.5.4: `_include=[source]:[param][:target]` (or `*`) and `_revinclude=[source]:[param][:target]`;
 * `:iterate` also follows included resources. Returns whether the value was used (false: ignored under lenient
 * handling).
 */
function parseInclude(
  ctx: Context,
  req: SearchRequest,
  name: string,
  kind: '_include' | '_revinclude',
  modifier: string | undefined,
  value: string,
): boolean {
  if (modifier !== undefined && modifier !== 'iterate') {
    unsupported(ctx, name, `Modifier ':${modifier}' is not supported on ${kind} (supported: :iterate)`);
    return false;
  }
  const iterate = modifier === 'iterate';
  const parts = value === '*' ? [req.resourceType, '*'] : value.split(':');
  const [sourceType, code, targetType] = parts;
  if (parts.length < 2 || parts.length > 3 || !sourceType || !code || targetType === '') {
    throw badRequest(`'${name}' expects [type]:[parameter] or [type]:[parameter]:[target type]`, name);
  }
  if (!isSearchableType(ctx.registry, sourceType)) {
    unsupported(ctx, name, `Resource type '${sourceType}' in '${name}=${value}' is not searchable here`);
    return false;
  }
  if (kind === '_include' && !iterate && sourceType !== req.resourceType) {
    throw badRequest(
      `'${name}=${value}' must start with the searched type ${req.resourceType} (or use :iterate)`,
      name,
    );
  }
  const defs =
    code === '*' && kind === '_include'
      ? [...(ctx.registry.params.get(sourceType)?.values() ?? [])].filter((d) => d.type === 'reference')
      : [getSearchParam(ctx.registry, sourceType, code)];
  for (const def of defs) {
    if (!def || def.type !== 'reference') {
      unsupported(ctx, name, `'${code}' is not a reference search parameter of ${sourceType}`);
      return false;
    }
    if (targetType !== undefined && !def.targets.includes(targetType)) {
      throw badRequest(`'${sourceType}:${def.code}' cannot refer to ${targetType}`, name);
    }
    const searchable = def.targets.filter((t) => isSearchableType(ctx.registry, t));
    let targetTypes: string[];
    if (kind === '_include') targetTypes = targetType ? [targetType] : searchable;
    else if (iterate) targetTypes = targetType ? [targetType] : searchable;
    else {
      if (!def.targets.includes(req.resourceType) || (targetType && targetType !== req.resourceType)) {
        throw badRequest(`'${sourceType}:${def.code}' cannot refer to the searched type ${req.resourceType}`, name);
      }
      targetTypes = [req.resourceType];
    }
    const spec: IncludeSpec = { sourceType, param: def.code, field: def.field, targetTypes, iterate };
    const list = kind === '_include' ? req.include : req.revinclude;
    if (!list.some((s) => JSON.stringify(s) === JSON.stringify(spec))) list.push(spec);
  }
  return true;
}

/** Digest of the parameters that select and order matches, independent of their order in the URL. */
function fingerprint(resourceType: string, query: SearchQuery): string {
  const entries = Object.entries(query)
    .filter(([k, v]) => v !== undefined && !NON_SELECTING_PARAMS.has(k))
    .map(([k, v]) => [k, (Array.isArray(v) ? [...v] : [v!]).sort()] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash('sha256')
    .update(JSON.stringify([resourceType, entries]))
    .digest('base64url')
    .slice(0, 16);
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}
