/**
 * Synthetic demo data, pure and deterministic: the same rules, seed and `now` always give the same patients, results
 * and decisions history, so seeding twice changes nothing. Patients are fictitious (valid resident ID numbers of
 * Qingdao districts, made-up names); results are spread over the past 12 months across the demo institutions;
 * the history is what the live `$reuse-check` and `$reuse-decision` would have stored, built with the same engine
 * and ledger functions.
 */
import type { CodeableConcept, Coding, DiagnosticReport, Extension, Observation, Patient, Quantity } from 'fhir/r4';
import type { DeclineReason } from '../recognition/decline-reasons.js';
import { decideReuse, type RequestedItem } from '../recognition/engine.js';
import { projectFacts, type RecognitionFact } from '../recognition/facts.js';
import { IDENTIFIER_SYSTEMS, patientKey, residentIdCheckChar } from '../recognition/identity.js';
import type { Institution } from '../recognition/institutions.js';
import { decisionEntry, promptEntries, type DoctorAction, type LedgerEntry } from '../recognition/ledger.js';
import type { RecognitionRules } from '../recognition/load.js';
import { storedOutcome, type ReuseCheckDoc } from '../recognition/reuse-checks.js';
import { addDays, formatLocalDateTime, localDate, parseFhirDateTime } from '../recognition/time.js';
import { HR_MARK_URL, HR_SCOPE_NAMES, SYSTEMS, type HrScope } from '../recognition/vocabulary.js';
import { Random } from './random.js';
import {
  examCodings,
  TEMPLATES,
  templateByKey,
  type ExamTemplate,
  type LabTemplate,
  type Template,
} from './templates.js';

export type Result = DiagnosticReport | Observation;

export interface DemoPatient {
  patient: Patient & { id: string };
  /** Current versions, each Observation before the report that lists it. */
  results: (Result & { id: string })[];
  /** First versions of results that were later amended (written before `results` on a first seed). */
  originals: (Result & { id: string })[];
}

export interface DemoHistory {
  checks: ReuseCheckDoc[];
  entries: LedgerEntry[];
}

export const DEFAULT_DEMO_SEED = 1;

export const PROFILES = {
  report: 'https://huren.example.org/fhir/StructureDefinition/huren-diagnostic-report',
  observation: 'https://huren.example.org/fhir/StructureDefinition/huren-observation',
} as const;

const DAY = 86400_000;
const UCUM = 'http://unitsofmeasure.org';
const INTERPRETATION = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';
const SERVICE_SECTION = 'http://terminology.hl7.org/CodeSystem/v2-0074';
const OBSERVATION_CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
/** A LOINC code the catalogue does not recognise (glucose in serum or plasma), for the showcase. */
export const UNRECOGNISED_LOINC = '2345-7';

/** The 3702xx districts and county-level cities of Qingdao (the region code starting a local ID number). */
const QINGDAO_REGIONS: readonly (readonly [string, string])[] = [
  ['370202', '市南区'],
  ['370203', '市北区'],
  ['370211', '黄岛区'],
  ['370212', '崂山区'],
  ['370213', '李沧区'],
  ['370214', '城阳区'],
  ['370215', '即墨区'],
  ['370281', '胶州市'],
  ['370283', '平度市'],
  ['370285', '莱西市'],
];
// prettier-ignore
const SURNAMES = ['王', '李', '张', '刘', '陈', '杨', '赵', '黄', '周', '吴', '徐', '孙', '胡', '朱', '高', '林', '何', '郭', '马', '于', '董', '姜', '曲', '宋'];
// prettier-ignore
const GIVEN = ['伟', '芳', '娜', '秀英', '敏', '静', '丽', '强', '磊', '军', '洋', '勇', '艳', '杰', '娟', '涛', '明', '超', '秀兰', '霞', '平', '刚', '桂英', '海燕', '建华', '晓东', '文博', '子涵', '欣怡', '浩然', '立新', '春梅'];

/** How often a demo institution is visited, by level: the big hospitals see most patients. */
const VISIT_WEIGHT: Record<string, number> = {
  三级甲等: 4,
  三级乙等: 3,
  二级甲等: 2,
  二级: 1.5,
  一级: 1,
  社区: 1,
};

