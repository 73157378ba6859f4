/**
 * Patient identity across institutions: the identifiers the broker matches on, the resident ID card check, the
 * keyed pseudonymous patient key the result index uses instead of raw numbers, and demographic corroboration.
 *
 * Identifier systems (matched exactly after trimming):
 * - 居民身份证 (resident ID card): `urn:oid:2.16.156.10011.1.1`, the OID the rest of Huren and the demo data use.
 * - 电子健康卡 (resident e-health card) and 医保码 (medical-insurance code, 医保电子凭证): no OID is published that we
 *   could cite, so Huren names them with its own URIs below rather than inventing OIDs that look official. A region
 *   that publishes OIDs maps them to these names in the wiring (an alias table), keeping the keys stable.
 * Only these three link a patient across hospitals; a hospital's own record number never does, nor a name.
 */
import { createHmac } from 'node:crypto';
import type { Identifier } from 'fhir/r4';
import { RecognitionInputError } from './errors.js';
import { isLocalDate } from './time.js';
import { HUREN_FHIR_BASE } from './vocabulary.js';

export const IDENTIFIER_SYSTEMS = {
  residentIdCard: 'urn:oid:2.16.156.10011.1.1',
  eHealthCard: `${HUREN_FHIR_BASE}/sid/ehealth-card`,
  medicalInsuranceCode: `${HUREN_FHIR_BASE}/sid/medical-insurance-code`,
} as const;

const KNOWN_SYSTEMS: ReadonlySet<string> = new Set(Object.values(IDENTIFIER_SYSTEMS));

/** ISO 7064 MOD 11-2 weights (2^(17-i) mod 11) and check characters, as GB 11643-1999 specifies them. */
const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK_CHARS = '10X98765432';

/**
 * Province-level codes that start a valid ID number: the mainland provinces, and 71/81/82/83 used by the
 * residence permits of Taiwan, Hong Kong and Macao residents. The foreigner's permanent residence card (starting
 * with 9) is a different document and is not accepted as 居民身份证.
 */
// prettier-ignore
const PROVINCE_CODES = new Set([
  '11', '12', '13', '14', '15', '21', '22', '23', '31', '32', '33', '34', '35', '36', '37', '41', '42', '43', '44',
  '45', '46', '50', '51', '52', '53', '54', '61', '62', '63', '64', '65', '71', '81', '82', '83',
]);

/** The check character for the first 17 digits of a resident ID number. */
export function residentIdCheckChar(first17: string): string {
  if (!/^\d{17}$/.test(first17)) throw new RangeError('The check character is computed from 17 digits');
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(first17[i]) * (WEIGHTS[i] as number);
  return CHECK_CHARS[sum % 11] as string;
}

export type ResidentIdProblem = 'length' | 'characters' | 'region' | 'birth-date' | 'check-digit';

export type ResidentIdCheck =
  | { valid: true; value: string; regionCode: string; birthDate: string; sex: 'male' | 'female' }
  | { valid: false; problem: ResidentIdProblem; message: string };

/**
 * The resident ID number as written, in the form it is matched and stored in: surrounding spaces removed, full-width
 * digits and Ｘ (as typed with a Chinese input method, U+FF10-U+FF19, U+FF38) turned into ASCII by NFKC, and the
 * check character upper-case.
 */
export function normalizeResidentIdText(raw: string): string {
  return raw.normalize('NFKC').trim().toUpperCase();
}

/**
 * The 18-digit form of a 15-digit first-generation number (GB 11643-1989, issued until 2004 and still found in
 * older hospital records): the century 19 inserted before the 2-digit birth year, and the check character appended.
 */
export function residentIdOf15(value: string): string {
  const first17 = `${value.slice(0, 6)}19${value.slice(6)}`;
  return first17 + residentIdCheckChar(first17);
}

