/**
 * Local-day arithmetic for validity windows. Windows are counted in the region's local days (Asia/Shanghai for
 * Qingdao), while instants are stored and compared in UTC (domain.md, "Time zone"). A zone is either an IANA name
 * (`Asia/Shanghai`, resolved with the runtime's ICU data) or a fixed UTC offset (`+08:00`, as HUREN_DEFAULT_TIMEZONE
 * is configured).
 */

const FIXED_OFFSET = /^([+-])(\d{2}):(\d{2})$/;
const LOCAL_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const FHIR_DATE_TIME =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;
const DAY_MS = 86_400_000;

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** Whether a zone is usable: a fixed offset ±HH:MM or an IANA name the runtime knows. */
export function isValidTimeZone(timeZone: string): boolean {
  if (FIXED_OFFSET.test(timeZone)) return true;
  try {
    formatterFor(timeZone);
    return true;
  } catch {
    return false;
  }
}

const HOUR_MS = 3_600_000;
/** Offsets by zone and UTC hour: NaN where the offset changes within that hour. Cleared when it grows large. */
const hourOffsets = new Map<string, number>();
const MAX_CACHED_HOURS = 100_000;

/** The zone's offset from UTC in minutes at an instant (+480 for Asia/Shanghai). */
export function offsetMinutesAt(ms: number, timeZone: string): number {
  const fixed = FIXED_OFFSET.exec(timeZone);
  if (fixed) return (fixed[1] === '-' ? -1 : 1) * (Number(fixed[2]) * 60 + Number(fixed[3]));
  // Asking ICU costs microseconds, and every fact of a check asks several times. A zone's offset changes at most
  // once in any hour (transitions are months apart): an hour whose first and last second agree has one offset.
  const hour = Math.floor(ms / HOUR_MS);
  const key = `${timeZone}|${hour}`;
  let cached = hourOffsets.get(key);
  if (cached === undefined) {
    const first = zoneOffsetAt(hour * HOUR_MS, timeZone);
    cached = first === zoneOffsetAt(hour * HOUR_MS + HOUR_MS - 1, timeZone) ? first : Number.NaN;
    if (hourOffsets.size >= MAX_CACHED_HOURS) hourOffsets.clear();
    hourOffsets.set(key, cached);
  }
  return Number.isNaN(cached) ? zoneOffsetAt(ms, timeZone) : cached;
}

