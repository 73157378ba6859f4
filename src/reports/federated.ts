/**
 * The savings report over a federation of brokers (`GET /reports/savings?scope=federation`, docs/federation.md,
 * "Reports that roll up"): this broker's figures and its children's, by region, institution, category, item and
 * month. Each broker sends its parent the tally of its own ledger — numbers per (month, institution, category, item),
 * the same the savings report reads, never a patient or a patient key — with the names of what it counts and its
 * recognitions of other brokers' results. Every recognition is counted once, at the requester's broker (a ledger
 * holds its own requesters' decisions only); those of a result another region holds are also their own figure,
 * `crossRegion` (exported by the holder's region, imported by the requester's).
 *
 * The tree is walked by src/federation/figures.ts; this file only assembles (pure): it knows nothing of brokers but
 * what a `RegionPart` says, so that the reports folder does not depend on the federation's.
 */
import { ID_PATTERN } from '../fhir/types.js';
import { badRequest } from '../fhir/outcomes.js';
import type { RecognitionRules } from '../recognition/load.js';
import { addCell, emptyCell, emptyTally, joinKey, splitKey, type Cell, type LedgerTally } from './rollups.js';
import {
  MISC_LABELS,
  type Bilingual,
  type CrossRegionRow,
  type DeclineReasonLegend,
  type DimensionValue,
  type FederationRegion,
} from './report-types.js';
import {
  assembleReport,
  assertGroupCount,
  groupTallies,
  localNaming,
  type ReportDimension,
  type Naming,
  type ReportOptions,
  type SavingsQuery,
  type SavingsReport,
} from './savings.js';

/** A tally as it travels between brokers: numbers per month, institution, category and item — never a patient. */
export interface TallyJson {
  cells: { month: string; organization: string; category: string; item: string; cell: Cell }[];
  visits: { month: string; organization: string; n: number }[];
  categoryVisits: { month: string; organization: string; category: string; n: number }[];
}

/** The names of what a region's tally counts, as its broker knows them (its directory and catalogue). */
export interface RegionNames {
  organization: Record<string, Bilingual>;
  category: Record<string, Bilingual>;
  item: Record<string, Bilingual>;
  reason: Record<string, { name: Bilingual; countsAsDecline: boolean }>;
}

/** A broker's accepted recognitions of results another broker holds, by holder and dimensions (aggregates). */
export interface ImportRow {
  /** The holder's FHIR base URL. */
  from: string;
  month: string;
  organization: string;
  category: string;
  item: string;
  accepted: number;
  saving: number;
}

/** One region of a federated report, as its broker answered (or did not). */
export interface RegionPart {
  /** Division code; empty for the answering broker when it has no children to tell it by. */
  region: string;
  /** Its id in its parent's registry; absent for the answering broker. */
  broker?: string;
  name?: string;
  /** Its FHIR base URL: its institutions are named by absolute reference, its results' recognitions by region. */
  base?: string;
  parent?: string;
  depth: number;
  answered: boolean;
  reason?: string;
  tally?: LedgerTally;
  names?: RegionNames;
  imports?: ImportRow[];
}

/** The dimensions of a tally: a child sends only those a report groups or filters by (the others summed away). */
export const TALLY_DIMENSIONS = ['month', 'organization', 'category', 'item'] as const;
export type TallyDimension = (typeof TALLY_DIMENSIONS)[number];

/** Where the federated figures come from (src/federation/figures.ts). */
export interface FederationSource {
  /** Every region of the tree; `keep`: the tally dimensions the report needs (default all). */
  regions(from: string, to: string, keep?: readonly TallyDimension[]): Promise<RegionPart[]>;
}

/** The tally dimensions a report needs: its groupings and the institution when it filters by one. */
export function dimensionsNeeded(query: Pick<SavingsQuery, 'by' | 'organization'>): TallyDimension[] {
  return TALLY_DIMENSIONS.filter((d) => query.by.includes(d) || (d === 'organization' && !!query.organization));
}

/**
 * A tally with only `keep`'s dimensions, the others summed away (their key part empty): a region's answer is then as
 * small as the report needs — one cell per region for its totals. 互认人次 still add up: a visit lies in one month and
 * one institution, so its counts per month and institution (and category) sum over the dimensions dropped (pure).
 */
