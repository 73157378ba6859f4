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
  /** Figures hidden by small-cell suppression (`declinedByReason.<code>` for reasons). */
  suppressed: string[];
}

export interface DeclineReasonLegend {
  code: string;
  name: Bilingual;
  countsAsDecline: boolean;
}
