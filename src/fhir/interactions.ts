import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, OperationOutcomeIssue, Resource } from 'fhir/r4';
import type { Document, Filter } from 'mongodb';
import type { AccessContext } from '../auth/tokens.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { FactProjector } from '../recognition/fact-store.js';
import type { DecisionLedger } from '../recognition/ledger.js';
import type { LedgerRollups } from '../reports/rollups.js';
import type { FederationSource } from '../reports/federated.js';
import type { FederationPort } from '../recognition/federation.js';
import type { ReuseCheckStore } from '../recognition/reuse-checks.js';
import type { AppliedWrite, Plan, ResourceStore } from '../store/resource-store.js';
import type { CurrentDoc } from '../store/models.js';
import { inChunks } from '../store/query-inventory.js';
import {
  allOk,
  badRequest,
  error,
  hasErrors,
  issue,
  methodNotAllowed,
  notFound,
  OperationOutcomeError,
  outcome,
} from './outcomes.js';
import { header, isLenient, preferReturn, type FhirRequest, type FhirResponse } from './request.js';
import {
  buildMongoFilter,
  buildSort,
  cursorFilter,
  decodeScanCursor,
  encodeCursor,
  encodeScanCursor,
  parseSearchRequest,
  scanBucket,
  SCAN_PARAM,
  searchToken,
  type ScanPosition,
  type SearchRegistry,
  type SearchRequest,
} from './search/index.js';
import { checkResidentIdentifiers } from './resident-ids.js';
import { ID_PATTERN, isClinicalType, isKnownType } from './types.js';
import type { Validator } from './validation/validator.js';

export interface FhirDeps {
  /** Seen through the caller's tenancy (scopeStore) inside a request. */
  store: ResourceStore;
  validator: Validator;
  registry: SearchRegistry;
  config: Config;
  log: Logger;
  /** Who is calling, inside a request. */
  access?: AccessContext;
  /** The recognition fact index and rules (for $reuse-check). */
  facts?: FactProjector;
  /** Where $reuse-check records its checks. */
  reuseChecks?: ReuseCheckStore;
  /** The decisions ledger ($reuse-decision, prompts of $reuse-check). */
  ledger?: DecisionLedger;
  /** The ledger summed up for reports ($evaluate-measure, /reports/savings). */
  rollups?: LedgerRollups;
  /** Other brokers of the province, asked when the local index has no reusable result (docs/federation.md). */
  federationPort?: FederationPort;
  /** This broker's and its children's report figures, for `$evaluate-measure?scope=federation`. */
  federationFigures?: FederationSource;
}

// ---- validation ----

/**
 * Checks a resource before it is accepted. FHIR R4 §3.1.0.1.2: 400 when it cannot be parsed or fails basic FHIR
 * validation, 422 when it violates a profile it claims. `where` prefixes expressions inside a Bundle.
 */
export function assertValid(deps: FhirDeps, body: unknown, expectedType: string, where?: string): Resource {
  const issues = deps.validator.validate(body, { expectedType });
  // Only a resource that is valid FHIR is looked into for ID numbers (its Identifiers are then well formed).
  if (!hasErrors(issues)) issues.push(...checkResidentIdentifiers(body as Resource, expectedType));
  if (hasErrors(issues)) {
    const located = where ? issues.map((i) => relocate(i, where)) : issues;
    const status = issues.every((i) => i.severity !== 'error' || /profile/i.test(i.diagnostics ?? '')) ? 422 : 400;
    throw new OperationOutcomeError(status, outcome(...located.filter((i) => i.severity !== 'information')));
  }
  return body as Resource;
}

function relocate(i: OperationOutcomeIssue, where: string): OperationOutcomeIssue {
  if (!i.expression) return { ...i, expression: [where] };
  return {
    ...i,
    expression: i.expression.map((e) => `${where}.${e.replace(/^[A-Z][A-Za-z]+(\.|$)/, '')}`.replace(/\.$/, '')),
  };
}

function assertType(type: string, forWrite: boolean): void {
  if (!isKnownType(type)) {
    throw notFound(`Resource type '${type}' is not supported here; see /fhir/metadata for the supported types`);
  }
  if (forWrite && !isClinicalType(type)) {
    throw methodNotAllowed(`${type} resources are defined by the broker and are read-only`, 'GET');
  }
}

