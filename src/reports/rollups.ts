/**
 * Report rollups: the decisions ledger summed up per closed local day and per closed month, so that a year's report
 * reads a few dozen small documents by `_id` instead of every ledger entry of the year. FerretDB 1.24 pushes neither
 * a range nor a `$group` down to its backend, so an aggregation decodes every entry; on MongoDB a rollup also saves
 * re-aggregating a year of a city's entries for every look at the dashboard.
 *
 * A period is cut into closed months (one `month:YYYY-MM` rollup each), closed days of the partial months at its
 * edges (`day:YYYY-MM-DD`), and the open days, today and yesterday (read from the ledger: few entries). A day is
 * closed two local days after it ended; entries recorded later for a closed day (seeded history, a late decision
 * from a process whose clock is a day off) change the day's and the month's mark (DecisionLedger.markChanged), and a
 * rollup is used only while its stamp equals the mark read before it was built, so it is rebuilt after any such
 * write (the mark is changed after the entry is written and read before the entries are).
 *
 * What a rollup keeps is exactly what the report needs and sums across days: funnel counts per (month, institution,
 * category, item, event, outcome, reason, counts-as-decline), savings per (month, institution, category, item) in
 * fen, and the accepted (day, institution, category, item, patient key) tuples for 互认人次, a distinct count of
 * (institution, patient, day). No identifier: the patient key is the ledger's own pseudonym.
 *
 * A correction (src/recognition/ledger.ts) takes back what the decision it supersedes counted — its funnel cell and
 * saving with a negative count, its accepted tuple through `unaccepted` — so the final decision counts once, even
 * when the two entries fall in different rollups.
 */
import type { Collection, Db } from 'mongodb';
import type { DecisionLedger, LedgerEntry } from '../recognition/ledger.js';
import { localDate } from '../recognition/time.js';
import type { Dimension, FunnelGroup, LedgerAggregates, SavingsQuery, SumGroup } from './savings.js';

export const ROLLUPS_COLLECTION = 'ledger_rollups';

const SEP = '\u001f';
const DAY_MS = 86400_000;

/** The summed entries of a set of days, mergeable. Keys are fields joined by SEP. */
export interface LedgerTally {
  /** month, institution, category, item, event, outcome, reason, countsAsDecline → entries */
  funnel: Map<string, number>;
  /** month, institution, category, item → saving of accepted entries in fen */
  savingFen: Map<string, number>;
  /** day, institution, category, item, patientKey, check of accepted entries (distinct) */
  accepted: Set<string>;
  /** Accepted tuples taken back by a correction. */
  unaccepted: Set<string>;
}

interface RollupDoc {
  _id: string;
  /** The mark read before the entries were: the rollup holds while the mark is unchanged. */
  stamp: string | null;
  /** `{ k, n }` pairs: FerretDB 1.24 stores no arrays inside arrays. */
  funnel: { k: string; n: number }[];
  savingFen: { k: string; n: number }[];
  accepted: string[];
  /** Absent in rollups built before corrections existed. */
  unaccepted?: string[];
  entries: number;
  builtAt: Date;
}

export function emptyTally(): LedgerTally {
  return { funnel: new Map(), savingFen: new Map(), accepted: new Set(), unaccepted: new Set() };
}

function funnelKey(
  e: LedgerEntry,
  counted: Pick<LedgerEntry, 'month' | 'event' | 'reason' | 'countsAsDecline'>,
): string {
  return [
    counted.month,
    e.institution,
    e.category,
    e.item,
    counted.event,
    e.outcome,
    counted.reason ?? '',
    counted.countsAsDecline === undefined ? '' : String(counted.countsAsDecline),
  ].join(SEP);
}

function add(map: Map<string, number>, key: string, n: number): void {
  map.set(key, (map.get(key) ?? 0) + n);
}

/** Adds ledger entries to a tally (pure). A correction adds its decision and takes back the one it supersedes. */
export function addEntries(tally: LedgerTally, entries: Iterable<LedgerEntry>): LedgerTally {
  for (const e of entries) {
    add(tally.funnel, funnelKey(e, e), 1);
    if (e.event === 'accepted') {
      add(tally.savingFen, [e.month, e.institution, e.category, e.item].join(SEP), Math.round((e.saving ?? 0) * 100));
      tally.accepted.add([e.day, e.institution, e.category, e.item, e.patientKey, e.check].join(SEP));
    }
    const r = e.reverses;
    if (r) {
      add(tally.funnel, funnelKey(e, r), -1);
      if (r.event === 'accepted') {
        add(tally.savingFen, [r.month, e.institution, e.category, e.item].join(SEP), -Math.round(r.saving * 100));
        tally.unaccepted.add([r.day, e.institution, e.category, e.item, e.patientKey, e.check].join(SEP));
      }
    }
  }
  return tally;
}

