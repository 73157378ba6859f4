import type { Resource } from 'fhir/r4';
import type { Document, Filter } from 'mongodb';
import { notFound } from '../fhir/outcomes.js';
import type { CurrentDoc, WriteOp } from '../store/models.js';
import type { ResourceStore } from '../store/resource-store.js';
import { assertReadable, assertWritable, isReadable, tenantFilter } from './policy.js';
import type { AccessContext } from './tokens.js';

/**
 * The store as one caller may see it: tenancy applied at the single place every FHIR interaction goes through, so
 * read, search, include, history, conditional interactions and every write of a bundle are narrowed the same way.
 * Roles other than `his` see the store unchanged.
 */
export function scopeStore(store: ResourceStore, access: AccessContext | undefined): ResourceStore {
  const narrow = tenantFilter(access);
  if (!narrow || !access) return store;
  const and = (filter: Filter<Document>): Filter<Document> => ({ $and: [filter, narrow] });
  const scoped = Object.create(store) as ResourceStore;
  // A condition (If-None-Exist, conditional update) is claimed per institution: each hospital has its own copy.
  const tenantCondition = (condition: string) => `${condition}#${access.organization}`;

  return Object.assign(scoped, {
    find: (filter: Filter<Document>, sort: Record<string, 1 | -1>, limit: number) =>
      store.find(and(filter), sort, limit),
    count: (filter: Filter<Document>) => store.count(and(filter)),
    findByRefs: async (refs: string[]) => (await store.findByRefs(refs)).filter((d) => isReadable(access, d)),
    // findCurrent is deliberately not narrowed: planning must see another institution's resource so that writing over
    // it is refused (commit) rather than taken for a create.
    read: async (type: string, id: string): Promise<Resource> => {
      const doc = await store.findCurrent(type, id);
      if (doc) assertReadable(access, doc);
      return store.read(type, id);
    },
    vread: async (type: string, id: string, vid: string): Promise<Resource> => {
      const doc = await store.findCurrent(type, id);
      if (doc) assertReadable(access, doc);
      return store.vread(type, id, vid);
    },
    history: async (...args: Parameters<ResourceStore['history']>) => {
      const [scope] = args;
      if (!scope.type || !scope.id) throw notFound('History across resources is not available to this client');
      const doc = await store.findCurrent(scope.type, scope.id);
      if (doc) assertReadable(access, doc);
      return store.history(...args);
    },
    claimCondition: (type: string, condition: string, search: () => Promise<string[]>) =>
      store.claimCondition(type, tenantCondition(condition), search),
    releaseClaim: (type: string, condition: string, id: string) =>
      store.releaseClaim(type, tenantCondition(condition), id),
    commit: async (ops: WriteOp[]) => {
      for (const op of ops) {
        // Always the real current version: planning may have seen none, yet another institution's may exist.
        const current: CurrentDoc | null = await store.findCurrent(op.type, op.id);
        assertWritable(access, op, current);
      }
      return store.commit(ops);
    },
  } satisfies Partial<ResourceStore>);
}
