/**
 * The floor of the reuse-check ratio: a bare replay, from the bench process, of exactly the database operations one
 * `$reuse-check` performs (src/fhir/reuse-check.ts and what it calls), with documents of the same shape, in the
 * same order and with the same parallelism:
 *
 * 1. the patient's facts in the window (`facts.find({patientKeys, effectiveAt})`, FactStore.findForPatient) and, at
 *    the same time, the patient index entry by key (`patient_index.findOne({_id})`, PatientIndex.lookup; HTTP only);
 * 2. then the check (`reuse_checks` insert) and its ledger prompts (`decisions` insert, when the check prompts any);
 * 3. then the AuditEvent the HTTP layer appends: its history and current documents (HTTP only).
 *
 * `runReuseCheck` in process (reuse-core) performs steps 1 (facts only) and 2: the replay of `scope: 'check'`.
 * What the replay leaves out is the broker's own work: HTTP, the token, parsing, the decision, building the documents
 * and the AuditEvent's search values. The documents are built before the timing (the check's outcomes by the engine
 * on the sample's facts, the AuditEvent as a copy of one the broker wrote); per operation only fresh ids are set.
 * Under concurrency the broker's group commit (InsertBatcher) writes the documents of many checks in one insert,
 * which the replay does not: it sends every operation of every check on its own.
 */
import { randomUUID } from 'node:crypto';
import type { AppDeps } from '../src/app.js';
import { decideReuse } from '../src/recognition/engine.js';
import { promptEntries } from '../src/recognition/ledger.js';
import { storedOutcome, type ReuseCheckDoc } from '../src/recognition/reuse-checks.js';
import type { CurrentDoc, HistoryDoc } from '../src/store/models.js';
import type { SamplePatient } from './load.js';

/** The documents an AuditEvent of one check is stored as (resources and history), written by the broker. */
export interface AuditTemplate {
  current: CurrentDoc;
  history: HistoryDoc;
}

export interface ReplayOptions {
  deps: AppDeps;
  sample: SamplePatient[];
  requester: string;
  at: Date;
  /** Start of the facts window the check reads. */
  from: Date;
  items: 1 | 5;
  scope: 'check' | 'http';
  /** Needed with `scope: 'http'`. */
  audit?: AuditTemplate;
}

/** One replayed check per call (`i` picks the sample patient, as the HTTP side's rotating bodies do). */
export function createReplay(options: ReplayOptions): (i: number) => Promise<void> {
  const { deps, sample, requester, at, from, items, scope } = options;
  const rules = deps.facts.rules;
  const timeZone = rules.catalogue.timeZone;
  const categoryOf = (item: string) => rules.index.items.get(item)?.category ?? 'unknown';
  const db = deps.connection.db!;
  const facts = deps.facts.facts.collection;
  const patientIndex = deps.facts.patients.index;
  const checks = deps.reuseChecks!.collection;
  const ledger = deps.ledger!.collection;
  const current = db.collection<CurrentDoc>('resources');
  const history = db.collection<HistoryDoc>('history');
  if (scope === 'http' && !options.audit) throw new Error('the HTTP replay needs an AuditEvent template');

  // The check document of each sample patient as runReuseCheck builds it (the engine on the patient's facts).
  const checkOf = sample.map((s): Omit<ReuseCheckDoc, '_id' | 'createdAt'> => {
    const inWindow = s.facts.filter((f) => Date.parse(f.effective) >= from.getTime());
    const outcomes = decideReuse(
      {
        patientKeys: [s.key],
        requester,
        items: s.codes.slice(-items).map((c) => ({ coding: [c] })),
        context: 'routine',
      },
      inWindow,
      rules.directory,
      rules.index,
      rules.matrix,
      at,
    );
    return {
      requester,
      clientId: 'demo-his-hospital-b',
      patientKeys: [s.key],
      at,
      context: 'routine',
      outcomes: outcomes.map(storedOutcome),
    };
  });

  return async (i) => {
    const k = i % sample.length;
    const key = sample[k]!.key;
    await Promise.all([
      facts.find({ patientKeys: key, effectiveAt: { $gte: from, $lte: at } }).toArray(),
      scope === 'http' ? patientIndex.findOne({ _id: key }) : undefined,
    ]);
    const doc: ReuseCheckDoc = { _id: randomUUID(), createdAt: new Date(), ...checkOf[k]! };
    const prompts = promptEntries(doc, categoryOf, timeZone);
    await Promise.all([
      checks.insertMany([doc], { ordered: false }),
      prompts.length ? ledger.insertMany(prompts, { ordered: false }) : undefined,
    ]);
    if (scope !== 'http') return;
    const id = randomUUID();
    const ref = `AuditEvent/${id}`;
    const stamp = new Date();
    const template = options.audit!;
    const resource = {
      ...template.current.resource!,
      id,
      meta: { ...template.current.resource!.meta, lastUpdated: stamp.toISOString() },
    };
    await Promise.all([
      history.insertMany(
        [{ ...template.history, _id: `${ref}/1`, id, lastUpdated: stamp, resource, txn: `append:${ref}` }],
        { ordered: false },
      ),
      current.insertMany([{ ...template.current, _id: ref, id, lastUpdated: stamp, resource, txn: `append:${ref}` }], {
        ordered: false,
      }),
    ]);
  };
}
