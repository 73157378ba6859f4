import mongoose, { type Connection, type Model } from 'mongoose';
import type { Resource } from 'fhir/r4';

/**
 * The collections of the generic resource store. Every FHIR type lives in the same three collections, keyed by
 * type: one store and one search implementation for all types (style.md).
 */

/** Current version of each resource (or its tombstone), with precomputed search (`sp`) and sort (`so`) values. */
export interface CurrentDoc {
  _id: string; // `${type}/${id}`
  type: string;
  id: string;
  vid: number;
  lastUpdated: Date;
  deleted: boolean;
  resource: Resource | null;
  sp: Record<string, unknown>;
  so: Record<string, unknown>;
  /** Indexed exact-match keys of the search values (`Type|param|value`, extract.ts): what searches narrow on. */
  tk: string[];
  /** Institutions the resource belongs to (`Organization/…`), for tenancy. */
  owner?: string[];
  /** The ingest-log entry that wrote this version: makes replays idempotent. */
  txn: string;
}

/** Every version ever written, for vread and _history. */
export interface HistoryDoc {
  _id: string; // `${type}/${id}/${vid}`
  type: string;
  id: string;
  vid: number;
  lastUpdated: Date;
  method: 'POST' | 'PUT' | 'DELETE';
  resource: Resource | null;
  txn: string;
}

/** One planned write inside an ingest-log entry. */
export interface WriteOp {
  type: string;
  id: string;
  /** Version the plan was made against (0: the resource did not exist). */
  prevVid: number;
  /** The client's If-Match made the write conditional on `prevVid` still being the newest version. */
  ifMatch?: boolean;
  method: 'POST' | 'PUT' | 'DELETE';
  /** The resource to store, without meta.versionId/lastUpdated (set when applied); null for a delete. */
  resource: Resource | null;
}

/**
 * A write accepted but maybe not yet projected. A whole transaction Bundle is ONE such document: single-document
 * writes are atomic on MongoDB and FerretDB alike, so a bundle is either fully accepted or not at all; projecting it
 * into `resources`/`history` is idempotent and replayed at start-up after a crash.
 */
export interface IngestLogDoc {
  _id: string;
  state: 'pending';
  createdAt: Date;
  /**
   * The ops as one JSON string: the database stores and returns a string far more cheaply than the documents of a
   * whole bundle (measured on FerretDB: 100 results, 12 ms against 80 ms to write and remove), and nobody queries
   * inside them.
   */
  opsJson?: string;
  /** The ops of entries written before `opsJson` (still replayed). */
  ops?: WriteOp[];
  /** `Type/id` of every op: a conditional create waiting on a claim finds an accepted, unprojected write by it. */
  refs?: string[];
}

/** Claim that makes conditional create race-free: the unique `_id` is the condition itself. */
export interface ConditionalClaimDoc {
  _id: string; // `${type}?${canonical query}`
  ref: string; // `${type}/${id}`
  createdAt: Date;
  /** End of the lease: the owner renews it while its request is in flight (absent on claims of older versions). */
  until?: Date;
}

const mixed = mongoose.Schema.Types.Mixed;
const options = { versionKey: false, minimize: false, strict: false } as const;

const currentSchema = new mongoose.Schema<CurrentDoc>(
  {
    _id: String,
    type: String,
    id: String,
    vid: Number,
    lastUpdated: Date,
    deleted: Boolean,
    resource: mixed,
    sp: mixed,
    so: mixed,
    tk: [String],
    owner: [String],
    txn: String,
  },
  { ...options, collection: 'resources' },
);
// Every search, conditional interaction and _revinclude narrows on one element of `tk` (search/filter.ts).
currentSchema.index({ tk: 1 });
currentSchema.index({ type: 1, lastUpdated: 1 });
currentSchema.index({ type: 1, owner: 1 });

const historySchema = new mongoose.Schema<HistoryDoc>(
  {
    _id: String,
    type: String,
    id: String,
    vid: Number,
    lastUpdated: Date,
    method: String,
    resource: mixed,
    txn: String,
  },
  { ...options, collection: 'history' },
);
historySchema.index({ type: 1, id: 1, vid: -1 });
historySchema.index({ type: 1, lastUpdated: -1 });
historySchema.index({ lastUpdated: -1 });

const ingestSchema = new mongoose.Schema<IngestLogDoc>(
  { _id: String, state: String, createdAt: Date, opsJson: String, ops: mixed, refs: [String] },
  { ...options, collection: 'ingest_log' },
);
ingestSchema.index({ createdAt: 1 });
ingestSchema.index({ refs: 1 });

const claimSchema = new mongoose.Schema<ConditionalClaimDoc>(
  { _id: String, ref: String, createdAt: Date, until: Date },
  { ...options, collection: 'conditional_claims' },
);

export interface StoreModels {
  current: Model<CurrentDoc>;
  history: Model<HistoryDoc>;
  ingest: Model<IngestLogDoc>;
  claims: Model<ConditionalClaimDoc>;
}

export function createModels(connection: Connection): StoreModels {
  return {
    current: connection.model<CurrentDoc>('Resource', currentSchema),
    history: connection.model<HistoryDoc>('History', historySchema),
    ingest: connection.model<IngestLogDoc>('IngestLog', ingestSchema),
    claims: connection.model<ConditionalClaimDoc>('ConditionalClaim', claimSchema),
  };
}

export async function ensureIndexes(models: StoreModels): Promise<void> {
  await Promise.all(Object.values(models).map((m: Model<unknown>) => m.createIndexes()));
}
