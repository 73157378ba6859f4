/**
 * SearchRequest → MongoDB filter over the stored `sp` values (see extract.ts for their shapes), anchored on ONE
 * element of the indexed token list `tk`: the most selective single-valued equality of the search (an identifier, a
 * reference, a uri, a code …). The database answers that equality from its index and applies the rest of the filter
 * to the few documents it finds. A search without any such equality (status-like tokens do not count:
 * `Observation?status=final`) reads its type: a large type bucket by bucket, a page at a time (interactions.ts).
 *
 * Only operators FerretDB 1.24 (our development and CI database) also supports are used: plain field conditions,
 * $in, $nin, $regex, $exists, $or, $and, $not, $ne, $gt/$gte/$lt/$lte. No $elemMatch, $expr, $where or $lookup —
 * which is why dates and quantities are stored as envelopes rather than arrays of objects.
 */
import type { Document, Filter } from 'mongodb';
import { searchToken } from './extract.js';
import { getSearchParam, type SearchParamDef, type SearchRegistry } from './registry.js';
import type { DateValue, NumberValue, QuantityValue, SearchFilter, SearchRequest, TokenValue } from './request.js';
import { escapeRegex } from './text.js';

/** Runs the inner search of a chained parameter and returns the matching resources as `Type/id` references. */
export type ResolveChain = (targetType: string, inner: SearchRequest) => Promise<string[]>;

type Condition = Record<string, unknown>;

/** Matches no document; used when a value can never match (e.g. `_id=sys|x`, where ids have no system). */
const NOTHING: Condition = { _id: { $in: [] } };

export async function buildMongoFilter(
  registry: SearchRegistry,
  req: SearchRequest,
  resolveChain: ResolveChain,
): Promise<Filter<Document>> {
  const conditions: Condition[] = [{ type: req.resourceType }, { deleted: false }];
  let anchor: { rank: number; tokens: string[] } | undefined;
  for (const filter of req.filters) {
    const def = getSearchParam(registry, req.resourceType, filter.param);
    if (!def) throw new Error(`Search parameter ${req.resourceType}.${filter.param} is not in the registry`);
    const { condition, keys } = await filterCondition(def, req.resourceType, filter, resolveChain);
    conditions.push(condition);
    if (keys === undefined || keys.length > MAX_ANCHOR_VALUES || def.field !== `sp.${def.code}`) continue;
    const rank = anchorRank(def, filter);
    // A status-like token matches most of its type: no anchor (a large type is then paged bucket by bucket, see
    // interactions.ts scanPage), only a condition.
    if (rank === UNSELECTIVE_RANK) continue;
    const better = !anchor || rank < anchor.rank || (rank === anchor.rank && keys.length < anchor.tokens.length);
    if (better) anchor = { rank, tokens: keys.map((k) => searchToken(req.resourceType, def.code, k)) };
  }
  // `_id` is the primary key: no token needed.
  const byId = req.filters.some((f) => f.kind === 'token' && f.param === '_id' && !f.modifier);
  if (anchor && !byId) {
    conditions.unshift({ tk: anchor.tokens.length === 1 ? anchor.tokens[0] : { $in: anchor.tokens } });
  }
  return and(conditions) as Filter<Document>;
}

/**
 * An anchor of several values (`code=a,b`, a chain's matches) is an `$in` of their tokens, one index lookup each
 * (pushed down by our FerretDB build too); more values than this are left to the other conditions.
 */
const MAX_ANCHOR_VALUES = 100;

/** Parameters whose few values each match a large share of a type (a poor anchor when anything else is asked). */
const UNSELECTIVE = new Set(['status', 'category', 'gender', 'intent', 'priority', 'active', 'deceased', 'language']);

const UNSELECTIVE_RANK = 3;

/** Lower is more selective: identifiers, then references and uris, then codes, then status-like tokens. */
function anchorRank(def: SearchParamDef, filter: SearchFilter): number {
  if (def.code === 'identifier') return 0;
  if (filter.kind === 'reference' || filter.kind === 'chain' || filter.kind === 'uri') return 1;
  return UNSELECTIVE.has(def.code) ? UNSELECTIVE_RANK : 2;
}

/**
 * ANDs conditions, merging field conditions onto the top level when their fields do not collide (index use is the
 * same, and the filter is easier to read in logs); the rest goes into $and.
 */
export function and(conditions: Condition[]): Condition {
  const merged: Condition = {};
  const rest: Condition[] = [];
  for (const c of conditions) {
    const keys = Object.keys(c);
    if (keys.every((k) => !k.startsWith('$') && !(k in merged))) Object.assign(merged, c);
    else rest.push(c);
  }
  if (rest.length > 0) merged.$and = rest;
  return merged;
}

function or(conditions: Condition[]): Condition {
  return conditions.length === 1 ? conditions[0]! : { $or: conditions };
}

