/**
 * Participating institutions (level, district, medical alliances, HR qualifications per category) and the
 * acceptance matrix between requester and performer levels. Both are data (seed/institutions.json,
 * seed/acceptance-matrix.json); this module types, validates and queries them.
 */
import { SeedDataError, schemaChecker } from './errors.js';
import { isLocalDate } from './time.js';
import {
  HR_SCOPES,
  INSTITUTION_LEVELS,
  LEVEL_EN,
  gradeOf,
  gradeRank,
  type Bilingual,
  type HrScope,
  type InstitutionLevel,
} from './vocabulary.js';

export interface QcEvaluation {
  /** Local date the quality-control (质控 / external quality assessment) result was published. */
  evaluatedOn: string;
  result: 'passed' | 'failed';
  programme?: string;
  note?: string;
}

/** An HR qualification of an institution for one category: its scope and validity (local dates, inclusive). */
export interface Qualification {
  category: string;
  scope: HrScope;
  validFrom: string;
  validTo: string;
  /** QC evaluations, any order. The latest one on or before a result's day decides whether it can be recognised. */
  qualityControl: QcEvaluation[];
}

export interface District {
  /** Six-digit administrative division code (GB/T 2260), e.g. 370202 市南区. */
  code: string;
  name: Bilingual;
}

export interface Institution {
  /** The Organization id (`Organization/<id>`). */
  id: string;
  name: Bilingual;
  level: InstitutionLevel;
  district: District;
  /** Ids of the medical alliances (医联体/医共体) the institution belongs to. */
  alliances: string[];
  qualifications: Qualification[];
}

export interface Alliance {
  id: string;
  name: Bilingual;
  kind: '医联体' | '医共体' | '专科联盟';
}

export interface InstitutionsFile {
  region: { code: string; name: Bilingual };
  alliances: Alliance[];
  institutions: Institution[];
}

/** Institutions indexed for lookups on the hot path; build once, reuse for every check. */
export interface InstitutionDirectory {
  readonly region: InstitutionsFile['region'];
  readonly byId: ReadonlyMap<string, Institution>;
  readonly alliances: ReadonlyMap<string, Alliance>;
}

export type AcceptancePolicy = 'all' | 'higher-or-peer' | 'explicit';

export interface AcceptanceRule {
  /**
   * `all`: every level accepts qualified results of every level (Qingdao's 全市一家医院).
   * `higher-or-peer`: an institution accepts results of its own grade or a higher one (三级 > 二级 > 一级/社区).
   * `explicit`: `accepts[requesterLevel]` lists the performer levels accepted.
   */
  policy: AcceptancePolicy;
  accepts?: Partial<Record<InstitutionLevel, InstitutionLevel[]>>;
  /** Members of one medical alliance accept each other's qualified results whatever the policy says. */
  allianceMembersAccept: boolean;
  name?: Bilingual;
  note?: string;
}

export interface RegionalAcceptanceRule extends AcceptanceRule {
  /** A six-digit division code: a district, a city (xxxx00) or a province (xx0000). */
  region: string;
}

export interface AcceptanceMatrix {
  default: AcceptanceRule;
  regions: RegionalAcceptanceRule[];
}

