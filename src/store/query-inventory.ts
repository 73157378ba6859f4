/**
 * Every query shape the application sends to the database, in one list (issue 17; design.md, Database).
 *
 * An `anchor` shape is an equality on one field (a scalar, or an element of an array; or an `$in` of up to IN_CHUNK
 * (100) strings, one equality each) that an index of the collection serves: on FerretDB over PostgreSQL through the GIN companion our FerretDB build gives every index
 * (db/ferretdb/patches.json), on MongoDB through an ordinary or multikey index whose first key it is. Whatever else the
 * query asks (ranges, `$or`, sorts) is applied to the few documents the anchor finds.
 *
 * A `scan` shape reads a whole collection (or a large share of one) on purpose: a small collection, a rebuild, a
 * maintenance purge. Each says why it is acceptable.
 *
 * test/integration/query-inventory.test.ts runs every anchor under `explain` (pushed down and served by an index on
 * the embedded database; IXSCAN and no COLLSCAN on MongoDB when MONGODB_URI is set), and the test run records the
 * queries the app really sends and fails on any that no entry covers.
 */
import type { Collection, Document, Filter, WithId } from 'mongodb';
export interface AnchorShape {
  collection: string;
  /** The field the equality is on. */
  anchor: string;
  /** A value of the right type for `explain` (strings unless said). */
  sample?: string | boolean | number;
  /** What sends it. */
  use: string;
}

export interface ScanShape {
  collection: string;
  /** The top-level keys the filter has (all of them); `[]` is `{}`. */
  keys: string[];
  /** Further keys the filter may have. */
  extra?: RegExp;
  use: string;
  /** Why a scan is acceptable here. */
  why: string;
}

export const ANCHORS: AnchorShape[] = [
  { collection: 'resources', anchor: '_id', use: 'read, vread check, planning of writes, _include, by-id searches' },
  {
    collection: 'resources',
    anchor: 'tk',
    use: 'FHIR search, conditional create/update/delete, chains, _revinclude, a Patient’s re-projection',
  },
  { collection: 'history', anchor: '_id', use: 'vread, version claims of every write' },
  { collection: 'history', anchor: 'id', use: 'instance history; a replayed op finding its own version' },
  { collection: 'ingest_log', anchor: '_id', use: 'removing a projected entry' },
  {
    collection: 'ingest_log',
    anchor: 'refs',
    use: 'a conditional create finding the accepted write of a lapsed claim',
  },
  { collection: 'conditional_claims', anchor: '_id', use: 'conditional create claims' },
  { collection: 'facts', anchor: 'patientKeys', use: '$reuse-check, CDS Hooks, the doctor’s view' },
  { collection: 'facts', anchor: 'source', use: 'replacing and removing the facts of one result' },
  { collection: 'facts', anchor: '_id', use: 'upserting a fact' },
  { collection: 'patient_index', anchor: '_id', use: 'patient lookup by key' },
  { collection: 'patient_keys', anchor: '_id', use: 'a Patient’s keys' },
  { collection: 'decisions', anchor: '_id', use: 'recording a decision' },
  { collection: 'decisions', anchor: 'check', use: 'the decisions of one check' },
  {
    collection: 'decisions',
    anchor: 'month',
    use: "federation figures: a month's accepted and declined decisions (recognitions of other brokers' results)",
  },
  { collection: 'prompts', anchor: '_id', use: 'opening and updating a prompt; folding entries into prompts' },
  { collection: 'prompts', anchor: 'day', use: 'report: the open days (one $in of today, yesterday, tomorrow)' },
  { collection: 'prompts', anchor: 'month', use: 'report: summing a closed month' },
  { collection: 'prompts', anchor: 'caseMonth', use: 'supervision: the declines of a month (the case list)' },
  { collection: 'ledger_marks', anchor: '_id', use: 'report rollup marks' },
  { collection: 'ledger_rollups', anchor: '_id', use: 'report rollups' },
  { collection: 'reuse_checks', anchor: '_id', use: 'a check by id ($reuse-decision, the view)' },
  { collection: 'cds_cards', anchor: '_id', use: 'CDS feedback' },
  { collection: 'cds_clients', anchor: '_id', use: 'CDS client JWT check' },
  { collection: 'clients', anchor: '_id', use: 'token endpoint' },
  { collection: 'seen_jti', anchor: '_id', use: 'replayed client assertions' },
  { collection: 'signing_keys', anchor: '_id', use: 'verifying an access token' },
  { collection: 'app_launches', anchor: '_id', use: 'SMART launch' },
  { collection: 'app_codes', anchor: '_id', use: 'SMART authorization codes' },
  { collection: 'app_claims', anchor: '_id', use: 'single use of launches and codes' },
  { collection: 'app_day_checks', anchor: '_id', use: "the view's checks of a patient today (re-launch)" },
  { collection: 'sync_endpoints', anchor: '_id', use: 'a hospital endpoint' },
  { collection: 'sync_status', anchor: '_id', use: 'a hospital’s sync state' },
  { collection: 'federation_brokers', anchor: '_id', use: 'a federated broker (admin)' },
  { collection: 'federation_rule_additions', anchor: '_id', use: 'this level’s additions to its parent’s rules' },
  { collection: 'sync_leases', anchor: '_id', use: 'renewing a sync lease' },
  { collection: 'sync_leases', anchor: 'endpoint', use: 'taking a sync lease' },
  { collection: 'recognition_rules', anchor: '_id', use: 'a rules version' },
  { collection: 'demo_seed', anchor: '_id', use: 'demo seeding marker' },
  { collection: 'store_meta', anchor: '_id', use: 'the store layout marker' },
];

