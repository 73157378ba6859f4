import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type { Resource } from 'fhir/r4';
import type { Collection, Document, Filter } from 'mongodb';
import { conflict, error, gone, notFound, preconditionFailed } from '../fhir/outcomes.js';
import type { Logger } from '../log.js';
import { hoistAnd } from './filter-shape.js';
import { InsertBatcher } from './insert-batcher.js';
import { inChunks } from './query-inventory.js';
import type { ConditionalClaimDoc, CurrentDoc, HistoryDoc, IngestLogDoc, StoreModels, WriteOp } from './models.js';

/** Computes the search (`sp`) and sort (`so`) values of a resource; supplied by the search layer. */
export type IndexFn = (resource: Resource) => {
  sp: Record<string, unknown>;
  so: Record<string, unknown>;
  tk: string[];
  owner?: string[];
};

/** What a committed write produced. */
export interface AppliedWrite {
  type: string;
  id: string;
  vid: number;
  lastUpdated: Date;
  resource: Resource | null;
  method: WriteOp['method'];
  /** The resource did not exist (or was deleted) before this write. */
  created: boolean;
  /** Nothing changed: a repeated push of identical content keeps the current version. */
  unchanged?: boolean;
}

/**
 * Called once a version is current (also on replay of the ingest log, and again when a replayed version was already
 * current), with the current document as it stands: derived indexes (the recognition facts) follow every write.
 * Its failure never fails the write: it is logged and the write stands.
 */
export type VersionHook = (doc: CurrentDoc, store: ResourceStore) => Promise<void>;

/** The hook for the versions one ingest-log entry made current together (a transaction, an import page). */
export type VersionsHook = (docs: CurrentDoc[], store: ResourceStore) => Promise<void>;

export interface ResourceStoreOptions {
  /** The longest a search query (find, count) may run: past it the database stops it and the search is refused. */
  searchTimeoutMs?: number;
  onVersion?: VersionHook;
  /** Called instead of `onVersion` for the versions of one entry applied together; `onVersion` stays the fallback. */
  onVersions?: VersionsHook;
}

/** A planned write, or the existing version when the plan turned out to change nothing. */
export type Plan = { op: WriteOp; current: CurrentDoc | null } | { unchanged: AppliedWrite };

export interface HistoryPage {
  entries: HistoryDoc[];
  next?: string;
}

/** An If-Match write found its version taken by another writer before anything of its entry was applied. */
class PreconditionLost extends Error {}

const DUPLICATE_KEY = 11000;
const isDuplicateKey = (err: unknown) => (err as { code?: number })?.code === DUPLICATE_KEY;

/**
 * Version of the stored search values (`sp`, `so`, `tk`); a database marked older is indexed again at start-up.
 * 2: `tk`. 3: the scan buckets in `tk` (extract.ts, scanBucket).
 */
export const STORE_LAYOUT = 3;

/** A conditional-create claim's lease, renewed by its owner every third of it while the request is in flight. */
const CLAIM_LEASE_MS = 15_000;
/** How long a request waits for another request's claimed resource before answering 409 (retry). */
const CLAIM_WAIT_MS = 30_000;
/** The longest a request holds a claim. */
const CLAIM_MAX_HOLD_MS = 120_000;

/**
 * The one generic resource repository: versioned current documents, full history, and the ingest log that makes
 * every write (single resource or whole transaction) atomic and crash-safe without multi-document transactions.
 */
export class ResourceStore {
  private readonly current: Collection<CurrentDoc>;
  private readonly historyCol: Collection<HistoryDoc>;
  private readonly ingest: Collection<IngestLogDoc>;
  private readonly claims: Collection<ConditionalClaimDoc>;
  /** AuditEvents of concurrent requests are appended together (one round trip for many under load). */
  private readonly appendedHistory: InsertBatcher<HistoryDoc>;
  private readonly appendedCurrent: InsertBatcher<CurrentDoc>;
  /** The conditional-create claims this process holds (one object, shared by every per-request view of the store). */
  private readonly leases: ClaimLeases;
  /** Sizes of resource types as searches estimated them, remembered a while (shared by every per-request view). */
  readonly typeSizes = new Map<string, { size: number; at: number }>();
  /** A request's view (forRequest): its searches stop in the database when this aborts. */
  private signal: AbortSignal | undefined;

  constructor(
    private readonly models: StoreModels,
    private readonly index: IndexFn,
    private readonly log: Logger,
    private readonly clock: () => Date = () => new Date(),
    private readonly options: ResourceStoreOptions = {},
  ) {
    this.current = models.current.collection as unknown as Collection<CurrentDoc>;
    this.historyCol = models.history.collection as unknown as Collection<HistoryDoc>;
    this.ingest = models.ingest.collection as unknown as Collection<IngestLogDoc>;
    this.claims = models.claims.collection as unknown as Collection<ConditionalClaimDoc>;
    this.appendedHistory = new InsertBatcher(this.historyCol);
    this.appendedCurrent = new InsertBatcher(this.current);
    this.leases = new ClaimLeases(this.claims, log, clock);
  }

