/**
 * The patient index: for each pseudonymous patient key, the broker's Patient resources that carry it, with what each
 * says about sex and birth date. A check finds the patient's records (for the audit trail and identity
 * corroboration) with one lookup by `_id`, instead of a search by identifier — which MongoDB serves from an index but
 * FerretDB 1.24 answers with a scan of every resource.
 *
 * Two collections, both keyed by `_id`: `patient_index` (key → records, one field per Patient) and `patient_keys`
 * (Patient → its keys, to know which keys to drop when identifiers change). Kept current by the store's version
 * hook, also on replay, so it is as durable as the resources; `rebuild` re-creates it from the stored Patients.
 */
import type { Patient } from 'fhir/r4';
import type { Collection, Db } from 'mongodb';
import type { CurrentDoc } from '../store/models.js';
import type { ResourceStore } from '../store/resource-store.js';
import { patientKeysOf, type KeySecrets } from './identity.js';

export interface PatientRecord {
  /** `Patient/<id>` */
  ref: string;
  /** The institution whose record it is (managingOrganization id), when stated. */
  organization?: string;
  sex?: string;
  birthDate?: string;
}

interface IndexDoc {
  _id: string;
  /** Field name: the Patient reference with '.' written as '~' (field names cannot contain dots). */
  patients: Record<string, PatientRecord>;
}

interface KeysDoc {
  _id: string;
  keys: string[];
}

const field = (ref: string) => `patients.${ref.replace(/\./g, '~')}`;

export function recordOf(doc: CurrentDoc): PatientRecord {
  const p = doc.resource as Patient;
  const org = /^Organization\/([A-Za-z0-9\-.]{1,64})$/.exec(p.managingOrganization?.reference ?? '')?.[1];
  return {
    ref: `Patient/${doc.id}`,
    ...(org ? { organization: org } : {}),
    ...(p.gender ? { sex: p.gender } : {}),
    ...(p.birthDate ? { birthDate: p.birthDate } : {}),
  };
}

export class PatientIndex {
  readonly index: Collection<IndexDoc>;
  readonly keys: Collection<KeysDoc>;

  constructor(
    db: Db,
    private readonly secret: KeySecrets,
  ) {
    this.index = db.collection<IndexDoc>('patient_index');
    this.keys = db.collection<KeysDoc>('patient_keys');
  }

  /**
   * Brings the index in line with one Patient version (a tombstone removes it). Idempotent; the new keys are written
   * before stale ones are dropped, so a crash in between leaves an extra entry at worst (fixed by the replay).
   */
  async update(doc: CurrentDoc): Promise<void> {
    const ref = `Patient/${doc.id}`;
    const live = !doc.deleted && doc.resource;
    const keys = live ? patientKeysOf(this.secret, (doc.resource as Patient).identifier) : [];
    const record = live ? recordOf(doc) : undefined;
    for (const key of keys) {
      await this.index.updateOne({ _id: key }, { $set: { [field(ref)]: record! } }, { upsert: true });
    }
    const before = (await this.keys.findOne({ _id: ref }))?.keys ?? [];
    for (const key of before.filter((k) => !keys.includes(k))) {
      await this.index.updateOne({ _id: key }, { $unset: { [field(ref)]: '' } });
    }
    if (keys.length) await this.keys.replaceOne({ _id: ref }, { keys }, { upsert: true });
    else if (before.length) await this.keys.deleteOne({ _id: ref });
  }

  /**
   * Whether this version changes the Patient's keys (new identifiers, a new or deleted Patient) compared with what
   * the index holds: only then may its results need re-projecting.
   */
  async keysChanged(doc: CurrentDoc): Promise<boolean> {
    const keys = !doc.deleted && doc.resource ? patientKeysOf(this.secret, (doc.resource as Patient).identifier) : [];
    const before = (await this.keys.findOne({ _id: `Patient/${doc.id}` }))?.keys ?? [];
    return keys.length !== before.length || keys.some((k) => !before.includes(k));
  }

  /** The Patient records carrying any of these keys (at most `limit`). */
  async lookup(keys: readonly string[], limit = 20): Promise<PatientRecord[]> {
    const out = new Map<string, PatientRecord>();
    for (const key of keys) {
      const doc = await this.index.findOne({ _id: key });
      for (const record of Object.values(doc?.patients ?? {})) if (record) out.set(record.ref, record);
    }
    return [...out.values()].sort((a, b) => a.ref.localeCompare(b.ref)).slice(0, limit);
  }

  /** Whether the index has never been built while Patients exist (a database from before the index). */
  async needsBuild(store: ResourceStore): Promise<boolean> {
    if ((await this.keys.estimatedDocumentCount()) > 0) return false;
    return (await store.count({ type: 'Patient', deleted: false })) > 0;
  }

  /** Re-creates the index from every stored Patient. */
  async rebuild(store: ResourceStore): Promise<number> {
    let count = 0;
    for await (const doc of store.scan({ type: 'Patient', deleted: false })) {
      await this.update(doc);
      count++;
    }
    return count;
  }
}
