/**
 * Report rollups: the prompts (src/recognition/prompts.ts) summed up per closed local day and per closed month, so
 * that a year's report reads a few dozen small documents by `_id` instead of every prompt of the year. FerretDB 1.24
 * pushes neither a range nor a `$group` down to its backend, so an aggregation decodes every document; on MongoDB a
 * rollup also saves re-aggregating a year of a city's prompts for every look at the dashboard.
 *
 * A period is cut into closed months (one `month:YYYY-MM` rollup each), closed days of the partial months at its
 * edges (`day:YYYY-MM-DD`), and the open days, today and yesterday (their prompts read in one query). A day is
 * closed two local days after it ended; a prompt of a closed day that changes later (a late decision, seeded
 * history) changes the day's and the month's mark (DecisionLedger.markDays), and a rollup is used only while its
 * stamp equals the mark read before it was built, so it is rebuilt after any such write.
 *
 * A rollup holds numbers only, per (institution, category, item) — the funnel, the saving in fen, the decline
 * reasons — and the distinct counts that do not add up across items, computed when the piece is built: 互认人次
 * per institution and per (institution, category). They add up across pieces because a visit (institution,
 * patient, day) lies in one day and one month. Per item, 互认人次 equals the accepted prompts (one prompt per
 * institution, patient, item and day). The supervision figures, per (institution, department, practitioner,
 * category, item) of the decided prompts, grow with the doctors: they are kept in rollups of their own
 * (`staff|month:…`), read only by supervision. A year's savings report reads O(months × institutions × items)
 * numbers, never a row per patient or doctor. No identifier is kept: not even the pseudonymous patient key.
 */
import type { Collection, Db } from 'mongodb';
import type { DecisionLedger, LedgerEntry } from '../recognition/ledger.js';
import type { PromptDoc } from '../recognition/prompts.js';
import { localDate } from '../recognition/time.js';
import { findIn } from '../store/query-inventory.js';

export const ROLLUPS_COLLECTION = 'ledger_rollups';
/** The version of the figure definitions the rollups follow: rollups of another version are not used. */
export const ROLLUP_VERSION = 2;

const SEP = '\u001f';
const DAY_MS = 86400_000;

/** The funnel of a group of prompts. */
export interface Cell {
  prompts: number;
  /** Prompts offering a reusable result. */
  offered: number;
  viewed: number;
  /** Reusable results accepted (互认项次). */
  accepted: number;
  /** Reference-only results accepted (参考采纳). */
  referenceAccepted: number;
  /** Reusable results declined for a reason that counts as a decline (不予互认). */
  declined: number;
  /** Reusable results declined, by reason (every reason, counted or not). */
  reasons: Record<string, number>;
  savingFen: number;
}

/** What supervision reads of decided prompts (reusable results only). */
export interface StaffCell {
  /** Reusable results decided (accepted or declined). */
  decided: number;
  accepted: number;
  /** Declined for a reason that counts as a decline. */
  declined: number;
  reasons: Record<string, number>;
}

/** The summed prompts of a set of days, mergeable. Keys are fields joined by SEP. */
export interface LedgerTally {
  /** month, institution, category, item → funnel */
  cells: Map<string, Cell>;
  /** month, institution → 互认人次 (distinct patient and day with an accepted reusable result) */
  visits: Map<string, number>;
  /** month, institution, category → 互认人次 */
  categoryVisits: Map<string, number>;
  /** month, institution, department, practitioner, category, item → decisions */
  staff: Map<string, StaffCell>;
}

interface RollupDoc {
  _id: string;
  version: number;
  /** The mark read before the prompts were: the rollup holds while the mark is unchanged. */
  stamp: string | null;
  /** `{ k, … }` objects: FerretDB 1.24 stores no arrays inside arrays. */
  cells: ({ k: string } & Cell)[];
  visits: { k: string; n: number }[];
  categoryVisits: { k: string; n: number }[];
  staff: ({ k: string } & StaffCell)[];
  prompts: number;
  builtAt: Date;
}

export function emptyTally(): LedgerTally {
  return { cells: new Map(), visits: new Map(), categoryVisits: new Map(), staff: new Map() };
}

export const emptyCell = (): Cell => ({
  prompts: 0,
  offered: 0,
  viewed: 0,
  accepted: 0,
  referenceAccepted: 0,
  declined: 0,
  reasons: {},
  savingFen: 0,
});
const emptyStaff = (): StaffCell => ({ decided: 0, accepted: 0, declined: 0, reasons: {} });