export function reduceTally(tally: LedgerTally, keep: readonly TallyDimension[]): LedgerTally {
  if (TALLY_DIMENSIONS.every((d) => keep.includes(d))) return tally;
  const part = (d: TallyDimension, v: string) => (keep.includes(d) ? v : '');
  const out = emptyTally();
  for (const [k, cell] of tally.cells) {
    const [month, organization, category, item] = splitKey(k) as [string, string, string, string];
    const key = joinKey(
      part('month', month),
      part('organization', organization),
      part('category', category),
      part('item', item),
    );
    out.cells.set(key, addCell(out.cells.get(key) ?? emptyCell(), cell));
  }
  for (const [k, n] of tally.visits) {
    const [month, organization] = splitKey(k) as [string, string];
    const key = joinKey(part('month', month), part('organization', organization));
    out.visits.set(key, (out.visits.get(key) ?? 0) + n);
  }
  for (const [k, n] of tally.categoryVisits) {
    const [month, organization, category] = splitKey(k) as [string, string, string];
    const key = joinKey(part('month', month), part('organization', organization), part('category', category));
    out.categoryVisits.set(key, (out.categoryVisits.get(key) ?? 0) + n);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// On the wire

export function tallyToJson(tally: LedgerTally): TallyJson {
  return {
    cells: [...tally.cells].map(([k, cell]) => {
      const [month, organization, category, item] = splitKey(k) as [string, string, string, string];
      return { month, organization, category, item, cell };
    }),
    visits: [...tally.visits].map(([k, n]) => {
      const [month, organization] = splitKey(k) as [string, string];
      return { month, organization, n };
    }),
    categoryVisits: [...tally.categoryVisits].map(([k, n]) => {
      const [month, organization, category] = splitKey(k) as [string, string, string];
      return { month, organization, category, n };
    }),
  };
}

const MONTH = /^\d{4}-\d{2}$/;
const CODE = /^[A-Za-z0-9\-._]{1,64}$/;
const count = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** A tally a child sent, checked field by field: a malformed answer is a region that did not answer, never a sum. */
export function tallyFromJson(json: unknown): LedgerTally {
  const bad = (what: string): never => {
    throw new Error(`malformed figures (${what})`);
  };
  const t = (json ?? {}) as Partial<TallyJson>;
  if (!Array.isArray(t.cells) || !Array.isArray(t.visits) || !Array.isArray(t.categoryVisits)) bad('tally');
  const tally = emptyTally();
  const dims = (r: Record<string, unknown>, names: string[]) =>
    names.map((n) => {
      const v = r[n];
      // Empty: a dimension the parent did not ask for, summed away.
      const pattern = n === 'month' ? MONTH : n === 'organization' ? ID_PATTERN : CODE;
      if (typeof v !== 'string' || (v !== '' && !pattern.test(v))) {
        bad(n);
      }
      return v as string;
    });
  for (const r of t.cells!) {
    const k = joinKey(...dims(r as never, ['month', 'organization', 'category', 'item']));
    const c = (r as { cell?: Partial<Cell> }).cell ?? {};
    const figures = ['prompts', 'offered', 'viewed', 'accepted', 'referenceAccepted', 'declined', 'savingFen'] as const;
    if (!figures.every((f) => count(c[f]))) bad('cell');
    const reasons = c.reasons ?? {};
    if (typeof reasons !== 'object' || Object.entries(reasons).some(([code, n]) => !CODE.test(code) || !count(n))) {
      bad('reasons');
    }
    tally.cells.set(k, {
      ...(Object.fromEntries(figures.map((f) => [f, c[f]])) as unknown as Cell),
      reasons: { ...reasons },
    });
  }
  for (const r of t.visits!) {
    if (!count((r as { n?: unknown }).n)) bad('visits');
    tally.visits.set(joinKey(...dims(r as never, ['month', 'organization'])), r.n);
  }
  for (const r of t.categoryVisits!) {
    if (!count((r as { n?: unknown }).n)) bad('categoryVisits');
    tally.categoryVisits.set(joinKey(...dims(r as never, ['month', 'organization', 'category'])), r.n);
  }
  return tally;
}

/** The names of what a tally counts, from this broker's rules (sent with the tally). */
export function namesOf(tally: LedgerTally, rules: RecognitionRules): RegionNames {
  const names: RegionNames = { organization: {}, category: {}, item: {}, reason: {} };
  for (const k of tally.cells.keys()) {
    const [, organization, category, item] = splitKey(k) as [string, string, string, string];
    const inst = rules.directory.byId.get(organization);
    if (inst) names.organization[organization] = inst.name;
    const c = rules.index.categories.get(category);
    if (c) names.category[category] = c.name;
    const i = rules.index.items.get(item);
    if (i) names.item[item] = i.name;
  }
  for (const r of rules.declineReasons.reasons) {
    names.reason[r.code] = { name: r.display, countsAsDecline: r.countsAsDecline };
  }
  return names;
}

/** Names a child sent, kept only where they have the expected shape (a name is shown, never trusted further). */
export function namesFromJson(json: unknown): RegionNames {
  const out: RegionNames = { organization: {}, category: {}, item: {}, reason: {} };
  const bilingual = (v: unknown): v is Bilingual =>
    !!v && typeof (v as Bilingual).zh === 'string' && typeof (v as Bilingual).en === 'string';
  const j = (json ?? {}) as Record<string, Record<string, unknown>>;
  for (const d of ['organization', 'category', 'item'] as const) {
    for (const [code, name] of Object.entries(j[d] ?? {})) if (bilingual(name)) out[d][code] = name;
  }
  for (const [code, r] of Object.entries(j.reason ?? {})) {
    const reason = r as { name?: unknown; countsAsDecline?: unknown };
    if (bilingual(reason.name) && typeof reason.countsAsDecline === 'boolean') {
      out.reason[code] = { name: reason.name, countsAsDecline: reason.countsAsDecline };
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// The report (pure)

/** What `/reports/savings?scope=federation` takes beyond the local report: one region of the tree. */
export interface FederatedQuery extends SavingsQuery {
  region?: string;
}

const THIS_BROKER = MISC_LABELS.thisBroker;

export function regionValue(part: Pick<RegionPart, 'region' | 'name' | 'depth'>): DimensionValue {
  return {
    code: part.region,
    name: part.depth === 0 ? THIS_BROKER : { zh: part.name ?? part.region, en: part.name ?? part.region },
  };
}

/** The federation's report: the answered regions' tallies grouped as the local report is, with `region`. */
export function federatedReport(
  parts: readonly RegionPart[],
  rules: RecognitionRules,
  query: FederatedQuery,
  options: ReportOptions,
  now: Date,
): SavingsReport {
  if (query.region !== undefined && !parts.some((p) => p.region === query.region)) {
    throw badRequest(
      `region '${query.region}' is not a region of this broker's federation (${parts
        .map((p) => p.region)
        .filter(Boolean)
        .join(', ')})`,
      'region',
    );
  }
  const self = parts.find((p) => p.depth === 0)!;
  // An institution filter names an institution of the region asked (this broker's own when none is).
  const scoped = query.organization !== undefined ? (query.region ?? self.region) : query.region;
  const chosen = parts.filter((p) => scoped === undefined || p.region === scoped);
  const answered = chosen.filter((p) => p.answered && p.tally);
  const { groups, patientsTotal } = groupTallies(
    answered.map((p) => ({ region: p.region, tally: p.tally! })),
    query,
  );
  assertGroupCount(groups.length, options);
  const naming = federationNaming(parts, rules);
  const report = assembleReport(query, groups, patientsTotal, rules, options.minCell, now, naming);
  const selfPart = (p: RegionPart) => p.depth === 0;
  const regions: FederationRegion[] = parts.map((p) => ({
    code: p.region,
    name: regionValue(p).name!,
    ...(p.broker ? { broker: p.broker } : {}),
    ...(p.parent !== undefined && !selfPart(p) ? { parent: p.parent } : {}),
    depth: p.depth,
    answered: p.answered,
    ...(p.reason ? { reason: p.reason } : {}),
  }));
  const filterRegion = scoped === undefined ? undefined : parts.find((p) => p.region === scoped)!;
  return {
    ...report,
    scope: 'federation',
    filters: {
      ...report.filters,
      ...(query.organization
        ? { organization: naming.value('organization', query.organization, filterRegion!.region) }
        : {}),
      ...(filterRegion ? { region: regionValue(filterRegion) } : {}),
    },
    federation: {
      regions,
      missing: regions.filter((r) => !r.answered && (scoped === undefined || r.code === scoped)),
      crossRegion: crossRegion(parts, query, scoped, naming, options.minCell),
    },
  };
}

/** Names: each region's institutions by its broker's names and absolute reference; the rest by this broker's rules. */
function federationNaming(parts: readonly RegionPart[], rules: RecognitionRules): Naming {
  const local = localNaming(rules);
  const byRegion = new Map(parts.map((p) => [p.region, p]));
  const order = new Map(parts.map((p, i) => [p.region, i]));
  const reasons = new Map<string, DeclineReasonLegend>();
  for (const p of parts) {
    for (const [code, r] of Object.entries(p.names?.reason ?? {})) {
      if (!reasons.has(code)) reasons.set(code, { code, ...r });
    }
  }
  return {
    value(d: ReportDimension, code: string, region: string): DimensionValue {
      const part = byRegion.get(region);
      if (d === 'region') return part ? regionValue(part) : { code };
      if (!part || part.depth === 0) return local.value(d, code, region);
      if (d === 'organization') {
        const name = part.names?.organization[code];
        return {
          code,
          ...(part.base ? { reference: `${part.base}/Organization/${code}` } : {}),
          ...(name ? { name } : {}),
        };
      }
      if (d === 'category' || d === 'item') {
        const known = local.value(d, code, region);
        const name = known.name ?? part.names?.[d][code];
        return { code, ...(name ? { name } : {}) };
      }
      return { code };
    },
    rank: (d, code) => (d === 'region' ? order.get(code) : d === 'organization' ? undefined : local.rank(d, code)),
    reasons,
  };
}

/**
 * The recognitions across regions: each answered broker's imports, its holder named by region when it is a broker of
 * the tree (else by its base URL), grouped by the report's dimensions that apply to a recognition.
 */
function crossRegion(
  parts: readonly RegionPart[],
  query: FederatedQuery,
  scoped: string | undefined,
  naming: Naming,
  minCell: number,
): CrossRegionRow[] {
  const regionOfBase = new Map(parts.filter((p) => p.base).map((p) => [p.base!, p]));
  const dims = query.by.filter((d): d is Exclude<ReportDimension, 'region'> => d !== 'region');
  const rows = new Map<string, CrossRegionRow & { order: number[] }>();
  parts.forEach((to, toIndex) => {
    for (const i of to.imports ?? []) {
      const holder = regionOfBase.get(i.from);
      if (scoped !== undefined && to.region !== scoped && holder?.region !== scoped) continue;
      if (query.organization && (to.region !== scoped || i.organization !== query.organization)) continue;
      const key = joinKey(holder?.region ?? i.from, to.region, ...dims.map((d) => i[d]));
      let row = rows.get(key);
      if (!row) {
        row = {
          from: holder ? regionValue(holder) : { code: i.from },
          to: regionValue(to),
          ...Object.fromEntries(dims.map((d) => [d, naming.value(d, i[d], to.region)])),
          accepted: 0,
          saving: 0,
          suppressed: [],
          order: [holder ? parts.indexOf(holder) : parts.length, toIndex],
        };
        rows.set(key, row);
      }
      row.accepted! += i.accepted;
      row.saving = Math.round((row.saving! + i.saving) * 100) / 100;
    }
  });
  return [...rows.values()]
    .sort((a, b) => a.order[0]! - b.order[0]! || a.order[1]! - b.order[1]! || rowText(a).localeCompare(rowText(b)))
    .map(({ order: _order, ...row }) => {
      // Small cells are hidden as in the rows (primary suppression: no total of these is published).
      if (minCell > 0 && row.accepted! > 0 && row.accepted! < minCell) {
        return { ...row, accepted: null, saving: null, suppressed: ['accepted', 'saving'] };
      }
      return row;
    });
}

const rowText = (r: CrossRegionRow) =>
  [r.month?.code, r.organization?.code, r.category?.code, r.item?.code].map((v) => v ?? '').join('|');
