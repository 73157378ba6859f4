/**
 * The decisions ledger (`decisions` collection): what was proposed to a doctor and what the doctor did, one immutable
 * entry per (check, item, event) — the append-only trail of every call. Events: `prompt` (a check offered a prior
 * result: reusable or reference-only), `viewed` (the doctor opened it), then at most one decision, `accepted` or
 * `declined` (with a reason from the decline-reason CodeSystem). The saving is counted only on accepting a reusable
 * result.
 *
 * A decision may be corrected once within CORRECTION_WINDOW_MS (a mis-click): the correction is a new entry
 * (`<check>|<item>|correction`) that names the entry it supersedes and carries what that entry counted (`reverses`).
 *
 * What the bureau counts is the ledger's summary per prompt (src/recognition/prompts.ts): one per (institution,
 * patient, item, local day) however many checks, hooks and launches showed it, updated here by every view and
 * decision recorded. Entries and prompts hold the pseudonymous patient key, never an identifier.
 */
import { randomUUID } from 'node:crypto';
import type { Collection, Db } from 'mongodb';
import { InsertBatcher } from '../store/insert-batcher.js';
import { findIn } from '../store/query-inventory.js';
import type { DeclineReason } from './decline-reasons.js';
import type { ReuseDecision } from './engine.js';
import {
  PROMPTS_COLLECTION,
  decidesOver,
  decisionState,
  foldPrompts,
  isCase,
  promptIdOf,
  promptOf,
  type PromptDoc,
} from './prompts.js';
import type { ReuseCheckDoc, StoredOutcome } from './reuse-checks.js';
import { localDate } from './time.js';

export const DECISIONS_COLLECTION = 'decisions';
export const LEDGER_MARKS_COLLECTION = 'ledger_marks';

/**
 * `day:YYYY-MM-DD` or `month:YYYY-MM` → a value changed whenever an entry is recorded for that day after it may
 * have been summed up in a report rollup (src/reports/rollups.ts): entries recorded more than a day after their time.
 */
export interface LedgerMarkDoc {
  _id: string;
  stamp: string;
}

/** Entries recorded this long after their time may fall on a day a rollup already summed. */
const LATE_MS = 86400_000;

export type LedgerEvent = 'prompt' | 'viewed' | 'accepted' | 'declined';
/** What a doctor (or the EHR on the doctor's behalf) records for an item of a check. */
export type DoctorAction = 'viewed' | 'accepted' | 'declined';

/** How long after a decision the doctor may correct it (a mis-click), once. */
export const CORRECTION_WINDOW_MS = 10 * 60_000;

/** What a superseded decision counted in the reports, carried by its correction so a sum can take it back. */
export interface ReversedDecision {
  event: 'accepted' | 'declined';
  reason?: string;
  countsAsDecline?: boolean;
  saving: number;
  day: string;
  month: string;
}

/** Outcomes a doctor is prompted about: there is a prior result to look at. */
export const PROMPTED_DECISIONS: readonly ReuseDecision[] = ['reusable', 'reference-only'];

export interface LedgerEntry {
  /** `<check>|<item>|prompt`, `…|viewed`, `…|decision`: one of each per (check, item), enforced by the _id. */
  _id: string;
  check: string;
  event: LedgerEvent;
  /** Catalogue item code and its category. */
  item: string;
  category: string;
  /** What the engine said about the item in the check. */
  outcome: ReuseDecision;
  /** Requesting (receiving) institution id: where the saving happens. */
  institution: string;
  /** Institution that performed the proposed result. */
  performer?: string;
  /** `DiagnosticReport/<id>` (or Observation) of the proposed result. */
  result?: string;
  patientKey: string;
  context: string;
  /** The saving this entry counts: the requester's price on `accepted`, 0 otherwise. */
  saving: number;
  /** The requester's price of the item, as offered by the check (for "saving offered"). */
  offered: number;
  currency: 'CNY';
  reason?: string;
  reasonText?: string;
  /** False for declines whose reason is not counted as a decline ("images not received", "serial monitoring"). */
  countsAsDecline?: boolean;
  practitioner?: string;
  /** The prescriber's department (科室) as the hospital names it, when given. */
  department?: string;
  clientId?: string;
  /** Source of the record: the FHIR operation, a CDS Hooks card's feedback, the doctor view. */
  channel: 'operation' | 'cds-feedback' | 'app' | 'check' | 'seed';
  /** CDS Hooks card uuid when the decision came as feedback. */
  card?: string;
  /** On a correction: the _id of the decision it supersedes, and what that decision counted. */
  supersedes?: string;
  reverses?: ReversedDecision;
  recordedAt: Date;
  /** Local calendar dimensions of recordedAt in the region's zone. */
  day: string;
  month: string;
  year: string;
  /** Local day of the check: the day of the prompt the entry belongs to (src/recognition/prompts.ts). */
  promptDay?: string;
}