/** Decline reasons doctors give, by how often (codes missing from the seed's list are skipped). */
const DECLINE_WEIGHTS: Record<string, number> = {
  'condition-changed': 4,
  'rapid-change': 2,
  'key-time-point': 2,
  emergency: 1,
  appraisal: 0.2,
  other: 1,
  'patient-request': 2,
  'eqa-failed': 0.5,
  'time-gap': 1,
  'images-not-received': 1,
  'serial-monitoring': 2,
};
const ASKS_PER_REPORT: readonly (readonly [number, number])[] = [
  [0, 3],
  [1, 4],
  [2, 2],
  [3, 1],
];
const OTHER_TEXTS = ['患者自述外院结果与症状不符', '外院报告单缺少单位', '门诊医生要求本院复查对比'];

// ---------------------------------------------------------------------------------------------------------------
// Patients

/** A resident ID number (GB 11643-1999) of a Qingdao district: region, birth date, sequence (odd = male), check. */
export function makeResidentId(region: string, birthDate: string, sequence: number): string {
  const first17 = `${region}${birthDate.replace(/-/g, '')}${String(sequence).padStart(3, '0')}`;
  return first17 + residentIdCheckChar(first17);
}

/** The fixed showcase patient: a check by hospital B right after start returns every decision kind. */
export const SHOWCASE = {
  patientId: 'demo-showcase',
  idNumber: makeResidentId('370202', '1968-03-15', 123),
  requester: 'demo-hospital-b',
  performer: 'demo-hospital-a',
  /** What to ask, with the decision expected for each. */
  codes: [
    { code: '57021-8', display: 'CBC', expected: 'reusable' },
    { code: '4548-4', display: 'HbA1c', expected: 'expired' },
    { code: '29252-4', display: 'CT chest', expected: 'reference-only' },
    { code: '1988-5', display: 'CRP', expected: 'none' },
    { code: UNRECOGNISED_LOINC, display: 'Glucose (serum)', expected: 'not-recognized' },
  ],
} as const;

interface Person {
  idNumber: string;
  sex: 'male' | 'female';
  birthDate: string;
  region: (typeof QINGDAO_REGIONS)[number];
  family: string;
  given: string;
}

function makePerson(rng: Random, today: string): Person {
  const region = rng.pick(QINGDAO_REGIONS);
  // Ages 1 to 90, most patients adults.
  const age = rng.weighted<[number, number]>([
    [[1, 17], 1],
    [[18, 44], 3],
    [[45, 64], 4],
    [[65, 90], 3],
  ]);
  const birthDate = addDays(today, -(rng.int(age[0], age[1]) * 365 + rng.int(0, 364)));
  const sex = rng.chance(0.5) ? 'male' : 'female';
  // The sequence's last digit is odd for men and even for women.
  const sequence = rng.int(0, 499) * 2 + (sex === 'male' ? 1 : 0);
  return {
    idNumber: makeResidentId(region[0], birthDate, sequence),
    sex,
    birthDate,
    region,
    family: rng.pick(SURNAMES),
    given: rng.pick(GIVEN),
  };
}