/** Adds one tally to another (pure). */
export function mergeTally(into: LedgerTally, from: LedgerTally): LedgerTally {
  for (const [k, n] of from.funnel) into.funnel.set(k, (into.funnel.get(k) ?? 0) + n);
  for (const [k, n] of from.savingFen) into.savingFen.set(k, (into.savingFen.get(k) ?? 0) + n);
  for (const k of from.accepted) into.accepted.add(k);
  for (const k of from.unaccepted) into.unaccepted.add(k);
  return into;
}

/**
 * The report's aggregates from a tally: grouped by `query.by`, restricted to `query.organization` when given.
 * The same groups the ledger aggregation gives (FunnelGroup, SumGroup), so the pure assembly is shared.
 */
export function aggregatesOf(tally: LedgerTally, query: Pick<SavingsQuery, 'by' | 'organization'>): LedgerAggregates {
  const pick = (parts: Record<Dimension, string>) => Object.fromEntries(query.by.map((d) => [d, parts[d]]));
  const funnel = new Map<string, FunnelGroup>();
  for (const [k, n] of tally.funnel) {
    const [month, institution, category, item, event, outcome, reason, countsAsDecline] = k.split(SEP) as string[];
    if (query.organization && institution !== query.organization) continue;
    const dims = pick({ month: month!, organization: institution!, category: category!, item: item! });
    const id = {
      ...dims,
      event: event as LedgerEntry['event'],
      outcome: outcome!,
      ...(reason ? { reason } : {}),
      ...(countsAsDecline ? { countsAsDecline: countsAsDecline === 'true' } : {}),
    };
    const key = JSON.stringify(id);
    const g = funnel.get(key);
    if (g) g.n += n;
    else funnel.set(key, { _id: id, n });
  }
  const savings = new Map<string, SumGroup & { fen: number }>();
  for (const [k, fen] of tally.savingFen) {
    const [month, institution, category, item] = k.split(SEP) as string[];
    if (query.organization && institution !== query.organization) continue;
    const id = pick({ month: month!, organization: institution!, category: category!, item: item! });
    const key = JSON.stringify(id);
    const g = savings.get(key);
    if (g) g.fen += fen;
    else savings.set(key, { _id: id, n: 0, fen });
  }
  // 互认人次: distinct (institution, patient, day) per group, and over all.
  const patients = new Map<string, { id: Record<string, string>; seen: Set<string> }>();
  const all = new Set<string>();
  for (const k of tally.accepted) {
    if (tally.unaccepted.has(k)) continue;
    const [day, institution, category, item, patientKey] = k.split(SEP) as string[];
    if (query.organization && institution !== query.organization) continue;
    const visit = [institution, patientKey, day].join(SEP);
    all.add(visit);
    const id = pick({ month: day!.slice(0, 7), organization: institution!, category: category!, item: item! });
    const key = JSON.stringify(id);
    const g = patients.get(key) ?? { id, seen: new Set<string>() };
    g.seen.add(visit);
    patients.set(key, g);
  }
  return {
    // A cell a correction took back to nothing is no cell (a decline reason with 0 entries is not listed).
    funnel: [...funnel.values()].filter((g) => g.n !== 0),
    savings: [...savings.values()].filter((g) => g.fen !== 0).map(({ _id, fen }) => ({ _id, n: fen / 100 })),
    patients: [...patients.values()].map(({ id, seen }) => ({ _id: id, n: seen.size })),
    patientsTotal: all.size,
  };
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

export interface RollupStats {
  months: number;
  days: number;
  openDays: number;
  /** Rollups built (missing or stale) while answering. */
  built: number;
}

export class LedgerRollups {
  readonly collection: Collection<RollupDoc>;
  private readonly reading = new Map<string, { startedAt: number; entries: Promise<LedgerEntry[]> }>();

  constructor(
    db: Db,
    private readonly ledger: DecisionLedger,
  ) {
    this.collection = db.collection<RollupDoc>(ROLLUPS_COLLECTION);
  }

  /** The tally of the entries recorded on the local days from..to (inclusive), from rollups where it can. */
  async tally(
    from: string,
    to: string,
    timeZone: string,
    now: Date = new Date(),
  ): Promise<{ tally: LedgerTally; stats: RollupStats }> {
    const plan = planPeriod(from, to, localDate(now.getTime(), timeZone));
    const pieces = [...plan.months.map((m) => `month:${m}`), ...plan.days.map((d) => `day:${d}`)];
    // Every rollup and its mark by _id: one `$in` query each (an index lookup per piece).
    const [rollupDocs, markDocs] = await Promise.all([
      this.collection.find({ _id: { $in: pieces } }).toArray(),
      this.ledger.marks.find({ _id: { $in: pieces } }).toArray(),
    ]);
    const rollupById = new Map(rollupDocs.map((d) => [d._id, d]));
    const markById = new Map(markDocs.map((d) => [d._id, d]));
    const rollups = pieces.map((_id) => rollupById.get(_id));
    const marks = pieces.map((_id) => markById.get(_id));
    const marksReadAt = performance.now();
    const tally = emptyTally();
    const stale = new Map<string, { piece: string; stamp: string | null }[]>(); // by month
    pieces.forEach((piece, i) => {
      const stamp = marks[i]?.stamp ?? null;
      const rollup = rollups[i];
      if (rollup && rollup.stamp === stamp) {
        mergeTally(tally, fromDoc(rollup));
        return;
      }
      const month = piece.slice(piece.indexOf(':') + 1, piece.indexOf(':') + 8);
      stale.set(month, [...(stale.get(month) ?? []), { piece, stamp }]);
    });
    // Missing or stale rollups: one read of each month's entries builds every piece of that month.
    for (const [month, wanted] of stale) {
      const entries = await this.monthEntries(month, marksReadAt);
      for (const { piece, stamp } of wanted) {
        const day = piece.startsWith('day:') ? piece.slice(4) : undefined;
        const piecesEntries = day ? entries.filter((e) => e.day === day) : entries;
        const built = addEntries(emptyTally(), piecesEntries);
        mergeTally(tally, built);
        await this.store(toDoc(piece, stamp, built, piecesEntries.length));
      }
    }
    // Open days: their entries as they are now (equality on `day`, which the database can look up).
    const open = await Promise.all(plan.openDays.map((day) => this.ledger.collection.find({ day }).toArray()));
    for (const entries of open) addEntries(tally, entries);
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
   * A month's ledger entries. The dashboard asks several groupings of one period at once: in a process, requests
   * that need the same month while it is being read share the one read.
   */
  private monthEntries(month: string, notBefore: number): Promise<LedgerEntry[]> {
    // Only a read that began after this request read its marks may be shared: a rollup must hold every entry whose
    // mark changed before its stamp was read.
    const shared = this.reading.get(month);
    if (shared && shared.startedAt >= notBefore) return shared.entries;
    const read = {
      startedAt: performance.now(),
      entries: this.ledger.collection.find({ month }).toArray(),
    };
    this.reading.set(month, read);
    void read.entries
      .finally(() => {
        if (this.reading.get(month) === read) this.reading.delete(month);
      })
      .catch(() => undefined);
    return read.entries;
  }

  /** Stores a rollup; another request (or process) storing the same piece at the same moment is not an error. */
  private async store(doc: RollupDoc): Promise<void> {
    try {
      await this.collection.replaceOne({ _id: doc._id }, doc, { upsert: true });
    } catch (e) {
      // Two upserts of one new _id: one inserts, the other meets its key. Both summed the same entries or, if a
      // late entry came between, the next report sees the mark and sums again.
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
}

function toDoc(id: string, stamp: string | null, tally: LedgerTally, entries: number): RollupDoc {
  return {
    _id: id,
    stamp,
    funnel: [...tally.funnel].map(([k, n]) => ({ k, n })),
    savingFen: [...tally.savingFen].map(([k, n]) => ({ k, n })),
    accepted: [...tally.accepted],
    unaccepted: [...tally.unaccepted],
    entries,
    builtAt: new Date(),
  };
}

function fromDoc(doc: RollupDoc): LedgerTally {
  return {
    funnel: new Map(doc.funnel.map(({ k, n }) => [k, n])),
    savingFen: new Map(doc.savingFen.map(({ k, n }) => [k, n])),
    accepted: new Set(doc.accepted),
    unaccepted: new Set(doc.unaccepted ?? []),
  };
}
