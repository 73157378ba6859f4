/**
 * The recognition fact index: the `facts` collection, kept up to date from the store. Every applied version of a
 * DiagnosticReport or Observation (also on replay of the ingest log) replaces the facts of its source with the
 * projection of the current version; a deletion removes them. A Patient's new version re-projects the results that
 * name it as subject, so a corrected identifier moves its results to the right patient key.
 *
 * This is the only code that touches `facts`. Logs carry ids and counts, never identifiers or keys.
 */
import type { DiagnosticReport, Observation, Patient, Reference } from 'fhir/r4';
import type { Collection, Db } from 'mongodb';
import { normalizeReference, searchToken } from '../fhir/search/extract.js';
import type { Logger } from '../log.js';
import type { PatientIndex } from './patient-index.js';
import type { CurrentDoc } from '../store/models.js';
import type { ResourceStore } from '../store/resource-store.js';
import { projectFacts, type Projection, type RecognitionFact } from './facts.js';
import { patientKeysOf, type KeySecrets } from './identity.js';
import type { RecognitionRules } from './load.js';

/** A fact as stored: keyed by its id, with the effective time as a Date for range queries. */
export type FactDoc = RecognitionFact & { _id: string; effectiveAt: Date };

export const FACTS_COLLECTION = 'facts';
/** Types whose versions are projected into facts. */
export const PROJECTED_TYPES = ['DiagnosticReport', 'Observation'] as const;

const PATIENT_REF = /^Patient\/([A-Za-z0-9\-.]{1,64})$/;

export class FactStore {
  readonly collection: Collection<FactDoc>;

  constructor(db: Db) {
    this.collection = db.collection<FactDoc>(FACTS_COLLECTION);
  }

  /**
   * The recognition query: a patient's facts of some items, newest first. Only `patientKeys` is an array, as a
   * compound index requires.
   */
  async ensureIndexes(): Promise<void> {
    await this.collection.createIndex({ patientKeys: 1, item: 1, effectiveAt: -1 });
    await this.collection.createIndex({ source: 1 });
  }

  /** A patient's facts (by any of its pseudonymous keys) with an effective time in [from, until]. */
  async findForPatient(patientKeys: string[], from: Date, until: Date): Promise<RecognitionFact[]> {
    // One key (the usual case) as plain equality, several as `$in` (pushed down by our FerretDB build, an index
    // lookup per key on either database).
    const keys = patientKeys.length === 1 ? patientKeys[0]! : { $in: patientKeys };
    const docs = await this.collection.find({ patientKeys: keys, effectiveAt: { $gte: from, $lte: until } }).toArray();
    return docs.map(({ _id: _unusedId, effectiveAt: _unusedAt, ...fact }) => fact);
  }

  /**
   * Makes the facts of each projection's source exactly its facts. Idempotent. Without multi-document transactions
   * the order is what keeps it safe: the new facts are written first, then the stale ones deleted, so a crash in
   * between leaves extra facts at worst (removed by the next projection or a rebuild), never none.
   *
   * `firstVersions`: sources projected from their version 1, which no earlier version left facts for: their facts
   * are inserted (an upsert only where one exists already, as on a replay) and nothing is searched for deletion.
   */
  async replaceFacts(
    projections: Projection[],
    firstVersions: ReadonlySet<string> = new Set(),
  ): Promise<{ upserted: number; removed: number }> {
    const fresh = projections.filter((p) => firstVersions.has(p.source)).flatMap((p) => p.facts.map(toDoc));
    const replaced = projections.filter((p) => !firstVersions.has(p.source)).flatMap((p) => p.facts.map(toDoc));
    const clash = await insertIgnoringDuplicates(this.collection, fresh);
    const upserts = [...replaced, ...fresh.filter((_, i) => clash.has(i))];
    if (upserts.length > 0) {
      await this.collection.bulkWrite(
        upserts.map((doc) => ({ replaceOne: { filter: { _id: doc._id }, replacement: doc, upsert: true } })),
        { ordered: false },
      );
    }
    const removed = await Promise.all(
      projections
        .filter((p) => !firstVersions.has(p.source))
        .map((p) => this.collection.deleteMany({ source: p.source, _id: { $nin: p.facts.map((f) => f.id) } })),
    );
    return {
      upserted: fresh.length + replaced.length,
      removed: removed.reduce((n, r) => n + r.deletedCount, 0),
    };
  }

