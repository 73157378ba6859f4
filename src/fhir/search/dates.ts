/**
 * FHIR date, dateTime and instant values as ranges of instants.
 *
 * FHIR R4 §3.1.1.4.2 (date search): "the date parameter format is yyyy-mm-ddThh:mm:ss[Z|(+|-)hh:mm]" and a value is
 * an implicit range given by its precision: `2024` is the whole year, `2024-03` the month, `2024-03-05` the day,
 * `2024-03-05T10:00` the minute, `…T10:00:00` the second. Values without a zone are read in a configured default
 * zone (§2.24.0.3 "If hours and minutes are specified, a time zone SHALL be populated"; dates carry none).
 */

/** Inclusive range of instants: `hi` is the last millisecond that still belongs to the value. */
export interface DateRange {
  lo: Date;
  hi: Date;
}

/** Far past and far future, the limits of the ECMAScript Date range; used for open Period ends and sort sentinels. */
export const MIN_DATE_MS = -8.64e15;
export const MAX_DATE_MS = 8.64e15;

/** Converts a wall-clock time (expressed as if it were UTC) of a zone into the real UTC instant. */
export interface TimeZone {
  readonly name: string;
  toUtc(wallClockMs: number): number;
}

const OFFSET_RE = /^(?:Z|([+-])(\d{2}):(\d{2}))$/;

function offsetMinutes(sign: string, hh: string, mm: string): number | undefined {
  const h = Number(hh);
  const m = Number(mm);
  if (h > 14 || m > 59) return undefined;
  return (sign === '-' ? -1 : 1) * (h * 60 + m);
}

/**
 * A zone from `+08:00`/`Z` (fixed offset) or an IANA name such as `Asia/Shanghai` (offset looked up per instant, so
 * zones with daylight saving time are right on both sides of a change). Throws on an unknown zone: a configuration
 * error must stop start-up.
 */
export function createTimeZone(name: string): TimeZone {
  const fixed = OFFSET_RE.exec(name);
  if (fixed) {
    const minutes = fixed[1] ? offsetMinutes(fixed[1], fixed[2]!, fixed[3]!) : 0;
    if (minutes === undefined) throw new Error(`Invalid time zone offset '${name}'`);
    return { name, toUtc: (ms) => ms - minutes * 60_000 };
  }
  let format: Intl.DateTimeFormat;
  try {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: name,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
  } catch {
    throw new Error(`Unknown time zone '${name}' (use an IANA name such as Asia/Shanghai or an offset such as +08:00)`);
  }
  const offsetAt = (utcMs: number): number => {
    const parts: Record<string, number> = {};
    for (const p of format.formatToParts(new Date(utcMs))) parts[p.type] = Number(p.value);
    const wall = utcFromParts(parts.year!, parts.month! - 1, parts.day!, parts.hour!, parts.minute!, parts.second!, 0);
    return wall - (utcMs - (((utcMs % 1000) + 1000) % 1000));
  };
  return {
    name,
    toUtc(wallClockMs) {
      // Two rounds settle the offset except inside a DST gap, where the earlier offset is kept.
      const first = wallClockMs - offsetAt(wallClockMs);
      const second = wallClockMs - offsetAt(first);
      return second;
    },
  };
}

/** Date.UTC without its two-digit-year quirk (years 0–99 would become 1900–1999). */
function utcFromParts(y: number, mo: number, d: number, h: number, mi: number, s: number, ms: number): number {
  const date = new Date(0);
  date.setUTCFullYear(y, mo, d);
  date.setUTCHours(h, mi, s, ms);
  return date.getTime();
}

function daysInMonth(y: number, month1: number): number {
  return new Date(utcFromParts(y, month1, 0, 0, 0, 0, 0)).getUTCDate();
}

// yyyy[-mm[-dd[Thh:mm[:ss[.fff]][zone]]]]; a space is accepted for '+' in the zone because an unencoded '+' in a
// query string arrives as a space (application/x-www-form-urlencoded).
const DATE_TIME_RE =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+\- ]\d{2}:\d{2})?)?)?)?$/;

/**
 * The range covered by a FHIR date/dateTime/instant string, or undefined when it is not a valid value (wrong shape
 * or impossible calendar date such as 2024-02-30). Minute precision (`T10:00`) is accepted because search values may
 * use it (R4 §3.1.1.4.2).
 */
export function parseDateRange(value: string, defaultZone: TimeZone): DateRange | undefined {
  const m = DATE_TIME_RE.exec(value);
  if (!m) return undefined;
  const [, ys, mos, ds, hs, mis, ss, frac, zone] = m;
  const y = Number(ys);
  const mo = mos === undefined ? 1 : Number(mos);
  const d = ds === undefined ? 1 : Number(ds);
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo)) return undefined;

  let toUtc = defaultZone.toUtc;
  if (zone !== undefined) {
    const z = OFFSET_RE.exec(zone.replace(' ', '+'));
    const minutes = z && (z[1] ? offsetMinutes(z[1], z[2]!, z[3]!) : 0);
    if (minutes === undefined || minutes === null) return undefined;
    toUtc = (ms) => ms - minutes * 60_000;
  }

  let start: number;
  let next: number;
  if (hs === undefined) {
    if (mos === undefined) {
      start = utcFromParts(y, 0, 1, 0, 0, 0, 0);
      next = utcFromParts(y + 1, 0, 1, 0, 0, 0, 0);
    } else if (ds === undefined) {
      start = utcFromParts(y, mo - 1, 1, 0, 0, 0, 0);
      next = utcFromParts(y, mo, 1, 0, 0, 0, 0);
    } else {
      start = utcFromParts(y, mo - 1, d, 0, 0, 0, 0);
      next = utcFromParts(y, mo - 1, d + 1, 0, 0, 0, 0);
    }
  } else {
    const h = Number(hs);
    const mi = Number(mis);
    const s = ss === undefined ? 0 : Number(ss);
    if (h > 23 || mi > 59 || s > 59) return undefined;
    // Precision of the fraction: `.1` covers 100 ms, `.12` 10 ms, three or more digits one millisecond.
    const digits = frac === undefined ? 0 : Math.min(frac.length, 3);
    const ms = frac === undefined ? 0 : Number(frac.slice(0, 3).padEnd(3, '0'));
    start = utcFromParts(y, mo - 1, d, h, mi, s, ms);
    const width = ss === undefined ? 60_000 : frac === undefined ? 1000 : 10 ** (3 - digits);
    next = start + width;
  }
  return { lo: new Date(toUtc(start)), hi: new Date(toUtc(next) - 1) };
}