function assertId(id: string, expression = 'id'): void {
  if (!ID_PATTERN.test(id)) {
    throw badRequest(`'${id}' is not a valid FHIR id (1-64 characters of A-Z, a-z, 0-9, '-' and '.')`, expression);
  }
}

// ---- responses ----

export function etag(vid: number | string): string {
  return `W/"${vid}"`;
}

export function locationOf(baseUrl: string, w: { type: string; id: string; vid: number }): string {
  return `${baseUrl}/${w.type}/${w.id}/_history/${w.vid}`;
}

function resourceResponse(req: FhirRequest, status: number, resource: Resource): FhirResponse {
  const vid = resource.meta?.versionId;
  const headers: Record<string, string> = {};
  if (vid) headers.ETag = etag(vid);
  if (resource.meta?.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  return { status, body: resource, headers };
}

/** The answer to a create/update: Location, ETag and the body the client asked for with `Prefer`. */
export function writeResponse(req: FhirRequest, w: AppliedWrite, status: number): FhirResponse {
  const headers: Record<string, string> = {
    ETag: etag(w.vid),
    'Last-Modified': w.lastUpdated.toUTCString(),
    Location: locationOf(req.baseUrl, w),
  };
  const prefer = preferReturn(req);
  if (prefer === 'minimal') return { status, headers };
  if (prefer === 'OperationOutcome') {
    const text = w.unchanged
      ? `${w.type}/${w.id} unchanged at version ${w.vid}`
      : `${w.type}/${w.id} ${w.created ? 'created' : 'updated'} as version ${w.vid}`;
    return { status, headers, body: allOk(text) };
  }
  return { status, headers, body: w.resource ?? undefined };
}

// ---- interactions ----

export async function read(req: FhirRequest, deps: FhirDeps, type: string, id: string): Promise<FhirResponse> {
  assertType(type, false);
  const resource = await deps.store.read(type, id);
  return resourceResponse(req, 200, resource);
}

export async function vread(
  req: FhirRequest,
  deps: FhirDeps,
  type: string,
  id: string,
  vid: string,
): Promise<FhirResponse> {
  assertType(type, false);
  return resourceResponse(req, 200, await deps.store.vread(type, id, vid));
}

/** Plans a create; with `ifNoneExist` (conditional create) it may find the existing resource instead. */
export async function planCreate(
  deps: FhirDeps,
  resource: Resource,
  ifNoneExist: string | undefined,
  id?: string,
): Promise<Plan & { existing?: Resource }> {
  if (ifNoneExist === undefined) return deps.store.planCreate(resource, id);
  const type = resource.resourceType;
  const query = parseQueryString(ifNoneExist, 'If-None-Exist');
  const canonical = canonicalQuery(query);
  const claim = await deps.store.claimCondition(type, canonical, () => searchIds(deps, type, query, 'If-None-Exist'));
  if (claim.existing) {
    const doc = await deps.store.findCurrent(type, claim.id);
    if (doc?.resource && !doc.deleted) {
      return { unchanged: { ...appliedOf(doc), unchanged: true }, existing: doc.resource };
    }
  }
  return deps.store.planCreate(resource, id ?? claim.id);
}

export async function create(req: FhirRequest, deps: FhirDeps, type: string): Promise<FhirResponse> {
  assertType(type, true);
  const resource = assertValid(deps, req.body, type);
  const ifNoneExist = header(req, 'if-none-exist');
  const plan = await planCreate(deps, resource, ifNoneExist);
  if ('unchanged' in plan) return writeResponse(req, plan.unchanged, 200);
  try {
    const [applied] = await deps.store.commit([plan.op]);
    return writeResponse(req, applied, 201);
  } catch (err) {
    // Refused at commit (e.g. tenancy): give the condition back so a corrected retry is served at once.
    if (ifNoneExist !== undefined) {
      await deps.store.releaseClaim(type, canonicalQuery(parseQueryString(ifNoneExist, 'If-None-Exist')), plan.op.id);
    }
    throw err;
  }
}

export async function update(req: FhirRequest, deps: FhirDeps, type: string, id: string): Promise<FhirResponse> {
  assertType(type, true);
  assertId(id, 'id');
  const resource = assertValid(deps, req.body, type);
  if (resource.id === undefined) {
    throw badRequest(`The resource must carry id '${id}' to be updated at ${type}/${id}`, `${type}.id`);
  }
  if (resource.id !== id) {
    throw badRequest(`The resource id '${resource.id}' does not match the URL id '${id}'`, `${type}.id`);
  }
  const plan = await deps.store.planUpdate(resource, id, header(req, 'if-match'));
  if ('unchanged' in plan) return writeResponse(req, plan.unchanged, 200);
  const [applied] = await deps.store.commit([plan.op]);
  return writeResponse(req, applied, applied.created ? 201 : 200);
}

/** Plans `PUT Type?query` (FHIR R4 §3.1.0.4.3): no match → create, one match → update it, several → 412. */
export async function planConditionalUpdate(
  deps: FhirDeps,
  resource: Resource,
  query: Record<string, string | string[]>,
  ifMatch: string | undefined,
  where: string,
): Promise<Plan> {
  const type = resource.resourceType;
  const canonical = canonicalQuery(query);
  const matches = await searchIds(deps, type, query, where);
  if (matches.length > 1) {
    throw new OperationOutcomeError(
      412,
      outcome(
        issue(
          'error',
          'multiple-matches',
          `The condition ${type}?${canonical} matches ${matches.length} resources`,
          where,
        ),
      ),
    );
  }
  let id = matches[0];
  let claimed = false;
  if (!id) {
    const claim = await deps.store.claimCondition(type, canonical, () => searchIds(deps, type, query, where));
    id = claim.id;
    claimed = !claim.existing;
  }
  try {
    if (resource.id !== undefined && resource.id !== id) {
      throw badRequest(
        `The resource id '${resource.id}' does not match the resource found by the condition (${id})`,
        `${type}.id`,
      );
    }
    return await deps.store.planUpdate(resource, id, ifMatch);
  } catch (err) {
    // Nothing will be written under this claim: give it back so a retry is served at once.
    if (claimed) await deps.store.releaseClaim(type, canonical, id);
    throw err;
  }
}

export async function conditionalUpdate(req: FhirRequest, deps: FhirDeps, type: string): Promise<FhirResponse> {
  assertType(type, true);
  if (Object.keys(req.query).filter((k) => !k.startsWith('_format')).length === 0) {
    throw badRequest(
      'A conditional update needs search parameters, e.g. PUT /fhir/Observation?identifier=system|value',
    );
  }
  const resource = assertValid(deps, req.body, type);
  const plan = await planConditionalUpdate(deps, resource, withoutFormat(req.query), header(req, 'if-match'), 'url');
  if ('unchanged' in plan) return writeResponse(req, plan.unchanged, 200);
  const [applied] = await deps.store.commit([plan.op]);
  return writeResponse(req, applied, applied.created ? 201 : 200);
}

export async function remove(req: FhirRequest, deps: FhirDeps, type: string, id: string): Promise<FhirResponse> {
  assertType(type, true);
  const plan = await deps.store.planDelete(type, id);
  if (plan && 'op' in plan) {
    const [applied] = await deps.store.commit([plan.op]);
    return {
      status: 200,
      body: allOk(`${type}/${id} deleted (version ${applied.vid})`),
      headers: { ETag: etag(applied.vid) },
    };
  }
  return { status: 200, body: allOk(`${type}/${id} did not exist or was already deleted`) };
}

export async function validateOperation(
  req: FhirRequest,
  deps: FhirDeps,
  type: string,
  id?: string,
): Promise<FhirResponse> {
  // A Bundle is never stored but may be checked: every entry's resource, each issue located at Bundle.entry[n].
  if (type !== 'Bundle') assertType(type, false);
  // FHIR R4 $validate: the resource comes bare or in a Parameters `resource` part; `profile` may be a parameter.
  let resource: unknown = req.body;
  let profile = typeof req.query.profile === 'string' ? req.query.profile : undefined;
  const body = req.body as {
    resourceType?: string;
    parameter?: { name: string; resource?: unknown; valueUri?: string; valueCanonical?: string }[];
  };
  if (body?.resourceType === 'Parameters' && type !== 'Parameters') {
    resource = body.parameter?.find((p) => p.name === 'resource')?.resource;
    const p = body.parameter?.find((x) => x.name === 'profile');
    profile = p?.valueUri ?? p?.valueCanonical ?? profile;
    if (resource === undefined)
      throw badRequest('The Parameters must contain a "resource" part', 'Parameters.parameter');
  }
  if (id !== undefined && (resource as { id?: string })?.id !== id) {
    throw badRequest(`The resource id does not match the URL id '${id}'`, `${type}.id`);
  }
  const issues = deps.validator.validate(resource, { expectedType: type, profiles: profile ? [profile] : undefined });
  const result = issues.length ? outcome(...issues) : allOk('No issues found: the resource is valid');
  // $validate returns 200 with the outcome even when the resource is invalid (FHIR R4 Resource-validate).
  return { status: 200, body: result };
}

// ---- search ----

/** Ids (as `Type/id`) of the resources matching a query: used by conditional interactions and chains. */
export async function searchIds(
  deps: FhirDeps,
  type: string,
  query: Record<string, string | string[]>,
  where: string,
): Promise<string[]> {
  let req: SearchRequest;
  try {
    req = parseSearchRequest(
      deps.registry,
      type,
      { ...query, _count: '3' },
      { lenient: false, defaultCount: 3, maxCount: 3 },
    );
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      throw new OperationOutcomeError(
        err.status,
        outcome(...err.outcome.issue.map((i) => ({ ...i, expression: [where, ...(i.expression ?? [])] }))),
      );
    }
    throw err;
  }
  const filter = await buildMongoFilter(deps.registry, req, (t, inner) => resolveChain(deps, t, inner));
  const docs = await deps.store.find(filter, { _id: 1 }, 3);
  return docs.map((d) => d.id);
}

