/**
 * Savings reports of the health bureau over the decisions ledger (issue 6): the recognition funnel (prompts → viewed
 * → accepted / declined), 互认项次 and 互认人次, and the saving in CNY, grouped by institution, category, item and/or
 * month. Aggregates only: no row names a patient.
 *
 * Every figure comes from the ledger's tally of the period (src/reports/rollups.ts: rollups of closed months and
 * days, plus the open days' entries), grouped in the process. Totals are the sums of the rows, so they add up exactly
 * whatever the grouping; only 互认人次, which is a distinct count, has a total of its own (see DEFINITIONS).
 */
import type { LedgerEntry } from '../recognition/ledger.js';
import type { RecognitionRules } from '../recognition/load.js';
import { isLocalDate } from '../recognition/time.js';
import { aggregatesOf, type LedgerRollups, type LedgerTally } from './rollups.js';
import { badRequest, error } from '../fhir/outcomes.js';
import type { DeclineReasonLegend, DimensionValue, Figures, SavingsRow } from './report-types.js';

export type { DeclineReasonLegend, DimensionValue, Figures, SavingsRow } from './report-types.js';

export const DIMENSIONS = ['organization', 'category', 'item', 'month'] as const;
export type Dimension = (typeof DIMENSIONS)[number];

/** Longest period one report covers: a year of a city is the expected use, five years the ceiling. */
export const MAX_PERIOD_YEARS = 5;
/** Most rows in one answer; beyond, the caller narrows the grouping or the period (400, never a huge response). */
export const MAX_GROUPS = 20000;

export const DEFINITIONS = {
  period:
    'Inclusive local dates (Asia/Shanghai) from..to; the local day an entry was recorded decides (a prompt counts on the day of the check, a decision on the day it was recorded).',
  prompts: 'Prompt entries: a check offered a prior result (reusable or reference-only) for an item.',
  offered: 'Reusable offered (eligible prompts): prompt entries whose outcome is reusable.',
  viewed: 'Viewed entries: the doctor opened the prior result (调阅).',
  accepted:
    '互认项次: accepted entries (the doctor reused the prior result instead of ordering the item again), reusable or reference-only.',
  patients:
    '互认人次: distinct (institution, patient, local day) among accepted entries, counted per group. Rows add up to the total when grouped by organization and/or month; grouped by category or item, a visit with several categories counts once in each, so rows may add up to more than the total.',
  declined:
    'Declined entries whose reason counts as a decline (countsAsDecline); declinedByReason lists every reason recorded, including operational ones that are not counted as declines (see declineReasons).',
  recognitionRate: '互认率 = accepted / offered (null when nothing was offered); 4 decimals.',
  retrievalRate: '调阅率 = viewed / prompts (null without prompts); 4 decimals.',
  saving:
    'Sum of the saving of accepted entries in CNY: the requesting institution’s price of the avoided item, rounded to the fen per group; totals are sums of the rows.',
  suppressed:
    'With HUREN_REPORT_MIN_CELL = N > 0: counts from 1 to N-1 are hidden (null, named in `suppressed`), plus enough other cells that no hidden cell can be worked out from the totals or its row; rates and savings derived from a hidden count are hidden too. Totals are never hidden.',
} as const;

export interface SavingsQuery {
  /** Inclusive local dates YYYY-MM-DD. */
  from: string;
  to: string;
  /** Grouping dimensions, in order; empty: totals only. */
  by: Dimension[];
  /** Restricts to one requesting institution (its id). */
  organization?: string;
}

export interface ReportOptions {
  /** Counts below this are suppressed (0: off). */
  minCell: number;
  maxGroups?: number;
}

export const COUNT_FIGURES = ['prompts', 'offered', 'viewed', 'accepted', 'patients', 'declined'] as const;
export type CountFigure = (typeof COUNT_FIGURES)[number];