  // ---- layout ----

  /**
   * Brings the current documents of a database written by an earlier version of the search values (before `tk`, or
   * copied from the SQLite default) up to STORE_LAYOUT: each is indexed again from its resource, in batches, with
   * progress logged from the first second. A new database is only marked. Runs once, at start-up.
   */
  async upgradeLayout(): Promise<number> {
    const meta = this.models.current.db.db!.collection<{ _id: string; version: number }>('store_meta');
    if (((await meta.findOne({ _id: 'layout' }))?.version ?? 0) >= STORE_LAYOUT) return 0;
    let done = 0;
    const total = await this.current.estimatedDocumentCount();
    if (total > 0) this.log.warn('Indexing stored resources for this version of the search layout', { total });
    let last = Date.now();
    let batch: CurrentDoc[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      await this.current.bulkWrite(
        batch.map((doc) => ({ replaceOne: { filter: { _id: doc._id }, replacement: doc } })),
        { ordered: false },
      );
      done += batch.length;
      batch = [];
      if (Date.now() - last > 1000) {
        last = Date.now();
        this.log.info('Indexing stored resources', { done, total });
      }
    };
    for await (const doc of this.current.find({}).batchSize(500)) {
      const { sp, so, tk, owner } = doc.resource
        ? this.index(doc.resource)
        : { sp: {}, so: {}, tk: [], owner: undefined };
      batch.push({ ...doc, sp, so, tk, owner: doc.resource ? (owner ?? []) : (doc.owner ?? []) });
      if (batch.length >= 500) await flush();
    }
    await flush();
    await meta.replaceOne({ _id: 'layout' }, { version: STORE_LAYOUT }, { upsert: true });
    if (done > 0) this.log.warn('Stored resources indexed', { done });
    return done;
  }

  /**
   * This store as one request sees it: its searches (find, count, history) carry the request's `signal`. When the
   * HTTP client hangs up, the driver closes the connection of a search under way, and the database stops working on
   * it (our FerretDB build cancels the PostgreSQL query of a connection that closes; MongoDB interrupts an operation
   * whose client disconnected) instead of running it to its end, or its HUREN_SEARCH_TIMEOUT_MS, for nobody.
   */
  forRequest(signal: AbortSignal | undefined): ResourceStore {
    if (!signal) return this;
    const view = Object.create(this) as ResourceStore;
    view.signal = signal;
    return view;
  }

  // ---- reads ----

  async findCurrent(type: string, id: string): Promise<CurrentDoc | null> {
    return this.current.findOne({ _id: `${type}/${id}` });
  }

  async read(type: string, id: string, known?: CurrentDoc | null): Promise<Resource> {
    // `known`: the current document the caller has just read (the tenancy check), saving a second read.
    const doc = known !== undefined ? known : await this.findCurrent(type, id);
    if (!doc) throw notFound(`${type}/${id} is not known`);
    if (doc.deleted || !doc.resource) {
      throw withHeaders(gone(`${type}/${id} was deleted (version ${doc.vid})`), { ETag: `W/"${doc.vid}"` });
    }
    return doc.resource;
  }

  async vread(type: string, id: string, vid: string): Promise<Resource> {
    if (!/^\d+$/.test(vid)) throw notFound(`${type}/${id}/_history/${vid}: version ids are whole numbers`);
    const doc = await this.historyCol.findOne({ _id: `${type}/${id}/${Number(vid)}` });
    if (!doc) {
      const exists = await this.findCurrent(type, id);
      throw notFound(exists ? `${type}/${id} has no version ${vid}` : `${type}/${id} is not known`);
    }
    if (!doc.resource) throw gone(`${type}/${id} version ${vid} is a deletion`);
    return doc.resource;
  }

  /** Filters come from the search layer, which builds them for the `resources` document shape. */
  async find(filter: Filter<Document>, sort: Record<string, 1 | -1>, limit: number): Promise<CurrentDoc[]> {
    return bounded(
      this.current
        .find(hoistAnd(filter) as Filter<CurrentDoc>, { signal: this.signal })
        .sort(sort)
        .limit(limit)
        .maxTimeMS(this.options.searchTimeoutMs ?? 0)
        .toArray(),
    );
  }

  /**
   * How many current documents of a type carry this `tk` token, up to `max`, whoever may read them: what a search
   * estimates the size of a type from (a scan of the type reads them all, readable or not). Only the number leaves.
   */
  async countToken(type: string, token: string, max: number): Promise<number> {
    const found = await this.current
      .find({ tk: token, type }, { projection: { _id: 1 }, signal: this.signal })
      .limit(max)
      .toArray();
    return found.length;
  }

