/**
 * Supervision of declines (issue 20): when a doctor re-orders despite a reusable result, the reason is recorded and
 * the health commission's experts review those cases (as Guangzhou's platform does). Three views, aggregates first:
 * - declines by institution, department and doctor (`by=` with `department` and/or `practitioner` on
 *   GET /reports/savings), with the reason distribution and the outliers: a group whose declines are far above what
 *   its peers' decline rates for the same items would give;
 * - the case list (GET /reports/supervision/cases, JSON or CSV): check, item, reason, free text, institution,
 *   department, doctor, date — never a patient identifier;
 * - one case with the prior result the doctor declined (GET /reports/supervision/cases/{id}): the `supervisor` role
 *   only, every access audited (src/reports/routes.ts).
 * Only decisions on reusable results are supervised: a reference-only result is not 互认, declining it is no decline.
 */
import type { RecognitionRules } from '../recognition/load.js';
import type { PromptDoc } from '../recognition/prompts.js';
import { badRequest } from '../fhir/outcomes.js';
import { csvDocument, dimensionHeaders } from './csv.js';
import {
  DIMENSION_LABELS,
  MISC_LABELS,
  type Bilingual,
  type DeclineReasonLegend,
  type DimensionValue,
  type ReportLang,
} from './report-types.js';
import { addStaff, splitKey, type LedgerTally, type StaffCell } from './rollups.js';
import { reasonLegend } from './savings.js';

export const SUPERVISION_DIMENSIONS = [
  'organization',
  'department',
  'practitioner',
  'category',
  'item',
  'month',
] as const;
export type SupervisionDimension = (typeof SUPERVISION_DIMENSIONS)[number];

/** Fewest declines before a group can be an outlier (a rate of 2 in 2 says nothing). */
export const OUTLIER_MIN_DECLINES = 3;

export const SUPERVISION_DEFINITIONS = {
  decided: {
    zh: '已决定：医生对可互认结果作出决定（互认或拒绝）的提醒数，以每个提醒最后一次决定为准。',
    en: 'Decided: prompts whose reusable result the doctor decided on (accepted or declined), the last decision of each prompt.',
  },
  declined: {
    zh: '不予互认：已决定中拒绝且理由计为不予互认的数目；declinedByReason 列出全部理由（含不计入的）。',
    en: 'Declined: decided prompts declined for a reason that counts as a decline; declinedByReason lists every reason, counted or not.',
  },
  declineRate: {
    zh: '拒绝率 = 不予互认 / 已决定（保留4位小数）。',
    en: 'Decline rate = declined / decided (4 decimals).',
  },
  expectedDeclined: {
    zh: '同行预期：该组每个项目的已决定数 × 同行（其他组、同一项目、同一期间）的拒绝率，求和。',
    en: 'Expected from peers: for each item, the group’s decided prompts × its peers’ decline rate for that item (every other group, same period), summed.',
  },
  outlier: {
    zh: `异常：不予互认不少于${OUTLIER_MIN_DECLINES}次、至少为同行预期的2倍，且高出预期2个标准差以上（按各项目同行拒绝率的二项分布）。`,
    en: `Outlier: at least ${OUTLIER_MIN_DECLINES} declines, at least twice the number expected from peers, and at least 2 standard deviations above it (binomial per item at the peers’ rate).`,
  },
  cases: {
    zh: '病例清单：期间内（按提醒日期）可互认结果被拒绝的提醒，含检查编号、项目、理由、说明、机构、科室、医生、日期，不含任何患者标识。',
    en: 'Cases: prompts of the period (by prompt day) whose reusable result was declined: check id, item, reason, free text, institution, department, doctor, date. No patient identifier.',
  },
} as const satisfies Record<string, Bilingual>;

export interface SupervisionQuery {
  from: string;
  to: string;
  by: SupervisionDimension[];
  organization?: string;
}

export interface SupervisionRow {
  organization?: DimensionValue;
  department?: DimensionValue;
  practitioner?: DimensionValue;
  category?: DimensionValue;
  item?: DimensionValue;
  month?: DimensionValue;
  decided: number;
  accepted: number;
  declined: number;
  declinedByReason: Record<string, number>;
  declineRate: number | null;
  expectedDeclined: number;
  peerDeclineRate: number | null;
  outlier: boolean;
}

export interface SupervisionReport {
  report: 'decline-supervision';
  period: { from: string; to: string };
  by: SupervisionDimension[];
  filters: { organization?: DimensionValue };
  generatedAt: string;
  definitions: typeof SUPERVISION_DEFINITIONS;
  declineReasons: DeclineReasonLegend[];
  rows: SupervisionRow[];
  totals: Omit<SupervisionRow, SupervisionDimension>;
}

/** Whether a `by` asks for supervision (a department or doctor is no dimension of the savings report). */
export const isSupervisionBy = (by: readonly string[]) => by.includes('department') || by.includes('practitioner');

