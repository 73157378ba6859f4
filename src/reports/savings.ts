/**
 * Savings reports of the health bureau over the decisions ledger (issue 6): the recognition funnel (prompts → viewed
 * → accepted / declined), 互认项次 and 互认人次, and the saving in CNY, grouped by institution, category, item and/or
 * month. Aggregates only: no row names a patient.
 *
 * Every figure comes from the ledger's tally of the period (src/reports/rollups.ts: rollups of closed months and
 * days, plus the open days' entries), grouped in the process. Totals are the sums of the rows, so they add up exactly
 * whatever the grouping; only 互认人次, which is a distinct count, has a total of its own (see DEFINITIONS).
 */
import type { RecognitionRules } from '../recognition/load.js';
import { isLocalDate } from '../recognition/time.js';
import { addCell, emptyCell, splitKey, type Cell, type LedgerRollups, type LedgerTally } from './rollups.js';
import { badRequest, error } from '../fhir/outcomes.js';
import type { DeclineReasonLegend, DimensionValue, FederationSummary, Figures, SavingsRow } from './report-types.js';

export type { DeclineReasonLegend, DimensionValue, FederationSummary, Figures, SavingsRow } from './report-types.js';

export const DIMENSIONS = ['organization', 'category', 'item', 'month'] as const;
/** `region` (a broker's region in a federation) groups only a report with `scope=federation` (src/reports/federated.ts). */
export const FEDERATION_DIMENSIONS = [...DIMENSIONS, 'region'] as const;
export type ReportDimension = (typeof FEDERATION_DIMENSIONS)[number];
/** The groupings of this broker's own report. */
export type Dimension = (typeof DIMENSIONS)[number];

/** Longest period one report covers: a year of a city is the expected use, five years the ceiling. */
export const MAX_PERIOD_YEARS = 5;
/** Most rows in one answer; beyond, the caller narrows the grouping or the period (400, never a huge response). */
export const MAX_GROUPS = 20000;

/**
 * The exact definition of every figure, in one place: served in the JSON report, shown as the dashboard's tooltips
 * (src/ui/client/dashboard.ts reads them from the report) and quoted in the README. Bilingual: the bureau publishes
 * in Chinese.
 */
export const DEFINITIONS = {
  period: {
    zh: '统计期间：按本地日期（Asia/Shanghai）from 至 to（含首尾）。每条提醒的全部指标都计入该提醒出现的那一天，即使医生之后才作出决定。',
    en: 'Inclusive local dates (Asia/Shanghai) from..to. Every figure of a prompt counts on the local day the prompt was first shown, even when the doctor decided later.',
  },
  prompts: {
    zh: '提醒次数：同一申请机构、同一患者、同一项目、同一本地日期只计一次提醒，无论 $reuse-check、CDS order-select/order-sign 或 /app 打开了多少次；有既往结果（可互认或仅供参考）才算提醒。',
    en: 'Prompts: one per (requesting institution, patient, item, local day) with a prior result (reusable or reference-only), however many $reuse-check calls, CDS order-select/order-sign hooks and /app launches showed it.',
  },
  offered: {
    zh: '可互认提醒：提醒所给出的既往结果可互认（其决定所依据的检查结果为可互认；尚未决定的，以首次检查为准）。互认率的分母。',
    en: 'Reusable offered: prompts whose prior result is reusable (as judged by the check the decision was made on; before a decision, by the first check). The denominator of 互认率.',
  },
  viewed: {
    zh: '调阅：医生打开了既往结果的提醒（每个提醒至多一次）。仅关闭 CDS 卡片而未给原因不算调阅。',
    en: 'Viewed (调阅): prompts whose prior result the doctor opened (at most once per prompt). Dismissing a CDS card without a reason is not a view.',
  },
  accepted: {
    zh: '互认项次：医生采纳了可互认结果、未再开单的提醒（以该提醒最后一次决定为准）。',
    en: '互认项次: prompts whose reusable result the doctor accepted instead of ordering the item again (the last decision recorded for the prompt decides).',
  },
  referenceAccepted: {
    zh: '参考采纳：医生采纳了仅供参考结果的提醒。不属于互认，不计入互认率与节约费用。',
    en: 'Reference acceptances (参考采纳): prompts whose reference-only result the doctor accepted. Not 互认: counted in neither 互认率 nor the saving.',
  },
  patients: {
    zh: '互认人次：有互认项次的（申请机构、患者、本地日期）的个数，按组计算。按机构和/或月份分组时各行之和等于合计；按类别分组时，一次就诊涉及多个类别会在每个类别各计一次。',
    en: '互认人次: distinct (requesting institution, patient, local day) with an accepted reusable result, per group. Rows add up to the total when grouped by organization and/or month; grouped by category or item, a visit with several counts once in each.',
  },
  declined: {
    zh: '不予互认：可互认结果被拒绝、且拒绝原因计为不予互认的提醒（“影像未送达”“连续监测”等不计）。拒绝仅供参考的结果不是不予互认。declinedByReason 列出可互认结果的全部拒绝原因（含不计入的）。',
    en: 'Declined (不予互认): prompts whose reusable result was declined for a reason that counts as a decline ("images not received", "serial monitoring" do not). Declining a reference-only result is not a decline. declinedByReason lists every reason given for a reusable result, counted or not.',
  },
  recognitionRate: {
    zh: '互认率 = 互认项次 / 可互认提醒（无可互认提醒时为空），保留4位小数，不会超过100%。',
    en: '互认率 = accepted / offered (null when nothing was offered), 4 decimals; never above 100 %.',
  },
  retrievalRate: {
    zh: '调阅率 = 调阅 / 提醒次数（无提醒时为空），保留4位小数。',
    en: '调阅率 = viewed / prompts (null without prompts), 4 decimals.',
  },
  saving: {
    zh: '节约费用（元）：互认项次的申请机构该项目价格之和，按组精确到分；合计为各行之和。',
    en: 'Saving in CNY: the requesting institution’s price of each accepted reusable item, summed to the fen per group; totals are sums of the rows.',
  },
  suppressed: {
    zh: '小数抑制：HUREN_REPORT_MIN_CELL = N > 0 时，1 至 N-1 的计数不公布（为空，列在 suppressed 中），并隐藏足够的其他单元格使其无法由合计或同行推算；由隐藏计数派生的比率和费用一并隐藏。合计从不隐藏。',
    en: 'With HUREN_REPORT_MIN_CELL = N > 0: counts from 1 to N-1 are hidden (null, named in `suppressed`), plus enough other cells that no hidden cell can be worked out from the totals or its row; rates and savings derived from a hidden count are hidden too. Totals are never hidden.',
  },
} as const;