export const joinKey = (...parts: string[]) => parts.join(SEP);
export const splitKey = (k: string) => k.split(SEP);

function addReasons(into: Record<string, number>, from: Record<string, number>): void {
  for (const [r, n] of Object.entries(from)) into[r] = (into[r] ?? 0) + n;
}

export function addCell(into: Cell, from: Cell): Cell {
  into.prompts += from.prompts;
  into.offered += from.offered;
  into.viewed += from.viewed;
  into.accepted += from.accepted;
  into.referenceAccepted += from.referenceAccepted;
  into.declined += from.declined;
  into.savingFen += from.savingFen;
  addReasons(into.reasons, from.reasons);
  return into;
}

export function addStaff(into: StaffCell, from: StaffCell): StaffCell {
  into.decided += from.decided;
  into.accepted += from.accepted;
  into.declined += from.declined;
  addReasons(into.reasons, from.reasons);
  return into;
}

/** The cell one prompt counts in (pure): the definitions of every funnel figure, in code. */
export function cellOf(p: PromptDoc): Cell {
  const cell = emptyCell();
  const reusable = p.outcome === 'reusable';
  cell.prompts = 1;
  cell.offered = reusable ? 1 : 0;
  cell.viewed = p.viewed ? 1 : 0;
  if (p.decision === 'accepted') {
    if (reusable) {
      cell.accepted = 1;
      cell.savingFen = Math.round((p.saving ?? 0) * 100);
    } else cell.referenceAccepted = 1;
  }
  if (p.decision === 'declined' && reusable) {
    const reason = p.reason ?? 'unknown';
    cell.reasons[reason] = 1;
    // A decline without the flag predates it: it counts unless its reason says otherwise.
    if (p.countsAsDecline !== false) cell.declined = 1;
  }
  return cell;
}

/** Sums prompts into a tally (pure); 互认人次 are distinct among these prompts, so one piece is summed at once. */
export function tallyPrompts(prompts: Iterable<PromptDoc>): LedgerTally {
  const tally = emptyTally();
  const visits = new Map<string, Set<string>>();
  const categoryVisits = new Map<string, Set<string>>();
  const see = (map: Map<string, Set<string>>, key: string, visit: string) => {
    const s = map.get(key) ?? new Set<string>();
    s.add(visit);
    map.set(key, s);
  };
  for (const p of prompts) {
    const key = joinKey(p.month, p.institution, p.category, p.item);
    const cell = cellOf(p);
    addCell(tally.cells.get(key) ?? tally.cells.set(key, emptyCell()).get(key)!, cell);
    if (cell.accepted) {
      const visit = joinKey(p.patientKey, p.day);
      see(visits, joinKey(p.month, p.institution), visit);
      see(categoryVisits, joinKey(p.month, p.institution, p.category), visit);
    }
    if (p.decision && p.outcome === 'reusable') {
      const k = joinKey(p.month, p.institution, p.department ?? '', p.practitioner ?? '', p.category, p.item);
      addStaff(tally.staff.get(k) ?? tally.staff.set(k, emptyStaff()).get(k)!, {
        decided: 1,
        accepted: cell.accepted,
        declined: cell.declined,
        reasons: cell.reasons,
      });
    }
  }
  for (const [k, s] of visits) tally.visits.set(k, s.size);
  for (const [k, s] of categoryVisits) tally.categoryVisits.set(k, s.size);
  return tally;
}

/** Adds one tally to another (pure): every figure of a tally adds up across pieces. */
export function mergeTally(into: LedgerTally, from: LedgerTally): LedgerTally {
  for (const [k, c] of from.cells) addCell(into.cells.get(k) ?? into.cells.set(k, emptyCell()).get(k)!, c);
  for (const [k, n] of from.visits) into.visits.set(k, (into.visits.get(k) ?? 0) + n);
  for (const [k, n] of from.categoryVisits) into.categoryVisits.set(k, (into.categoryVisits.get(k) ?? 0) + n);
  for (const [k, c] of from.staff) addStaff(into.staff.get(k) ?? into.staff.set(k, emptyStaff()).get(k)!, c);
  return into;
}