/**
 * Checks a resident ID number (GB 11643-1999): 6-digit region code of a known province, birth date YYYYMMDD that
 * exists and is not after `today` (a local date, when given), 3-digit sequence (odd = male), and the ISO 7064
 * MOD 11-2 check character (X for 10; lower-case x and full-width digits are normalised). A 15-digit number of the
 * first generation (no century, no check character) is accepted and answered in its 18-digit form, so that both
 * generations of the same card match. Messages never repeat the number: they may reach a log or an OperationOutcome.
 */
export function checkResidentId(raw: string, today?: string): ResidentIdCheck {
  const written = normalizeResidentIdText(raw);
  if (written.length !== 18 && written.length !== 15) {
    return {
      valid: false,
      problem: 'length',
      message: `A resident ID number has 18 characters (15 for a first-generation card), not ${written.length}`,
    };
  }
  if (written.length === 15 ? !/^\d{15}$/.test(written) : !/^\d{17}[\dX]$/.test(written)) {
    return {
      valid: false,
      problem: 'characters',
      message: 'A resident ID number is 17 digits followed by a digit or X (15 digits for a first-generation card)',
    };
  }
  const value = written.length === 15 ? residentIdOf15(written) : written;
  if (!PROVINCE_CODES.has(value.slice(0, 2))) {
    return { valid: false, problem: 'region', message: 'The region code does not start with a known province code' };
  }
  const birthDate = `${value.slice(6, 10)}-${value.slice(10, 12)}-${value.slice(12, 14)}`;
  if (!isLocalDate(birthDate) || birthDate < '1900-01-01' || (today !== undefined && birthDate > today)) {
    return { valid: false, problem: 'birth-date', message: 'The birth date inside the ID number is not a valid date' };
  }
  if (residentIdCheckChar(value.slice(0, 17)) !== value[17]) {
    return {
      valid: false,
      problem: 'check-digit',
      message: 'The check character does not match (ISO 7064 MOD 11-2): a digit is mistyped',
    };
  }
  const sex = Number(value[16]) % 2 === 1 ? 'male' : 'female';
  return { valid: true, value, regionCode: value.slice(0, 6), birthDate, sex };
}

export function isValidResidentId(raw: string, today?: string): boolean {
  return checkResidentId(raw, today).valid;
}

export function isMatchingIdentifierSystem(system: string | undefined): boolean {
  return system !== undefined && KNOWN_SYSTEMS.has(system.trim());
}

/**
 * The (system, value) pair a patient key is computed from: systems trimmed; ID numbers trimmed, upper-case X and
 * checked; e-health card and insurance codes trimmed only (their case may be significant). Throws
 * RecognitionInputError for an unknown system or a malformed value.
 */
export function normalizeIdentifier(system: string, value: string): { system: string; value: string } {
  const s = system.trim();
  if (!KNOWN_SYSTEMS.has(s)) {
    throw new RecognitionInputError(
      'unknown-identifier-system',
      `Patients are matched on ${[...KNOWN_SYSTEMS].join(', ')}; '${s}' is not one of them`,
      'patient.system',
    );
  }
  if (s === IDENTIFIER_SYSTEMS.residentIdCard) {
    const check = checkResidentId(value);
    if (!check.valid) throw new RecognitionInputError('invalid-identifier', check.message, 'patient.value');
    return { system: s, value: check.value };
  }
  const v = value.trim();
  if (!/^[\x21-\x7e]{1,128}$/.test(v)) {
    throw new RecognitionInputError(
      'invalid-identifier',
      'An e-health card or insurance code is 1 to 128 visible ASCII characters',
      'patient.value',
    );
  }
  return { system: s, value: v };
}

/**
 * The pseudonymous patient key: HMAC-SHA256 (hex) under a secret over the normalised system and value, separated
 * by a NUL so that no two pairs give the same input. The same person and identifier give the same key in every
 * institution; without the secret the key cannot be turned back into an ID number by trying all of them.
 */
export function patientKey(secret: string | Uint8Array, system: string, value: string): string {
  const bytes = typeof secret === 'string' ? Buffer.byteLength(secret) : secret.byteLength;
  if (bytes < 16) throw new RangeError('The patient key secret must have at least 16 bytes (32 recommended)');
  const id = normalizeIdentifier(system, value);
  return createHmac('sha256', secret).update(id.system).update('\u0000').update(id.value).digest('hex');
}

