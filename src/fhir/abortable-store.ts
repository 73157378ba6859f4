import type { ResourceStore } from '../store/resource-store.js';

/**
 * Calls that go ahead after the client left: giving a claim back is the clean-up of a failed request, and planCreate
 * asks the database nothing. A commit is not among them: a write whose client has gone before it was accepted is not
 * stored (the client never learns of it and retries; a conditional create's claim is given back by its caller).
 */
const ALWAYS_RUN = new Set<PropertyKey>(['releaseClaim', 'planCreate']);

/**
 * The store as a request sees it once its client may have gone away: every call that would start a database round
 * trip first checks `signal` and throws its reason (a ClientGoneError) when it is aborted. So a search stops before
 * its next page, `_include` or chain query, a bundle before its next entry's reads, a conditional create waiting for
 * another request's claim stops polling, and a write is not committed. A round trip already under way (a commit
 * that has started: its ingest-log entry is then accepted) runs to its end.
 */
export function abortableStore<S extends object = ResourceStore>(store: S, signal: AbortSignal | undefined): S {
  if (!signal) return store;
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function' || ALWAYS_RUN.has(property)) return value;
      return (...args: unknown[]): unknown => {
        signal.throwIfAborted();
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
