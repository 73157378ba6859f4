/**
 * The savings report as CSV (RFC 4180: comma, CRLF, quotes doubled), with a UTF-8 byte order mark so that Excel
 * opens the Chinese names correctly. One header row in the UI's language (Chinese by default, English with
 * `lang=en`), the columns named as the dashboard names them; one row per group in the JSON's order, then the total
 * row.
 */
import { DIMENSION_LABELS, FIGURE_LABELS, MISC_LABELS, type ReportLang } from './report-types.js';
import { COUNT_FIGURES, type Figures, type SavingsReport, type SavingsRow } from './savings.js';

export const CSV_BOM = '\uFEFF';

/**
 * One CSV field. Text is quoted when it holds a comma, quote, line break or edge space; text that a spreadsheet
 * would run as a formula (= + - @, tab, CR) is defused with a leading apostrophe (OWASP CSV injection).
 */
export function csvField(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '';
  let text = value;
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function csvLine(fields: readonly (string | number | null | undefined)[]): string {
  return fields.map(csvField).join(',');
}

/** A whole CSV document: BOM, one header row, CRLF after every line. */
export function csvDocument(
  header: readonly string[],
  rows: readonly (readonly (string | number | null | undefined)[])[],
): string {
  return `${CSV_BOM}${[header, ...rows].map(csvLine).join('\r\n')}\r\n`;
}

/** A suppressed count as published statistics show it: `<N`. */
const hiddenMark = (minCell: number) => `<${minCell}`;

/** The header of a dimension: its code column and (except the month) its name column. */
export function dimensionHeaders(d: keyof typeof DIMENSION_LABELS, lang: ReportLang): string[] {
  const name = DIMENSION_LABELS[d][lang];
  if (d === 'month') return [name];
  return [lang === 'zh' ? `${name}${MISC_LABELS.code.zh}` : `${name} ${MISC_LABELS.code.en}`, name];
}

export function savingsCsv(report: SavingsReport, lang: ReportLang = 'zh'): string {
  const dimHeaders = report.by.flatMap((d) => dimensionHeaders(d, lang));
  const header = [
    ...dimHeaders,
    ...COUNT_FIGURES.map((c) => FIGURE_LABELS[c][lang]),
    FIGURE_LABELS.recognitionRate[lang],
    FIGURE_LABELS.retrievalRate[lang],
    FIGURE_LABELS.saving[lang],
    ...report.declineReasons.map(
      (r) => `${MISC_LABELS.declinedFor[lang]}${r.name[lang]}${r.countsAsDecline ? '' : MISC_LABELS.notCounted[lang]}`,
    ),
  ];
  const figures = (f: Figures, suppressed: readonly string[]) => {
    const show = (name: string, v: number | null, format: (n: number) => string | number = (n) => n) =>
      suppressed.includes(name) ? hiddenMark(report.minCell) : v === null ? null : format(v);
    return [
      ...COUNT_FIGURES.map((c) => show(c, f[c])),
      show('recognitionRate', f.recognitionRate),
      show('retrievalRate', f.retrievalRate),
      show('saving', f.saving, (n) => n.toFixed(2)),
      ...report.declineReasons.map((r) => show(`declinedByReason.${r.code}`, f.declinedByReason[r.code] ?? 0)),
    ];
  };
  const dims = (row: SavingsRow) =>
    report.by.flatMap((d) => {
      const v = row[d];
      return d === 'month' ? [v?.code] : [v?.code, v?.name?.[lang] ?? v?.code];
    });
  const total = dimHeaders.map((_h, i) => (i === 0 ? MISC_LABELS.total[lang] : ''));
  // Over a federation, a region that did not answer is a row of its own below the total: never silently left out.
  const missing = (report.federation?.missing ?? []).map((r) => [
    `${MISC_LABELS.missing[lang]}${r.name[lang]} (${r.code})${r.reason ? `: ${r.reason}` : ''}`,
  ]);
  return csvDocument(header, [
    ...report.rows.map((row) => [...dims(row), ...figures(row, row.suppressed)]),
    [...(total.length ? total : []), ...figures(report.totals, [])],
    ...missing,
  ]);
}