function zoneOffsetAt(ms: number, timeZone: string): number {
  const parts = formatterFor(timeZone).formatToParts(new Date(ms));
  const get = (type: Intl.DateTimeFormatPartTypes) => Number(parts.find((p) => p.type === type)?.value ?? '0');
  const wall = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return Math.round((wall - Math.floor(ms / 1000) * 1000) / 60_000);
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** The local calendar date (YYYY-MM-DD) of an instant in the zone. */
export function localDate(ms: number, timeZone: string): string {
  const shifted = new Date(ms + offsetMinutesAt(ms, timeZone) * 60_000);
  return `${pad(shifted.getUTCFullYear(), 4)}-${pad(shifted.getUTCMonth() + 1)}-${pad(shifted.getUTCDate())}`;
}

function parseLocalDate(date: string): [number, number, number] {
  const m = LOCAL_DATE.exec(date);
  if (!m) throw new RangeError(`Not a local date YYYY-MM-DD: '${date}'`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

/** Whether a string is a real calendar date YYYY-MM-DD (2024-02-30 is not). */
export function isLocalDate(date: string): boolean {
  const m = LOCAL_DATE.exec(date);
  if (!m) return false;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return mo >= 1 && mo <= 12 && d >= 1 && d <= daysInMonth(y, mo);
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** A local date shifted by whole calendar days. */
export function addDays(date: string, days: number): string {
  const [y, m, d] = parseLocalDate(date);
  const shifted = new Date(Date.UTC(y, m - 1, d) + days * DAY_MS);
  return `${pad(shifted.getUTCFullYear(), 4)}-${pad(shifted.getUTCMonth() + 1)}-${pad(shifted.getUTCDate())}`;
}

/** Converts a local wall-clock time (given as if it were UTC) to the instant, for zones with changing offsets too. */
function wallToInstant(wallMs: number, timeZone: string): number {
  let t = wallMs - offsetMinutesAt(wallMs, timeZone) * 60_000;
  t = wallMs - offsetMinutesAt(t, timeZone) * 60_000;
  return t;
}

/** The instant the local day begins (local midnight). */
export function startOfLocalDay(date: string, timeZone: string): number {
  const [y, m, d] = parseLocalDate(date);
  return wallToInstant(Date.UTC(y, m - 1, d), timeZone);
}

/** An instant as local time with its offset, seconds precision: 2026-11-24T23:59:59+08:00. */
export function formatLocalDateTime(ms: number, timeZone: string): string {
  const offset = offsetMinutesAt(ms, timeZone);
  const shifted = new Date(ms + offset * 60_000);
  const sign = offset < 0 ? '-' : '+';
  const abs = Math.abs(offset);
  return (
    `${pad(shifted.getUTCFullYear(), 4)}-${pad(shifted.getUTCMonth() + 1)}-${pad(shifted.getUTCDate())}` +
    `T${pad(shifted.getUTCHours())}:${pad(shifted.getUTCMinutes())}:${pad(shifted.getUTCSeconds())}` +
    `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`
  );
}

/** Local date and minute of an instant, for human-readable reasons: 2026-11-24 09:30. */
export function formatLocalMinute(ms: number, timeZone: string): string {
  return formatLocalDateTime(ms, timeZone).slice(0, 16).replace('T', ' ');
}

const MONTHS_EN = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** A local `YYYY-MM-DD[ HH:mm]` in English: `6 Dec 2026[ 09:30]` (the one English date format of the broker). */
export function englishDate(local: string): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}:\d{2}))?/.exec(local);
  if (!m) return local;
  return `${Number(m[3])} ${MONTHS_EN[Number(m[2]) - 1]} ${m[1]}${m[4] ? ` ${m[4]}` : ''}`;
}

export interface ParsedDateTime {
  /** The instant (ms since epoch). For a date without time: local midnight of that date in the zone. */
  ms: number;
  /** `day` when only a date was given, `time` when a time of day was given. */
  precision: 'day' | 'time';
  /** The local date in the zone: the date itself for `day` precision. */
  localDate: string;
  /** True when a time was given without an offset and the zone was assumed (FHIR requires the offset). */
  assumedZone: boolean;
}

/**
 * Parses a FHIR date, dateTime or instant into an instant usable for a validity window. Year or year-month values
 * are too imprecise to place a result in a local day and give undefined, as do impossible dates (2024-02-30).
 * A dateTime without an offset is not valid FHIR; results seen in practice carry local time, so it is read in the
 * region's zone and flagged rather than dropped.
 */
export function parseFhirDateTime(value: string, timeZone: string): ParsedDateTime | undefined {
  const m = FHIR_DATE_TIME.exec(value.trim());
  if (!m) return undefined;
  const [, ys, mos, ds, hs, mis, ss, fraction, zone] = m;
  if (mos === undefined || ds === undefined) return undefined;
  const [y, mo, d] = [Number(ys), Number(mos), Number(ds)];
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo)) return undefined;
  const date = `${ys}-${mos}-${ds}`;
  if (hs === undefined || mis === undefined) {
    return { ms: startOfLocalDay(date, timeZone), precision: 'day', localDate: date, assumedZone: false };
  }
  const [h, mi, s] = [Number(hs), Number(mis), Math.min(Number(ss ?? '0'), 59)];
  if (h > 23 || mi > 59) return undefined;
  const millis = fraction ? Math.round(Number(`0${fraction}`) * 1000) : 0;
  const wall = Date.UTC(y, mo - 1, d, h, mi, s, millis);
  let ms: number;
  if (zone === undefined) {
    ms = wallToInstant(wall, timeZone);
  } else if (zone === 'Z') {
    ms = wall;
  } else {
    const sign = zone.startsWith('-') ? -1 : 1;
    const offsetMin = Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6));
    if (offsetMin > 14 * 60) return undefined;
    ms = wall - sign * offsetMin * 60_000;
  }
  return { ms, precision: 'time', localDate: localDate(ms, timeZone), assumedZone: zone === undefined };
}