/** The pieces a period is read from: closed months, closed days, open days (pure). */
export function planPeriod(
  from: string,
  to: string,
  today: string,
): { months: string[]; days: string[]; openDays: string[] } {
  const closedUntil = addDays(today, -2);
  const tomorrow = addDays(today, 1);
  const months: string[] = [];
  const days: string[] = [];
  const openDays: string[] = [];
  for (let month = from.slice(0, 7); month <= to.slice(0, 7); month = nextMonth(month)) {
    const first = `${month}-01`;
    const last = addDays(nextMonth(month) + '-01', -1);
    if (from <= first && last <= to && last <= closedUntil) {
      months.push(month);
      continue;
    }
    for (let d = first < from ? from : first; d <= last && d <= to; d = addDays(d, 1)) {
      if (d <= closedUntil) days.push(d);
      // Nothing is recorded for a day after tomorrow yet (entries are dated by the clock of the process recording).
      else if (d <= tomorrow) openDays.push(d);
    }
  }
  return { months, days, openDays };
}

function addDays(day: string, n: number): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) + n * DAY_MS).toISOString().slice(0, 10);
}

function nextMonth(month: string): string {
  const [y, m] = month.split('-').map(Number) as [number, number];
  return m === 12 ? `${y + 1}-01` : `${y}-${String(m + 1).padStart(2, '0')}`;
}

/** Which figures a rollup holds: the savings report's funnel, or supervision's decisions per doctor. */
export type RollupPart = 'funnel' | 'staff';

export interface RollupStats {
  months: number;
  days: number;
  openDays: number;
  /** Rollups built (missing or stale) while answering. */
  built: number;
}

/** Where the figure definitions in force are recorded (ledger_marks). */
const DEFINITIONS_MARK = 'definitions';

export class LedgerRollups {
  readonly collection: Collection<RollupDoc>;
  private readonly reading = new Map<string, { startedAt: number; prompts: Promise<PromptDoc[]> }>();

  constructor(
    db: Db,
    private readonly ledger: DecisionLedger,
  ) {
    this.collection = db.collection<RollupDoc>(ROLLUPS_COLLECTION);
  }

  /** The tally of the prompts of the local days from..to (inclusive), from rollups where it can. */
  async tally(
    from: string,
    to: string,
    timeZone: string,
    now: Date = new Date(),
    part: RollupPart = 'funnel',
  ): Promise<{ tally: LedgerTally; stats: RollupStats }> {
    const plan = planPeriod(from, to, localDate(now.getTime(), timeZone));
    const pieces = [...plan.months.map((m) => `month:${m}`), ...plan.days.map((d) => `day:${d}`)];
    // The supervision figures grow with the doctors: kept in rollups of their own, which the savings report never
    // reads (its rollups stay institutions × items per month).
    const idOf = (piece: string) => (part === 'staff' ? `staff|${piece}` : piece);
    // Every rollup and its mark by _id: one `$in` query each (an index lookup per piece); the open days' prompts in
    // one query (an index lookup per day).
    const [rollupDocs, markDocs, open] = await Promise.all([
      findIn(this.collection, '_id', pieces.map(idOf)),
      findIn(this.ledger.marks, '_id', pieces),
      findIn(this.ledger.prompts, 'day', plan.openDays),
    ]);
    const rollupById = new Map(rollupDocs.map((d) => [d._id, d]));
    const markById = new Map(markDocs.map((d) => [d._id, d]));
    const marksReadAt = performance.now();
    const tally = emptyTally();
    const stale = new Map<string, { piece: string; stamp: string | null }[]>(); // by month
    for (const piece of pieces) {
      const stamp = markById.get(piece)?.stamp ?? null;
      const rollup = rollupById.get(idOf(piece));
      if (rollup && rollup.version === ROLLUP_VERSION && rollup.stamp === stamp) {
        mergeTally(tally, fromDoc(rollup));
        continue;
      }
      const month = piece.slice(piece.indexOf(':') + 1, piece.indexOf(':') + 8);
      stale.set(month, [...(stale.get(month) ?? []), { piece, stamp }]);
    }
    // Missing or stale rollups: one read of each month's prompts builds every piece of that month.
    for (const [month, wanted] of stale) {
      const prompts = await this.monthPrompts(month, marksReadAt);
      for (const { piece, stamp } of wanted) {
        const day = piece.startsWith('day:') ? piece.slice(4) : undefined;
        const piecePrompts = day ? prompts.filter((p) => p.day === day) : prompts;
        const built = tallyPrompts(piecePrompts);
        mergeTally(tally, built);
        await this.store(toDoc(idOf(piece), stamp, built, piecePrompts.length, part));
      }
    }
    mergeTally(tally, tallyPrompts(open));
    return {
      tally,
      stats: {
        months: plan.months.length,
        days: plan.days.length,
        openDays: plan.openDays.length,
        built: [...stale.values()].reduce((n, w) => n + w.length, 0),
      },
    };
  }

