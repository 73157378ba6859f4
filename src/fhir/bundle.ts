import type { Bundle, BundleEntry, BundleEntryResponse, Resource } from 'fhir/r4';
import type { CurrentDoc, WriteOp } from '../store/models.js';
import type { AppliedWrite } from '../store/resource-store.js';
import {
  assertValid,
  canonicalQuery,
  etag,
  locationOf,
  parseQueryString,
  planCreate,
  searchIds,
  type FhirDeps,
} from './interactions.js';
import { badRequest, error, OperationOutcomeError, outcome, tooLarge } from './outcomes.js';
import { pathSegments, preferReturn, type FhirRequest, type FhirResponse } from './request.js';
import { ID_PATTERN, isClinicalType, isKnownType } from './types.js';

type Dispatch = (req: FhirRequest) => Promise<FhirResponse>;

/** How many of a transaction's conditional creates are planned at once. */
const PLANNING_CONCURRENCY = 8;

type Settled<R> = { ok: true; value: R } | { ok: false; reason: unknown };

/**
 * `fn` over `items` in their order with at most `limit` calls under way. Once a call has failed no further one is
 * started (those are left undefined); every call started has settled when this returns, so whatever the ones that
 * succeeded took (a claim) can be given back.
 */
async function settleInOrder<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<(Settled<R> | undefined)[]> {
  const out: (Settled<R> | undefined)[] = new Array<Settled<R> | undefined>(items.length).fill(undefined);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = { ok: true, value: await fn(items[i]!) };
      } catch (reason) {
        out[i] = { ok: false, reason };
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

interface ParsedEntry {
  index: number;
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  type: string;
  id?: string;
  query?: Record<string, string | string[]>;
  resource?: Resource;
  fullUrl?: string;
  entry: BundleEntry;
}

const STATUS_TEXT: Record<number, string> = { 200: '200 OK', 201: '201 Created', 204: '204 No Content' };
const statusLine = (s: number) => STATUS_TEXT[s] ?? String(s);

/** `POST /fhir` with a Bundle of type transaction or batch (FHIR R4 §3.1.0.11). */
export async function processBundle(req: FhirRequest, deps: FhirDeps, dispatch: Dispatch): Promise<FhirResponse> {
  const body = req.body as Bundle;
  if (!body || typeof body !== 'object' || (body as { resourceType?: unknown }).resourceType !== 'Bundle') {
    throw badRequest('POST to the FHIR base expects a Bundle of type transaction or batch', 'resourceType');
  }
  if (body.type !== 'transaction' && body.type !== 'batch') {
    throw badRequest(`Bundle.type must be 'transaction' or 'batch', got '${String(body.type)}'`, 'Bundle.type');
  }
  if (body.entry !== undefined && !Array.isArray(body.entry))
    throw badRequest('Bundle.entry must be an array', 'Bundle.entry');
  const entries = body.entry ?? [];
  if (entries.length > deps.config.maxBundleEntries) {
    throw tooLarge(
      `The Bundle has ${entries.length} entries; at most ${deps.config.maxBundleEntries} are accepted per request`,
    );
  }
  return body.type === 'transaction' ? transaction(req, deps, entries, dispatch) : batch(req, deps, entries, dispatch);
}

function parseEntry(entry: BundleEntry, index: number): ParsedEntry {
  const where = `Bundle.entry[${index}]`;
  if (!entry || typeof entry !== 'object' || Array.isArray(entry)) {
    throw badRequest('Each Bundle entry must be an object', where);
  }
  // The Bundle itself is not checked against the schema (its entries' resources are): the fields read here are.
  const request = entry.request as unknown;
  if (request !== undefined && (request === null || typeof request !== 'object' || Array.isArray(request))) {
    throw badRequest('request must be an object with method and url', `${where}.request`);
  }
  for (const field of ['ifNoneExist', 'ifMatch', 'ifNoneMatch', 'ifModifiedSince'] as const) {
    const value = entry.request?.[field] as unknown;
    if (value !== undefined && typeof value !== 'string') {
      throw badRequest(`request.${field} must be a string`, `${where}.request.${field}`);
    }
  }
  if (entry.fullUrl !== undefined && typeof entry.fullUrl !== 'string') {
    throw badRequest('fullUrl must be a string', `${where}.fullUrl`);
  }
  const resource = entry.resource as unknown;
  if (resource !== undefined && (resource === null || typeof resource !== 'object' || Array.isArray(resource))) {
    throw badRequest('resource must be a FHIR resource (a JSON object)', `${where}.resource`);
  }
  const method = entry.request?.method;
  const url = entry.request?.url;
  if (typeof method !== 'string' || !['GET', 'POST', 'PUT', 'DELETE'].includes(method)) {
    throw badRequest(
      `request.method must be GET, POST, PUT or DELETE, got '${String(method)}'`,
      `${where}.request.method`,
    );
  }
  if (typeof url !== 'string' || !url) throw badRequest('request.url is required', `${where}.request.url`);
  const [path, qs] = url.replace(/^\//, '').split('?', 2) as [string, string | undefined];
  const segments = path.split('/').filter(Boolean);
  const type = segments[0] ?? '';
  const parsed: ParsedEntry = { index, method: method as ParsedEntry['method'], type, entry, fullUrl: entry.fullUrl };
  if (segments[1] !== undefined) parsed.id = segments[1];
  if (qs) parsed.query = parseQueryString(qs, `${where}.request.url`);
  if (method === 'POST' || method === 'PUT') {
    if (!entry.resource) throw badRequest(`A ${method} entry needs a resource`, `${where}.resource`);
    parsed.resource = entry.resource;
  }
  if (method !== 'GET') {
    if (!isKnownType(type)) throw badRequest(`Resource type '${type}' is not supported`, `${where}.request.url`);
    if (!isClinicalType(type)) throw badRequest(`${type} resources are read-only`, `${where}.request.url`);
    if (parsed.resource && parsed.resource.resourceType !== type) {
      throw badRequest(
        `request.url names ${type} but the resource is a ${String(parsed.resource.resourceType)}`,
        `${where}.resource.resourceType`,
      );
    }
    if (parsed.id !== undefined && !ID_PATTERN.test(parsed.id))
      throw badRequest(`'${parsed.id}' is not a valid id`, `${where}.request.url`);
    if (method === 'POST' && (parsed.id !== undefined || parsed.query)) {
      throw badRequest(
        'A POST entry url is the bare type; use ifNoneExist for a conditional create',
        `${where}.request.url`,
      );
    }
    if ((method === 'PUT' || method === 'DELETE') && parsed.id === undefined && !parsed.query) {
      throw badRequest(`A ${method} entry url must be Type/id or Type?search`, `${where}.request.url`);
    }
  }
  return parsed;
}

/**
 * All or nothing. Every entry is checked and planned first (validation, conditional matches, ids, references);
 * only then is the whole set accepted as ONE ingest-log document and projected. Nothing is written when any entry
 * fails.
 */
async function transaction(
  req: FhirRequest,
  deps: FhirDeps,
  raw: BundleEntry[],
  dispatch: Dispatch,
): Promise<FhirResponse> {
  const entries = raw.map(parseEntry);
  const fullUrls = new Set<string>();
  for (const e of entries) {
    if (e.resource) e.resource = assertValid(deps, e.resource, e.type, `Bundle.entry[${e.index}].resource`);
    if (e.fullUrl) {
      if (fullUrls.has(e.fullUrl))
        throw badRequest(`fullUrl ${e.fullUrl} appears twice`, `Bundle.entry[${e.index}].fullUrl`);
      fullUrls.add(e.fullUrl);
    }
  }

  // FHIR R4 §3.1.0.11.2 processing order: DELETE, POST, PUT, GET.
  const order = { DELETE: 0, POST: 1, PUT: 2, GET: 3 } as const;
  const sorted = [...entries].sort((a, b) => order[a.method] - order[b.method] || a.index - b.index);
  const results = new Map<number, { applied?: AppliedWrite; opIndex?: number; status: number }>();
  const ops: WriteOp[] = [];
  const touched = new Set<string>();
  const idFor = new Map<string, string>(); // fullUrl → Type/id
  const touch = (e: ParsedEntry, ref: string) => {
    if (touched.has(ref)) throw badRequest(`${ref} is changed by more than one entry`, `Bundle.entry[${e.index}]`);
    touched.add(ref);
  };
  // Conditions claimed for resources this bundle creates: given back if the bundle is refused, so that the corrected
  // bundle is not kept waiting for claims of resources that were never written.
  const claims: { type: string; condition: string; id: string }[] = [];
  // A condition used twice would make the second entry wait for the first one's claim, which only a commit settles.
  const conditions = new Map<string, number>();
  const useCondition = (e: ParsedEntry, condition: string, expression: string) => {
    const key = `${e.type}?${condition}`;
    const other = conditions.get(key);
    if (other !== undefined) {
      throw badRequest(
        `Entries ${other} and ${e.index} both use the condition ${key}; use it in one entry`,
        expression,
      );
    }
    conditions.set(key, e.index);
  };

  /** `PUT Type?query` (FHIR R4 §3.1.0.4.3): the one match, or a claimed new id when none; several → 412. */
  async function resolveConditionalTarget(e: ParsedEntry): Promise<string> {
    const where = `Bundle.entry[${e.index}].request.url`;
    const condition = canonicalQuery(e.query!);
    useCondition(e, condition, where);
    const search = () => searchIds(deps, e.type, e.query!, where);
    const matches = await search();
    if (matches.length > 1) {
      throw error(
        412,
        'multiple-matches',
        `The condition ${e.type}?${condition} matches ${matches.length} resources`,
        where,
      );
    }
    if (matches.length === 1) return matches[0];
    const claim = await deps.store.claimCondition(e.type, condition, search);
    if (!claim.existing) claims.push({ type: e.type, condition, id: claim.id });
    return claim.id;
  }

  try {
    // 1. ids for new resources, so that references between entries can be resolved.
    // Conditional creates are planned several at once (each is a search and a claim: round trips to wait for, not
    // work), so a transaction of many waits for about one; the first failing entry in processing order is reported.
    const creates = new Map<number, Awaited<ReturnType<typeof planCreate>>>();
    const posts = sorted.filter((x) => x.method === 'POST');
    const conditionOf = posts.map((e) => {
      const ifNoneExist = e.entry.request?.ifNoneExist;
      const expression = `Bundle.entry[${e.index}].request.ifNoneExist`;
      const condition =
        ifNoneExist === undefined ? undefined : canonicalQuery(parseQueryString(ifNoneExist, expression));
      if (condition !== undefined) useCondition(e, condition, expression);
      return condition;
    });
    const planned = await settleInOrder(posts, PLANNING_CONCURRENCY, (e) =>
      planCreate(deps, e.resource!, e.entry.request?.ifNoneExist).catch(rethrowAt(e)),
    );
    posts.forEach((e, i) => {
      const plan = planned[i];
      const condition = conditionOf[i];
      if (plan?.ok && condition !== undefined && 'op' in plan.value) {
        claims.push({ type: e.type, condition, id: plan.value.op.id });
      }
    });
    const failed = planned.find((p) => p && !p.ok);
    if (failed && !failed.ok) throw failed.reason;
    posts.forEach((e, i) => {
      const plan = planned[i]!;
      if (!plan.ok) return;
      creates.set(e.index, plan.value);
      const ref = 'op' in plan.value ? `${e.type}/${plan.value.op.id}` : `${e.type}/${plan.value.unchanged.id}`;
      if (e.fullUrl) idFor.set(e.fullUrl, ref);
    });
    // PUT Type/id entries keep their id; their fullUrl may be referenced too.
    for (const e of entries) if (e.method === 'PUT' && e.id && e.fullUrl) idFor.set(e.fullUrl, `${e.type}/${e.id}`);
    // PUT Type?search entries: the resource they update or create, found before references are rewritten, so that
    // other entries may reference them by fullUrl as well (FHIR R4 §3.1.0.11.2).
    const targets = new Map<number, string>();
    for (const e of sorted.filter((x) => x.method === 'PUT' && x.id === undefined)) {
      const id = await resolveConditionalTarget(e);
      targets.set(e.index, id);
      if (e.fullUrl) idFor.set(e.fullUrl, `${e.type}/${id}`);
    }

    // 2. rewrite urn:uuid and conditional references, then check again what they now point to: a profile's
    // Reference(Organization) cannot be checked on a urn:uuid.
    for (const e of entries) {
      if (e.resource && (await rewriteReferences(deps, e, idFor))) {
        assertValid(deps, e.resource, e.type, `Bundle.entry[${e.index}].resource`);
      }
    }

    // 3. plan every write. The plans of updates (each reads its resource's current version) are read at once, and
    // taken in processing order below, so the first failing entry is still the one reported.
    // Their current versions are read with one query for all of them.
    const puts = sorted.filter((x) => x.method === 'PUT');
    const known = new Map(
      (await deps.store.findCurrentMany(puts.map((e) => `${e.type}/${e.id ?? targets.get(e.index)!}`))).map((d) => [
        d._id,
        d,
      ]),
    );
    const putPlans = new Map<number, Promise<Awaited<ReturnType<typeof planPut>>>>();
    for (const e of puts) {
      const id = e.id ?? targets.get(e.index)!;
      const plan = planPut(deps, e, id, e.entry.request?.ifMatch, known.get(`${e.type}/${id}`) ?? null).catch(
        rethrowAt(e),
      );
      plan.catch(() => undefined); // awaited in order below; not an unhandled rejection meanwhile
      putPlans.set(e.index, plan);
    }
    for (const e of sorted) {
      const where = `Bundle.entry[${e.index}]`;
      if (e.method === 'DELETE') {
        const ids = e.id ? [e.id] : await searchIds(deps, e.type, e.query!, `${where}.request.url`);
        if (ids.length > 1)
          throw error(412, 'multiple-matches', `The condition matches ${ids.length} resources`, `${where}.request.url`);
        if (ids.length === 0) {
          results.set(e.index, { status: 204 });
          continue;
        }
        touch(e, `${e.type}/${ids[0]}`);
        const plan = await deps.store.planDelete(e.type, ids[0]);
        if (plan && 'op' in plan) results.set(e.index, { opIndex: ops.push(plan.op) - 1, status: 204 });
        else results.set(e.index, { status: 204 });
      } else if (e.method === 'POST') {
        const plan = creates.get(e.index)!;
        if ('unchanged' in plan) {
          results.set(e.index, { applied: plan.unchanged, status: 200 });
        } else {
          plan.op.resource = { ...e.resource!, id: plan.op.id } as Resource;
          touch(e, `${e.type}/${plan.op.id}`);
          results.set(e.index, { opIndex: ops.push(plan.op) - 1, status: 201 });
        }
      } else if (e.method === 'PUT') {
        const plan = await putPlans.get(e.index)!;
        if ('unchanged' in plan) {
          results.set(e.index, { applied: plan.unchanged, status: 200 });
        } else {
          touch(e, `${e.type}/${plan.op.id}`);
          results.set(e.index, { opIndex: ops.push(plan.op) - 1, status: plan.op.prevVid === 0 ? 201 : 200 });
        }
      }
    }
  } catch (err) {
    for (const c of claims) await deps.store.releaseClaim(c.type, c.condition, c.id);
    throw err;
  }

  // 4. accept all at once, then answer in the order of the request.
  let applied: AppliedWrite[];
  try {
    applied = await deps.store.commit(ops);
  } catch (err) {
    // Refused at commit (tenancy, a lost If-Match race): nothing was written under the claims.
    for (const c of claims) await deps.store.releaseClaim(c.type, c.condition, c.id);
    throw err;
  }
  const responseEntries: BundleEntry[] = [];
  for (const e of entries) {
    if (e.method === 'GET') {
      responseEntries.push(toEntry(req, await runEntry(req, e, dispatch)));
      continue;
    }
    const r = results.get(e.index)!;
    const w = r.opIndex !== undefined ? applied[r.opIndex] : r.applied;
    const status = r.opIndex !== undefined && w ? (w.created ? 201 : r.status === 204 ? 204 : 200) : r.status;
    responseEntries.push(writeEntry(req, w, status));
  }
  const bundle: Bundle = { resourceType: 'Bundle', type: 'transaction-response', entry: responseEntries };
  return { status: 200, body: bundle };
}

/**
 * The single-resource interactions name the header a problem is in (If-None-Exist, If-Match); inside a bundle, the
 * element of the entry to fix is named instead.
 */
function rethrowAt(e: ParsedEntry): (err: unknown) => never {
  const elements: Record<string, string> = {
    'If-None-Exist': `Bundle.entry[${e.index}].request.ifNoneExist`,
    'If-Match': `Bundle.entry[${e.index}].request.ifMatch`,
  };
  return (err) => {
    if (!(err instanceof OperationOutcomeError)) throw err;
    const issues = err.outcome.issue.map((i) =>
      i.expression ? { ...i, expression: i.expression.map((x) => elements[x] ?? x) } : i,
    );
    throw new OperationOutcomeError(err.status, outcome(...issues), err.headers);
  };
}

async function planPut(
  deps: FhirDeps,
  e: ParsedEntry,
  id: string,
  ifMatch: string | undefined,
  known: CurrentDoc | null,
) {
  if (e.id !== undefined && e.resource!.id !== e.id) {
    throw badRequest(
      `The resource id '${String(e.resource!.id)}' does not match request.url id '${e.id}'`,
      `Bundle.entry[${e.index}].resource.id`,
    );
  }
  if (e.id === undefined && e.resource!.id !== undefined && e.resource!.id !== id) {
    throw badRequest(
      `The resource id '${e.resource!.id}' does not match the resource found by the condition (${id})`,
      `Bundle.entry[${e.index}].resource.id`,
    );
  }
  return deps.store.planUpdate(e.resource!, id, ifMatch, known);
}

function writeEntry(req: FhirRequest, w: AppliedWrite | undefined, status: number): BundleEntry {
  if (!w) return { response: { status: statusLine(status) } };
  const response: BundleEntryResponse = {
    status: statusLine(status),
    etag: etag(w.vid),
    lastModified: w.lastUpdated.toISOString(),
  };
  if (w.method !== 'DELETE') response.location = locationOf(req.baseUrl, w);
  const entry: BundleEntry = { response };
  if (w.resource) {
    entry.fullUrl = `${req.baseUrl}/${w.type}/${w.id}`;
    if (preferReturn(req) === 'representation') entry.resource = w.resource;
  }
  return entry;
}

/**
 * Replaces references to other entries' fullUrls (urn:uuid:…) and conditional references (`Type?query`). Returns
 * whether any reference was replaced.
 */
async function rewriteReferences(deps: FhirDeps, e: ParsedEntry, idFor: Map<string, string>): Promise<boolean> {
  const pending: { holder: { reference?: string }; ref: string; at: string }[] = [];
  const walk = (node: unknown, at: string) => {
    if (Array.isArray(node)) node.forEach((child, i) => walk(child, `${at}[${i}]`));
    else if (node && typeof node === 'object') {
      const holder = node as { reference?: unknown };
      if (typeof holder.reference === 'string')
        pending.push({ holder: holder as { reference?: string }, ref: holder.reference, at });
      for (const [key, child] of Object.entries(node)) walk(child, `${at}.${key}`);
    }
  };
  walk(e.resource, `Bundle.entry[${e.index}].resource`);
  let changed = false;
  for (const { holder, ref, at } of pending) {
    const mapped = idFor.get(ref);
    if (mapped) {
      holder.reference = mapped;
      changed = true;
    } else if (ref.startsWith('urn:uuid:') || ref.startsWith('urn:oid:')) {
      throw badRequest(`Reference ${ref} does not match the fullUrl of any entry in this transaction`, at);
    } else if (/^[A-Z][A-Za-z]+\?/.test(ref)) {
      // Conditional reference (FHIR R4 §3.1.0.11.2): must resolve to exactly one resource.
      const [type, qs] = ref.split('?', 2) as [string, string];
      const ids = await searchIds(deps, type, parseQueryString(qs, at), at);
      if (ids.length !== 1) {
        throw error(
          412,
          ids.length ? 'multiple-matches' : 'not-found',
          `Conditional reference ${ref} matches ${ids.length} resources; it must match exactly one`,
          at,
        );
      }
      holder.reference = `${type}/${ids[0]}`;
      changed = true;
    }
  }
  return changed;
}

function entryRequest(req: FhirRequest, e: ParsedEntry): FhirRequest {
  const url = e.entry.request!.url.replace(/^\//, '');
  const [path, qs] = url.split('?', 2) as [string, string | undefined];
  const headers: Record<string, string | undefined> = { prefer: req.headers.prefer };
  if (e.entry.request?.ifMatch) headers['if-match'] = e.entry.request.ifMatch;
  if (e.entry.request?.ifNoneExist) headers['if-none-exist'] = e.entry.request.ifNoneExist;
  return {
    method: e.method,
    segments: pathSegments(path, `Bundle.entry[${e.index}].request.url`),
    query: qs ? parseQueryString(qs, `Bundle.entry[${e.index}].request.url`) : {},
    headers,
    body: e.resource,
    baseUrl: req.baseUrl,
    access: req.access,
    signal: req.signal,
  };
}

async function runEntry(req: FhirRequest, e: ParsedEntry, dispatch: Dispatch): Promise<FhirResponse> {
  try {
    return await dispatch(entryRequest(req, e));
  } catch (err) {
    if (err instanceof OperationOutcomeError) return { status: err.status, body: err.outcome };
    throw err;
  }
}

function toEntry(req: FhirRequest, res: FhirResponse): BundleEntry {
  const response: BundleEntryResponse = { status: statusLine(res.status) };
  if (res.headers?.Location) response.location = res.headers.Location;
  if (res.headers?.ETag) response.etag = res.headers.ETag;
  if (res.status >= 400 && res.body) return { response: { ...response, outcome: res.body } };
  const entry: BundleEntry = { response };
  if (res.body && res.body.resourceType !== 'OperationOutcome') entry.resource = res.body;
  else if (res.body) response.outcome = res.body;
  return entry;
}

/** Independent entries: each succeeds or fails on its own (FHIR R4 §3.1.0.11.1). */
async function batch(req: FhirRequest, deps: FhirDeps, raw: BundleEntry[], dispatch: Dispatch): Promise<FhirResponse> {
  const out: BundleEntry[] = [];
  for (let index = 0; index < raw.length; index++) {
    let parsed: ParsedEntry;
    try {
      parsed = parseEntry(raw[index], index);
    } catch (err) {
      if (!(err instanceof OperationOutcomeError)) throw err;
      out.push({ response: { status: String(err.status), outcome: err.outcome } });
      continue;
    }
    out.push(toEntry(req, await runEntry(req, parsed, dispatch)));
  }
  if (out.some((e) => e.response?.status.startsWith('5'))) deps.log.warn('Batch entries failed', { count: out.length });
  const bundle: Bundle = { resourceType: 'Bundle', type: 'batch-response', entry: out };
  return { status: 200, body: bundle };
}