export interface SavingsQuery {
  /** Inclusive local dates YYYY-MM-DD. */
  from: string;
  to: string;
  /** Grouping dimensions, in order; empty: totals only. */
  by: ReportDimension[];
  /** Restricts to one requesting institution (its id). */
  organization?: string;
}

/**
 * How a report names and orders the values of its dimensions: from this broker's rules, or, over a federation, from
 * the names each region sent (src/reports/federated.ts). `region` is the region a row's institution belongs to.
 */
export interface Naming {
  value(d: ReportDimension, code: string, region: string): DimensionValue;
  /** Rank of a value in the row order (lower first); undefined sorts after, by code. */
  rank(d: ReportDimension, code: string): number | undefined;
  /** Names of decline reasons the rules do not know (other brokers' reasons). */
  reasons?: ReadonlyMap<string, DeclineReasonLegend>;
}

export interface ReportOptions {
  /** Counts below this are suppressed (0: off). */
  minCell: number;
  maxGroups?: number;
}

export const COUNT_FIGURES = [
  'prompts',
  'offered',
  'viewed',
  'accepted',
  'referenceAccepted',
  'patients',
  'declined',
] as const;
export type CountFigure = (typeof COUNT_FIGURES)[number];

export interface SavingsReport {
  report: 'reuse-savings';
  period: { from: string; to: string };
  by: ReportDimension[];
  filters: { organization?: DimensionValue; region?: DimensionValue };
  /** `federation`: this broker's figures and its children's (src/reports/federated.ts); absent: this broker's. */
  scope?: 'federation';
  currency: 'CNY';
  minCell: number;
  generatedAt: string;
  definitions: typeof DEFINITIONS;
  declineReasons: DeclineReasonLegend[];
  rows: SavingsRow[];
  totals: Omit<Figures, 'patients'> & { patients: number };
  /** With `scope=federation`: the regions asked, those that did not answer, and the recognitions across regions. */
  federation?: FederationSummary;
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
export function parseBy(raw: unknown, allowed: readonly ReportDimension[] = DIMENSIONS): ReportDimension[] {
  if (raw === undefined) return [];
  const parts = [raw]
    .flat()
    .flatMap((v) => String(v).split(','))
    .map((s) => s.trim())
    .filter(Boolean);
  const out: ReportDimension[] = [];
  for (const p of parts) {
    if (!(allowed as readonly string[]).includes(p)) {
      const hint = p === 'region' ? ' (region groups the federation: add scope=federation)' : '';
      throw badRequest(`Unknown grouping '${p}': by takes ${allowed.join(', ')} (comma-separated)${hint}`, 'by');
    }
    if (out.includes(p as ReportDimension)) throw badRequest(`by names '${p}' twice`, 'by');
    out.push(p as ReportDimension);
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
// Grouping (pure)

type GroupKey = Partial<Record<ReportDimension, string>>;

/** A group of the report: its dimension values, its funnel and its 互认人次. */
export interface ReportGroup {
  key: GroupKey;
  cell: Cell;
  patients: number;
}

function tooManyGroups(max: number) {
  return error(
    400,
    'too-costly',
    `The report would have more than ${max} rows; group by fewer dimensions or ask for a shorter period`,
    'by',
  );
}

const keyOf = (by: readonly ReportDimension[], id: GroupKey) => by.map((d) => id[d] ?? '').join('\u0000');

/**
 * The groups of a tally by `query.by`, restricted to `query.organization` when given, and 互认人次 in total (pure).
 * 互认人次 of a group: per item the accepted prompts (one prompt per institution, patient, item and day); per category
 * the rollups' distinct count per (month, institution, category); otherwise the one per (month, institution). Each
 * adds up across months and institutions, since a visit lies in one of each.
 */
export function groupTally(
  tally: LedgerTally,
  query: Pick<SavingsQuery, 'by' | 'organization'>,
): { groups: ReportGroup[]; patientsTotal: number } {
  return groupTallies([{ region: '', tally }], query);
}

/**
 * The groups of several regions' tallies (a federation's): as groupTally, with `region` a dimension. An institution
 * belongs to one region (its broker's), so 互认人次 add up across regions as they do across institutions.
 */
export function groupTallies(
  parts: readonly { region: string; tally: LedgerTally }[],
  query: Pick<SavingsQuery, 'by' | 'organization'>,
): { groups: ReportGroup[]; patientsTotal: number } {
  const groups = new Map<string, ReportGroup>();
  const groupOf = (parts: Record<ReportDimension, string>): ReportGroup => {
    const key: GroupKey = Object.fromEntries(query.by.map((d) => [d, parts[d]]));
    // An institution is named within its region: the same id in two regions is two institutions.
    if (query.by.includes('organization') && parts.region) key.region = parts.region;
    const k = keyOf(query.by, key) + (key.region !== undefined ? `\u0000${key.region}` : '');
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { key, cell: emptyCell(), patients: 0 }));
    return g;
  };
  const byItem = query.by.includes('item');
  const byCategory = !byItem && query.by.includes('category');
  let patientsTotal = 0;
  for (const { region, tally } of parts) {
    for (const [k, cell] of tally.cells) {
      const [month, organization, category, item] = splitKey(k) as [string, string, string, string];
      if (query.organization && organization !== query.organization) continue;
      const g = groupOf({ month, organization, category, item, region });
      addCell(g.cell, cell);
      if (byItem) g.patients += cell.accepted;
    }
    if (byCategory) {
      for (const [k, n] of tally.categoryVisits) {
        const [month, organization, category] = splitKey(k) as [string, string, string];
        if (query.organization && organization !== query.organization) continue;
        groupOf({ month, organization, category, item: '', region }).patients += n;
      }
    }
    for (const [k, n] of tally.visits) {
      const [month, organization] = splitKey(k) as [string, string];
      if (query.organization && organization !== query.organization) continue;
      patientsTotal += n;
      if (!byItem && !byCategory) groupOf({ month, organization, category: '', item: '', region }).patients += n;
    }
  }
  return { groups: [...groups.values()], patientsTotal };
}

/** Runs a report: the tally of the period (from its rollups), then the pure assembly. */
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
  const { groups, patientsTotal } = groupTally(tally, query);
  if (groups.length > maxGroups) throw tooManyGroups(maxGroups);
  return assembleReport(query, groups, patientsTotal, rules, options.minCell, now);
}