  /** Every current document matching `filter`, in `_id` order, read in batches (for rebuilds of derived indexes). */
  scan(filter: Filter<Document>): AsyncIterable<CurrentDoc> {
    return this.current
      .find(hoistAnd(filter) as Filter<CurrentDoc>)
      .sort({ _id: 1 })
      .batchSize(500);
  }

  async count(filter: Filter<Document>): Promise<number> {
    return bounded(
      this.current.countDocuments(hoistAnd(filter) as Filter<CurrentDoc>, {
        maxTimeMS: this.options.searchTimeoutMs ?? 0,
        signal: this.signal,
      }),
    );
  }

  /**
   * The current documents (tombstones included) of `Type/id` references, in their order, missing ones left out.
   * One `$in` query per IN_CHUNK (100) references (an index lookup per value on MongoDB and on our FerretDB build).
   */
  async findCurrentMany(refs: string[]): Promise<CurrentDoc[]> {
    const byId = await byIds(this.current, refs);
    return [...new Set(refs)].flatMap((ref) => byId.get(ref) ?? []);
  }

  async findByRefs(refs: string[]): Promise<CurrentDoc[]> {
    return (await this.findCurrentMany(refs)).filter((d) => !d.deleted);
  }

  /**
   * Versions newest first, for instance, type or system history. Paged by a keyset on (lastUpdated, _id) so pages
   * stay stable while new versions arrive.
   */
  async history(
    scope: { type?: string; id?: string; excludeTypes?: string[] },
    options: { count: number; since?: Date; cursor?: { t: number; k: string } },
  ): Promise<HistoryPage> {
    const and: Filter<HistoryDoc>[] = [];
    if (scope.type) and.push({ type: scope.type });
    if (scope.excludeTypes?.length) and.push({ type: { $nin: scope.excludeTypes } });
    if (scope.id) and.push({ id: scope.id });
    if (options.since) and.push({ lastUpdated: { $gte: options.since } });
    if (options.cursor) {
      const t = new Date(options.cursor.t);
      and.push({ $or: [{ lastUpdated: { $lt: t } }, { lastUpdated: t, _id: { $lt: options.cursor.k } }] });
    }
    const filter = hoistAnd((and.length ? { $and: and } : {}) as Filter<Document>) as Filter<HistoryDoc>;
    const docs = await bounded(
      this.historyCol
        .find(filter, { signal: this.signal })
        .sort({ lastUpdated: -1, _id: -1 })
        .limit(options.count + 1)
        .maxTimeMS(this.options.searchTimeoutMs ?? 0)
        .toArray(),
    );
    const entries = docs.slice(0, options.count);
    const last = entries.at(-1);
    return {
      entries,
      next:
        docs.length > options.count && last
          ? Buffer.from(JSON.stringify({ t: last.lastUpdated.getTime(), k: last._id })).toString('base64url')
          : undefined,
    };
  }

  // ---- planning writes (reads only; nothing is written until commit) ----

  /** A create with a fresh server-assigned id. */
  planCreate(resource: Resource, id: string = randomUUID()): Plan {
    return {
      op: { type: resource.resourceType, id, prevVid: 0, method: 'POST', resource: stripMeta(resource, id) },
      current: null,
    };
  }

  /**
   * An update (or update-as-create when the id is new). `ifMatch` is the version the client last saw: a stale one
   * is refused with 412 (FHIR R4 §3.1.0.5.2 managing resource contention).
   */
  async planUpdate(resource: Resource, id: string, ifMatch?: string, known?: CurrentDoc | null): Promise<Plan> {
    const type = resource.resourceType;
    // `known`: the current document the caller has just read (the tenancy check), saving a second read.
    const current = known !== undefined ? known : await this.findCurrent(type, id);
    const live = current && !current.deleted ? current : null;
    if (ifMatch !== undefined) {
      const wanted = parseETag(ifMatch);
      if (!live) throw preconditionFailed(`If-Match ${ifMatch}: ${type}/${id} does not exist`, 'If-Match');
      if (wanted !== String(live.vid)) {
        throw preconditionFailed(
          `If-Match ${ifMatch} is stale: ${type}/${id} is at version ${live.vid}; read it again and reapply your change`,
          'If-Match',
        );
      }
    }
    const next = stripMeta(resource, id);
    if (live?.resource && isDeepStrictEqual(stripMeta(live.resource, id), next)) {
      return { unchanged: appliedFromCurrent(live, 'PUT') };
    }
    const op: WriteOp = { type, id, prevVid: current?.vid ?? 0, method: 'PUT', resource: next };
    if (ifMatch !== undefined) op.ifMatch = true;
    return { op, current };
  }

  async planDelete(type: string, id: string): Promise<Plan | null> {
    const current = await this.findCurrent(type, id);
    if (!current || current.deleted) return null; // deleting nothing is a success (FHIR R4 §3.1.0.7.1)
    return { op: { type, id, prevVid: current.vid, method: 'DELETE', resource: null }, current };
  }