export interface DecisionInput {
  check: ReuseCheckDoc;
  item: string;
  action: DoctorAction;
  reason?: DeclineReason;
  reasonText?: string;
  practitioner?: string;
  department?: string;
  clientId?: string;
  channel: LedgerEntry['channel'];
  card?: string;
  now: Date;
  timeZone: string;
  /** Category of the item (from the catalogue). */
  category: string;
}

export type DecisionProblem =
  | { kind: 'unknown-item'; message: string }
  | { kind: 'nothing-to-decide'; message: string }
  | { kind: 'reason-required'; message: string }
  | { kind: 'reason-not-allowed'; message: string }
  | { kind: 'text-required'; message: string }
  | { kind: 'not-correctable'; message: string };

/** Local day/month/year of an instant. */
export function dimensionsOf(at: Date, timeZone: string): Pick<LedgerEntry, 'day' | 'month' | 'year'> {
  const day = localDate(at.getTime(), timeZone);
  return { day, month: day.slice(0, 7), year: day.slice(0, 4) };
}

/** The outcome of a check for an item: the first one naming it (an item asked twice is one decision). */
export function outcomeFor(check: ReuseCheckDoc, item: string): StoredOutcome | undefined {
  return check.outcomes.find((o) => o.item === item);
}

function baseEntry(
  check: ReuseCheckDoc,
  outcome: StoredOutcome & { item: string },
  category: string,
  event: LedgerEvent,
  now: Date,
  timeZone: string,
): LedgerEntry {
  const suffix = event === 'accepted' || event === 'declined' ? 'decision' : event;
  return {
    _id: `${check._id}|${outcome.item}|${suffix}`,
    check: check._id,
    event,
    item: outcome.item,
    category,
    outcome: outcome.decision,
    institution: check.requester,
    ...(outcome.performer ? { performer: outcome.performer } : {}),
    ...(outcome.result ? { result: outcome.result } : {}),
    patientKey: check.patientKeys[0] ?? '',
    context: check.context,
    saving: 0,
    offered: outcome.saving,
    currency: 'CNY',
    ...(check.clientId ? { clientId: check.clientId } : {}),
    channel: 'check',
    recordedAt: now,
    ...dimensionsOf(now, timeZone),
    promptDay: dimensionsOf(check.createdAt, timeZone).day,
  };
}

/**
 * The prompt entries a check creates: one per distinct item with a prior result (reusable or reference-only).
 * `categoryOf` maps an item code to its category.
 */
export function promptEntries(
  check: ReuseCheckDoc,
  categoryOf: (item: string) => string,
  timeZone: string,
): LedgerEntry[] {
  const seen = new Set<string>();
  const out: LedgerEntry[] = [];
  for (const o of check.outcomes) {
    if (!o.item || seen.has(o.item) || !PROMPTED_DECISIONS.includes(o.decision)) continue;
    seen.add(o.item);
    out.push(baseEntry(check, { ...o, item: o.item }, categoryOf(o.item), 'prompt', check.createdAt, timeZone));
  }
  return out;
}

/**
 * The ledger entry for a doctor's action, or the problem that forbids it. Pure: the caller stores it.
 * Rules: the item must be in the check with a prior result; `declined` needs a reason, `accepted`/`viewed` take
 * none; a reason that requires text needs `reasonText`. The saving is the offered price, counted on `accepted`.
 */