const MAX_CHAIN_MATCHES = 1000;

async function resolveChain(deps: FhirDeps, targetType: string, inner: SearchRequest): Promise<string[]> {
  const filter = await buildMongoFilter(deps.registry, inner, (t, i) => resolveChain(deps, t, i));
  // Chains are bounded: a chain matching more resources than this is refused rather than silently truncated.
  const docs = await deps.store.find(filter, { _id: 1 }, MAX_CHAIN_MATCHES + 1);
  if (docs.length > MAX_CHAIN_MATCHES) {
    throw error(
      400,
      'too-costly',
      `A chained parameter on ${targetType} matches more than ${MAX_CHAIN_MATCHES} resources; make it more specific (e.g. an identifier)`,
    );
  }
  return docs.map((d) => `${targetType}/${d.id}`);
}

export async function search(
  req: FhirRequest,
  deps: FhirDeps,
  type: string,
  query: Record<string, string | string[]>,
): Promise<FhirResponse> {
  assertType(type, false);
  const params = withoutFormat(query);
  const parsed = parseSearchRequest(deps.registry, type, params, {
    lenient: isLenient(req),
    defaultCount: deps.config.defaultPageSize,
    maxCount: deps.config.maxPageSize,
  });
  const filter = await buildMongoFilter(deps.registry, parsed, (t, inner) => resolveChain(deps, t, inner));
  const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset', link: [] };
  // Links carry the parameters actually used (R4 §3.1.1.1), so following next needs no `Prefer: handling=lenient`.
  const used = parsed.cursor ? { ...parsed.used, _cursor: parsed.cursor } : parsed.used;
  bundle.link!.push({ relation: 'self', url: `${req.baseUrl}/${type}${toQueryString(used)}` });

  if (parsed.total === 'accurate' || parsed.summary === 'count' || parsed.count === 0) {
    bundle.total = await deps.store.count(filter);
  }
  if (parsed.summary !== 'count' && parsed.count > 0) {
    const scan = await scanStart(deps, parsed, filter);
    const { page, next } = scan ? await scanPage(deps, parsed, filter, scan) : await keysetPage(deps, parsed, filter);
    if (next) {
      bundle.link!.push({
        relation: 'next',
        url: `${req.baseUrl}/${type}${toQueryString({ ...parsed.used, _cursor: next })}`,
      });
    }
    const entries = page.map((d) => entryOf(req.baseUrl, d, 'match'));
    const included = await includes(deps, parsed, page);
    const seen = new Set(page.map((d) => d._id));
    for (const d of included) {
      if (seen.has(d._id)) continue;
      seen.add(d._id);
      entries.push(entryOf(req.baseUrl, d, 'include'));
    }
    // FHIR R4 json.html: an array is never empty; a search that found nothing has no `entry` at all.
    if (entries.length) bundle.entry = entries;
  }
  if (parsed.ignored.length) {
    // A searchset entry needs a fullUrl (bdl-7 and the R4 Bundle rules); the outcome has no server id: a UUID names it.
    bundle.entry = [
      ...(bundle.entry ?? []),
      { fullUrl: `urn:uuid:${randomUUID()}`, resource: outcome(...parsed.ignored), search: { mode: 'outcome' } },
    ];
  }
  return { status: 200, body: bundle };
}