  async removeSource(source: string): Promise<number> {
    return (await this.collection.deleteMany({ source })).deletedCount;
  }

  async clear(): Promise<void> {
    await this.collection.deleteMany({});
  }
}

function toDoc(fact: RecognitionFact): FactDoc {
  return { _id: fact.id, ...fact, effectiveAt: new Date(fact.effective) };
}

/** One unordered insert; returns the positions that already existed (duplicate `_id`). */
async function insertIgnoringDuplicates(collection: Collection<FactDoc>, docs: FactDoc[]): Promise<Set<number>> {
  const clash = new Set<number>();
  if (docs.length === 0) return clash;
  try {
    await collection.insertMany(docs, { ordered: false });
  } catch (err) {
    const raw = (err as { writeErrors?: unknown }).writeErrors;
    const list = (Array.isArray(raw) ? raw : raw ? [raw] : []) as { index: number; code: number }[];
    if (list.length === 0 || list.some((e) => e.code !== 11000)) throw err;
    for (const e of list) clash.add(e.index);
  }
  return clash;
}

export interface RebuildProgress {
  /** Results read so far. */
  done: number;
  total: number;
  /** Facts written so far. */
  facts: number;
}

/** Keeps the fact index in step with the store: give `onVersion` to the ResourceStore. */
export class FactProjector {
  private readonly currentRules: () => RecognitionRules;

  constructor(
    readonly facts: FactStore,
    /** The rules, or a provider of the rules in force (they change when an administrator edits them). */
    rules: RecognitionRules | (() => RecognitionRules),
    /** The patient key secret (identity.ts): a check computes the same keys as the projection. */
    readonly secret: KeySecrets,
    private readonly log: Logger,
    /** Patient key → the broker's Patient records (audit trail and identity corroboration without a search). */
    readonly patients: PatientIndex,
  ) {
    this.currentRules = typeof rules === 'function' ? rules : () => rules;
  }

  /** The recognition rules in force now: read it per use, never keep it across requests. */
  get rules(): RecognitionRules {
    return this.currentRules();
  }

  /** The ResourceStore hook: called with the current document after every applied version. */
  readonly onVersion = async (doc: CurrentDoc, store: ResourceStore): Promise<void> => {
    await this.onVersions([doc], store);
  };

  /**
   * The ResourceStore hook for the versions of one ingest-log entry: Patients first (their keys decide their
   * results' facts), then every result's facts in one write, each subject Patient read once.
   */
  readonly onVersions = async (docs: CurrentDoc[], store: ResourceStore): Promise<void> => {
    const results = docs.filter((d) => (PROJECTED_TYPES as readonly string[]).includes(d.type));
    // The results of this batch are projected below, after their Patients: not again by the re-projection.
    const inBatch = new Set(results.map((d) => d._id));
    for (const doc of docs.filter((d) => d.type === 'Patient')) {
      // Results are re-projected only when the Patient's keys change (a search of its results, which FerretDB
      // answers with a scan); first, so that a crash before the index update re-projects again on replay.
      if (await this.patients.keysChanged(doc)) await this.reprojectPatient(doc.id, store, inBatch);
      await this.patients.update(doc);
    }
    if (results.length) await this.projectDocs(results, store);
  };

  /** Projects one current document of a result (a tombstone removes its facts). */
  async projectDoc(doc: CurrentDoc, store: ResourceStore): Promise<Projection> {
    return (await this.projectDocs([doc], store))[0]!;
  }