export function decisionEntry(input: DecisionInput): LedgerEntry | DecisionProblem {
  const outcome = outcomeFor(input.check, input.item);
  if (!outcome) {
    return { kind: 'unknown-item', message: `Item '${input.item}' was not asked in check ${input.check._id}` };
  }
  if (!PROMPTED_DECISIONS.includes(outcome.decision)) {
    return {
      kind: 'nothing-to-decide',
      message: `Check ${input.check._id} found no prior result to reuse for item '${input.item}' (${outcome.decision}); there is nothing to accept or decline`,
    };
  }
  if (input.action === 'declined' && !input.reason) {
    return { kind: 'reason-required', message: 'A decline needs a reason from the decline-reason CodeSystem' };
  }
  if (input.action !== 'declined' && input.reason) {
    return { kind: 'reason-not-allowed', message: `A reason is given only when declining, not when ${input.action}` };
  }
  if (input.reason?.requiresText && !input.reasonText?.trim()) {
    return { kind: 'text-required', message: `The reason '${input.reason.code}' needs an explanation (reasonText)` };
  }
  const entry = baseEntry(
    input.check,
    { ...outcome, item: input.item },
    input.category,
    input.action,
    input.now,
    input.timeZone,
  );
  entry.channel = input.channel;
  // Only a reusable result is 互认: accepting a reference-only one (参考采纳) saves nothing the bureau counts.
  if (input.action === 'accepted' && outcome.decision === 'reusable') entry.saving = outcome.saving;
  if (input.reason) {
    entry.reason = input.reason.code;
    entry.countsAsDecline = input.reason.countsAsDecline;
  }
  if (input.reasonText?.trim()) entry.reasonText = input.reasonText.trim();
  if (input.practitioner) entry.practitioner = input.practitioner;
  if (input.department?.trim()) entry.department = input.department.trim();
  if (input.clientId) entry.clientId = input.clientId;
  else delete entry.clientId;
  if (input.card) entry.card = input.card;
  return entry;
}

/** Whether a repeated action records the same thing as the stored entry (idempotent retry) or conflicts with it. */
export function sameDecision(stored: LedgerEntry, wanted: LedgerEntry): boolean {
  return (
    stored.event === wanted.event &&
    (stored.reason ?? '') === (wanted.reason ?? '') &&
    (stored.reasonText ?? '') === (wanted.reasonText ?? '')
  );
}

/** The _id of the correction of an item's decision in a check. */
export function correctionId(check: string, item: string): string {
  return `${check}|${item}|correction`;
}

/**
 * The correction of a stored decision by a wanted one (pure), or why it cannot be: only `accepted`/`declined` are
 * corrected, within CORRECTION_WINDOW_MS of the stored decision, to something different.
 */
export function correctionEntry(stored: LedgerEntry, wanted: LedgerEntry, now: Date): LedgerEntry | DecisionProblem {
  if (stored.event !== 'accepted' && stored.event !== 'declined') {
    return {
      kind: 'not-correctable',
      message: `Only a decision (accepted or declined) is corrected, not '${stored.event}'`,
    };
  }
  if (wanted.event !== 'accepted' && wanted.event !== 'declined') {
    return {
      kind: 'not-correctable',
      message: `A decision is corrected by another decision, not by '${wanted.event}'`,
    };
  }
  const until = new Date(stored.recordedAt).getTime() + CORRECTION_WINDOW_MS;
  if (now.getTime() > until) {
    return {
      kind: 'not-correctable',
      message: `The decision recorded ${new Date(stored.recordedAt).toISOString()} could be corrected until ${new Date(until).toISOString()}; it is final`,
    };
  }
  return {
    ...wanted,
    _id: correctionId(stored.check, stored.item),
    supersedes: stored._id,
    reverses: {
      event: stored.event,
      ...(stored.reason ? { reason: stored.reason } : {}),
      ...(stored.countsAsDecline !== undefined ? { countsAsDecline: stored.countsAsDecline } : {}),
      saving: stored.saving,
      day: stored.day,
      month: stored.month,
    },
  };
}

/** The decision in force for each item of a check's entries: the correction when there is one (pure). */
export function finalDecisions(entries: readonly LedgerEntry[]): Map<string, LedgerEntry> {
  const out = new Map<string, LedgerEntry>();
  for (const e of entries) {
    if (e.event !== 'accepted' && e.event !== 'declined') continue;
    if (!out.has(e.item) || e.supersedes === out.get(e.item)!._id) out.set(e.item, e);
  }
  return out;
}

export type RecordResult =
  | { status: 'created'; entry: LedgerEntry }
  | { status: 'unchanged'; entry: LedgerEntry }
  | { status: 'conflict'; entry: LedgerEntry };

function isDuplicateKey(e: unknown): boolean {
  return (e as { code?: number } | undefined)?.code === 11000;
}

export class DecisionLedger {
  readonly collection: Collection<LedgerEntry>;
  /** Prompts of concurrent checks are stored together (one round trip for many at order-entry peaks). */
  private readonly entryBatcher: InsertBatcher<LedgerEntry>;
  private readonly promptBatcher: InsertBatcher<PromptDoc>;