/** One page in the search's sort order (`_id` unless `_sort`), after the cursor's sort values. */
async function keysetPage(
  deps: FhirDeps,
  parsed: SearchRequest,
  filter: Filter<Document>,
): Promise<{ page: CurrentDoc[]; next?: string }> {
  const pageFilter = parsed.cursor ? { $and: [filter, cursorFilter(parsed, parsed.cursor)] } : filter;
  const docs = await deps.store.find(pageFilter, buildSort(parsed), parsed.count + 1);
  const page = docs.slice(0, parsed.count);
  return { page, next: docs.length > parsed.count ? encodeCursor(parsed, page[page.length - 1]!) : undefined };
}

/**
 * A search with nothing selective to anchor on (`Observation?status=final`) reads every resource of its type the
 * filter does not exclude, and the database sorts them for each page: fine for a few hundred, a timeout for a city's
 * million. Over a large type such a search (without `_sort`) pages through the type's scan buckets (extract.ts,
 * scanBucket) instead, in bucket order and `_id` order within a bucket: each query reads one bucket (an index
 * lookup of its token), about SCAN_BUCKET_SIZE documents (FerretDB decodes each: about 1 ms apiece, and the page is
 * sorted after), and a page reads at most SCAN_BUCKETS_PER_PAGE buckets.
 * A page can hold fewer matches than `_count` (none, when the matches are rare); its next link goes on from there.
 */