export interface SavingsReport {
  report: 'reuse-savings';
  period: { from: string; to: string };
  by: Dimension[];
  filters: { organization?: DimensionValue };
  currency: 'CNY';
  minCell: number;
  generatedAt: string;
  definitions: typeof DEFINITIONS;
  declineReasons: DeclineReasonLegend[];
  rows: SavingsRow[];
  totals: Omit<Figures, 'patients'> & { patients: number };
}

// ---------------------------------------------------------------------------------------------------------------
// Input

/**
 * The first and last local day of a FHIR `date` given as YYYY, YYYY-MM or YYYY-MM-DD; `edge` says which end of a
 * partial date the bound takes (a `to` of 2025-02 is 2025-02-28).
 */
export function parseBound(raw: unknown, name: string, edge: 'start' | 'end'): string {
  if (typeof raw !== 'string' || raw === '') throw badRequest(`${name} is required (YYYY-MM-DD or YYYY-MM)`, name);
  const m = /^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$/.exec(raw);
  if (!m) throw badRequest(`${name} '${raw}' is not a date: use YYYY-MM-DD, YYYY-MM or YYYY`, name);
  const [, y, mo, d] = m;
  let day: string;
  if (d) day = raw;
  else if (mo) day = `${y}-${mo}-${edge === 'start' ? '01' : lastDayOf(Number(y), Number(mo))}`;
  else day = `${y}-${edge === 'start' ? '01-01' : '12-31'}`;
  if (!isLocalDate(day) || y < '1900') throw badRequest(`${name} '${raw}' is not a calendar date`, name);
  return day;
}

function lastDayOf(year: number, month: number): string {
  if (month < 1 || month > 12) return '00'; // rejected as not a calendar date
  return String(new Date(Date.UTC(year, month, 0)).getUTCDate()).padStart(2, '0');
}

/** Checks a period: not reversed, at most MAX_PERIOD_YEARS long. */
export function assertPeriod(from: string, to: string, names: { from: string; to: string }): void {
  if (from > to) {
    throw badRequest(`The period is reversed: ${names.from} ${from} is after ${names.to} ${to}`, [
      names.from,
      names.to,
    ]);
  }
  const limit = `${Number(from.slice(0, 4)) + MAX_PERIOD_YEARS}${from.slice(4)}`;
  if (to >= limit) {
    throw error(
      400,
      'too-costly',
      `The period ${from}..${to} is longer than ${MAX_PERIOD_YEARS} years; ask for at most ${MAX_PERIOD_YEARS} years at a time`,
      [names.from, names.to],
    );
  }
}

/** `by` as a list of dimensions: comma-separated and/or repeated; each dimension once. */
export function parseBy(raw: unknown): Dimension[] {
  if (raw === undefined) return [];
  const parts = [raw]
    .flat()
    .flatMap((v) => String(v).split(','))
    .map((s) => s.trim())
    .filter(Boolean);
  const out: Dimension[] = [];
  for (const p of parts) {
    if (!(DIMENSIONS as readonly string[]).includes(p)) {
      throw badRequest(`Unknown grouping '${p}': by takes ${DIMENSIONS.join(', ')} (comma-separated)`, 'by');
    }
    if (out.includes(p as Dimension)) throw badRequest(`by names '${p}' twice`, 'by');
    out.push(p as Dimension);
  }
  return out;
}