  /** One document per prompt with what the doctor did (src/recognition/prompts.ts): what reports count. */
  readonly prompts: Collection<PromptDoc>;
  /** Marks of days and months changed after the fact (report rollups are rebuilt for them). */
  readonly marks: Collection<LedgerMarkDoc>;

  constructor(
    db: Db,
    private readonly clock: () => Date = () => new Date(),
  ) {
    this.collection = db.collection<LedgerEntry>(DECISIONS_COLLECTION);
    this.entryBatcher = new InsertBatcher(this.collection);
    this.prompts = db.collection<PromptDoc>(PROMPTS_COLLECTION);
    this.promptBatcher = new InsertBatcher(this.prompts);
    this.marks = db.collection<LedgerMarkDoc>(LEDGER_MARKS_COLLECTION);
  }

  /**
   * Changes the marks of the days (and their months) of entries recorded late, AFTER they are stored: a report
   * rollup reads the mark before the entries, so one built without them has a stamp that no longer matches.
   */
  async markChanged(entries: Pick<LedgerEntry, 'day' | 'month' | 'recordedAt'>[]): Promise<void> {
    const now = this.clock().getTime();
    const late = entries.filter((e) => now - new Date(e.recordedAt).getTime() >= LATE_MS);
    await this.markDays(late.map((e) => e.day));
  }

  /** Changes the marks of these local days and their months (a prompt of a past day changed). */
  async markDays(days: Iterable<string>): Promise<void> {
    const ids = new Set([...days].flatMap((day) => [`day:${day}`, `month:${day.slice(0, 7)}`]));
    if (ids.size === 0) return;
    // One command for all of them: as separate concurrent upserts, a year of days (a bulk fold) held FerretDB's 50
    // PostgreSQL connections, each upsert waiting for a second one to insert with, for ever.
    try {
      await this.marks.bulkWrite(
        [...ids].map((_id) => ({
          replaceOne: { filter: { _id }, replacement: { stamp: randomUUID() }, upsert: true },
        })),
        { ordered: false },
      );
    } catch (e) {
      // Two first marks of one day at once: the other's fresh stamp invalidates the rollups just as well.
      const errors = (e as { writeErrors?: { code?: number }[] }).writeErrors;
      if (!errors?.length || !errors.every((w) => w.code === 11000)) throw e;
    }
  }

  /** Indexes for per-check lookups and the report rollups' reads (a month's prompts, the open days' prompts). */
  async ensureIndexes(): Promise<void> {
    await this.collection.createIndex({ check: 1 });
    // The federation's figures read a month's decisions for the recognitions of other brokers' results
    // (src/federation/figures.ts).
    await this.collection.createIndex({ month: 1 });
    // Reports read closed periods from rollups built month by month, and the open days by day (src/reports).
    await this.prompts.createIndex({ month: 1 });
    await this.prompts.createIndex({ day: 1 });
    // The supervision case list: declines of reusable results by month.
    await this.prompts.createIndex({ caseMonth: 1 });
  }

  /**
   * Stores the prompt entries of a check and opens their prompts; a prompt already shown that day (another check,
   * hook or launch) is left as it is, and a replay of the same check adds nothing.
   */
  async recordPrompts(entries: LedgerEntry[]): Promise<void> {
    // Duplicates by _id are refused by the batchers: one entry per (check, item), one prompt per (institution,
    // patient, item, day).
    const prompts = new Map(entries.map((e) => [promptIdOf(e, e.day), promptOf(e)]));
    await Promise.all([this.entryBatcher.insert(entries), this.promptBatcher.insert([...prompts.values()])]);
    await this.markChanged(entries);
  }

  /**
   * Stores a history of entries at once (demo seeding) and folds them into their prompts, as the re-tally does.
   * Entries already stored are left as they are.
   */
  async recordHistory(entries: LedgerEntry[]): Promise<void> {
    for (let i = 0; i < entries.length; i += 1000) {
      const chunk = entries.slice(i, i + 1000);
      await this.entryBatcher.insert(chunk);
      await this.foldIntoPrompts(chunk);
    }
  }