const SCAN_BUCKET_SIZE = 256;
const SCAN_BUCKETS_PER_PAGE = 4;

/** Where a bucket-by-bucket scan starts (or goes on), or undefined when the search pages by its sort keys. */
async function scanStart(
  deps: FhirDeps,
  parsed: SearchRequest,
  filter: Filter<Document>,
): Promise<ScanPosition | undefined> {
  if (parsed.cursor) return decodeScanCursor(parsed, parsed.cursor);
  if (parsed.sort.length > 0 || 'tk' in filter || '_id' in filter) return undefined;
  const size = await typeSize(deps, parsed.resourceType);
  if (size <= SCAN_BUCKET_SIZE) return undefined;
  return { level: [1, 2, 3].find((l) => size / 16 ** l <= SCAN_BUCKET_SIZE) ?? 3, bucket: 0 };
}

const TYPE_SIZE_TTL_MS = 10 * 60_000;

/**
 * How many resources a type holds, estimated from its scan buckets and remembered for 10 minutes: all of the type,
 * not only what the caller may read, since reading the type at once would go through all of it. One bucket of 4 096
 * first; when it holds few (a type of tens of thousands at most, where one bucket is a poor sample: 1 where 5 were
 * expected took 16 k Observations for 4 k), one bucket of 256.
 */
async function typeSize(deps: FhirDeps, type: string): Promise<number> {
  const known = deps.store.typeSizes.get(type);
  if (known && Date.now() - known.at < TYPE_SIZE_TTL_MS) return known.size;
  const fine = await deps.store.countToken(type, searchToken(type, SCAN_PARAM, '000'), 4096);
  const size =
    fine >= 16 ? fine * 4096 : (await deps.store.countToken(type, searchToken(type, SCAN_PARAM, '00'), 4096)) * 256;
  deps.store.typeSizes.set(type, { size, at: Date.now() });
  return size;
}

