/**
 * The JSON the doctor's view reads from /app/api/prior-results: shared by the server (src/ui/prior-results.ts) and
 * the page (src/ui/client/app.ts), so both sides agree on one shape. No imports: it compiles for node and browser.
 */

export interface Bilingual {
  zh: string;
  en: string;
}

export interface ValueView {
  code: string;
  display: string;
  /** The English name when the result's coding carries one and `display` is not English. */
  displayEn?: string;
  value?: number;
  text?: string;
  unit?: string;
  low?: number;
  high?: number;
  rangeText?: string;
  /** HL7 v3 ObservationInterpretation code: H, L, N, HH, LL, A … */
  flag?: string;
}

/** The patient the view is about, masked (src/ui/patient-banner.ts): never the full name or number. */
export interface PatientBanner {
  /** 张*三 */
  name?: string;
  /** FHIR AdministrativeGender */
  sex?: string;
  /** Whole years; months only under one year. */
  age?: { years: number; months: number };
  identifier?: { kind: 'resident-id' | 'ehealth-card' | 'insurance-code'; masked: string };
}

/** The decision in force for an item, as the ledger holds it (a correction replaces the first decision). */
export interface RecordedDecision {
  decision: 'accepted' | 'declined';
  reason?: string;
  reasonText?: string;
  saving: number;
  recordedAt: string;
  /** Until when the doctor may still correct it (absent once corrected: a decision is corrected once). */
  correctableUntil?: string;
  /** Set when this is a correction of an earlier decision. */
  corrected?: boolean;
}

export interface TrendPoint {
  effective: string;
  value: number;
  performer?: string;
}

export interface ItemView {
  item: string;
  name: Bilingual;
  /** The engine's verdict for the doctor's institution (only items with a prior result are shown). */
  decision: 'reusable' | 'reference-only' | 'expired';
  /** The whole rule path, one string (kept for clients that read it). */
  reason: Bilingual;
  /** One plain sentence: what, from whom, when, and why it is or is not reusable. */
  summary: Bilingual;
  /** The rules applied, in order, shown on demand. */
  rulePath: (Bilingual & { passed: boolean })[];
  /** The report's detail (imaging above all): findings, impression, images, doctors, report time. */
  report?: ReportDetail;
  /** The check the doctor's decision for this item is recorded against. */
  check: string;
  result?: string;
  performer?: { id: string; name: Bilingual; level?: Bilingual };
  effective?: string;
  validUntil?: string;
  /** Whole local days left in the window (0 on the last day); negative when expired. */
  daysLeft?: number;
  hrScope?: string;
  saving: number;
  retestJustified: boolean;
  conclusion?: string;
  values: ValueView[];
  /** Earlier values of the same analytes, oldest first, by analyte code (only analytes measured more than once). */
  trends: Record<string, TrendPoint[]>;
  /** Set when the CDS card that launched the view was about this item. */
  highlighted?: boolean;
  /** What the doctor recorded for the item in its check (read back from the ledger on every load). */
  recorded?: RecordedDecision;
  /** The doctor opened the item's values before (in its check). */
  viewed?: boolean;
}

export interface ReportDetail {
  /** 检查所见 */
  findings?: string;
  /** When the report was issued. */
  issued?: string;
  /** 报告医师 */
  reportedBy?: string[];
  /** 审核医师 */
  reviewedBy?: string[];
  /** Links to the images (cloud film, DICOMweb viewer): from presentedForm, media or the imaging study's endpoint. */
  images?: { url: string; title?: string }[];
}

export interface CategoryView {
  code: string;
  name: Bilingual;
  items: ItemView[];
}

export interface PriorResultsView {
  check: string;
  organization: { id: string; name?: Bilingual };
  generatedAt: string;
  categories: CategoryView[];
  declineReasons: { code: string; name: Bilingual; countsAsDecline: boolean; requiresText: boolean }[];
  /** The broker's Patient id of the launch, when it holds one. */
  patient?: string;
  /** The item the EHR's order (CDS card) was about, when the view was opened from a card. */
  ordered?: { item: string; name: Bilingual };
  /** The patient banner (masked), from the launching institution's record of the patient, else another one. */
  banner: PatientBanner;
  /** Set when the institutions' records of the patient disagree on sex or birth date: one line per conflict. */
  identityConflicts?: Bilingual[];
}
