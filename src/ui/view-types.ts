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
  value?: number;
  text?: string;
  unit?: string;
  low?: number;
  high?: number;
  rangeText?: string;
  /** HL7 v3 ObservationInterpretation code: H, L, N, HH, LL, A … */
  flag?: string;
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
  reason: Bilingual;
  /** The check the doctor's decision for this item is recorded against. */
  check: string;
  result?: string;
  performer?: { id: string; name: Bilingual; level?: string };
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
  /** Set when the institutions' records of the patient disagree on sex or birth date: one line per conflict. */
  identityConflicts?: Bilingual[];
}