/** Throws the report's 400 when a grouping would give more rows than one answer holds. */
export function assertGroupCount(count: number, options: ReportOptions): void {
  const maxGroups = options.maxGroups ?? MAX_GROUPS;
  if (count > maxGroups) throw tooManyGroups(maxGroups);
}

// ---------------------------------------------------------------------------------------------------------------
// Assembly (pure)

const rate = (num: number, den: number) => (den === 0 ? null : Math.round((num / den) * 10000) / 10000);

/** The report from its groups: rows in a stable order, exact totals, names, suppression. */
export function assembleReport(
  query: SavingsQuery,
  groups: readonly ReportGroup[],
  patientsTotal: number,
  rules: RecognitionRules,
  minCell: number,
  now: Date,
  naming: Naming = localNaming(rules),
): SavingsReport {
  // A group a correction took back to nothing is no group.
  const live = groups.filter((g) => Object.values(g.cell).some((v) => typeof v === 'number' && v !== 0) || g.patients);
  const legend = reasonLegend(rules, live, naming.reasons);
  const ordered = [...live].sort(compareKeys(query.by, naming));
  // Without a grouping the answer is its totals alone (one row would only repeat them).
  const rows: SavingsRow[] = (query.by.length ? ordered : []).map((g) => ({
    ...dimensionValues(query.by, g.key, naming),
    ...figuresOf(g.cell, g.patients, legend),
    suppressed: [],
  }));
  if (minCell > 0) suppress(rows, legend, minCell);
  const total = ordered.reduce((t, g) => addCell(t, g.cell), emptyCell());
  const totals = figuresOf(total, patientsTotal, legend) as SavingsReport['totals'];
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

function figuresOf(c: Cell, patients: number, legend: readonly DeclineReasonLegend[]): Figures {
  return {
    prompts: c.prompts,
    offered: c.offered,
    viewed: c.viewed,
    accepted: c.accepted,
    referenceAccepted: c.referenceAccepted,
    patients,
    declined: c.declined,
    declinedByReason: Object.fromEntries(legend.map((r) => [r.code, c.reasons[r.code] ?? 0])),
    recognitionRate: rate(c.accepted, c.offered),
    retrievalRate: rate(c.viewed, c.prompts),
    saving: c.savingFen / 100,
  };
}

/** Every configured reason, in the configured order, then any other reason found in the prompts. */
export function reasonLegend(
  rules: RecognitionRules,
  groups: Iterable<{ cell: Pick<Cell, 'reasons'> }>,
  others?: ReadonlyMap<string, DeclineReasonLegend>,
): DeclineReasonLegend[] {
  const legend: DeclineReasonLegend[] = rules.declineReasons.reasons.map((r) => ({
    code: r.code,
    name: r.display,
    countsAsDecline: r.countsAsDecline,
  }));
  const known = new Set(legend.map((r) => r.code));
  const extra = new Set<string>();
  for (const g of groups) for (const code of Object.keys(g.cell.reasons)) if (!known.has(code)) extra.add(code);
  for (const code of [...extra].sort()) {
    legend.push(others?.get(code) ?? { code, name: { zh: code, en: code }, countsAsDecline: true });
  }
  return legend;
}

export function organizationValue(id: string, rules: RecognitionRules): DimensionValue {
  const inst = rules.directory.byId.get(id);
  return { code: id, reference: `Organization/${id}`, ...(inst ? { name: inst.name } : {}) };
}

/** Names and order from this broker's directory and catalogue. */
export function localNaming(rules: RecognitionRules): Naming {
  const rank: Partial<Record<ReportDimension, Map<string, number>>> = {
    organization: new Map([...rules.directory.byId.keys()].map((id, i) => [id, i])),
    category: new Map(rules.catalogue.categories.map((c, i) => [c.code, i])),
    item: new Map(rules.catalogue.items.map((c, i) => [c.code, i])),
  };
  return {
    value(d, code) {
      if (d === 'organization') return organizationValue(code, rules);
      if (d === 'category') {
        const c = rules.index.categories.get(code);
        return { code, ...(c ? { name: c.name } : {}) };
      }
      if (d === 'item') {
        const i = rules.index.items.get(code);
        return { code, ...(i ? { name: i.name } : {}) };
      }
      return { code };
    },
    rank: (d, code) => rank[d]?.get(code),
  };
}

function dimensionValues(by: readonly ReportDimension[], key: GroupKey, naming: Naming): Partial<SavingsRow> {
  const out: Partial<SavingsRow> = {};
  for (const d of by) out[d] = naming.value(d, key[d] ?? '', key.region ?? '');
  return out;
}

/** Row order: dimension by dimension as in `by`; values in the naming's order (directory, catalogue, tree). */
function compareKeys(by: readonly ReportDimension[], naming: Naming): (a: ReportGroup, b: ReportGroup) => number {
  // An institution's region orders before the institution (the same id may be two institutions).
  const dims: ReportDimension[] = by.includes('organization') && !by.includes('region') ? ['region', ...by] : [...by];
  return (a, b) => {
    for (const d of dims) {
      const x = a.key[d] ?? '';
      const y = b.key[d] ?? '';
      if (x === y) continue;
      const rx = naming.rank(d, x) ?? Number.MAX_SAFE_INTEGER;
      const ry = naming.rank(d, y) ?? Number.MAX_SAFE_INTEGER;
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
