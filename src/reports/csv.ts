/**
 * The savings report as CSV (RFC 4180: comma, CRLF, quotes doubled), with a UTF-8 byte order mark so that Excel
 * opens the Chinese names correctly. One header row, one row per group in the JSON's order, then the total row.
 */
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

/** A suppressed count as published statistics show it: `<N`. */
const hiddenMark = (minCell: number) => `<${minCell}`;

export function savingsCsv(report: SavingsReport): string {
  const dimHeaders = report.by.flatMap((d) => (d === 'month' ? ['month'] : [`${d}_code`, `${d}_zh`, `${d}_en`]));
  const header = [
    ...dimHeaders,
    ...COUNT_FIGURES,
    'recognition_rate',
    'retrieval_rate',
    'saving_cny',
    ...report.declineReasons.map((r) => `declined_${r.code}${r.countsAsDecline ? '' : ' (not counted)'}`),
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
      return d === 'month' ? [v?.code] : [v?.code, v?.name?.zh, v?.name?.en];
    });
  const lines = [
    csvLine(header),
    ...report.rows.map((row) => csvLine([...dims(row), ...figures(row, row.suppressed)])),
    csvLine([...dimHeaders.map((_h, i) => (i === 0 ? 'TOTAL 合计' : '')), ...figures(report.totals, [])]),
  ];
  return `${CSV_BOM}${lines.join('\r\n')}\r\n`;
}