const RARE = 'rare and bounded: at most a few hundred documents in a city';

export const SCANS: ScanShape[] = [
  {
    collection: 'resources',
    keys: ['type', 'deleted'],
    extra: /^(sp\.|so\.|_id$|lastUpdated$|owner$|\$and$|\$or$)/,
    use: 'a FHIR search with nothing selective (Observation?status=final) over a small type, or with _sort or _total=accurate; rebuilds',
    why: 'a type estimated above 256 documents is paged bucket by bucket instead (a tk anchor, interactions.ts scanPage); with _sort or a count, stopped at HUREN_SEARCH_TIMEOUT_MS (too-costly); rebuilds of derived indexes read everything by design, in batches',
  },
  {
    collection: 'resources',
    keys: ['type', 'lastUpdated'],
    use: 'audit retention purge',
    why: 'maintenance, once per 10 minutes, outside requests',
  },
  { collection: 'resources', keys: [], use: 'layout upgrade at start-up', why: 'once per layout version' },
  {
    collection: 'history',
    keys: [],
    extra: /^(type|lastUpdated|\$and)$/,
    use: 'type and system _history',
    why: 'paged newest first; MongoDB serves it from {type, lastUpdated}; FerretDB sorts the type in Go',
  },
  {
    collection: 'history',
    keys: ['type', 'lastUpdated'],
    use: 'audit retention purge',
    why: 'maintenance, once per 10 minutes, outside requests',
  },
  { collection: 'ingest_log', keys: [], use: 'replay at start-up', why: 'holds only unprojected entries' },
  { collection: 'facts', keys: [], use: 'rebuild of the fact index', why: 'a rebuild reads everything by design' },
  { collection: 'ledger_rollups', keys: [], use: 'rebuild of report rollups', why: 'a rebuild by design' },
  {
    collection: 'decisions',
    keys: [],
    use: 're-tally of the ledger into prompts when the figure definitions change',
    why: 'once per definitions version, at start-up, in batches',
  },
  { collection: 'recognition_rules', keys: [], use: 'the newest rules version', why: 'one document per edit' },
  { collection: 'sync_endpoints', keys: [], use: 'listing hospital endpoints', why: RARE },
  { collection: 'sync_status', keys: [], use: 'listing sync states', why: RARE },
  {
    collection: 'federation_brokers',
    keys: [],
    use: 'the federated brokers (parent, children, peers)',
    why: 'a handful of documents, read at most every 5 s per process',
  },
  { collection: 'clients', keys: ['demo'], use: 'removing demo clients', why: RARE },
  { collection: 'cds_clients', keys: ['demo'], use: 'removing demo CDS clients', why: RARE },
  {
    collection: 'cds_clients',
    keys: [],
    use: 'CORS origins of the registered EHRs',
    why: 'a few dozen EHRs, read at most every 30 s per process',
  },
  {
    collection: 'signing_keys',
    keys: [],
    extra: /^(signUntil|verifyUntil)$/,
    use: 'the broker’s keys',
    why: 'a handful of keys',
  },
  { collection: 'seen_jti', keys: ['expiresAt'], use: 'purge', why: 'entries live 5 minutes: maintenance' },
  { collection: 'app_launches', keys: ['expiresAt'], use: 'purge', why: 'entries live minutes: maintenance' },
  { collection: 'app_day_checks', keys: ['expiresAt'], use: 'purge', why: 'entries live two days: maintenance' },
  { collection: 'app_codes', keys: ['expiresAt'], use: 'purge', why: 'entries live minutes: maintenance' },
  { collection: 'app_claims', keys: ['at'], use: 'purge', why: 'entries live a day: maintenance' },
];