async function scanPage(
  deps: FhirDeps,
  parsed: SearchRequest,
  filter: Filter<Document>,
  from: ScanPosition,
): Promise<{ page: CurrentDoc[]; next?: string }> {
  const { level } = from;
  const buckets = 16 ** level;
  let { bucket, afterId } = from;
  const found: CurrentDoc[] = [];
  for (let read = 0; bucket < buckets && read < SCAN_BUCKETS_PER_PAGE; read++) {
    const token = searchToken(parsed.resourceType, SCAN_PARAM, bucket.toString(16).padStart(level, '0'));
    const conditions: Document[] = [{ tk: token }, filter];
    if (afterId) conditions.push({ _id: { $gt: afterId } });
    found.push(...(await deps.store.find({ $and: conditions }, { _id: 1 }, parsed.count + 1 - found.length)));
    if (found.length > parsed.count) break;
    bucket++;
    afterId = undefined;
  }
  if (found.length > parsed.count) {
    const page = found.slice(0, parsed.count);
    const last = page[page.length - 1]!;
    const at = { level, bucket: parseInt(scanBucket(last.id, level), 16), afterId: last._id };
    return { page, next: encodeScanCursor(parsed, at) };
  }
  return { page: found, next: bucket < buckets ? encodeScanCursor(parsed, { level, bucket }) : undefined };
}

function entryOf(baseUrl: string, d: CurrentDoc, mode: 'match' | 'include'): BundleEntry {
  return { fullUrl: `${baseUrl}/${d.type}/${d.id}`, resource: d.resource ?? undefined, search: { mode } };
}

/** How many rounds of `:iterate` are followed after the first (R4 §3.1.1.5.4 lets servers limit iteration). */
const MAX_INCLUDE_ITERATIONS = 3;

/**
 * `_include` follows references out of the page; `_revinclude` finds resources that point into it. The `:iterate`
 * forms apply again to what was included (R4 §3.1.1.5.4), round by round until nothing new is found.
 */
async function includes(deps: FhirDeps, parsed: SearchRequest, page: CurrentDoc[]): Promise<CurrentDoc[]> {
  const out: CurrentDoc[] = [];
  const seen = new Set(page.map((d) => d._id));
  let sources = page;
  for (let round = 0; sources.length > 0 && round <= MAX_INCLUDE_ITERATIONS; round++) {
    const found: CurrentDoc[] = [];
    for (const inc of parsed.include) {
      if (round > 0 && !inc.iterate) continue;
      const refs = new Set<string>();
      for (const d of sources) {
        if (d.type !== inc.sourceType) continue;
        for (const ref of asArray(d.sp[inc.param])) {
          if (typeof ref !== 'string') continue;
          if (inc.targetTypes.length === 0 || inc.targetTypes.includes(ref.split('/')[0])) refs.add(ref);
        }
      }
      found.push(...(await deps.store.findByRefs([...refs].filter((r) => !seen.has(r)))));
    }
    for (const rev of parsed.revinclude) {
      if (round > 0 && !rev.iterate) continue;
      const refs = sources
        .filter((d) => rev.targetTypes.length === 0 || rev.targetTypes.includes(d.type))
        .map((d) => `${d.type}/${d.id}`);
      // An `$in` of the page's tokens (an index lookup per token), one query per IN_CHUNK of them.
      const tokens = refs.map((ref) => searchToken(rev.sourceType, rev.param, ref));
      let room = deps.config.maxPageSize;
      for (const chunk of inChunks(tokens)) {
        if (room <= 0) break;
        const docs = await deps.store.find(
          { tk: chunk.length === 1 ? chunk[0] : { $in: chunk }, type: rev.sourceType, deleted: false },
          { _id: 1 },
          room,
        );
        found.push(...docs);
        room -= docs.length;
      }
    }
    sources = [];
    for (const d of found) {
      if (seen.has(d._id)) continue;
      seen.add(d._id);
      out.push(d);
      sources.push(d);
    }
  }
  return out;
}