  /**
   * Makes conditional create race-free: the canonical condition is the `_id` of a claim document, so two parallel
   * identical requests cannot both create (a unique key, not a read-then-write). Returns the id to create under, or
   * the id of the resource another request created for the same condition.
   *
   * A claim is a lease its owner renews while its request is in flight (until it commits or gives the claim back):
   * it is never taken over while its owner can still commit. Others wait for the claimed resource with a lookup by
   * `_id` (backing off), and take the claim over only when its lease ran out and no accepted write of the claimed
   * resource is waiting in the ingest log (its owner crashed or gave up), or when the claimed resource exists but
   * no longer matches the condition.
   */
  async claimCondition(
    type: string,
    condition: string,
    search: () => Promise<string[]>,
  ): Promise<{ id: string; existing: boolean }> {
    const key = `${type}?${condition}`;
    const deadline = Date.now() + CLAIM_WAIT_MS;
    let delay = 10;
    const found = async (): Promise<{ id: string; existing: boolean } | undefined> => {
      const matches = await search();
      if (matches.length > 1) {
        throw preconditionFailed(`The condition ${key} matches ${matches.length} resources; it must match at most one`);
      }
      return matches.length === 1 ? { id: matches[0]!, existing: true } : undefined;
    };
    for (;;) {
      const existing = await found();
      if (existing) return existing;
      const id = randomUUID();
      const ref = `${type}/${id}`;
      try {
        await this.claims.insertOne({ _id: key, ref, createdAt: this.clock(), until: this.leaseEnd() });
        this.leases.hold(key, ref);
        return { id, existing: false };
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
      }
      // Another request holds the claim: wait for its resource.
      for (;;) {
        const claim = await this.claims.findOne({ _id: key });
        if (!claim) break; // given back: claim again
        const claimed = await this.current.findOne({ _id: claim.ref });
        let takeOver = false;
        if (claimed && !claimed.deleted) {
          const again = await found();
          if (again) return again;
          takeOver = true; // written, but it no longer matches the condition
        } else if (new Date(claim.until ?? claim.createdAt).getTime() < this.clock().getTime()) {
          // The owner stopped renewing; unless its write was accepted (then it lands, now or on replay).
          takeOver = !(await this.ingest.findOne({ refs: claim.ref }, { projection: { _id: 1 } }));
        }
        if (takeOver) {
          const taken = await this.claims.findOneAndUpdate(
            { _id: key, ref: claim.ref },
            { $set: { ref, createdAt: this.clock(), until: this.leaseEnd() } },
          );
          if (taken) {
            this.leases.hold(key, ref);
            return { id, existing: false };
          }
          break;
        }
        if (Date.now() > deadline) throw conflict(`Another request is still creating ${key}; retry`);
        await sleep(delay);
        delay = Math.min(delay * 2, 250);
      }
    }
  }

  /**
   * Gives back a claim of `claimCondition` whose resource will not be written (the request failed after claiming,
   * e.g. a later entry of its transaction was refused), so that a retry of the same condition is served at once
   * instead of waiting for the claim's lease to run out. Only the claim still naming `id` is removed.
   */
  async releaseClaim(type: string, condition: string, id: string): Promise<void> {
    this.leases.release(`${type}/${id}`);
    await this.claims.deleteOne({ _id: `${type}?${condition}`, ref: `${type}/${id}` });
  }

  private leaseEnd(): Date {
    return leaseEnd(this.clock);
  }

  /**
   * Appends an immutable, server-written resource (an AuditEvent) as version 1 without the ingest log: one record,
   * written once, never updated. Its history and current documents are written together; the caller's promise
   * settles when both are stored.
   */
  async append(resource: Resource & { id: string }, at: Date = this.clock()): Promise<void> {
    const stored = withMeta(resource, 1, at);
    const _id = `${resource.resourceType}/${resource.id}`;
    const txn = `append:${_id}`;
    const { sp, so, tk, owner } = this.index(stored);
    const history = appended(this.appendedHistory, {
      _id: `${_id}/1`,
      type: resource.resourceType,
      id: resource.id,
      vid: 1,
      lastUpdated: at,
      method: 'POST',
      resource: stored,
      txn,
    });
    const current = appended(this.appendedCurrent, {
      _id,
      type: resource.resourceType,
      id: resource.id,
      vid: 1,
      lastUpdated: at,
      deleted: false,
      resource: stored,
      sp,
      so,
      tk,
      owner: owner ?? [],
      txn,
    });
    await Promise.all([history, current]);
  }

  /** Removes resources of a type last written before `before` (audit retention). Returns how many. */
  async purgeOlderThan(type: string, before: Date): Promise<number> {
    await this.historyCol.deleteMany({ type, lastUpdated: { $lt: before } });
    return (await this.current.deleteMany({ type, lastUpdated: { $lt: before } })).deletedCount;
  }