/** An institution id (or `Organization/<id>`) of the directory. */
export function parseOrganization(raw: unknown, name: string, rules: RecognitionRules): string {
  if (typeof raw !== 'string' || raw === '') throw badRequest(`${name} needs an institution id`, name);
  const id = raw.replace(/^Organization\//, '');
  if (!rules.directory.byId.has(id)) {
    throw badRequest(`${name} '${raw}' is not a participating institution`, name);
  }
  return id;
}

/** Refuses query parameters a report does not know (a misspelt filter must not silently widen the answer). */
export function assertKnownParams(query: Record<string, unknown>, known: readonly string[]): void {
  for (const k of Object.keys(query)) {
    if (!known.includes(k)) throw badRequest(`Unknown parameter '${k}'; this report takes ${known.join(', ')}`, k);
  }
}

/** A single value of a query parameter (repeated is an error). */
export function single(query: Record<string, unknown>, name: string): string | undefined {
  const v = query[name];
  if (Array.isArray(v)) throw badRequest(`${name} may be given once`, name);
  return v === undefined ? undefined : String(v);
}

// ---------------------------------------------------------------------------------------------------------------
// Database

type GroupKey = Partial<Record<Dimension, string>>;
/** Funnel counts by dimensions, event, prompt outcome, decline reason and whether it counts as a decline. */
export interface FunnelGroup {
  _id: GroupKey & { event: LedgerEntry['event']; outcome?: string; reason?: string; countsAsDecline?: boolean };
  n: number;
}
export interface SumGroup {
  _id: GroupKey | null;
  n: number;
}

export interface LedgerAggregates {
  funnel: FunnelGroup[];
  savings: SumGroup[];
  patients: SumGroup[];
  patientsTotal: number;
}

function tooManyGroups(max: number) {
  return error(
    400,
    'too-costly',
    `The report would have more than ${max} rows; group by fewer dimensions or ask for a shorter period`,
    'by',
  );
}

/** Runs a report: the ledger's tally of the period (from its rollups), then the pure assembly. */
export async function savingsReport(
  rollups: LedgerRollups,
  rules: RecognitionRules,
  query: SavingsQuery,
  options: ReportOptions,
  now: Date = new Date(),
): Promise<SavingsReport> {
  const { tally } = await rollups.tally(query.from, query.to, rules.catalogue.timeZone, now);
  return reportFromTally(tally, rules, query, options, now);
}

/** A report from a tally of its period (pure): several groupings of one period share one tally. */
export function reportFromTally(
  tally: LedgerTally,
  rules: RecognitionRules,
  query: SavingsQuery,
  options: ReportOptions,
  now: Date,
): SavingsReport {
  const maxGroups = options.maxGroups ?? MAX_GROUPS;
  const report = assembleReport(query, aggregatesOf(tally, query), rules, options.minCell, now);
  if (report.rows.length > maxGroups) throw tooManyGroups(maxGroups);
  return report;
}

// ---------------------------------------------------------------------------------------------------------------
// Assembly (pure)

interface Tally {
  key: GroupKey;
  prompts: number;
  offered: number;
  viewed: number;
  accepted: number;
  patients: number;
  declined: number;
  declinedByReason: Map<string, number>;
  savingFen: number;
}

const keyOf = (by: readonly Dimension[], id: GroupKey | null) => by.map((d) => id?.[d] ?? '').join('\u0000');
const toFen = (cny: number) => Math.round(cny * 100);
const rate = (num: number, den: number) => (den === 0 ? null : Math.round((num / den) * 10000) / 10000);

/** The report from the aggregations: rows in a stable order, exact totals, names, suppression. */
export function assembleReport(
  query: SavingsQuery,
  aggregates: LedgerAggregates,
  rules: RecognitionRules,
  minCell: number,
  now: Date,
): SavingsReport {
  const tallies = new Map<string, Tally>();
  const tallyOf = (id: GroupKey | null): Tally => {
    const k = keyOf(query.by, id);
    let t = tallies.get(k);
    if (!t) {
      const key: GroupKey = Object.fromEntries(query.by.map((d) => [d, id?.[d] ?? '']));
      t = {
        key,
        prompts: 0,
        offered: 0,
        viewed: 0,
        accepted: 0,
        patients: 0,
        declined: 0,
        declinedByReason: new Map(),
        savingFen: 0,
      };
      tallies.set(k, t);
    }
    return t;
  };
  for (const g of aggregates.funnel) {
    const t = tallyOf(g._id);
    switch (g._id.event) {
      case 'prompt':
        t.prompts += g.n;
        if (g._id.outcome === 'reusable') t.offered += g.n;
        break;
      case 'viewed':
        t.viewed += g.n;
        break;
      case 'accepted':
        t.accepted += g.n;
        break;
      case 'declined': {
        const reason = g._id.reason ?? 'unknown';
        t.declinedByReason.set(reason, (t.declinedByReason.get(reason) ?? 0) + g.n);
        // Entries without the flag predate it: a decline counts unless its reason says otherwise.
        if (g._id.countsAsDecline !== false) t.declined += g.n;
        break;
      }
    }
  }
  for (const g of aggregates.savings) tallyOf(g._id).savingFen += toFen(g.n);
  for (const g of aggregates.patients) tallyOf(g._id).patients += g.n;

  const legend = reasonLegend(rules, tallies.values());
  const ordered = [...tallies.values()].sort(compareKeys(query.by, rules));
  // Without a grouping the answer is its totals alone (one row would only repeat them).
  const rows: SavingsRow[] = (query.by.length ? ordered : []).map((t) => ({
    ...dimensionValues(query.by, t.key, rules),
    ...figuresOf(t, legend),
    suppressed: [],
  }));
  if (minCell > 0) suppress(rows, legend, minCell);

  const sum = (f: (t: Tally) => number) => ordered.reduce((acc, t) => acc + f(t), 0);
  const totalTally: Tally = {
    key: {},
    prompts: sum((t) => t.prompts),
    offered: sum((t) => t.offered),
    viewed: sum((t) => t.viewed),
    accepted: sum((t) => t.accepted),
    patients: aggregates.patientsTotal,
    declined: sum((t) => t.declined),
    declinedByReason: new Map(legend.map((r) => [r.code, sum((t) => t.declinedByReason.get(r.code) ?? 0)])),
    savingFen: sum((t) => t.savingFen),
  };
  const totals = figuresOf(totalTally, legend) as SavingsReport['totals'];
  return {
    report: 'reuse-savings',
    period: { from: query.from, to: query.to },
    by: query.by,
    filters: query.organization ? { organization: organizationValue(query.organization, rules) } : {},
    currency: 'CNY',
    minCell,
    generatedAt: now.toISOString(),
    definitions: DEFINITIONS,
    declineReasons: legend,
    rows,
    totals,
  };
}

function figuresOf(t: Tally, legend: readonly DeclineReasonLegend[]): Figures {
  return {
    prompts: t.prompts,
    offered: t.offered,
    viewed: t.viewed,
    accepted: t.accepted,
    patients: t.patients,
    declined: t.declined,
    declinedByReason: Object.fromEntries(legend.map((r) => [r.code, t.declinedByReason.get(r.code) ?? 0])),
    recognitionRate: rate(t.accepted, t.offered),
    retrievalRate: rate(t.viewed, t.prompts),
    saving: t.savingFen / 100,
  };
}

/** Every configured reason, in the configured order, then any other reason found in the ledger. */
function reasonLegend(rules: RecognitionRules, tallies: Iterable<Tally>): DeclineReasonLegend[] {
  const legend: DeclineReasonLegend[] = rules.declineReasons.reasons.map((r) => ({
    code: r.code,
    name: r.display,
    countsAsDecline: r.countsAsDecline,
  }));
  const known = new Set(legend.map((r) => r.code));
  const extra = new Set<string>();
  for (const t of tallies) for (const code of t.declinedByReason.keys()) if (!known.has(code)) extra.add(code);
  for (const code of [...extra].sort()) legend.push({ code, name: { zh: code, en: code }, countsAsDecline: true });
  return legend;
}

function organizationValue(id: string, rules: RecognitionRules): DimensionValue {
  const inst = rules.directory.byId.get(id);
  return { code: id, reference: `Organization/${id}`, ...(inst ? { name: inst.name } : {}) };
}

function dimensionValues(by: readonly Dimension[], key: GroupKey, rules: RecognitionRules): Partial<SavingsRow> {
  const out: Partial<SavingsRow> = {};
  for (const d of by) {
    const code = key[d] ?? '';
    if (d === 'organization') out.organization = organizationValue(code, rules);
    else if (d === 'category') {
      const c = rules.index.categories.get(code);
      out.category = { code, ...(c ? { name: c.name } : {}) };
    } else if (d === 'item') {
      const i = rules.index.items.get(code);
      out.item = { code, ...(i ? { name: i.name } : {}) };
    } else out.month = { code };
  }
  return out;
}

/** Row order: dimension by dimension as in `by`; institutions and categories/items in directory/catalogue order. */
function compareKeys(by: readonly Dimension[], rules: RecognitionRules): (a: Tally, b: Tally) => number {
  const rank: Partial<Record<Dimension, Map<string, number>>> = {
    organization: new Map([...rules.directory.byId.keys()].map((id, i) => [id, i])),
    category: new Map(rules.catalogue.categories.map((c, i) => [c.code, i])),
    item: new Map(rules.catalogue.items.map((c, i) => [c.code, i])),
  };
  return (a, b) => {
    for (const d of by) {
      const x = a.key[d] ?? '';
      const y = b.key[d] ?? '';
      if (x === y) continue;
      const r = rank[d];
      const rx = r?.get(x) ?? Number.MAX_SAFE_INTEGER;
      const ry = r?.get(y) ?? Number.MAX_SAFE_INTEGER;
      if (rx !== ry) return rx - ry;
      return x < y ? -1 : 1;
    }
    return 0;
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Small-cell suppression (pure)

/**
 * Hides counts from 1 to minCell-1 (primary suppression), then enough other cells that none can be worked out:
 * a column (figure) never has exactly one hidden cell when the exact total is published (secondary suppression of
 * its smallest visible cell), and within a row the declines and their counting reasons are hidden together
 * (declined = the sum of its counting reasons). Rates and the saving follow the counts they derive from. This guards
 * one answer; comparing answers for different periods or groupings is not prevented (the bureau is an authorised
 * user; suppression keeps small cells out of tables it publishes).
 */
export function suppress(rows: SavingsRow[], legend: readonly DeclineReasonLegend[], minCell: number): void {
  const columns: string[] = [...COUNT_FIGURES, ...legend.map((r) => `declinedByReason.${r.code}`)];
  const counting = legend.filter((r) => r.countsAsDecline).map((r) => `declinedByReason.${r.code}`);
  const get = (row: SavingsRow, c: string): number => {
    const v = c.startsWith('declinedByReason.')
      ? row.declinedByReason[c.slice('declinedByReason.'.length)]
      : row[c as CountFigure];
    return v ?? 0;
  };
  const hidden = rows.map(() => new Set<string>());
  rows.forEach((row, i) => {
    for (const c of columns) {
      const v = get(row, c);
      if (v > 0 && v < minCell) hidden[i].add(c);
    }
  });
  for (let changed = true; changed;) {
    changed = false;
    rows.forEach((_row, i) => {
      const h = hidden[i];
      if (h.has('declined') || counting.some((c) => h.has(c))) {
        for (const c of ['declined', ...counting]) {
          if (!h.has(c)) {
            h.add(c);
            changed = true;
          }
        }
      }
    });
    if (rows.length < 2) break;
    for (const c of columns) {
      const hiddenRows = rows.filter((_r, i) => hidden[i].has(c)).length;
      if (hiddenRows !== 1) continue;
      let pick = -1;
      rows.forEach((row, i) => {
        if (hidden[i].has(c)) return;
        if (pick < 0 || get(row, c) < get(rows[pick], c)) pick = i;
      });
      if (pick >= 0) {
        hidden[pick].add(c);
        changed = true;
      }
    }
  }
  rows.forEach((row, i) => {
    const h = hidden[i];
    if (h.has('accepted')) h.add('saving');
    if (h.has('accepted') || h.has('offered')) h.add('recognitionRate');
    if (h.has('viewed') || h.has('prompts')) h.add('retrievalRate');
    for (const c of h) {
      if (c.startsWith('declinedByReason.')) row.declinedByReason[c.slice('declinedByReason.'.length)] = null;
      else (row as unknown as Record<string, null>)[c] = null;
    }
    row.suppressed = [...columns, 'recognitionRate', 'retrievalRate', 'saving'].filter((c) => h.has(c));
  });
}