const asArray = (v: unknown): unknown[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

// ---- history ----

export async function history(req: FhirRequest, deps: FhirDeps, type?: string, id?: string): Promise<FhirResponse> {
  if (type) assertType(type, false);
  const count = boundedCount(req.query._count, deps.config);
  let since: Date | undefined;
  if (typeof req.query._since === 'string') {
    since = new Date(req.query._since);
    if (Number.isNaN(since.getTime()) || !/^\d{4}-\d{2}-\d{2}T/.test(req.query._since)) {
      throw badRequest(
        `_since must be an instant such as 2024-03-05T10:00:00+08:00, got '${req.query._since}'`,
        '_since',
      );
    }
  }
  let cursor: { t: number; k: string } | undefined;
  if (typeof req.query._cursor === 'string') {
    try {
      cursor = JSON.parse(Buffer.from(req.query._cursor, 'base64url').toString()) as { t: number; k: string };
      if (!Number.isFinite(cursor.t) || typeof cursor.k !== 'string') throw new Error('shape');
    } catch {
      throw badRequest(
        'The _cursor parameter is not one this server issued; start again from the first page',
        '_cursor',
      );
    }
  }
  if (type && id) {
    const exists = await deps.store.findCurrent(type, id);
    if (!exists) throw notFound(`${type}/${id} is not known`);
  }
  // System history lists the data the broker holds; the audit trail has its own search (AuditEvent).
  const page = await deps.store.history(
    { type, id, excludeTypes: type ? undefined : ['AuditEvent'] },
    { count, since, cursor },
  );
  const path = [type, id, '_history'].filter(Boolean).join('/');
  const keep = withoutFormat(req.query);
  delete keep._cursor;
  const bundle: Bundle = {
    resourceType: 'Bundle',
    type: 'history',
    link: [{ relation: 'self', url: `${req.baseUrl}/${path}${toQueryString(withoutFormat(req.query))}` }],
  };
  // FHIR R4 json.html: an array is never empty; an empty history page has no `entry` at all.
  if (page.entries.length) {
    bundle.entry = page.entries.map((h) => ({
      fullUrl: `${req.baseUrl}/${h.type}/${h.id}`,
      resource: h.resource ?? undefined,
      request: { method: h.method, url: h.method === 'POST' ? h.type : `${h.type}/${h.id}` },
      response: {
        status: h.method === 'POST' ? '201 Created' : h.method === 'DELETE' ? '204 No Content' : '200 OK',
        etag: etag(h.vid),
        lastModified: h.lastUpdated.toISOString(),
      },
    }));
  }
  if (page.next)
    bundle.link!.push({
      relation: 'next',
      url: `${req.baseUrl}/${path}${toQueryString({ ...keep, _cursor: page.next })}`,
    });
  return { status: 200, body: bundle };
}

function boundedCount(raw: unknown, config: Config): number {
  if (raw === undefined) return config.defaultPageSize;
  const n = Number(raw);
  if (typeof raw !== 'string' || !Number.isInteger(n) || n < 1) {
    throw badRequest(`_count must be a positive whole number, got '${String(raw)}'`, '_count');
  }
  return Math.min(n, config.maxPageSize);
}

// ---- query helpers ----

export function parseQueryString(qs: string, expression: string): Record<string, string | string[]> {
  const trimmed = qs.replace(/^.*\?/, '');
  if (!trimmed)
    throw badRequest(`${expression} must contain search parameters, e.g. identifier=system|value`, expression);
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(trimmed)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

/** A stable text for a condition, so that equal conditions written differently claim the same key. */
export function canonicalQuery(query: Record<string, string | string[]>): string {
  return Object.keys(query)
    .sort()
    .flatMap((k) =>
      asArray(query[k])
        .map((v) => `${k}=${String(v)}`)
        .sort(),
    )
    .join('&');
}

function withoutFormat(query: Record<string, string | string[]>): Record<string, string | string[]> {
  const { _format: _f, _pretty: _p, ...rest } = query;
  return rest;
}

export function toQueryString(query: Record<string, string | string[]>): string {
  const usp = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) for (const one of asArray(v)) usp.append(k, String(one));
  const s = usp.toString();
  return s ? `?${s}` : '';
}

function appliedOf(doc: CurrentDoc): AppliedWrite {
  return {
    type: doc.type,
    id: doc.id,
    vid: doc.vid,
    lastUpdated: doc.lastUpdated,
    resource: doc.resource,
    method: 'POST',
    created: false,
  };
}