  // ---- committing writes ----

  /**
   * Accepts a set of writes atomically (one ingest-log document), then projects them. All or nothing: once the log
   * entry is written, every op is applied, now or by `replayPending` after a crash.
   */
  async commit(ops: WriteOp[]): Promise<AppliedWrite[]> {
    if (ops.length === 0) return [];
    const refs = [...new Set(ops.map((op) => `${op.type}/${op.id}`))];
    const entry: IngestLogDoc = {
      _id: randomUUID(),
      state: 'pending',
      createdAt: this.clock(),
      opsJson: JSON.stringify(ops),
      refs,
    };
    await this.ingest.insertOne(entry);
    // Accepted: a claim of these resources is covered by the entry from now on (claimCondition), not by its lease.
    for (const ref of refs) this.leases.release(ref);
    let applied: AppliedWrite[];
    try {
      applied = await this.project(entry._id, entry.createdAt, ops, true);
    } catch (err) {
      // Refused before anything was applied (an If-Match lost a race): the entry is withdrawn, nothing was written.
      if (err instanceof PreconditionLost) {
        await this.ingest.deleteOne({ _id: entry._id });
        throw preconditionFailed(err.message, 'If-Match');
      }
      throw err;
    }
    await this.ingest.deleteOne({ _id: entry._id });
    return applied;
  }

  /** Re-applies ingest-log entries left unfinished by a crash. Idempotent. Returns how many were replayed. */
  async replayPending(): Promise<number> {
    let replayed = 0;
    for await (const entry of this.ingest.find({}).sort({ createdAt: 1 })) {
      await this.project(
        entry._id,
        entry.createdAt,
        entry.opsJson ? (JSON.parse(entry.opsJson) as WriteOp[]) : entry.ops!,
      );
      await this.ingest.deleteOne({ _id: entry._id });
      replayed++;
    }
    if (replayed) this.log.warn('Replayed unfinished ingest-log entries', { count: replayed });
    return replayed;
  }

  /**
   * `live`: the request is still waiting. While nothing of the entry is applied yet, a write conditional on If-Match
   * that lost a race to another writer is refused (412) rather than written on top. Once one op is applied (or on
   * replay, where nobody waits for an answer) every op is applied: all or nothing.
   */
  private async project(txn: string, createdAt: Date, ops: WriteOp[], live = false): Promise<AppliedWrite[]> {
    const at = new Date(createdAt);
    const refs = new Set(ops.map((op) => `${op.type}/${op.id}`));
    // One op at a time where an If-Match may still be refused, or where two ops name one resource (each must see
    // the other's version); every other entry is applied in a few round trips whatever its size.
    if ((live && ops.some((op) => op.ifMatch)) || refs.size < ops.length) {
      const out: AppliedWrite[] = [];
      for (const op of ops) {
        const { applied, doc } = await this.applyOp(txn, op, at, live && out.length === 0);
        await this.notifyVersions([doc]);
        out.push(applied);
      }
      return out;
    }
    return this.projectTogether(txn, ops, at);
  }

  /**
   * Applies the ops of one entry together: the previous versions are read at once, every version number is claimed
   * with ONE unordered insert of the history documents, the current documents are written at once, and the version
   * hook gets them all. An op whose version was already taken (a replay, a concurrent writer) goes the one-by-one
   * way of `applyOp`, which settles it exactly as before. Same outcome as applying the ops one after another.
   */
  private async projectTogether(txn: string, ops: WriteOp[], at: Date): Promise<AppliedWrite[]> {
    const prevIds = ops.map((op) => (op.prevVid > 0 ? `${op.type}/${op.id}/${op.prevVid}` : undefined));
    const prevById = await byIds(
      this.historyCol,
      prevIds.filter((x) => x !== undefined),
    );
    const prevs = prevIds.map((x) => (x === undefined ? null : (prevById.get(x) ?? null)));
    const versions = ops.map((op, i) => versionOf(txn, op, op.prevVid + 1, prevs[i] ?? null, at));
    const taken = await insertUnordered(this.historyCol, versions);
    const out: AppliedWrite[] = new Array<AppliedWrite>(ops.length);
    const docs: (CurrentDoc | undefined)[] = new Array<CurrentDoc | undefined>(ops.length);
    const claimed = versions.map((_, i) => i).filter((i) => !taken.has(i));
    const settled = await this.settleTogether(claimed.map((i) => versions[i]!));
    claimed.forEach((i, k) => {
      const version = versions[i]!;
      docs[i] = settled[k];
      out[i] = {
        type: version.type,
        id: version.id,
        vid: version.vid,
        lastUpdated: version.lastUpdated,
        resource: version.resource,
        method: version.method,
        created: version.vid === 1 || prevs[i]?.resource === null,
      };
    });
    for (const i of taken) {
      const { applied, doc } = await this.applyOp(txn, ops[i]!, at);
      out[i] = applied;
      docs[i] = doc;
    }
    await this.notifyVersions(docs.filter((d): d is CurrentDoc => d !== undefined));
    return out;
  }