const rate = (num: number, den: number) => (den === 0 ? null : Math.round((num / den) * 10000) / 10000);
const round2 = (n: number) => Math.round(n * 100) / 100;

interface StaffEntry {
  parts: Record<SupervisionDimension, string>;
  cell: StaffCell;
}

/** The supervision report from a tally (pure). Peers are every other group of the region for the same item. */
export function supervisionReport(
  tally: LedgerTally,
  rules: RecognitionRules,
  query: SupervisionQuery,
  now: Date,
): SupervisionReport {
  const entries: StaffEntry[] = [];
  for (const [k, cell] of tally.staff) {
    const [month, organization, department, practitioner, category, item] = splitKey(k) as string[];
    entries.push({
      parts: {
        month: month!,
        organization: organization!,
        department: department!,
        practitioner: practitioner!,
        category: category!,
        item: item!,
      },
      cell,
    });
  }
  // Per item, the whole region's decisions: a group's peers are these minus its own.
  const byItem = new Map<string, { decided: number; declined: number }>();
  for (const e of entries) {
    const t = byItem.get(e.parts.item) ?? { decided: 0, declined: 0 };
    t.decided += e.cell.decided;
    t.declined += e.cell.declined;
    byItem.set(e.parts.item, t);
  }
  const groups = new Map<
    string,
    { parts: Partial<Record<SupervisionDimension, string>>; cell: StaffCell; items: Map<string, StaffCell> }
  >();
  for (const e of entries) {
    if (query.organization && e.parts.organization !== query.organization) continue;
    const parts = Object.fromEntries(query.by.map((d) => [d, e.parts[d]]));
    const key = query.by.map((d) => e.parts[d]).join('\u0000');
    let g = groups.get(key);
    if (!g)
      groups.set(key, (g = { parts, cell: { decided: 0, accepted: 0, declined: 0, reasons: {} }, items: new Map() }));
    addStaff(g.cell, e.cell);
    const own = g.items.get(e.parts.item) ?? { decided: 0, accepted: 0, declined: 0, reasons: {} };
    g.items.set(e.parts.item, addStaff(own, e.cell));
  }
  const legend = reasonLegend(rules, [...groups.values()]);
  const rows: SupervisionRow[] = [...groups.values()].map((g) => {
    let expected = 0;
    let variance = 0;
    let peersDecided = 0;
    let peersDeclined = 0;
    for (const [item, own] of g.items) {
      const all = byItem.get(item)!;
      const decided = all.decided - own.decided;
      if (decided <= 0) continue; // no peer decided this item: nothing to compare with
      const p = (all.declined - own.declined) / decided;
      expected += own.decided * p;
      variance += own.decided * p * (1 - p);
      peersDecided += decided;
      peersDeclined += all.declined - own.declined;
    }
    const observed = g.cell.declined;
    const z = variance > 0 ? (observed - expected) / Math.sqrt(variance) : observed > expected ? Infinity : 0;
    return {
      ...dimensionValues(g.parts, rules),
      decided: g.cell.decided,
      accepted: g.cell.accepted,
      declined: observed,
      declinedByReason: Object.fromEntries(legend.map((r) => [r.code, g.cell.reasons[r.code] ?? 0])),
      declineRate: rate(observed, g.cell.decided),
      expectedDeclined: round2(expected),
      peerDeclineRate: rate(peersDeclined, peersDecided),
      outlier: observed >= OUTLIER_MIN_DECLINES && observed >= 2 * expected && z >= 2,
    };
  });
  // The outliers first, then by declines: what an expert reviews first.
  rows.sort(
    (a, b) =>
      Number(b.outlier) - Number(a.outlier) ||
      b.declined - a.declined ||
      (b.declineRate ?? 0) - (a.declineRate ?? 0) ||
      JSON.stringify(a).localeCompare(JSON.stringify(b)),
  );
  const total = [...groups.values()].reduce((t, g) => addStaff(t, g.cell), {
    decided: 0,
    accepted: 0,
    declined: 0,
    reasons: {},
  } as StaffCell);
  return {
    report: 'decline-supervision',
    period: { from: query.from, to: query.to },
    by: query.by,
    filters: query.organization ? { organization: organizationValue(query.organization, rules) } : {},
    generatedAt: now.toISOString(),
    definitions: SUPERVISION_DEFINITIONS,
    declineReasons: legend,
    rows,
    totals: {
      decided: total.decided,
      accepted: total.accepted,
      declined: total.declined,
      declinedByReason: Object.fromEntries(legend.map((r) => [r.code, total.reasons[r.code] ?? 0])),
      declineRate: rate(total.declined, total.decided),
      expectedDeclined: total.declined,
      peerDeclineRate: rate(total.declined, total.decided),
      outlier: false,
    },
  };
}

function organizationValue(id: string, rules: RecognitionRules): DimensionValue {
  const inst = rules.directory.byId.get(id);
  return { code: id, reference: `Organization/${id}`, ...(inst ? { name: inst.name } : {}) };
}