/**
 * The condition of one filter, and `keys`: when it is an exact match, the stored values (as in `tk`) of which a
 * matching resource has at least one, which makes it a candidate anchor.
 */
async function filterCondition(
  def: SearchParamDef,
  resourceType: string,
  filter: SearchFilter,
  resolveChain: ResolveChain,
): Promise<{ condition: Condition; keys?: string[] }> {
  switch (filter.kind) {
    case 'token': {
      const exact = !filter.modifier && filter.values.every((v) => v.code !== undefined);
      const keys = exact
        ? filter.values.map((v) => (v.system === undefined ? v.code! : `${v.system}|${v.code}`))
        : undefined;
      return { condition: tokenCondition(def.field, resourceType, filter.values, filter.modifier), keys };
    }
    case 'reference':
      return { condition: { [def.field]: inList(filter.values) }, keys: filter.values };
    case 'chain': {
      const refs: string[] = [];
      for (const target of filter.targets) refs.push(...(await resolveChain(target.resourceType, target.request)));
      const unique = [...new Set(refs)];
      return { condition: { [def.field]: { $in: unique } }, keys: unique };
    }
    case 'uri':
      return {
        condition: uriCondition(def.field, filter.modifier, filter.values),
        keys: filter.modifier === 'exact' ? filter.values : undefined,
      };
    default:
      return { condition: otherCondition(def, filter) };
  }
}

function otherCondition(def: SearchParamDef, filter: SearchFilter): Condition {
  const field = def.field;
  switch (filter.kind) {
    case 'missing':
      // R4 §3.1.1.5.x :missing — true: no value at all; false: at least one value.
      return { [field]: { $exists: !filter.missing } };
    case 'date':
      return or(filter.values.map((v) => dateCondition(field, v)));
    case 'number':
      return or(filter.values.map((v) => numberCondition(field, v)));
    case 'quantity':
      return or(filter.values.map((v) => quantityCondition(field, v)));
    case 'string':
      return stringCondition(field, filter.modifier, filter.values);
    default:
      throw new Error(`${filter.kind} filters are built by filterCondition`);
  }
}

function inList(values: string[]): unknown {
  return values.length === 1 ? values[0] : { $in: values };
}

/**
 * Stored tokens are `code` and `system|code` (extract.ts), so `code` and `system|code` are exact matches and
 * `system|` an anchored prefix regex (which MongoDB answers from the index). `_id` is the store's `_id` (`Type/id`).
 */
function tokenCondition(
  field: string,
  resourceType: string,
  values: TokenValue[],
  modifier: 'not' | 'of-type' | undefined,
): Condition {
  const exact: string[] = [];
  const prefixes: string[] = [];
  for (const v of values) {
    if (field === '_id') {
      if (v.code !== undefined && (v.system === undefined || v.system === '')) exact.push(`${resourceType}/${v.code}`);
    } else if (v.system === undefined) exact.push(v.code!);
    else if (v.code === undefined) prefixes.push(`^${escapeRegex(v.system)}\\|`);
    else exact.push(`${v.system}|${v.code}`);
  }
  const target = modifier === 'of-type' ? `${field}:of-type` : field;
  if (modifier === 'not') {
    // R4 §3.1.1.4.10 :not — "includes resources that have no value for the parameter", hence $nin/$not (both
    // match a missing field).
    const parts: Condition[] = [];
    if (exact.length > 0) parts.push({ [target]: { $nin: exact } });
    for (const p of prefixes) parts.push({ [target]: { $not: { $regex: p } } });
    return parts.length === 0 ? {} : and(parts);
  }
  const parts: Condition[] = [];
  if (exact.length > 0) parts.push({ [target]: inList(exact) });
  for (const p of prefixes) parts.push({ [target]: { $regex: p } });
  return parts.length === 0 ? NOTHING : or(parts);
}

/**
 * R4 §3.1.1.4.2 (date) with the search value as [a, b] and the stored envelope as [lo, hi], all inclusive:
 *   eq  the search range fully contains the target:       lo >= a and hi <= b
 *   ne  it does not:                                       lo < a or hi > b
 *   gt  the range above the search value overlaps target:  hi > b
 *   lt  the range below overlaps target:                   lo < a
 *   ge  gt or eq;  le  lt or eq
 *   sa  target starts after the search range:              lo > b
 *   eb  target ends before it:                             hi < a
 *   ap  the (widened) ranges overlap:                      lo <= b and hi >= a
 * `_lastUpdated` is a point (the store's `lastUpdated`), so lo and hi are the same field.
 */