  /**
   * `settleCurrent` for many new versions of distinct resources at once: the current documents are read at once,
   * new resources inserted with one unordered insert, updated ones replaced in parallel, and the next version
   * numbers probed at once. Anything that met another writer on the way is settled one by one.
   */
  private async settleTogether(versions: HistoryDoc[]): Promise<CurrentDoc[]> {
    if (versions.length === 0) return [];
    const refs = versions.map((v) => `${v.type}/${v.id}`);
    // A first version has no current document to read: it is inserted, and a clash sends it the one-by-one way.
    const curById = await byIds(
      this.current,
      refs.filter((_, i) => versions[i]!.vid !== 1),
    );
    const curs = versions.map((v, i) => (v.vid === 1 ? null : (curById.get(refs[i]!) ?? null)));
    const docs = versions.map((v, i) => this.currentOf(v, curs[i] ?? null));
    const fresh = versions.map((_, i) => i).filter((i) => !curs[i]);
    const clash = await insertUnordered(
      this.current,
      fresh.map((i) => docs[i]!),
    );
    const out: (CurrentDoc | undefined)[] = new Array<CurrentDoc | undefined>(versions.length);
    const slow = new Set(fresh.filter((_, k) => clash.has(k)));
    const replaced = new Set<number>();
    await Promise.all(
      versions.map(async (v, i) => {
        const cur = curs[i];
        if (!cur) return;
        if (cur.vid >= v.vid) {
          out[i] = cur; // already current (or newer): a replay, or another writer got further
          return;
        }
        await this.current.replaceOne({ _id: refs[i]! }, docs[i]!);
        replaced.add(i);
      }),
    );
    // Only a replacement can have overwritten a newer version; an insert that succeeded was first, and a newer
    // version's writer meets it (settleCurrent compares again after a clash).
    const nextIds = versions.map((v, i) => (replaced.has(i) ? `${refs[i]!}/${v.vid + 1}` : undefined));
    const nextById = await byIds(
      this.historyCol,
      nextIds.filter((x) => x !== undefined),
    );
    const nexts = nextIds.map((x) => (x === undefined ? null : (nextById.get(x) ?? null)));
    for (let i = 0; i < versions.length; i++) {
      if (out[i]) continue;
      if (slow.has(i)) out[i] = await this.settleCurrent(versions[i]!);
      else if (nexts[i]) out[i] = await this.settleCurrent(nexts[i]!);
      else out[i] = docs[i]!;
    }
    return out as CurrentDoc[];
  }

  /**
   * Applies one op idempotently. The version number is taken by inserting the history entry `type/id/vid`: a unique
   * `_id` insert is the one write that is atomic on MongoDB and FerretDB 1.24 alike (FerretDB runs an update as a
   * query followed by an update by `_id`, so a compare-and-set filter such as `{ vid: prevVid }` does not stop a
   * concurrent writer). If another writer got in between planning and applying, the accepted op takes the next
   * version on top of it (both versions stay in history): accepted data is never lost.
   */
  private async applyOp(
    txn: string,
    op: WriteOp,
    acceptedAt: Date,
    refusable = false,
  ): Promise<{ applied: AppliedWrite; doc: CurrentDoc }> {
    const _id = `${op.type}/${op.id}`;
    let prevVid = op.prevVid;
    for (let attempt = 0; attempt < 50; attempt++) {
      const vid = prevVid + 1;
      const prev = prevVid > 0 ? await this.historyCol.findOne({ _id: `${_id}/${prevVid}` }) : null;
      const version = versionOf(txn, op, vid, prev, acceptedAt);
      try {
        await this.historyCol.insertOne(version);
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
        const taken = await this.historyCol.findOne({ _id: version._id });
        // Replay of an op whose version was already taken, here or on top of another writer's version.
        const mine = taken?.txn === txn ? taken : await this.historyCol.findOne({ type: op.type, id: op.id, txn });
        if (mine) {
          const doc = await this.settleCurrent(mine);
          return { applied: { ...appliedFromHistory(mine), created: op.prevVid === 0 }, doc };
        }
        if (refusable && op.ifMatch) {
          throw new PreconditionLost(
            `${_id} changed to version ${vid} while this update (If-Match: version ${op.prevVid}) was in flight; read it again`,
          );
        }
        prevVid = vid;
        continue;
      }
      const doc = await this.settleCurrent(version);
      const applied: AppliedWrite = {
        type: op.type,
        id: op.id,
        vid,
        lastUpdated: version.lastUpdated,
        resource: version.resource,
        method: op.method,
        created: vid === 1 || prev?.resource === null,
      };
      return { applied, doc };
    }
    throw conflict(`${_id} is being changed by too many writers at once; retry`);
  }