/**
 * The secrets patient keys are derived under: one, or during a rotation the current epoch's first and then those of
 * the earlier epochs still honoured (docs/federation.md). Every key of every secret is indexed and asked for, so a
 * broker that has moved to the new epoch still matches the facts of one that has not, and the other way round.
 */
export type KeySecrets = string | readonly string[];

export function secretsOf(secrets: KeySecrets): readonly string[] {
  return typeof secrets === 'string' ? [secrets] : secrets;
}

/** The patient's keys of one identifier, one per secret (the current epoch's first). */
export function patientKeysFor(secrets: KeySecrets, system: string, value: string): string[] {
  return [...new Set(secretsOf(secrets).map((s) => patientKey(s, system, value)))];
}

/**
 * An epoch key of the province's key hierarchy: HMAC-SHA256 of the province's root secret over the province's
 * division code and the epoch's name. The root secret stays with the province's key custodian; each broker of the
 * province is given the epoch keys only (as HUREN_PATIENT_KEY_SECRET and, during a rotation,
 * HUREN_PATIENT_KEY_PREVIOUS_SECRETS), so all of them derive the same patient keys and a broker's leaked key exposes
 * one epoch, never the root.
 */
export function deriveEpochKey(rootSecret: string, province: string, epoch: string): string {
  if (Buffer.byteLength(rootSecret) < 32) throw new RangeError('The province root secret must have at least 32 bytes');
  if (!/^[1-9]\d0000$/.test(province)) throw new RangeError('The province is its six-digit division code (370000)');
  if (!/^[\w.-]{1,32}$/.test(epoch)) throw new RangeError('The epoch is a short name such as 2027-01');
  return createHmac('sha256', rootSecret).update(`huren/patient-key/${province}/${epoch}`).digest('base64url');
}

/** Keys of every matching, well-formed identifier of a patient; others (hospital record numbers …) are skipped. */
export function patientKeysOf(secrets: KeySecrets, identifiers: readonly Identifier[] | undefined): string[] {
  const keys: string[] = [];
  // Identifiers as a caller sent them (a CDS prefetch is not schema-checked): anything but strings is skipped.
  for (const id of Array.isArray(identifiers) ? identifiers : []) {
    if (typeof id?.system !== 'string' || typeof id.value !== 'string' || !isMatchingIdentifierSystem(id.system)) {
      continue;
    }
    try {
      for (const key of patientKeysFor(secrets, id.system, id.value)) if (!keys.includes(key)) keys.push(key);
    } catch (e) {
      if (!(e instanceof RecognitionInputError)) throw e;
    }
  }
  return keys;
}

// ---------------------------------------------------------------------------------------------------------------
// Corroboration

/** What one source says about the patient: FHIR Patient.gender and Patient.birthDate. */
export interface DemographicClaim {
  /** Who says it: an institution id, or `resident-id-card` for what the ID number itself encodes. */
  source: string;
  sex?: string;
  birthDate?: string;
}

export interface DemographicConflict {
  field: 'sex' | 'birthDate';
  values: { value: string; sources: string[] }[];
}

export interface Corroboration {
  /** True when no two sources disagree. Missing or unknown values never conflict. */
  consistent: boolean;
  /** The agreed sex, when at least one source states male or female and none disagrees. */
  sex?: 'male' | 'female';
  /** The most precise agreed birth date (1990 and 1990-05-01 agree; 1990-05 and 1990-06 do not). */
  birthDate?: string;
  conflicts: DemographicConflict[];
}

/** The claim the ID number itself makes (birth date and sex are encoded in it). */
export function claimFromResidentId(value: string): DemographicClaim | undefined {
  const check = checkResidentId(value);
  return check.valid ? { source: 'resident-id-card', sex: check.sex, birthDate: check.birthDate } : undefined;
}