/** What the test run records of one query: its collection and its filter's top-level keys with their kind. */
export interface ObservedQuery {
  collection: string;
  /** Top-level keys whose condition is an equality on a scalar (an index anchor). */
  equalities: string[];
  /** Every top-level key. */
  keys: string[];
}

/** The filter's shape (values left out: no data of the test run is kept). */
export function observe(collection: string, filter: Record<string, unknown>): ObservedQuery {
  const keys = Object.keys(filter).sort();
  const equalities = keys.filter((k) => {
    const v = filter[k];
    if (k.startsWith('$')) return false;
    if (v === null || typeof v !== 'object' || v instanceof Date) return true;
    const ops = Object.keys(v);
    if (ops.length === 1 && ops[0] === '$in') return stringsIn((v as { $in: unknown }).$in);
    return ops.length > 0 && ops.every((op) => op === '$eq');
  });
  return { collection, equalities, keys };
}

/**
 * The most values one `$in` query asks for; longer lists are asked in chunks of this size. PostgreSQL checks every
 * row an `$in` finds against every value again (a GIN index on jsonb is lossy), so its cost grows with the square of
 * the values: measured on 20 k documents by `_id`, 100 values 5 ms, 300 values 170 ms, 1 000 values 910 ms.
 */
export const IN_CHUNK = 100;

/** The values of `values` in chunks of at most IN_CHUNK, one `$in` query each. */
export function inChunks<T>(values: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < values.length; i += IN_CHUNK) out.push(values.slice(i, i + IN_CHUNK));
  return out;
}

/** The documents whose `field` is one of `values` (strings): one `$in` query per IN_CHUNK of them. */
export async function findIn<T extends Document>(
  collection: Collection<T>,
  field: string,
  values: readonly string[],
): Promise<WithId<T>[]> {
  const out: WithId<T>[] = [];
  for (const chunk of inChunks([...new Set(values)])) {
    out.push(...(await collection.find({ [field]: { $in: chunk } } as Filter<T>).toArray()));
  }
  return out;
}

/**
 * An `$in` our FerretDB build pushes down (db/ferretdb/patches.json): up to IN_CHUNK strings, one equality each; an
 * empty one matches nothing and reads nothing.
 */
export function stringsIn(values: unknown): boolean {
  return Array.isArray(values) && values.length <= IN_CHUNK && values.every((x) => typeof x === 'string');
}

/** The inventory entry that covers an observed query, or undefined (a query shape nobody checked). */
export function coverOf(q: ObservedQuery): AnchorShape | ScanShape | undefined {
  const anchor = ANCHORS.find((a) => a.collection === q.collection && q.equalities.includes(a.anchor));
  if (anchor) return anchor;
  return SCANS.find(
    (s) =>
      s.collection === q.collection &&
      s.keys.every((k) => q.keys.includes(k)) &&
      q.keys.every((k) => s.keys.includes(k) || (s.extra?.test(k) ?? false)),
  );
}