  /** Projects current documents of results (tombstones remove their facts), writing all their facts at once. */
  async projectDocs(docs: CurrentDoc[], store: ResourceStore): Promise<Projection[]> {
    const keysOf = new Map<string, Promise<string[]>>();
    const subjectKeys = (subject: Reference | undefined) => {
      const ref = subject?.reference ?? '';
      if (!keysOf.has(ref)) keysOf.set(ref, this.subjectKeys(subject, store));
      return keysOf.get(ref)!;
    };
    const projections = await Promise.all(
      docs.map(async (doc): Promise<Projection> => {
        const source = `${doc.type}/${doc.id}`;
        if (doc.deleted || !doc.resource) return { source, facts: [], notes: [] };
        const resource = doc.resource as DiagnosticReport | Observation;
        const keys = await subjectKeys(resource.subject);
        return projectFacts(resource, {
          index: this.rules.index,
          resolvePatientKeys: () => keys,
          timeZone: this.rules.catalogue.timeZone,
        });
      }),
    );
    const tombstones = docs.filter((d) => d.deleted || !d.resource);
    for (const doc of tombstones) {
      const removed = await this.facts.removeSource(`${doc.type}/${doc.id}`);
      if (removed) this.log.info('Recognition facts removed', { source: doc._id, vid: doc.vid, removed });
    }
    const live = projections.filter((_, i) => !docs[i]!.deleted && docs[i]!.resource);
    const firstVersions = new Set(docs.filter((d) => d.vid === 1 && d.resource).map((d) => d._id));
    if (live.length) {
      const { upserted, removed } = await this.facts.replaceFacts(live, firstVersions);
      this.log.debug('Recognition facts projected', {
        results: live.length,
        facts: upserted,
        removed,
        skipped: live.filter((p) => p.skipped).length,
        notes: live.reduce((n, p) => n + p.notes.length, 0),
      });
    }
    return projections;
  }

  /** Re-projects the results whose subject is this Patient (its identifiers, hence keys, may have changed). */
  async reprojectPatient(
    patientId: string,
    store: ResourceStore,
    skip: ReadonlySet<string> = new Set(),
  ): Promise<number> {
    let count = 0;
    for (const type of PROJECTED_TYPES) {
      for await (const doc of store.scan({
        tk: searchToken(type, 'subject', `Patient/${patientId}`),
        deleted: false,
      })) {
        if (skip.has(doc._id)) continue;
        await this.projectDoc(doc, store);
        count++;
      }
    }
    if (count) this.log.info('Recognition facts re-projected for a changed Patient', { patient: patientId, count });
    return count;
  }

  /**
   * Re-projects every stored DiagnosticReport and Observation (after a catalogue change, or to repair the index).
   * Facts of results that no longer exist are removed at the end.
   */
  async rebuild(store: ResourceStore, onProgress?: (p: RebuildProgress) => void): Promise<RebuildProgress> {
    const filter = { type: { $in: [...PROJECTED_TYPES] }, deleted: false };
    const progress: RebuildProgress = { done: 0, total: await store.count(filter), facts: 0 };
    const seen = new Set<string>();
    for await (const doc of store.scan(filter)) {
      const projection = await this.projectDoc(doc, store);
      seen.add(projection.source);
      progress.done++;
      progress.facts += projection.facts.length;
      if (progress.done % 100 === 0) onProgress?.({ ...progress });
    }
    // Facts whose result is gone (a failed removal); a result written meanwhile projected itself and is kept.
    for (const source of (await this.facts.collection.distinct('source')) as string[]) {
      if (seen.has(source)) continue;
      const [type, id] = source.split('/') as [string, string];
      const cur = await store.findCurrent(type, id);
      if (!cur || cur.deleted) await this.facts.removeSource(source);
    }
    onProgress?.({ ...progress });
    const patients = await this.patients.rebuild(store);
    this.log.info('Recognition facts rebuilt', { results: progress.done, facts: progress.facts, patients });
    return progress;
  }

  /** Keys of the stored Patient the subject references; none when it is not a stored, live Patient. */
  private async subjectKeys(subject: Reference | undefined, store: ResourceStore): Promise<string[]> {
    const ref = subject?.reference ? normalizeReference(subject.reference) : undefined;
    const m = ref ? PATIENT_REF.exec(ref) : null;
    if (!m) return [];
    const patient = await store.findCurrent('Patient', m[1]!);
    if (!patient || patient.deleted || !patient.resource) return [];
    return patientKeysOf(this.secret, (patient.resource as Patient).identifier);
  }
}
