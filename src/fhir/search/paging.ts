/**
 * Sorting and keyset paging. A page ends with the sort values of its last document; the next page is every document
 * strictly after those values in the sort order, so pages stay stable while resources are inserted or updated
 * (unlike skip/offset). `_id` is always the last sort key, which makes the order total.
 *
 * `so` values are never missing (extract.ts writes a sentinel of the right type), so "strictly after" needs no null
 * handling.
 */
import type { Document, Filter } from 'mongodb';
import { badRequest } from '../outcomes.js';
import type { SearchRequest, SortKey } from './request.js';

const ID_KEY: SortKey = { param: '_id', dir: 1, field: '_id', kind: 'string' };

/** The sort keys in order, ending with `_id` as tie-breaker (kept where `_sort` placed it if given explicitly). */
function sortKeys(req: SearchRequest): SortKey[] {
  return req.sort.some((s) => s.field === '_id') ? req.sort : [...req.sort, ID_KEY];
}

/** MongoDB sort document on the stored sort fields. */
export function buildSort(req: SearchRequest): Record<string, 1 | -1> {
  const sort: Record<string, 1 | -1> = {};
  for (const key of sortKeys(req)) sort[key.field] = key.dir;
  return sort;
}

interface CursorPayload {
  /** Format version. */
  v: 1;
  /** Fingerprint of the search the cursor was made for. */
  f: string;
  /** Sort values of the last document: dates as epoch milliseconds. For a scan: the last `_id`, or none. */
  k: (string | number)[];
  /** A scan's position (see ScanPosition): its level and the bucket it goes on with. */
  s?: [number, number];
}

/**
 * Where a search that pages through its type bucket by bucket (a scan, see extract.ts scanBucket) goes on: at this
 * level, in this bucket (0 … 16^level − 1), after this `_id` (from the bucket's start when absent).
 */
export interface ScanPosition {
  level: number;
  bucket: number;
  afterId?: string;
}

/** Opaque `_cursor` value for a scan's next page. */
export function encodeScanCursor(req: SearchRequest, at: ScanPosition): string {
  const payload: CursorPayload = {
    v: 1,
    f: req.fingerprint,
    k: at.afterId ? [at.afterId] : [],
    s: [at.level, at.bucket],
  };
  return Buffer.from(JSON.stringify(payload)).toString('base64url');
}

/** The scan position a cursor carries, or undefined for a keyset cursor (checked as decodeCursor does). */
export function decodeScanCursor(req: SearchRequest, cursor: string): ScanPosition | undefined {
  const payload = readPayload(req, cursor);
  if (!payload.s) return undefined;
  const [level, bucket] = payload.s;
  return { level, bucket, afterId: payload.k[0] as string | undefined };
}

function readPayload(req: SearchRequest, cursor: string): CursorPayload {
  const invalid = () => badRequest('Invalid _cursor: use the link.next URL of the previous page unchanged', '_cursor');
  let payload: unknown;
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
    payload = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (typeof payload !== 'object' || payload === null) throw invalid();
  const { v, f, k, s } = payload as Partial<CursorPayload>;
  if (v !== 1 || typeof f !== 'string' || !Array.isArray(k)) throw invalid();
  if (f !== req.fingerprint) {
    throw badRequest('The _cursor belongs to a different search: page with link.next of this search', '_cursor');
  }
  if (s !== undefined) {
    const [level, bucket] = Array.isArray(s) ? s : [];
    const wholeIn = (x: unknown, max: number) => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= max;
    if (!Array.isArray(s) || s.length !== 2 || !wholeIn(level, 3) || level === 0) throw invalid();
    if (!wholeIn(bucket, 16 ** (level as number) - 1) || k.length > 1 || !k.every((x) => typeof x === 'string')) {
      throw invalid();
    }
  }
  return payload as CursorPayload;
}

/** Opaque `_cursor` value (base64url JSON) for the page after `lastDoc`, a stored document of this search. */
export function encodeCursor(req: SearchRequest, lastDoc: Document): string {
  const k = sortKeys(req).map((key) => {
    const value = getPath(lastDoc, key.field);
    if (key.kind === 'date') {
      if (!(value instanceof Date)) throw new Error(`Stored sort value ${key.field} is not a date`);
      return value.getTime();
    }
    if (key.kind === 'number') {
      if (typeof value !== 'number') throw new Error(`Stored sort value ${key.field} is not a number`);
      return value;
    }
    if (typeof value !== 'string') throw new Error(`Stored sort value ${key.field} is not a string`);
    return value;
  });
  const payload: CursorPayload = { v: 1, f: req.fingerprint, k };
  return Buffer.from(JSON.stringify(payload)).toString('base64url');
}

/** The sort values carried by a cursor, checked against the search; any tampering or mismatch is a 400. */
export function decodeCursor(req: SearchRequest, cursor: string): unknown[] {
  const invalid = () => badRequest('Invalid _cursor: use the link.next URL of the previous page unchanged', '_cursor');
  const { k, s } = readPayload(req, cursor);
  if (s) return k; // a scan's position (decodeScanCursor)
  const keys = sortKeys(req);
  if (k.length !== keys.length) throw invalid();
  return keys.map((key, i) => {
    const value = k[i];
    if (key.kind === 'string') {
      if (typeof value !== 'string') throw invalid();
      return value;
    }
    if (typeof value !== 'number' || !Number.isFinite(value)) throw invalid();
    if (key.kind === 'number') return value;
    if (Math.abs(value) > 8.64e15) throw invalid();
    return new Date(value);
  });
}

/**
 * Documents strictly after the cursor position in the sort order: for keys k1..kn with directions,
 * (k1 beyond v1) or (k1 = v1 and k2 beyond v2) or … — plain field conditions only (FerretDB-compatible).
 */
export function cursorFilter(req: SearchRequest, cursor: string): Filter<Document> {
  const values = decodeCursor(req, cursor);
  const keys = sortKeys(req);
  const branches: Record<string, unknown>[] = [];
  for (let i = 0; i < keys.length; i++) {
    const branch: Record<string, unknown> = {};
    for (let j = 0; j < i; j++) branch[keys[j]!.field] = values[j];
    branch[keys[i]!.field] = { [keys[i]!.dir === 1 ? '$gt' : '$lt']: values[i] };
    branches.push(branch);
  }
  return (branches.length === 1 ? branches[0]! : { $or: branches }) as Filter<Document>;
}

function getPath(doc: Document, path: string): unknown {
  let value: unknown = doc;
  for (const part of path.split('.')) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}