  /**
   * Folds ledger entries (up to 1 000) into the stored prompts: reads the prompts they touch, folds, writes them
   * back, and marks their days. For bulk work only (seeding, the re-tally): one writer at a time.
   */
  async foldIntoPrompts(entries: LedgerEntry[]): Promise<number> {
    if (entries.length === 0) return 0;
    // Entries from before prompts existed carry no prompt day: their check's prompt entry has it.
    const legacy = entries.filter((e) => e.event !== 'prompt' && !e.promptDay);
    const promptEntryIds = [...new Set(legacy.map((e) => `${e.check}|${e.item}|prompt`))];
    const dayOfPromptEntry = new Map<string, string>();
    for (const e of entries) if (e.event === 'prompt') dayOfPromptEntry.set(e._id, e.day);
    const missing = promptEntryIds.filter((id) => !dayOfPromptEntry.has(id));
    if (missing.length) {
      for (const p of await findIn(this.collection, '_id', missing)) dayOfPromptEntry.set(p._id, p.day);
    }
    const promptDayOf = (e: LedgerEntry) => e.promptDay ?? dayOfPromptEntry.get(`${e.check}|${e.item}|prompt`) ?? e.day;
    const ids = [...new Set(entries.map((e) => promptIdOf(e, e.event === 'prompt' ? e.day : promptDayOf(e))))];
    const existing = new Map((await findIn(this.prompts, '_id', ids)).map((p) => [p._id, p]));
    const folded = foldPrompts(entries, existing, promptDayOf);
    if (folded.size === 0) return 0;
    await this.prompts.bulkWrite(
      [...folded.values()].map((p) => ({ replaceOne: { filter: { _id: p._id }, replacement: p, upsert: true } })),
      { ordered: false },
    );
    await this.markDays(new Set([...folded.values()].map((p) => p.day)));
    return folded.size;
  }

  /**
   * Records an entry once. The _id makes it immutable and idempotent: a retry of the same action returns the stored
   * entry unchanged; a different action for the same (check, item) is a conflict. A correction is recorded the same
   * way under its own _id: once per (check, item). A recorded view or decision updates its prompt.
   */
  async record(entry: LedgerEntry): Promise<RecordResult> {
    try {
      await this.collection.insertOne(entry);
      await this.markChanged([entry]);
      await this.updatePrompt(entry);
      return { status: 'created', entry };
    } catch (e) {
      if (!isDuplicateKey(e)) throw e;
    }
    const stored = await this.collection.findOne({ _id: entry._id });
    if (!stored) throw new Error(`ledger entry ${entry._id} vanished after a duplicate key`);
    const same = sameDecision(stored, entry);
    // A retry after a crash between the entry and its prompt brings the prompt up to date (idempotent).
    if (same) await this.updatePrompt(stored);
    return { status: same ? 'unchanged' : 'conflict', entry: stored };
  }

  /** A view or decision on its prompt: viewed, or the decision recorded last (with its reason) decides. */
  private async updatePrompt(entry: LedgerEntry): Promise<void> {
    if (entry.event === 'prompt') return;
    const promptDay =
      entry.promptDay ?? (await this.collection.findOne({ _id: `${entry.check}|${entry.item}|prompt` }))?.day;
    const _id = promptIdOf(entry, promptDay ?? entry.day);
    const day = promptDay ?? entry.day;
    for (let attempt = 0; attempt < 2; attempt++) {
      const stored = await this.prompts.findOne({ _id });
      if (!stored) {
        // The check's prompt is missing (a check from before prompts existed): the entry opens it.
        const [prompt] = foldPrompts([entry], new Map(), () => day).values();
        try {
          await this.prompts.insertOne(prompt!);
          break;
        } catch (e) {
          if (!isDuplicateKey(e)) throw e;
          continue; // another request opened it meanwhile: update that one
        }
      }
      if (entry.event === 'viewed') {
        if (!stored.viewed) await this.prompts.updateOne({ _id }, { $set: { viewed: true } });
      } else if (decidesOver(entry, stored) && stored.decisionEntry !== entry._id) {
        const { set, unset } = decisionState(entry);
        const caseMonth = isCase({ decision: set.decision, outcome: set.outcome! }) ? { caseMonth: stored.month } : {};
        const toUnset = unset.filter((k) => !(k in caseMonth));
        await this.prompts.updateOne(
          { _id },
          {
            $set: { ...set, ...caseMonth },
            ...(toUnset.length ? { $unset: Object.fromEntries(toUnset.map((k) => [k, ''])) } : {}),
          },
        );
      }
      break;
    }
    // A prompt of an earlier day changed: the rollups that summed that day are rebuilt.
    if (day < entry.day) await this.markDays([day]);
  }

  /** Every entry of a check (for the doctor view and tests). */
  async forCheck(check: string): Promise<LedgerEntry[]> {
    return this.collection.find({ check }).sort({ _id: 1 }).toArray();
  }
}
