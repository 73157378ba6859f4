import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Db } from 'mongodb';
import { observe, type ObservedQuery } from '../../src/store/query-inventory.js';

/**
 * Records the shape of every query the application code sends (collection and the filter's top-level keys, no
 * values), so that the run can check each against the query inventory (global-setup.ts teardown).
 *
 * The driver's Collection methods are wrapped once per test process. A query counts when the first caller outside
 * node_modules is in src/: a test's own assertions (which may scan a collection to count what was written) do not.
 * The shapes are written to one file per test process whenever a test app closes.
 */
const seen = new Map<string, ObservedQuery>();
let installed = false;
const fileTag = randomBytes(4).toString('hex');

type Filter = Record<string, unknown>;

/** Where each wrapped method's filter is (or filters are) among its arguments. */
const FILTERS: Record<string, (args: unknown[]) => Filter[]> = {
  find: (a) => [(a[0] as Filter) ?? {}],
  findOne: (a) => [(a[0] as Filter) ?? {}],
  countDocuments: (a) => [(a[0] as Filter) ?? {}],
  distinct: (a) => [(a[1] as Filter) ?? {}],
  deleteOne: (a) => [(a[0] as Filter) ?? {}],
  deleteMany: (a) => [(a[0] as Filter) ?? {}],
  updateOne: (a) => [(a[0] as Filter) ?? {}],
  updateMany: (a) => [(a[0] as Filter) ?? {}],
  replaceOne: (a) => [(a[0] as Filter) ?? {}],
  findOneAndUpdate: (a) => [(a[0] as Filter) ?? {}],
  findOneAndReplace: (a) => [(a[0] as Filter) ?? {}],
  findOneAndDelete: (a) => [(a[0] as Filter) ?? {}],
  aggregate: (a) => [((a[0] as Filter[] | undefined)?.[0]?.$match as Filter) ?? {}],
  bulkWrite: (a) =>
    ((a[0] as Record<string, { filter?: Filter }>[]) ?? []).flatMap((op) =>
      Object.values(op).flatMap((o) => (o?.filter ? [o.filter] : [])),
    ),
};

/** Whether the code that called the driver is the application's (src/), not a test's or a tool's. */
function calledFromApp(): boolean {
  for (const line of (new Error().stack ?? '').split('\n').slice(2)) {
    if (line.includes('node_modules') || line.includes('node:') || line.includes('query-log.ts')) continue;
    return /[/\\]src[/\\]/.test(line);
  }
  return false;
}

export function recordQueries(db: Db): void {
  if (installed) return;
  installed = true;
  const proto = Object.getPrototypeOf(db.collection('query_log_probe')) as Record<string, unknown>;
  for (const [method, filtersOf] of Object.entries(FILTERS)) {
    const original = proto[method] as (this: { collectionName: string }, ...args: unknown[]) => unknown;
    proto[method] = function (this: { collectionName: string }, ...args: unknown[]) {
      if (calledFromApp()) {
        for (const filter of filtersOf(args)) {
          const q = observe(this.collectionName, filter);
          seen.set(JSON.stringify(q), q);
        }
      }
      return original.apply(this, args);
    };
  }
}

/** Writes what this process recorded so far (test apps call it when they close; the file is rewritten each time). */
export function flushQueries(dir: string): void {
  if (seen.size === 0) return;
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `${process.pid}-${fileTag}.json`), JSON.stringify([...seen.values()]));
}
