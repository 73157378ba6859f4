/**
 * The patient banner of the doctor's view: who these results belong to, masked the way Chinese hospital systems
 * display a patient outside the chart (name 张*三, two-character names 张*; resident ID as the first 6 and last 4
 * characters). Masked here, on the server: the full name and number never reach the page.
 */
import type { HumanName, Patient } from 'fhir/r4';
import { IDENTIFIER_SYSTEMS } from '../recognition/identity.js';
import { localDate } from '../recognition/time.js';
import type { PatientBanner } from './view-types.js';

/** 张三 → 张*, 张小三 → 张*三, 欧阳小明 → 欧**明: the first and the last character kept, every other one masked. */
export function maskName(name: string): string {
  const chars = Array.from(name.trim());
  if (chars.length <= 1) return chars.join('');
  if (chars.length === 2) return `${chars[0]}*`;
  return `${chars[0]}${'*'.repeat(chars.length - 2)}${chars[chars.length - 1]}`;
}

/** 370202198003150025 → 370202********0025 (first 6 and last 4 kept); shorter numbers keep only the last 4. */
export function maskIdentifier(value: string): string {
  const v = value.trim();
  if (v.length <= 10) return `${'*'.repeat(Math.max(0, v.length - 4))}${v.slice(-4)}`;
  return `${v.slice(0, 6)}${'*'.repeat(v.length - 10)}${v.slice(-4)}`;
}

function nameOf(names: HumanName[] | undefined): string | undefined {
  const name = names?.find((n) => n.use === 'official') ?? names?.find((n) => n.use !== 'old') ?? names?.[0];
  if (!name) return undefined;
  if (name.text?.trim()) return name.text.trim();
  const given = (name.given ?? []).join('');
  const joined = `${name.family ?? ''}${given}`.trim();
  return joined || undefined;
}

/** Whole years (and months under one year) from a birth date to a local day, both YYYY-MM-DD. */
export function ageAt(birthDate: string, today: string): { years: number; months: number } | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(birthDate);
  if (!m) return undefined;
  const [ty, tm, td] = today.split('-').map(Number) as [number, number, number];
  const [by, bm, bd] = [Number(m[1]), Number(m[2]), Number(m[3])];
  let months = (ty - by) * 12 + (tm - bm) - (td < bd ? 1 : 0);
  if (months < 0) return undefined;
  const years = Math.floor(months / 12);
  months = years === 0 ? months : 0;
  return { years, months };
}

const ID_ORDER: string[] = [
  IDENTIFIER_SYSTEMS.residentIdCard,
  IDENTIFIER_SYSTEMS.eHealthCard,
  IDENTIFIER_SYSTEMS.medicalInsuranceCode,
];

/** The banner for a Patient as the launching institution knows it (masked), at `now` in `timeZone`. */
export function patientBanner(patient: Patient | undefined, now: Date, timeZone: string): PatientBanner {
  if (!patient) return {};
  const name = nameOf(patient.name);
  const identifier = ID_ORDER.map((system) => patient.identifier?.find((i) => i.system === system && i.value)).find(
    Boolean,
  );
  const age = patient.birthDate ? ageAt(patient.birthDate, localDate(now.getTime(), timeZone)) : undefined;
  return {
    ...(name ? { name: maskName(name) } : {}),
    ...(patient.gender ? { sex: patient.gender } : {}),
    ...(age ? { age } : {}),
    ...(identifier?.value
      ? {
          identifier: {
            kind:
              identifier.system === IDENTIFIER_SYSTEMS.residentIdCard
                ? 'resident-id'
                : identifier.system === IDENTIFIER_SYSTEMS.eHealthCard
                  ? 'ehealth-card'
                  : 'insurance-code',
            masked: maskIdentifier(identifier.value),
          },
        }
      : {}),
  };
}