const bilingual = {
  type: 'object',
  required: ['zh', 'en'],
  additionalProperties: false,
  properties: { zh: { type: 'string', minLength: 1 }, en: { type: 'string', minLength: 1 } },
};
const localDateSchema = { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$' };
const divisionCode = { type: 'string', pattern: '^[1-9]\\d{5}$' };

const checkInstitutionsShape = schemaChecker({
  type: 'object',
  required: ['region', 'alliances', 'institutions'],
  additionalProperties: false,
  properties: {
    $comment: { type: 'string' },
    region: {
      type: 'object',
      required: ['code', 'name'],
      additionalProperties: false,
      properties: { code: divisionCode, name: bilingual },
    },
    alliances: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'name', 'kind'],
        additionalProperties: false,
        properties: {
          id: { type: 'string', pattern: '^[A-Za-z0-9\\-.]{1,64}$' },
          name: bilingual,
          kind: { enum: ['医联体', '医共体', '专科联盟'] },
        },
      },
    },
    institutions: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['id', 'name', 'level', 'district', 'alliances', 'qualifications'],
        additionalProperties: false,
        properties: {
          id: { type: 'string', pattern: '^[A-Za-z0-9\\-.]{1,64}$' },
          name: bilingual,
          level: { enum: [...INSTITUTION_LEVELS] },
          district: {
            type: 'object',
            required: ['code', 'name'],
            additionalProperties: false,
            properties: { code: divisionCode, name: bilingual },
          },
          alliances: { type: 'array', items: { type: 'string' } },
          qualifications: {
            type: 'array',
            items: {
              type: 'object',
              required: ['category', 'scope', 'validFrom', 'validTo', 'qualityControl'],
              additionalProperties: false,
              properties: {
                category: { type: 'string', minLength: 1 },
                scope: { enum: [...HR_SCOPES] },
                validFrom: localDateSchema,
                validTo: localDateSchema,
                qualityControl: {
                  type: 'array',
                  items: {
                    type: 'object',
                    required: ['evaluatedOn', 'result'],
                    additionalProperties: false,
                    properties: {
                      evaluatedOn: localDateSchema,
                      result: { enum: ['passed', 'failed'] },
                      programme: { type: 'string' },
                      note: { type: 'string' },
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
});

const acceptanceRuleProperties = {
  policy: { enum: ['all', 'higher-or-peer', 'explicit'] },
  accepts: {
    type: 'object',
    propertyNames: { enum: [...INSTITUTION_LEVELS] },
    additionalProperties: { type: 'array', items: { enum: [...INSTITUTION_LEVELS] } },
  },
  allianceMembersAccept: { type: 'boolean' },
  name: bilingual,
  note: { type: 'string' },
};

const checkMatrixShape = schemaChecker({
  type: 'object',
  required: ['default', 'regions'],
  additionalProperties: false,
  properties: {
    $comment: { type: 'string' },
    levels: { type: 'array', items: { enum: [...INSTITUTION_LEVELS] } },
    default: {
      type: 'object',
      required: ['policy', 'allianceMembersAccept'],
      additionalProperties: false,
      properties: acceptanceRuleProperties,
    },
    regions: {
      type: 'array',
      items: {
        type: 'object',
        required: ['region', 'policy', 'allianceMembersAccept'],
        additionalProperties: false,
        properties: { region: divisionCode, ...acceptanceRuleProperties },
      },
    },
  },
});

/**
 * Validates seed/institutions.json. `categories`, when given, are the catalogue's category codes that
 * qualifications must name. Throws SeedDataError listing every problem.
 */
export function parseInstitutions(
  json: unknown,
  file = 'institutions.json',
  categories?: ReadonlySet<string>,
): InstitutionsFile {
  const shape = checkInstitutionsShape(json);
  if (shape.length > 0) throw new SeedDataError(file, shape);
  const data = json as InstitutionsFile;
  const problems: string[] = [];
  const allianceIds = new Set<string>();
  for (const a of data.alliances) {
    if (allianceIds.has(a.id)) problems.push(`alliance '${a.id}' is listed twice`);
    allianceIds.add(a.id);
  }
  const ids = new Set<string>();
  data.institutions.forEach((inst, i) => {
    const at = `institutions[${i}] (${inst.id})`;
    if (ids.has(inst.id)) problems.push(`${at}: id is used by another institution`);
    ids.add(inst.id);
    for (const a of inst.alliances) {
      if (!allianceIds.has(a)) problems.push(`${at}: alliance '${a}' is not in alliances`);
    }
    inst.qualifications.forEach((q, j) => {
      const qat = `${at}.qualifications[${j}]`;
      if (categories && !categories.has(q.category)) {
        problems.push(`${qat}: category '${q.category}' is not a catalogue category`);
      }
      for (const [name, value] of [
        ['validFrom', q.validFrom],
        ['validTo', q.validTo],
      ] as const) {
        if (!isLocalDate(value)) problems.push(`${qat}.${name}: '${value}' is not a calendar date`);
      }
      if (q.validFrom > q.validTo) problems.push(`${qat}: validFrom ${q.validFrom} is after validTo ${q.validTo}`);
      q.qualityControl.forEach((e, k) => {
        if (!isLocalDate(e.evaluatedOn)) {
          problems.push(`${qat}.qualityControl[${k}].evaluatedOn: '${e.evaluatedOn}' is not a calendar date`);
        }
      });
    });
  });
  if (problems.length > 0) throw new SeedDataError(file, problems);
  return data;
}

export function indexInstitutions(data: InstitutionsFile): InstitutionDirectory {
  return {
    region: data.region,
    byId: new Map(data.institutions.map((i) => [i.id, i])),
    alliances: new Map(data.alliances.map((a) => [a.id, a])),
  };
}

/** Validates seed/acceptance-matrix.json. Throws SeedDataError listing every problem. */
export function parseAcceptanceMatrix(json: unknown, file = 'acceptance-matrix.json'): AcceptanceMatrix {
  const shape = checkMatrixShape(json);
  if (shape.length > 0) throw new SeedDataError(file, shape);
  const data = json as AcceptanceMatrix & { levels?: unknown };
  const problems: string[] = [];
  const rules: [string, AcceptanceRule][] = [
    ['default', data.default],
    ...data.regions.map((r, i): [string, AcceptanceRule] => [`regions[${i}] (${r.region})`, r]),
  ];
  for (const [at, rule] of rules) {
    if (rule.policy === 'explicit' && !rule.accepts) problems.push(`${at}: policy 'explicit' needs 'accepts'`);
    if (rule.policy !== 'explicit' && rule.accepts) {
      problems.push(`${at}: 'accepts' is only read with policy 'explicit', not '${rule.policy}'`);
    }
  }
  const seen = new Set<string>();
  data.regions.forEach((r, i) => {
    if (seen.has(r.region)) problems.push(`regions[${i}]: region ${r.region} is configured twice`);
    seen.add(r.region);
  });
  if (problems.length > 0) throw new SeedDataError(file, problems);
  return { default: data.default, regions: data.regions };
}

/** The city division code of a district (胶州市 370281 → 青岛市 370200). */
export function cityOf(divisionCode: string): string {
  return `${divisionCode.slice(0, 4)}00`;
}

/** The province division code of a district (370202 → 山东省 370000). */
export function provinceOf(divisionCode: string): string {
  return `${divisionCode.slice(0, 2)}0000`;
}

export type QualificationCheck =
  | { status: 'valid'; qualification: Qualification; qc?: QcEvaluation }
  | { status: 'failed-qc'; qualification: Qualification; qc: QcEvaluation }
  | { status: 'lapsed'; qualification: Qualification }
  | { status: 'not-yet-valid'; qualification: Qualification }
  | { status: 'none' };

/**
 * The institution's HR qualification for a category on a local day (the result's day: a result produced under a
 * valid qualification stays recognisable after the qualification ends, one produced after it ended does not). The
 * QC state is the latest evaluation published on or before that day.
 */
export function qualificationAt(institution: Institution, category: string, day: string): QualificationCheck {
  const forCategory = institution.qualifications.filter((q) => q.category === category);
  if (forCategory.length === 0) return { status: 'none' };
  const covering = forCategory.filter((q) => q.validFrom <= day && day <= q.validTo);
  if (covering.length === 0) {
    const ended = forCategory.filter((q) => q.validTo < day).sort((a, b) => b.validTo.localeCompare(a.validTo));
    if (ended[0]) return { status: 'lapsed', qualification: ended[0] };
    const future = [...forCategory].sort((a, b) => a.validFrom.localeCompare(b.validFrom));
    return { status: 'not-yet-valid', qualification: future[0] as Qualification };
  }
  // Of several covering qualifications (a renewal overlapping the old one) the widest scope wins.
  const width = { national: 3, provincial: 2, municipal: 1 } as const;
  const results = covering.map((qualification) => {
    const qc = latestQcOnOrBefore(qualification.qualityControl, day);
    return { qualification, qc };
  });
  const passing = results
    .filter((r) => r.qc?.result !== 'failed')
    .sort((a, b) => width[b.qualification.scope] - width[a.qualification.scope]);
  if (passing[0]) return { status: 'valid', qualification: passing[0].qualification, qc: passing[0].qc };
  const failed = results[0] as { qualification: Qualification; qc: QcEvaluation };
  return { status: 'failed-qc', qualification: failed.qualification, qc: failed.qc };
}

function latestQcOnOrBefore(evaluations: readonly QcEvaluation[], day: string): QcEvaluation | undefined {
  let latest: QcEvaluation | undefined;
  for (const e of evaluations) {
    if (e.evaluatedOn <= day && (!latest || e.evaluatedOn >= latest.evaluatedOn)) latest = e;
  }
  return latest;
}

/** The acceptance rule that governs a requester: its district, else its city, else its province, else default. */
export function acceptanceRuleFor(
  matrix: AcceptanceMatrix,
  requester: Institution,
): { region: string | 'default'; rule: AcceptanceRule } {
  const code = requester.district.code;
  for (const candidate of [code, cityOf(code), provinceOf(code)]) {
    const rule = matrix.regions.find((r) => r.region === candidate);
    if (rule) return { region: candidate, rule };
  }
  return { region: 'default', rule: matrix.default };
}

export interface AcceptanceDecision {
  accepted: boolean;
  /** `alliance` when a shared medical alliance decided, `policy` otherwise. */
  via: 'alliance' | 'policy';
  region: string | 'default';
  rule: AcceptanceRule;
  alliance?: string;
}

/** Whether the requester's regional rule accepts results of the performer's level. */
export function acceptanceFor(
  matrix: AcceptanceMatrix,
  requester: Institution,
  performer: Institution,
): AcceptanceDecision {
  const { region, rule } = acceptanceRuleFor(matrix, requester);
  if (rule.allianceMembersAccept) {
    const shared = requester.alliances.find((a) => performer.alliances.includes(a));
    if (shared) return { accepted: true, via: 'alliance', region, rule, alliance: shared };
  }
  let accepted: boolean;
  switch (rule.policy) {
    case 'all':
      accepted = true;
      break;
    case 'higher-or-peer':
      accepted = gradeRank(performer.level) >= gradeRank(requester.level);
      break;
    case 'explicit':
      accepted = rule.accepts?.[requester.level]?.includes(performer.level) ?? false;
      break;
  }
  return { accepted, via: 'policy', region, rule };
}

/** Human-readable description of a policy, for reasons. */
export function describePolicy(rule: AcceptanceRule, requesterLevel: InstitutionLevel): Bilingual {
  switch (rule.policy) {
    case 'all':
      return { zh: '各级机构互认合格结果', en: 'every level accepts qualified results of every level' };
    case 'higher-or-peer':
      return {
        zh: `${requesterLevel}机构认可同级(${gradeOf(requesterLevel)})或更高等级机构的结果`,
        en: `a ${LEVEL_EN[requesterLevel]} institution accepts results of its own grade (${LEVEL_EN[gradeOf(requesterLevel)]}) or higher`,
      };
    case 'explicit': {
      const levels = rule.accepts?.[requesterLevel] ?? [];
      return {
        zh: `${requesterLevel}机构认可：${levels.length ? levels.join('、') : '无'}`,
        en: `a ${LEVEL_EN[requesterLevel]} institution accepts: ${levels.length ? levels.map((l) => LEVEL_EN[l]).join(', ') : 'none'}`,
      };
    }
  }
}
