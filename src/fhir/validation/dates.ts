/**
 * Calendar checks for FHIR date, dateTime and instant values.
 *
 * The R4 JSON schema only checks the shape with a regular expression, which accepts 2024-02-30 or 2023-02-29,
 * while FHIR R4 datatypes.html#primitive says "Dates SHALL be valid dates". The shape itself (and hours 24+,
 * missing time zone, …) stays the schema's job: a value that does not look like a date is left alone here.
 */

const DATE_TIME =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:Z|[+-](\d{2}):(\d{2}))?)?)?)?$/;

const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];

function daysInMonth(year: number, month: number): number {
  // Day 0 of the next month is the last day of this one; Date.UTC handles leap years (proleptic Gregorian).
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** Why a date-like value is not a real calendar date or time, or undefined when it is fine (or not date-like). */
export function explainImpossibleDate(value: string): string | undefined {
  const m = DATE_TIME.exec(value);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, tzh, tzm] = m;
  const year = Number(y);
  if (mo !== undefined) {
    const month = Number(mo);
    if (month < 1 || month > 12) return `there is no month ${mo}`;
    if (d !== undefined) {
      const day = Number(d);
      const last = daysInMonth(year, month);
      if (day < 1 || day > last) return `${MONTHS[month - 1]} ${year} has ${last} days`;
    }
  }
  if (h !== undefined && Number(h) > 23) return `hour ${h} does not exist (00-23)`;
  if (mi !== undefined && Number(mi) > 59) return `minute ${mi} does not exist (00-59)`;
  // 60 is allowed for a leap second, as the R4 regular expression does.
  if (s !== undefined && Number(s) > 60) return `second ${s} does not exist (00-60)`;
  if (tzh !== undefined && (Number(tzh) > 14 || Number(tzm) > 59))
    return `time zone offset ${tzh}:${tzm} does not exist`;
  return undefined;
}