function patientResource(id: string, person: Person, managingOrganization: string): Patient & { id: string } {
  return {
    resourceType: 'Patient',
    id,
    identifier: [{ use: 'official', system: IDENTIFIER_SYSTEMS.residentIdCard, value: person.idNumber }],
    name: [{ use: 'official', text: person.family + person.given, family: person.family, given: [person.given] }],
    gender: person.sex,
    birthDate: person.birthDate,
    address: [{ use: 'home', district: person.region[1], city: '青岛市', state: '山东省', country: 'CN' }],
    managingOrganization: { reference: `Organization/${managingOrganization}` },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Results

interface Visit {
  institution: Institution;
  /** Instant of the specimen collection or exam. */
  at: number;
}

interface ResultContext {
  rules: RecognitionRules;
  patientId: string;
  sex: 'male' | 'female';
  now: number;
  timeZone: string;
}

function localCodings(rules: RecognitionRules, institution: string, item: string): Coding[] {
  return rules.localCodes
    .filter((m) => m.institution === institution)
    .flatMap((m) =>
      m.codes
        .filter((c) => c.targets.length === 1 && c.targets[0] === item)
        .map((c) => ({ system: m.system, code: c.code, ...(c.display ? { display: c.display } : {}) })),
    );
}

function hrMark(scope: HrScope): Extension {
  return {
    url: HR_MARK_URL,
    valueCoding: { system: SYSTEMS.hrScope, code: scope, display: HR_SCOPE_NAMES[scope].zh },
  };
}

function quantity(value: number, unit: string): Quantity {
  return { value, unit, system: UCUM, code: unit };
}

function round(value: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(value * f) / f;
}

/** A value around the reference range: mostly normal, about one in six outside it. */
function analyteValue(rng: Random, low: number, high: number, decimals: number, upper: boolean): number {
  const raw = upper
    ? high * 0.45 * Math.exp(rng.gaussian() * 0.55)
    : (low + high) / 2 + rng.gaussian() * ((high - low) / 3.6);
  const min = 10 ** -decimals;
  return round(Math.max(raw, min), decimals);
}

function flag(value: number, low: number, high: number, upper: boolean): 'H' | 'L' | 'N' {
  if (value > high) return 'H';
  if (!upper && value < low) return 'L';
  return 'N';
}

const FLAG_DISPLAY = { H: 'High', L: 'Low', N: 'Normal' } as const;

interface Stamp {
  effective: string;
  issued: string;
  performer: string;
  hr?: HrScope;
  status: 'final' | 'amended';
}

function observation(
  ctx: ResultContext,
  id: string,
  stamp: Stamp,
  analyte: LabTemplate['analytes'][number],
  value: number,
): Observation & { id: string } {
  const range = ctx.sex === 'female' && analyte.female ? analyte.female : analyte;
  const upper = analyte.shape === 'upper';
  const f = flag(value, range.low, range.high, upper);
  return {
    resourceType: 'Observation',
    id,
    meta: { profile: [PROFILES.observation] },
    ...(stamp.hr ? { extension: [hrMark(stamp.hr)] } : {}),
    identifier: [{ system: `https://${stamp.performer}.example.org/fhir/sid/lis-result`, value: id }],
    status: stamp.status,
    category: [{ coding: [{ system: OBSERVATION_CATEGORY, code: 'laboratory', display: 'Laboratory' }] }],
    code: { coding: [{ system: SYSTEMS.loinc, code: analyte.loinc, display: analyte.en }], text: analyte.zh },
    subject: { reference: `Patient/${ctx.patientId}` },
    effectiveDateTime: stamp.effective,
    issued: stamp.issued,
    performer: [{ reference: `Organization/${stamp.performer}` }],
    valueQuantity: quantity(value, analyte.unit),
    interpretation: [{ coding: [{ system: INTERPRETATION, code: f, display: FLAG_DISPLAY[f] }] }],
    referenceRange: [
      upper
        ? { high: quantity(range.high, analyte.unit) }
        : { low: quantity(range.low, analyte.unit), high: quantity(range.high, analyte.unit) },
    ],
  };
}

function reportCode(ctx: ResultContext, t: Template, performer: string): CodeableConcept {
  const local = localCodings(ctx.rules, performer, t.item);
  if (t.kind === 'lab') {
    return { coding: [{ system: SYSTEMS.loinc, code: t.loinc, display: t.en }, ...local], text: t.zh };
  }
  return {
    coding: [
      ...examCodings(t),
      {
        system: `https://${performer}.example.org/fhir/CodeSystem/pacs-exam`,
        code: t.key.toUpperCase(),
        display: t.zh,
      },
      ...local,
    ],
    text: t.zh,
  };
}

function reportResource(
  ctx: ResultContext,
  id: string,
  t: Template,
  stamp: Stamp,
  members: string[],
  conclusion?: string,
): DiagnosticReport & { id: string } {
  const section = t.kind === 'lab' ? 'LAB' : t.section;
  const category: CodeableConcept[] = [{ coding: [{ system: SERVICE_SECTION, code: section }] }];
  if (t.kind === 'exam') category.push({ coding: [{ system: SYSTEMS.dicom, code: t.modality }] });
  return {
    resourceType: 'DiagnosticReport',
    id,
    meta: { profile: [PROFILES.report] },
    ...(stamp.hr ? { extension: [hrMark(stamp.hr)] } : {}),
    identifier: [{ system: `https://${stamp.performer}.example.org/fhir/sid/report`, value: id }],
    status: stamp.status,
    category,
    code: reportCode(ctx, t, stamp.performer),
    subject: { reference: `Patient/${ctx.patientId}` },
    effectiveDateTime: stamp.effective,
    issued: stamp.issued,
    performer: [{ reference: `Organization/${stamp.performer}` }],
    ...(members.length ? { result: members.map((m) => ({ reference: `Observation/${m}` })) } : {}),
    ...(conclusion ? { conclusion } : {}),
  };
}

interface MadeResult {
  results: (Result & { id: string })[];
  originals: (Result & { id: string })[];
}

/** A lab report and its analyte Observations; sometimes amended (the first version had a wrong value). */
function labResult(
  rng: Random,
  ctx: ResultContext,
  id: string,
  t: LabTemplate,
  stamp: Stamp,
  amended: boolean,
): MadeResult {
  const values = t.analytes.map((an) => {
    const range = ctx.sex === 'female' && an.female ? an.female : an;
    return analyteValue(rng, range.low, range.high, an.decimals, an.shape === 'upper');
  });
  const obsIds = t.analytes.map((_, j) => `${id}-${j + 1}`);
  const build = (s: Stamp, vals: number[]): (Result & { id: string })[] => [
    ...t.analytes.map((an, j) => observation(ctx, obsIds[j]!, s, an, vals[j]!)),
    reportResource(ctx, id, t, s, obsIds),
  ];
  if (!amended) return { results: build(stamp, values), originals: [] };
  // The amendment is issued a day later, still before now.
  const issuedMs = Math.min(Date.parse(stamp.issued) + DAY, ctx.now - 60_000);
  const later: Stamp = { ...stamp, status: 'amended', issued: formatLocalDateTime(issuedMs, ctx.timeZone) };
  const wrong = values.map((v, j) => round(v * 1.8, t.analytes[j]!.decimals));
  return { results: build(later, values), originals: build(stamp, wrong) };
}

function examResult(rng: Random, ctx: ResultContext, id: string, t: ExamTemplate, stamp: Stamp): MadeResult {
  return { results: [reportResource(ctx, id, t, stamp, [], rng.pick(t.findings))], originals: [] };
}

/** Templates an institution performs: those of the categories it holds a qualification for (lapsed or not). */
function templatesOf(institution: Institution): Template[] {
  const categories = new Set(institution.qualifications.map((q) => q.category));
  const own = TEMPLATES.filter((t) => categories.has(t.category));
  // An institution without qualifications still draws blood and records ECGs: its results are not recognised.
  return own.length ? own : [templateByKey('cbc'), templateByKey('glu'), templateByKey('ecg12')];
}

function scopeOf(institution: Institution, category: string, day: string): HrScope | undefined {
  const q = institution.qualifications.find((x) => x.category === category && x.validFrom <= day && day <= x.validTo);
  return q?.scope;
}

// ---------------------------------------------------------------------------------------------------------------
// The generator

export interface GenerateOptions {
  seed: number;
  /** Patients 0 … count-1 (patient i is the same for every count > i). */
  count: number;
  now: Date;
}

function visitsOf(rng: Random, rules: RecognitionRules, now: number, timeZone: string): Visit[] {
  const institutions = rules.institutions.institutions;
  const weighted = institutions.map((i) => [i, VISIT_WEIGHT[i.level] ?? 1] as const);
  const chronic = rng.chance(0.3);
  const count = chronic ? rng.int(3, 8) : rng.int(1, 3);
  const today = localDate(now, timeZone);
  const visits: Visit[] = [];
  for (let v = 0; v < count; v++) {
    const day = addDays(today, -rng.int(1, 365));
    // Specimens are drawn in the morning; exams run through the day (local time).
    const minutes = rng.int(7 * 60 + 30, 16 * 60);
    const at = parseFhirDateTime(`${day}T00:00:00+08:00`, timeZone)!.ms + minutes * 60_000;
    visits.push({ institution: rng.weighted(weighted), at });
  }
  return visits.sort((x, y) => x.at - y.at);
}

/** Generates demo patients in order; ID numbers are unique among them and never the showcase's. */
export function* generateDemoPatients(rules: RecognitionRules, options: GenerateOptions): Generator<DemoPatient> {
  const timeZone = rules.catalogue.timeZone;
  const now = options.now.getTime();
  const today = localDate(now, timeZone);
  const used = new Set<string>([SHOWCASE.idNumber]);
  for (let i = 0; i < options.count; i++) {
    const rng = new Random(`huren-demo|${options.seed}|${i}`);
    let person = makePerson(rng, today);
    while (used.has(person.idNumber)) person = makePerson(rng, today);
    used.add(person.idNumber);
    const patientId = `demo-${options.seed}-${i}`;
    const ctx: ResultContext = { rules, patientId, sex: person.sex, now, timeZone };
    const visits = visitsOf(rng, rules, now, timeZone);
    const out: DemoPatient = {
      patient: patientResource(patientId, person, visits[0]!.institution.id),
      results: [],
      originals: [],
    };
    let k = 0;
    for (const visit of visits) {
      const offered = templatesOf(visit.institution);
      const n = Math.min(offered.length, rng.int(1, 3));
      const chosen = new Set<Template>();
      while (chosen.size < n) chosen.add(rng.pick(offered));
      for (const t of chosen) {
        const day = localDate(visit.at, timeZone);
        const hoursToReport = t.kind === 'lab' ? rng.int(1, 6) : rng.int(2, 30);
        const issued = Math.min(visit.at + hoursToReport * 3600_000, now - 60_000);
        const scope = scopeOf(visit.institution, t.category, day);
        const stamp: Stamp = {
          effective: formatLocalDateTime(visit.at, timeZone),
          issued: formatLocalDateTime(issued, timeZone),
          performer: visit.institution.id,
          status: 'final',
          ...(scope && rng.chance(0.4) ? { hr: scope } : {}),
        };
        const id = `${patientId}-r${++k}`;
        const made =
          t.kind === 'lab'
            ? labResult(rng, ctx, id, t, stamp, t.analytes.length === 1 && rng.chance(0.04))
            : examResult(rng, ctx, id, t, stamp);
        out.results.push(...made.results);
        out.originals.push(...made.originals);
      }
    }
    yield out;
  }
}

/**
 * The showcase patient's results, relative to `now` (local days, fixed times of day, so that refreshing twice on
 * one day changes nothing): a CBC of hospital A yesterday (reusable), an HbA1c 90 days ago (expired after 60 days),
 * and a chest CT of hospital A 10 days ago (reference-only: A's CT qualification lapsed on 2025-06-30).
 */
export function showcasePatient(rules: RecognitionRules, now: Date): DemoPatient {
  const timeZone = rules.catalogue.timeZone;
  const today = localDate(now.getTime(), timeZone);
  const rng = new Random('huren-demo|showcase');
  const person: Person = {
    idNumber: SHOWCASE.idNumber,
    sex: 'male',
    birthDate: '1968-03-15',
    region: QINGDAO_REGIONS[0]!,
    family: '林',
    given: '演示',
  };
  const ctx: ResultContext = {
    rules,
    patientId: SHOWCASE.patientId,
    sex: 'male',
    now: now.getTime(),
    timeZone,
  };
  const at = (daysAgo: number, time: string, reportHours: number): Stamp => {
    const effective = `${addDays(today, -daysAgo)}T${time}:00+08:00`;
    const issuedMs = Math.min(Date.parse(effective) + reportHours * 3600_000, now.getTime() - 60_000);
    return {
      effective,
      issued: formatLocalDateTime(Math.max(issuedMs, Date.parse(effective)), timeZone),
      performer: SHOWCASE.performer,
      status: 'final',
    };
  };
  const results = [
    ...labResult(
      rng,
      ctx,
      `${SHOWCASE.patientId}-cbc`,
      templateByKey('cbc') as LabTemplate,
      {
        ...at(1, '09:30', 2),
        hr: 'municipal',
      },
      false,
    ).results,
    ...labResult(
      rng,
      ctx,
      `${SHOWCASE.patientId}-hba1c`,
      templateByKey('hba1c') as LabTemplate,
      at(90, '08:40', 3),
      false,
    ).results,
    ...examResult(rng, ctx, `${SHOWCASE.patientId}-ct`, templateByKey('ct-chest') as ExamTemplate, at(10, '14:20', 4))
      .results,
  ];
  return { patient: patientResource(SHOWCASE.patientId, person, SHOWCASE.performer), results, originals: [] };
}

// ---------------------------------------------------------------------------------------------------------------
// Decisions history

export interface HistoryOptions {
  seed: number;
  now: Date;
  /** The patient key secret of the broker (the keys must be those the live checks compute). */
  secret: string;
}

/** The template a result stands for, found back from its code. */
function templateOfReport(r: DiagnosticReport): Template | undefined {
  const codes = new Set((r.code.coding ?? []).map((c) => `${c.system}|${c.code}`));
  return TEMPLATES.find((t) =>
    t.kind === 'lab'
      ? codes.has(`${SYSTEMS.loinc}|${t.loinc}`)
      : codes.has(`${SYSTEMS.bodyPart}|${t.bodyPart}`) &&
        codes.has(`${SYSTEMS.imagingMethod}|${t.method}`) &&
        (r.category ?? []).some((c) => c.coding?.some((x) => x.system === SYSTEMS.dicom && x.code === t.modality)),
  );
}

/** How a doctor at `requester` orders the item: the HIS's local code when it has one, else LOINC or the catalogue. */
function orderCoding(rules: RecognitionRules, rng: Random, requester: string, t: Template): Coding {
  const local = localCodings(rules, requester, t.item);
  if (local.length && rng.chance(0.7)) return { system: local[0]!.system, code: local[0]!.code };
  // A panel LOINC the catalogue does not list (hepatic function …) is ordered by its catalogue code instead.
  const known = t.loinc && rules.index.byCode.has(`${SYSTEMS.loinc}|${t.loinc}`);
  return known ? { system: SYSTEMS.loinc, code: t.loinc! } : { system: SYSTEMS.catalogue, code: t.item };
}

function declineReason(rules: RecognitionRules, rng: Random, outcome: string, category: string): DeclineReason {
  const usable = rules.declineReasons.reasons.filter(
    (r) =>
      (r.code !== 'eqa-failed' || outcome === 'reference-only') &&
      (r.code !== 'images-not-received' || !category.startsWith('lab-')),
  );
  return rng.weighted(usable.map((r) => [r, DECLINE_WEIGHTS[r.code] ?? 0.5] as const));
}

/**
 * The checks other institutions asked about this patient over the past year and what their doctors did: each
 * check is decided by the engine on the facts the patient had at that moment, its prompts and decisions built by
 * the ledger's own functions (channel `seed`). Ids derive from the patient's, so re-seeding adds nothing.
 */
export function demoHistory(rules: RecognitionRules, demo: DemoPatient, options: HistoryOptions): DemoHistory {
  const timeZone = rules.catalogue.timeZone;
  const now = options.now.getTime();
  const rng = new Random(`huren-demo-history|${options.seed}|${demo.patient.id}`);
  const identifier = demo.patient.identifier![0]!;
  const key = patientKey(options.secret, identifier.system!, identifier.value!);
  const facts: (RecognitionFact & { issuedMs: number })[] = demo.results.flatMap((r) =>
    projectFacts(r, { index: rules.index, resolvePatientKeys: () => [key], timeZone }).facts.map((f) => ({
      ...f,
      issuedMs: Date.parse(r.issued ?? f.effective),
    })),
  );
  const institutions = rules.institutions.institutions;
  const categoryOf = (item: string) => rules.index.items.get(item)?.category ?? 'unknown';
  const checks: ReuseCheckDoc[] = [];
  const entries: LedgerEntry[] = [];
  const reports = demo.results.filter(
    (r): r is DiagnosticReport & { id: string } => r.resourceType === 'DiagnosticReport',
  );
  let k = 0;
  // A report is asked about up to three times, by other institutions, in the weeks after it was done.
  const asks = reports.flatMap((r) => Array.from({ length: rng.weighted(ASKS_PER_REPORT) }, () => r));
  for (const report of asks) {
    const t = templateOfReport(report);
    const performer = report.performer?.[0]?.reference?.replace('Organization/', '');
    if (!t || !performer) continue;
    const at = Date.parse(report.effectiveDateTime!) + rng.int(2, 24 * 21) * 3600_000;
    if (at > now - DAY) continue;
    const others = institutions.filter((i) => i.id !== performer);
    const requester = rng.weighted(others.map((i) => [i, VISIT_WEIGHT[i.level] ?? 1] as const)).id;
    const items: RequestedItem[] = [{ coding: [orderCoding(rules, rng, requester, t)] }];
    if (rng.chance(0.3)) items.push({ coding: [orderCoding(rules, rng, requester, rng.pick(TEMPLATES))] });
    if (rng.chance(0.05)) items.push({ coding: [{ system: SYSTEMS.loinc, code: UNRECOGNISED_LOINC }] });
    const context = rng.weighted([
      ['routine', 18],
      ['emergency', 1],
      ['pre-surgery', 1],
    ] as const);
    const visible = facts.filter((f) => Date.parse(f.effective) <= at && f.issuedMs <= at);
    const outcomes = decideReuse(
      { patientKeys: [key], requester, items, context },
      visible.map(({ issuedMs: _unused, ...f }) => f),
      rules.directory,
      rules.index,
      rules.matrix,
      new Date(at),
    );
    const check: ReuseCheckDoc = {
      _id: `${demo.patient.id}-c${++k}`,
      requester,
      patientKeys: [key],
      createdAt: new Date(at),
      at: new Date(at),
      context,
      outcomes: outcomes.map(storedOutcome),
    };
    checks.push(check);
    const prompts = promptEntries(check, categoryOf, timeZone).map((e) => ({ ...e, channel: 'seed' as const }));
    entries.push(...prompts);
    for (const prompt of prompts) entries.push(...doctorActions(rules, rng, check, prompt, now));
  }
  return { checks, entries };
}

/** Departments of the demo doctors (科室), as hospitals name them. */
const DEPARTMENTS = ['心血管内科', '呼吸与危重症医学科', '消化内科', '内分泌科', '普通外科', '急诊科', '全科医学科'];

/** What the doctor did with one prompt: maybe opened it, then maybe accepted or declined it (with a reason). */
function doctorActions(
  rules: RecognitionRules,
  rng: Random,
  check: ReuseCheckDoc,
  prompt: LedgerEntry,
  now: number,
): LedgerEntry[] {
  const out: LedgerEntry[] = [];
  let t = check.createdAt.getTime();
  const act = (action: DoctorAction, extra: { reason?: DeclineReason; reasonText?: string } = {}) => {
    t = Math.min(t + rng.int(1, 15) * 60_000, now - 60_000);
    // About forty doctors per hospital, each in one department, so the supervision page has something to compare.
    const doctor = rng.int(1000, 1039);
    const entry = decisionEntry({
      check,
      item: prompt.item,
      action,
      ...extra,
      practitioner: `https://${check.requester}.example.org/fhir/sid/staff|D${doctor}`,
      department: DEPARTMENTS[doctor % DEPARTMENTS.length]!,
      channel: 'seed',
      now: new Date(t),
      timeZone: rules.catalogue.timeZone,
      category: prompt.category,
    });
    if (!('kind' in entry)) out.push(entry);
  };
  const viewed = rng.chance(0.65);
  if (viewed) act('viewed');
  if (!rng.chance(viewed ? 0.85 : 0.3)) return out;
  const acceptRate = prompt.outcome === 'reusable' ? 0.72 : 0.2;
  if (rng.chance(acceptRate)) {
    act('accepted');
  } else {
    const reason = declineReason(rules, rng, prompt.outcome, prompt.category);
    act('declined', { reason, ...(reason.requiresText ? { reasonText: rng.pick(OTHER_TEXTS) } : {}) });
  }
  return out;
}
