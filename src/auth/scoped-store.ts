import type { Resource } from 'fhir/r4';
import type { Document, Filter } from 'mongodb';
import { notFound } from '../fhir/outcomes.js';
import type { CurrentDoc, WriteOp } from '../store/models.js';
import type { ResourceStore } from '../store/resource-store.js';
import { assertAllowed, assertReadable, assertWritable, isReadable, tenantFilter } from './policy.js';
import type { Permission } from './scopes.js';
import type { AccessContext } from './tokens.js';

/**
 * The store as one caller may see it: tenancy applied at the single place every FHIR interaction goes through, so
 * read, search, include, history, conditional interactions and every write of a bundle are narrowed the same way.
 * Roles other than `his` see the store unnarrowed; every role's writes are checked against its role and scopes.
 */
export function scopeStore(store: ResourceStore, access: AccessContext | undefined): ResourceStore {
  if (!access) return store;
  // Transaction entries are planned and committed without passing the dispatcher's per-interaction check, so the
  // role and scopes of every write are checked again where all writes meet.
  const assertMayWrite = (op: WriteOp) => assertAllowed(access, op.type, WRITE_PERMISSION[op.method]);
  const narrow = tenantFilter(access);
  if (!narrow) {
    return Object.assign(Object.create(store) as ResourceStore, {
      commit: async (ops: WriteOp[]) => {
        for (const op of ops) assertMayWrite(op);
        return store.commit(ops);
      },
    } satisfies Partial<ResourceStore>);
  }
  const and = (filter: Filter<Document>): Filter<Document> => ({ $and: [filter, narrow] });
  const scoped = Object.create(store) as ResourceStore;
  // A condition (If-None-Exist, conditional update) is claimed per institution: each hospital has its own copy.
  const tenantCondition = (condition: string) => `${condition}#${access.organization}`;
  const current = (type: string, id: string) => store.findCurrent(type, id);
  // What planning read of each resource in this request (tenancy was checked on it): commit checks that document
  // again instead of reading it a second time. The window until the write is the planning's, a few milliseconds.
  const planned = new Map<string, CurrentDoc | null>();

  return Object.assign(scoped, {
    find: (filter: Filter<Document>, sort: Record<string, 1 | -1>, limit: number) =>
      store.find(and(filter), sort, limit),
    count: (filter: Filter<Document>) => store.count(and(filter)),
    findByRefs: async (refs: string[]) => (await store.findByRefs(refs)).filter((d) => isReadable(access, d)),
    // findCurrent is deliberately not narrowed: planning must see another institution's resource so that writing over
    // it is refused (commit) rather than taken for a create.
    read: async (type: string, id: string): Promise<Resource> => {
      const doc = await current(type, id);
      if (doc) assertReadable(access, doc);
      return store.read(type, id, doc);
    },
    vread: async (type: string, id: string, vid: string): Promise<Resource> => {
      const doc = await current(type, id);
      if (doc) assertReadable(access, doc);
      return store.vread(type, id, vid);
    },
    history: async (...args: Parameters<ResourceStore['history']>) => {
      const [scope] = args;
      if (!scope.type || !scope.id) throw notFound('History across resources is not available to this client');
      const doc = await current(scope.type, scope.id);
      if (doc) assertReadable(access, doc);
      return store.history(...args);
    },
    claimCondition: (type: string, condition: string, search: () => Promise<string[]>) =>
      store.claimCondition(type, tenantCondition(condition), search),
    releaseClaim: (type: string, condition: string, id: string) =>
      store.releaseClaim(type, tenantCondition(condition), id),
    planUpdate: async (resource: Resource, id: string, ifMatch?: string, known?: CurrentDoc | null) => {
      // Checked before planning: an update that changes nothing is answered without a commit, and If-Match must
      // not tell another institution's version numbers. `known`: the current document the caller has just read.
      const doc = known !== undefined ? known : await current(resource.resourceType, id);
      assertWritable(access, { type: resource.resourceType, id, prevVid: doc?.vid ?? 0, method: 'PUT', resource }, doc);
      planned.set(`${resource.resourceType}/${id}`, doc);
      return store.planUpdate(resource, id, ifMatch, doc);
    },
    commit: async (ops: WriteOp[]) => {
      for (const op of ops) assertMayWrite(op);
      // The current version each op writes over: another institution's must not be taken for a create. A server
      // assigned id (POST) is new; an update planned here was checked on what planning read.
      const docs = await Promise.all(
        ops.map((op) => {
          const ref = `${op.type}/${op.id}`;
          if (planned.has(ref)) return planned.get(ref)!;
          if (op.method === 'POST' && op.prevVid === 0) return null;
          return current(op.type, op.id);
        }),
      );
      ops.forEach((op, i) => assertWritable(access, op, docs[i]));
      return store.commit(ops);
    },
  } satisfies Partial<ResourceStore>);
}

const WRITE_PERMISSION: Record<WriteOp['method'], Permission> = { POST: 'c', PUT: 'u', DELETE: 'd' };