function dateCondition(field: string, v: DateValue): Condition {
  const [loField, hiField] = field === 'lastUpdated' ? [field, field] : [`${field}.lo`, `${field}.hi`];
  const cmp = (f: string, op: string, d: Date): Condition => ({ [f]: { [op]: d } });
  const range = (a: Condition, b: Condition): Condition => mergeSameField(a, b);
  const eq = () => range(cmp(loField, '$gte', v.lo), cmp(hiField, '$lte', v.hi));
  switch (v.prefix) {
    case 'eq':
      return eq();
    case 'ne':
      return { $or: [cmp(loField, '$lt', v.lo), cmp(hiField, '$gt', v.hi)] };
    case 'gt':
      return cmp(hiField, '$gt', v.hi);
    case 'lt':
      return cmp(loField, '$lt', v.lo);
    case 'ge':
      return { $or: [cmp(hiField, '$gt', v.hi), eq()] };
    case 'le':
      return { $or: [cmp(loField, '$lt', v.lo), eq()] };
    case 'sa':
      return cmp(loField, '$gt', v.hi);
    case 'eb':
      return cmp(hiField, '$lt', v.lo);
    case 'ap':
      return range(cmp(loField, '$lte', v.hi), cmp(hiField, '$gte', v.lo));
  }
}

/** `{f: {$gte: x}}` + `{f: {$lte: y}}` → `{f: {$gte: x, $lte: y}}`; different fields are simply combined. */
function mergeSameField(a: Condition, b: Condition): Condition {
  const [fa] = Object.keys(a);
  const [fb] = Object.keys(b);
  if (fa === fb) return { [fa!]: { ...(a[fa!] as object), ...(b[fb!] as object) } };
  return { ...a, ...b };
}

/**
 * R4 §3.1.1.4.1 (number): eq/ne use the implicit precision range [lo, hi) of the search value; the other prefixes
 * compare with the value as given (sa/eb behave as gt/lt on a point value); ap uses the ±10% range.
 * With several stored values MongoDB tests each bound against any element (no $elemMatch on FerretDB); with the
 * usual single value this is exact.
 */
function numberCondition(field: string, v: NumberValue): Condition {
  switch (v.prefix) {
    case 'eq':
      return { [field]: { $gte: v.lo, $lt: v.hi } };
    case 'ne':
      return { $or: [{ [field]: { $lt: v.lo } }, { [field]: { $gte: v.hi } }] };
    case 'gt':
    case 'sa':
      return { [field]: { $gt: v.value } };
    case 'lt':
    case 'eb':
      return { [field]: { $lt: v.value } };
    case 'ge':
      return { [field]: { $gte: v.value } };
    case 'le':
      return { [field]: { $lte: v.value } };
    case 'ap':
      return { [field]: { $gte: v.lo, $lte: v.hi } };
  }
}

/** R4 §3.1.1.4.6 (quantity): the number on `.v`, the unit on `.u` (`system|code`, or `code` matching code or unit). */
function quantityCondition(field: string, v: QuantityValue): Condition {
  const value = numberCondition(`${field}.v`, v);
  const unitField = `${field}.u`;
  let unit: Condition | undefined;
  if (v.system !== undefined && v.code !== undefined) unit = { [unitField]: `${v.system}|${v.code}` };
  else if (v.code !== undefined) unit = { [unitField]: v.code };
  else if (v.system !== undefined) unit = { [unitField]: { $regex: `^${escapeRegex(v.system)}\\|` } };
  if (!unit) return value;
  return value.$or ? { $and: [value, unit] } : { ...value, ...unit };
}

/**
 * R4 §3.1.1.4.7 (string): default = starts with, ignoring case and accents (anchored regex on the normalised values,
 * index friendly); :contains anywhere in the normalised values; :exact equals an original string.
 */
function stringCondition(field: string, modifier: 'starts-with' | 'exact' | 'contains', values: string[]): Condition {
  if (modifier === 'exact') return { [`${field}:exact`]: inList(values) };
  const anchor = modifier === 'starts-with' ? '^' : '';
  return or(values.map((v) => ({ [field]: { $regex: anchor + escapeRegex(v) } })));
}

/** R4 §3.1.1.4.12 (uri): exact; :below = the stored URI starts with the value; :above = the value starts with it. */
function uriCondition(field: string, modifier: 'exact' | 'below' | 'above', values: string[]): Condition {
  if (modifier === 'below') return or(values.map((v) => ({ [field]: { $regex: `^${escapeRegex(v)}` } })));
  if (modifier === 'above') return { [field]: { $in: [...new Set(values.flatMap(uriAncestors))] } };
  return { [field]: inList(values) };
}

/** `http://h/a/b` → itself, `http://h/a`, `http://h` (path segments only; the authority is kept). */
function uriAncestors(uri: string): string[] {
  const m = /^([a-z][a-z0-9+.-]*:\/\/[^/]+)(\/.*)?$/i.exec(uri);
  if (!m) return [uri];
  const result = [uri];
  const segments = (m[2] ?? '').split('/').filter((s) => s !== '');
  for (let i = segments.length - 1; i >= 0; i--) result.push([m[1], ...segments.slice(0, i)].join('/'));
  return [...new Set(result)];
}
