/**
 * The figures of the savings report as its JSON carries them: shared by the server (src/reports/savings.ts) and the
 * dashboard page (src/ui/client/dashboard.ts). No imports: it compiles for node and for the browser.
 */

export interface Bilingual {
  zh: string;
  en: string;
}

/** A value of a dimension as reported: the code and, where the directory or catalogue knows it, its names. */
export interface DimensionValue {
  code: string;
  name?: Bilingual;
  /** `Organization/<id>` for organizations. */
  reference?: string;
}

export interface Figures {
  prompts: number | null;
  offered: number | null;
  viewed: number | null;
  accepted: number | null;
  referenceAccepted: number | null;
  patients: number | null;
  declined: number | null;
  declinedByReason: Record<string, number | null>;
  recognitionRate: number | null;
  retrievalRate: number | null;
  saving: number | null;
}

export interface SavingsRow extends Figures {
  /** One entry per dimension of `by`. */
  organization?: DimensionValue;
  category?: DimensionValue;
  item?: DimensionValue;
  month?: DimensionValue;
  /** With `scope=federation`: the region (division code) of the broker whose figures these are. */
  region?: DimensionValue;
  /** Figures hidden by small-cell suppression (`declinedByReason.<code>` for reasons). */
  suppressed: string[];
}

export interface DeclineReasonLegend {
  code: string;
  name: Bilingual;
  countsAsDecline: boolean;
}

/** A region of a federated report: a broker of the tree, as it answered (or did not). */
export interface FederationRegion {
  /** Division code (370211); empty for the answering broker when it cannot tell its own. */
  code: string;
  /** The broker's name in its parent's registry, or 本级 for the answering broker. */
  name: Bilingual;
  /** The broker's id in its parent's registry (absent for the answering broker). */
  broker?: string;
  /** The region it answered through (its parent's). */
  parent?: string;
  /** 0 for the answering broker, 1 for its children, 2 for theirs. */
  depth: number;
  answered: boolean;
  /** Why it did not answer (no answer within …, HTTP 403, connection failed). */
  reason?: string;
}

/**
 * Accepted recognitions at `to` of results held in `from` (exported by `from`, imported by `to`), by the report's
 * dimensions where they apply (institution of the requester, category, item, month).
 */
export interface CrossRegionRow {
  from: DimensionValue;
  to: DimensionValue;
  organization?: DimensionValue;
  category?: DimensionValue;
  item?: DimensionValue;
  month?: DimensionValue;
  accepted: number | null;
  saving: number | null;
  suppressed: string[];
}

export interface FederationSummary {
  /** Every region asked, in tree order (depth first), answered or not. */
  regions: FederationRegion[];
  /** The regions that did not answer: their figures are not in the rows nor the totals. */
  missing: FederationRegion[];
  crossRegion: CrossRegionRow[];
}

/** A language of the bureau's pages and downloads. */
export type ReportLang = 'zh' | 'en';

/**
 * The names of the figures as the dashboard shows them, and as the CSV download heads its columns (one list, so the
 * table on screen and the file agree).
 */
export const FIGURE_LABELS = {
  prompts: { zh: '提醒次数', en: 'Prompts' },
  offered: { zh: '可互认提醒', en: 'Reusable offered' },
  viewed: { zh: '调阅', en: 'Viewed' },
  accepted: { zh: '互认项次', en: 'Items reused' },
  referenceAccepted: { zh: '参考采纳', en: 'Reference acceptances' },
  patients: { zh: '互认人次', en: 'Patient visits' },
  declined: { zh: '不予互认', en: 'Declined' },
  recognitionRate: { zh: '互认率', en: 'Recognition rate' },
  retrievalRate: { zh: '调阅率', en: 'Retrieval rate' },
  saving: { zh: '节约费用（元）', en: 'Saving (CNY)' },
} as const satisfies Record<string, Bilingual>;

/** The names of the report's dimensions (the code column and the name column of each). */
export const DIMENSION_LABELS = {
  organization: { zh: '医疗机构', en: 'Institution' },
  category: { zh: '类别', en: 'Category' },
  item: { zh: '项目', en: 'Item' },
  month: { zh: '月份', en: 'Month' },
  region: { zh: '地区', en: 'Region' },
  department: { zh: '科室', en: 'Department' },
  practitioner: { zh: '医生', en: 'Doctor' },
} as const satisfies Record<string, Bilingual>;

export const MISC_LABELS = {
  code: { zh: '编码', en: 'code' },
  total: { zh: '合计', en: 'Total' },
  declinedFor: { zh: '拒绝理由：', en: 'Declined: ' },
  notCounted: { zh: '（不计为拒绝）', en: ' (not counted as a decline)' },
  missing: { zh: '未应答地区：', en: 'Region not answering: ' },
  crossRegion: { zh: '跨地区互认', en: 'Cross-region recognitions' },
  exportedBy: { zh: '结果所在地区', en: 'Exported by (result held in)' },
  importedBy: { zh: '互认所在地区', en: 'Imported by (recognised in)' },
  thisBroker: { zh: '本级', en: 'This broker' },
} as const satisfies Record<string, Bilingual>;