  /** The current document of a version (`cur`: the one it replaces, whose owners a tombstone keeps). */
  private currentOf(version: HistoryDoc, cur: CurrentDoc | null): CurrentDoc {
    const { sp, so, tk, owner } = version.resource
      ? this.index(version.resource)
      : { sp: {}, so: {}, tk: [], owner: [] };
    return {
      _id: `${version.type}/${version.id}`,
      type: version.type,
      id: version.id,
      vid: version.vid,
      lastUpdated: version.lastUpdated,
      deleted: !version.resource,
      resource: version.resource,
      sp,
      so,
      tk,
      // A tombstone keeps the owners of the version it deleted: tenancy of its history and of its id outlives it.
      owner: version.resource ? (owner ?? []) : (cur?.owner ?? []),
      txn: version.txn,
    };
  }

  /**
   * Makes `resources` show the newest version of a resource once `version` is in its history, and returns the
   * current document it leaves. Writers of different versions may overwrite each other here (no compare-and-set:
   * FerretDB runs a filtered update as a query, then a write by `_id`); each one checks after its own write that no
   * newer version was left behind, and writes that one if so, so the last to write always leaves the newest.
   */
  private async settleCurrent(version: HistoryDoc): Promise<CurrentDoc> {
    const _id = `${version.type}/${version.id}`;
    let target = version;
    for (let attempt = 0; attempt < 50; attempt++) {
      const cur = await this.current.findOne({ _id });
      if (cur && cur.vid >= target.vid) return cur;
      const doc = this.currentOf(target, cur);
      if (!cur) {
        try {
          await this.current.insertOne(doc);
        } catch (err) {
          if (!isDuplicateKey(err)) throw err;
          continue; // another writer's version became current meanwhile: compare with it
        }
      } else {
        // By `_id` alone: the one filter FerretDB's SQLite backend pushes down (any other key scans the collection).
        await this.current.replaceOne({ _id }, doc);
      }
      // Versions are claimed one after another (vid + 1, by unique insert), so a newer one exists exactly when the
      // next number does: an _id lookup, which FerretDB answers without scanning the history.
      const next = await this.historyCol.findOne({ _id: `${_id}/${target.vid + 1}` });
      if (!next) return doc;
      target = next;
    }
    throw conflict(`${_id} is being changed by too many writers at once; retry`);
  }

  /** Runs the version hooks for versions now current; a failing hook never fails the write (it is logged). */
  private async notifyVersions(docs: CurrentDoc[]): Promise<void> {
    if (docs.length === 0) return;
    if (this.options.onVersions) {
      try {
        await this.options.onVersions(docs, this);
        return;
      } catch {
        // One bad version must not leave the others unprojected: each on its own, each failure logged.
      }
    }
    for (const doc of docs) await this.notifyVersion(doc);
  }

  private async notifyVersion(doc: CurrentDoc): Promise<void> {
    if (!this.options.onVersion) return;
    try {
      await this.options.onVersion(doc, this);
    } catch (err) {
      // Only ids and the error's kind: a message may quote the data.
      this.log.error('Derived indexes not updated for a stored version; the write stands', {
        ref: doc._id,
        vid: doc.vid,
        error: (err as Error)?.name,
        code: (err as { code?: unknown })?.code,
      });
    }
  }
}

/** MongoDB's and FerretDB's code for a query stopped by its maxTimeMS. */
const MAX_TIME_EXPIRED = 50;

/** A search query the database stopped at its time limit becomes a FHIR `too-costly` refusal. */
async function bounded<T>(query: Promise<T>): Promise<T> {
  try {
    return await query;
  } catch (err) {
    if ((err as { code?: number })?.code !== MAX_TIME_EXPIRED) throw err;
    throw error(
      400,
      'too-costly',
      'The search reads too much of the database: narrow it with a patient, subject, identifier or code (history: ' +
        'ask for one resource)',
    );
  }
}

function leaseEnd(clock: () => Date): Date {
  return new Date(clock().getTime() + CLAIM_LEASE_MS);
}

