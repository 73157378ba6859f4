/**
 * The `reuse_checks` collection: one document per `$reuse-check`, so a later decision (`$reuse-decision`) and the
 * savings reports can refer to what was proposed. It holds patient keys, never identifiers.
 */
import type { Collection, Db } from 'mongodb';
import { InsertBatcher } from '../store/insert-batcher.js';
import type { ReuseDecision, ReuseOutcome } from './engine.js';

export const REUSE_CHECKS_COLLECTION = 'reuse_checks';

export interface StoredOutcome {
  requestIndex: number;
  /** Catalogue item code (absent for not-recognized). */
  item?: string;
  decision: ReuseDecision;
  /** `DiagnosticReport/<id>` or `Observation/<id>` of the proposed result. */
  result?: string;
  resultVersion?: string;
  performer?: string;
  effective?: string;
  validUntil?: string;
  saving: number;
  currency: 'CNY';
}

/** What a check keeps of an engine outcome (the shape every writer of checks stores). */
export function storedOutcome(o: ReuseOutcome): StoredOutcome {
  return {
    requestIndex: o.requestIndex,
    ...(o.item?.code ? { item: o.item.code } : {}),
    decision: o.decision,
    ...(o.fact ? { result: o.fact.source } : {}),
    ...(o.fact?.sourceVersion ? { resultVersion: o.fact.sourceVersion } : {}),
    ...(o.performer ? { performer: o.performer } : {}),
    ...(o.effective ? { effective: o.effective } : {}),
    ...(o.validUntil ? { validUntil: o.validUntil } : {}),
    saving: o.saving.value,
    currency: o.saving.currency,
  };
}

export interface ReuseCheckDoc {
  _id: string;
  /** Institution id of the requester. */
  requester: string;
  /** The client that asked (for the decisions ledger). */
  clientId?: string;
  patientKeys: string[];
  createdAt: Date;
  at: Date;
  context: string;
  outcomes: StoredOutcome[];
}

export class ReuseCheckStore {
  readonly collection: Collection<ReuseCheckDoc>;
  /** Checks of concurrent requests are stored together (one round trip for many at order-entry peaks). */
  private readonly batcher: InsertBatcher<ReuseCheckDoc>;

  constructor(db: Db) {
    this.collection = db.collection<ReuseCheckDoc>(REUSE_CHECKS_COLLECTION);
    this.batcher = new InsertBatcher(this.collection);
  }

  async ensureIndexes(): Promise<void> {
    await this.collection.createIndex({ createdAt: -1 });
  }

  async insert(doc: ReuseCheckDoc): Promise<void> {
    const { duplicates } = await this.batcher.insert([doc]);
    if (duplicates.length) throw Object.assign(new Error('A reuse check with this id exists'), { code: 11000 });
  }

  async get(id: string): Promise<ReuseCheckDoc | null> {
    return this.collection.findOne({ _id: id });
  }
}
