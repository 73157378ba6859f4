/**
 * Prompts (issue 20): what the bureau counts. One prompt per (requesting institution, patient, item, local day), however
 * many `$reuse-check`s, CDS `order-select`/`order-sign` calls and `/app` launches touched it; what the doctor then did
 * updates that prompt's state (viewed; the latest decision, accepted or declined, with its reason). The decisions
 * ledger (ledger.ts) stays the append-only trail of every call; this collection is its summary per prompt, and the
 * report rollups (src/reports/rollups.ts) are built from it.
 *
 * Every figure of a prompt counts on the prompt's day (the local day of the first check that showed it), so a rate's
 * numerator and denominator always cover the same prompts: 互认率 = accepted reusable / offered reusable ≤ 100 %.
 *
 * The patient is the ledger's pseudonymous key, never an identifier. A prompt whose decision is a decline of a
 * reusable result carries `caseMonth` (the supervision case list reads declines by month through it).
 */
import type { LedgerEntry } from './ledger.js';
import type { ReuseDecision } from './engine.js';

export const PROMPTS_COLLECTION = 'prompts';

export type PromptOutcome = Extract<ReuseDecision, 'reusable' | 'reference-only'>;

export interface PromptDoc {
  /** `<institution>|<patientKey>|<item>|<day>`. */
  _id: string;
  institution: string;
  patientKey: string;
  item: string;
  category: string;
  /** Local day, month, year of the prompt (the first check that showed it). */
  day: string;
  month: string;
  year: string;
  /** What the engine offered: the decided check's verdict once there is a decision, else the first check's. */
  outcome: PromptOutcome;
  /** The requester's price of the item as offered (CNY). */
  offered: number;
  /** The first check that showed it. */
  check: string;
  /** The prior result proposed (of the decided check once there is a decision). */
  result?: string;
  performer?: string;
  /** The doctor opened the prior result (调阅). */
  viewed?: boolean;
  decision?: 'accepted' | 'declined';
  /** The ledger entry of the decision in force, its check and when it was recorded. */
  decisionEntry?: string;
  decisionCheck?: string;
  decidedAt?: Date;
  /** The saving counted: the offered price on an accepted reusable result, else 0 (CNY). */
  saving?: number;
  reason?: string;
  reasonText?: string;
  countsAsDecline?: boolean;
  practitioner?: string;
  department?: string;
  /** The prompt's month while its decision is a decline of a reusable result (the supervision case list). */
  caseMonth?: string;
}

export function promptId(institution: string, patientKey: string, item: string, day: string): string {
  return [institution, patientKey, item, day].join('|');
}

/** The prompt an entry belongs to: its check's day (`promptDay`; a prompt entry's own day). */
export function promptIdOf(e: LedgerEntry, promptDay?: string): string {
  return promptId(e.institution, e.patientKey, e.item, promptDay ?? e.promptDay ?? e.day);
}

/** The prompt a prompt entry opens (a prompt entry is dated on its check's day). */
export function promptOf(e: LedgerEntry): PromptDoc {
  return {
    _id: promptIdOf(e, e.day),
    institution: e.institution,
    patientKey: e.patientKey,
    item: e.item,
    category: e.category,
    day: e.day,
    month: e.month,
    year: e.year,
    outcome: e.outcome === 'reference-only' ? 'reference-only' : 'reusable',
    offered: e.offered,
    check: e.check,
    ...(e.result ? { result: e.result } : {}),
    ...(e.performer ? { performer: e.performer } : {}),
  };
}

/** The fields a decision sets on its prompt, and those it removes (pure). */
export function decisionState(e: LedgerEntry): { set: Partial<PromptDoc>; unset: (keyof PromptDoc)[] } {
  const decision = e.event as 'accepted' | 'declined';
  const outcome: PromptOutcome = e.outcome === 'reference-only' ? 'reference-only' : 'reusable';
  const set: Partial<PromptDoc> = {
    outcome,
    decision,
    decisionEntry: e._id,
    decisionCheck: e.check,
    decidedAt: new Date(e.recordedAt),
    saving: decision === 'accepted' && outcome === 'reusable' ? e.saving : 0,
    ...(e.result ? { result: e.result } : {}),
    ...(e.reason ? { reason: e.reason } : {}),
    ...(e.reasonText ? { reasonText: e.reasonText } : {}),
    ...(e.countsAsDecline !== undefined ? { countsAsDecline: e.countsAsDecline } : {}),
    ...(e.practitioner ? { practitioner: e.practitioner } : {}),
    ...(e.department ? { department: e.department } : {}),
  };
  const unset = (
    ['reason', 'reasonText', 'countsAsDecline', 'practitioner', 'department', 'caseMonth'] as const
  ).filter((k) => set[k] === undefined);
  return { set, unset: [...unset] };
}

/** Whether an entry's decision replaces the one a prompt holds: the one recorded last decides (pure). */
export function decidesOver(e: LedgerEntry, prompt: Pick<PromptDoc, 'decidedAt'> | null | undefined): boolean {
  if (!prompt?.decidedAt) return true;
  return new Date(e.recordedAt).getTime() >= new Date(prompt.decidedAt).getTime();
}

/**
 * Folds ledger entries into the prompts they belong to (pure): a prompt entry opens its prompt (the first check's
 * outcome stays until a decision), a view marks it viewed, the decision recorded last decides. `existing` are the
 * prompts stored already; `promptDayOf` gives the prompt day of an entry that carries none (entries from before
 * prompts existed: its check's prompt entry's day).
 */
export function foldPrompts(
  entries: readonly LedgerEntry[],
  existing: ReadonlyMap<string, PromptDoc>,
  promptDayOf: (e: LedgerEntry) => string,
): Map<string, PromptDoc> {
  const out = new Map<string, PromptDoc>();
  const get = (id: string): PromptDoc | undefined => out.get(id) ?? existing.get(id);
  // Prompt entries first (a decision may come in the same batch), then views and decisions by time.
  const ordered = [...entries].sort(
    (a, b) =>
      Number(a.event !== 'prompt') - Number(b.event !== 'prompt') ||
      new Date(a.recordedAt).getTime() - new Date(b.recordedAt).getTime(),
  );
  for (const e of ordered) {
    if (e.event === 'prompt') {
      const id = promptIdOf(e, e.day);
      if (!get(id)) out.set(id, promptOf(e));
      continue;
    }
    const day = promptDayOf(e);
    const id = promptIdOf(e, day);
    const prompt: PromptDoc = {
      ...(get(id) ?? promptOf({ ...e, day, month: day.slice(0, 7), year: day.slice(0, 4) })),
    };
    if (e.event === 'viewed') prompt.viewed = true;
    else if (decidesOver(e, prompt)) {
      const { set, unset } = decisionState(e);
      for (const k of unset) delete prompt[k];
      Object.assign(prompt, set);
      if (isCase(prompt)) prompt.caseMonth = prompt.month;
    }
    out.set(id, prompt);
  }
  return out;
}

/** A decline of a reusable result: a case for the bureau's supervision. */
export function isCase(p: Pick<PromptDoc, 'decision' | 'outcome'>): boolean {
  return p.decision === 'declined' && p.outcome === 'reusable';
}