function dimensionValues(
  parts: Partial<Record<SupervisionDimension, string>>,
  rules: RecognitionRules,
): Partial<Record<SupervisionDimension, DimensionValue>> {
  const out: Partial<Record<SupervisionDimension, DimensionValue>> = {};
  for (const [d, code] of Object.entries(parts) as [SupervisionDimension, string][]) {
    if (d === 'organization') out.organization = organizationValue(code, rules);
    else if (d === 'category') {
      const c = rules.index.categories.get(code);
      out.category = { code, ...(c ? { name: c.name } : {}) };
    } else if (d === 'item') {
      const i = rules.index.items.get(code);
      out.item = { code, ...(i ? { name: i.name } : {}) };
    } else if (d === 'department' || d === 'practitioner') {
      // Not given by the hospital: named as such, so the row is not mistaken for a department called "".
      out[d] = code ? { code } : { code: '', name: { zh: '（未提供）', en: '(not given)' } };
    } else out[d] = { code };
  }
  return out;
}

/** `by` of a supervision report: the supervision dimensions, each once. */
export function parseSupervisionBy(by: readonly string[]): SupervisionDimension[] {
  for (const d of by) {
    if (!(SUPERVISION_DIMENSIONS as readonly string[]).includes(d)) {
      throw badRequest(
        `Unknown grouping '${d}': by takes ${SUPERVISION_DIMENSIONS.join(', ')} (comma-separated)`,
        'by',
      );
    }
  }
  return by as SupervisionDimension[];
}

// ---------------------------------------------------------------------------------------------------------------
// Cases

/** One supervised case: a decline of a reusable result, without any patient identifier. */
export interface SupervisionCase {
  /** The ledger entry of the decision in force (`<check>|<item>|decision` or `…|correction`). */
  id: string;
  check: string;
  date: string;
  decidedAt?: string;
  organization: DimensionValue;
  department?: string;
  practitioner?: string;
  item: DimensionValue;
  reason: { code: string; name?: Bilingual; countsAsDecline: boolean };
  reasonText?: string;
}

/** A prompt that is a case, as the case list shows it (pure): what identifies the patient is left out. */
export function caseOf(p: PromptDoc, rules: RecognitionRules): SupervisionCase {
  const item = rules.index.items.get(p.item);
  const reason = rules.declineReasons.reasons.find((r) => r.code === p.reason);
  return {
    id: p.decisionEntry ?? '',
    check: p.decisionCheck ?? p.check,
    date: p.day,
    ...(p.decidedAt ? { decidedAt: new Date(p.decidedAt).toISOString() } : {}),
    organization: organizationValue(p.institution, rules),
    ...(p.department ? { department: p.department } : {}),
    ...(p.practitioner ? { practitioner: p.practitioner } : {}),
    item: { code: p.item, ...(item ? { name: item.name } : {}) },
    reason: {
      code: p.reason ?? 'unknown',
      ...(reason ? { name: reason.display } : {}),
      countsAsDecline: p.countsAsDecline !== false,
    },
    ...(p.reasonText ? { reasonText: p.reasonText } : {}),
  };
}

const CASE_LABELS = {
  id: { zh: '病例编号', en: 'Case id' },
  check: { zh: '检查编号', en: 'Check id' },
  date: { zh: '日期', en: 'Date' },
  reason: { zh: '拒绝理由', en: 'Reason' },
  counted: { zh: '计为不予互认', en: 'Counted as a decline' },
  reasonText: { zh: '说明', en: 'Explanation' },
  yes: { zh: '是', en: 'yes' },
  no: { zh: '否', en: 'no' },
} as const satisfies Record<string, Bilingual>;

/** The case list as CSV for expert review, in the UI's language. */
export function casesCsv(cases: readonly SupervisionCase[], lang: ReportLang): string {
  const header = [
    CASE_LABELS.id[lang],
    CASE_LABELS.check[lang],
    CASE_LABELS.date[lang],
    ...dimensionHeaders('organization', lang),
    DIMENSION_LABELS.department[lang],
    DIMENSION_LABELS.practitioner[lang],
    ...dimensionHeaders('item', lang),
    `${CASE_LABELS.reason[lang]}${lang === 'zh' ? MISC_LABELS.code.zh : ` ${MISC_LABELS.code.en}`}`,
    CASE_LABELS.reason[lang],
    CASE_LABELS.counted[lang],
    CASE_LABELS.reasonText[lang],
  ];
  return csvDocument(
    header,
    cases.map((c) => [
      c.id,
      c.check,
      c.date,
      c.organization.code,
      c.organization.name?.[lang] ?? c.organization.code,
      c.department,
      c.practitioner,
      c.item.code,
      c.item.name?.[lang] ?? c.item.code,
      c.reason.code,
      c.reason.name?.[lang] ?? c.reason.code,
      c.reason.countsAsDecline ? CASE_LABELS.yes[lang] : CASE_LABELS.no[lang],
      c.reasonText,
    ]),
  );
}