/** Claims this process holds (ref → claim key and since when), renewed until committed or given back. */
class ClaimLeases {
  private readonly held = new Map<string, { key: string; since: number }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly claims: Collection<ConditionalClaimDoc>,
    private readonly log: Logger,
    private readonly clock: () => Date,
  ) {}

  hold(key: string, ref: string): void {
    this.held.set(ref, { key, since: Date.now() });
    this.timer ??= setInterval(() => void this.renew(), CLAIM_LEASE_MS / 3).unref();
  }

  release(ref: string): void {
    this.held.delete(ref);
    if (this.held.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private async renew(): Promise<void> {
    for (const [ref, { key, since }] of this.held) {
      // A request does not hold a claim for longer than this: one that neither committed nor gave it back is over.
      if (Date.now() - since > CLAIM_MAX_HOLD_MS) {
        this.release(ref);
        continue;
      }
      await this.claims
        .updateOne({ _id: key, ref }, { $set: { until: leaseEnd(this.clock) } })
        .catch((err: unknown) =>
          this.log.warn('Conditional-create claim not renewed', { error: (err as Error)?.name }),
        );
    }
  }
}

/** One document through a batcher; a taken `_id` fails as a duplicate key, as an insertOne would. */
async function appended<T extends { _id: string }>(batcher: InsertBatcher<T>, doc: T): Promise<void> {
  const { duplicates } = await batcher.insert([doc]);
  if (duplicates.length) throw Object.assign(new Error(`${doc._id} exists already`), { code: DUPLICATE_KEY });
}

/** The history document of `op` as version `vid`, dated in time order after its previous version `prev`. */
function versionOf(txn: string, op: WriteOp, vid: number, prev: HistoryDoc | null, acceptedAt: Date): HistoryDoc {
  // Versions are in time order: one written on top of a newer writer's version is not dated before it.
  const prevAt = prev ? new Date(prev.lastUpdated).getTime() : -Infinity;
  const at = prevAt >= acceptedAt.getTime() ? new Date(prevAt + 1) : acceptedAt;
  return {
    _id: `${op.type}/${op.id}/${vid}`,
    type: op.type,
    id: op.id,
    vid,
    lastUpdated: at,
    method: op.method,
    resource: op.resource ? withMeta(op.resource, vid, at) : null,
    txn,
  };
}

/**
 * The documents of these `_id`s, by `_id` (missing ones absent): one `$in` query per IN_CHUNK (100) ids, an index
 * lookup per value on MongoDB and on our FerretDB build (db/ferretdb/patches.json pushes `$in` of strings down).
 */
async function byIds<T extends { _id: string }>(collection: Collection<T>, ids: string[]): Promise<Map<string, T>> {
  const out = new Map<string, T>();
  for (const chunk of inChunks([...new Set(ids)])) {
    const docs = await collection.find({ _id: { $in: chunk } } as Filter<T>).toArray();
    for (const doc of docs) out.set(doc._id, doc as T);
  }
  return out;
}

/**
 * Inserts documents with one unordered insert; returns the positions refused as duplicate keys (taken `_id`s). Any
 * other failure is thrown.
 */
async function insertUnordered<T extends { _id: string }>(collection: Collection<T>, docs: T[]): Promise<Set<number>> {
  const taken = new Set<number>();
  if (docs.length === 0) return taken;
  try {
    await collection.insertMany(docs as never[], { ordered: false });
  } catch (err) {
    const writeErrors = (err as { writeErrors?: { index: number; code: number }[] | { index: number; code: number } })
      .writeErrors;
    const list = Array.isArray(writeErrors) ? writeErrors : writeErrors ? [writeErrors] : [];
    if (list.length === 0 || list.some((e) => e.code !== DUPLICATE_KEY)) throw err;
    for (const e of list) taken.add(e.index);
  }
  return taken;
}

function appliedFromCurrent(doc: CurrentDoc, method: WriteOp['method']): AppliedWrite {
  return {
    type: doc.type,
    id: doc.id,
    vid: doc.vid,
    lastUpdated: doc.lastUpdated,
    resource: doc.resource,
    method,
    created: false,
    unchanged: true,
  };
}

function appliedFromHistory(doc: HistoryDoc): AppliedWrite {
  return {
    type: doc.type,
    id: doc.id,
    vid: doc.vid,
    lastUpdated: doc.lastUpdated,
    resource: doc.resource,
    method: doc.method,
    created: false,
  };
}

/** The resource as the client meant it: server-managed meta fields removed, id set. */
export function stripMeta(resource: Resource, id: string): Resource {
  const copy = { ...resource, id } as Resource;
  if (copy.meta) {
    const { versionId: _v, lastUpdated: _l, ...rest } = copy.meta;
    if (Object.keys(rest).length) copy.meta = rest;
    else delete copy.meta;
  }
  return copy;
}

function withMeta(resource: Resource, vid: number, at: Date): Resource {
  return { ...resource, meta: { ...resource.meta, versionId: String(vid), lastUpdated: at.toISOString() } } as Resource;
}

/** `W/"3"` → `3` (ETag of FHIR R4 §3.1.0.5.1). */
export function parseETag(value: string): string {
  return value
    .trim()
    .replace(/^W\//, '')
    .replace(/^"(.*)"$/, '$1');
}

function withHeaders<T extends { headers: Record<string, string> }>(err: T, headers: Record<string, string>): T {
  Object.assign(err.headers, headers);
  return err;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