function grouped(values: { value: string; source: string }[]): { value: string; sources: string[] }[] {
  const map = new Map<string, string[]>();
  for (const { value, source } of values) {
    const sources = map.get(value) ?? [];
    if (!sources.includes(source)) sources.push(source);
    map.set(value, sources);
  }
  return [...map.entries()]
    .map(([value, sources]) => ({ value, sources }))
    .sort((a, b) => a.value.localeCompare(b.value));
}

/**
 * Compares what several institutions (and the ID number) say about one patient key. Disagreement is reported with
 * who said what, never resolved by picking a side: a conflict means the identifier may have been mistyped or
 * shared, and a person has to look at it.
 */
export function corroborateDemographics(claims: readonly DemographicClaim[]): Corroboration {
  const conflicts: DemographicConflict[] = [];
  const sexes = grouped(
    claims
      .filter((c) => c.sex === 'male' || c.sex === 'female')
      .map((c) => ({ value: c.sex as string, source: c.source })),
  );
  let sex: Corroboration['sex'];
  if (sexes.length > 1) conflicts.push({ field: 'sex', values: sexes });
  else if (sexes[0]) sex = sexes[0].value as 'male' | 'female';

  const dates = grouped(
    claims
      .filter((c) => c.birthDate !== undefined && /^\d{4}(-\d{2}(-\d{2})?)?$/.test(c.birthDate))
      .map((c) => ({ value: c.birthDate as string, source: c.source })),
  );
  let birthDate: string | undefined;
  if (dates.length > 0) {
    const mostPrecise = dates.reduce((a, b) => (b.value.length > a.value.length ? b : a)).value;
    if (dates.every((d) => mostPrecise.startsWith(d.value))) birthDate = mostPrecise;
    else conflicts.push({ field: 'birthDate', values: dates });
  }
  return { consistent: conflicts.length === 0, sex, birthDate, conflicts };
}

const CONFLICT_WORDS: Record<string, string> = {
  sex: '性别',
  birthDate: '出生日期',
  male: '男',
  female: '女',
  'resident-id-card': '身份证号',
};

/**
 * One line per conflict: `sex: female (resident-id-card, hospital-a) ≠ male (hospital-b)`, or in Chinese
 * `性别：女（身份证号、青岛演示医院A）≠ 男（青岛演示医院B）` with `nameOf` naming the institutions.
 */
export function describeConflicts(
  identity: Corroboration,
  options: { lang?: 'zh' | 'en'; nameOf?: (source: string) => string | undefined } = {},
): string[] {
  if (options.lang !== 'zh') {
    return identity.conflicts.map(
      (c) =>
        `${c.field}: ${c.values.map((v) => `${v.value} (${v.sources.map((w) => options.nameOf?.(w) ?? w).join(', ')})`).join(' ≠ ')}`,
    );
  }
  const word = (w: string) => CONFLICT_WORDS[w] ?? options.nameOf?.(w) ?? w;
  return identity.conflicts.map(
    (c) =>
      `${word(c.field)}：${c.values.map((v) => `${word(v.value)}（${v.sources.map(word).join('、')}）`).join(' ≠ ')}`,
  );
}

/**
 * What the patient's records say about it, corroborated: each institution's Patient record (as the patient index
 * keeps it), what the resident ID number itself encodes, and any other claim (the EHR's own record).
 */
export function corroborateRecords(
  records: readonly { ref: string; organization?: string; sex?: string; birthDate?: string }[],
  identifiers: readonly { system?: string; value?: string }[] = [],
  extra: readonly DemographicClaim[] = [],
): Corroboration {
  const claims: DemographicClaim[] = [...extra];
  for (const id of identifiers) {
    if (id.system !== IDENTIFIER_SYSTEMS.residentIdCard || !id.value) continue;
    const claim = claimFromResidentId(id.value.trim().toUpperCase());
    if (claim) claims.push(claim);
  }
  for (const r of records) {
    claims.push({
      source: r.organization ?? r.ref,
      ...(r.sex ? { sex: r.sex } : {}),
      ...(r.birthDate ? { birthDate: r.birthDate } : {}),
    });
  }
  return corroborateDemographics(claims);
}