  /**
   * A month's prompts. The dashboard asks several groupings of one period at once: in a process, requests that need
   * the same month while it is being read share the one read.
   */
  private monthPrompts(month: string, notBefore: number): Promise<PromptDoc[]> {
    // Only a read that began after this request read its marks may be shared: a rollup must hold every prompt whose
    // mark changed before its stamp was read.
    const shared = this.reading.get(month);
    if (shared && shared.startedAt >= notBefore) return shared.prompts;
    const read = { startedAt: performance.now(), prompts: this.ledger.prompts.find({ month }).toArray() };
    this.reading.set(month, read);
    void read.prompts
      .finally(() => {
        if (this.reading.get(month) === read) this.reading.delete(month);
      })
      .catch(() => undefined);
    return read.prompts;
  }

  /** Stores a rollup; another request (or process) storing the same piece at the same moment is not an error. */
  private async store(doc: RollupDoc): Promise<void> {
    try {
      await this.collection.replaceOne({ _id: doc._id }, doc, { upsert: true });
    } catch (e) {
      // Two upserts of one new _id: one inserts, the other meets its key. Both summed the same prompts or, if a
      // late write came between, the next report sees the mark and sums again.
      if ((e as { code?: number }).code !== 11000) throw e;
    }
  }

  /** Builds the rollups of the last `months` months ahead of the first report (at start-up, then daily). */
  async warm(timeZone: string, now: Date = new Date(), months = 13): Promise<RollupStats> {
    const today = localDate(now.getTime(), timeZone);
    const from = addDays(today, -Math.round(months * 30.5));
    return (await this.tally(`${from.slice(0, 7)}-01`, today, timeZone, now)).stats;
  }

  /** Forgets every rollup (they are rebuilt on demand); for benchmarks and repairs. */
  async clear(): Promise<void> {
    await this.collection.deleteMany({});
  }

  /**
   * Once per definitions version: re-tallies the ledger into prompts under the current definitions (issue 20) and
   * drops the rollups built under the old ones. Reads the whole ledger by design, in batches; returns what it did,
   * or undefined when the figures follow the current definitions already.
   */
  async retallyOnce(): Promise<{ entries: number; prompts: number } | undefined> {
    const version = `v${ROLLUP_VERSION}`;
    const mark = await this.ledger.marks.findOne({ _id: DEFINITIONS_MARK });
    if (mark?.stamp === version) return undefined;
    let entries = 0;
    let prompts = 0;
    let batch: LedgerEntry[] = [];
    // Prompt entries are folded before the views and decisions of the same check wherever they fall in the scan:
    // foldIntoPrompts finds a missing prompt day through the check's prompt entry.
    for await (const e of this.ledger.collection.find({})) {
      batch.push(e);
      if (batch.length < 1000) continue;
      prompts += await this.ledger.foldIntoPrompts(batch);
      entries += batch.length;
      batch = [];
    }
    prompts += await this.ledger.foldIntoPrompts(batch);
    entries += batch.length;
    await this.clear();
    await this.ledger.marks.replaceOne({ _id: DEFINITIONS_MARK }, { stamp: version }, { upsert: true });
    return { entries, prompts };
  }
}

function toDoc(id: string, stamp: string | null, tally: LedgerTally, prompts: number, part: RollupPart): RollupDoc {
  const funnel = part === 'funnel';
  return {
    _id: id,
    version: ROLLUP_VERSION,
    stamp,
    cells: funnel ? [...tally.cells].map(([k, c]) => ({ k, ...c })) : [],
    visits: funnel ? [...tally.visits].map(([k, n]) => ({ k, n })) : [],
    categoryVisits: funnel ? [...tally.categoryVisits].map(([k, n]) => ({ k, n })) : [],
    staff: funnel ? [] : [...tally.staff].map(([k, c]) => ({ k, ...c })),
    prompts,
    builtAt: new Date(),
  };
}

function fromDoc(doc: RollupDoc): LedgerTally {
  const strip = <T extends { k: string }>({ k, ...rest }: T) => [k, rest] as const;
  return {
    cells: new Map(doc.cells.map((c) => strip(c) as [string, Cell])),
    visits: new Map(doc.visits.map(({ k, n }) => [k, n])),
    categoryVisits: new Map(doc.categoryVisits.map(({ k, n }) => [k, n])),
    staff: new Map(doc.staff.map((c) => strip(c) as [string, StaffCell])),
  };
}
