/** Names shared by the recognition modules: canonical URLs, code systems, scopes and institution levels. */

export const HUREN_FHIR_BASE = 'https://huren.example.org/fhir';

/** Code and identifier systems the catalogue speaks. The `huren.example.org` ones are defined by Huren. */
export const SYSTEMS = {
  /** The recognition catalogue: one concept per recognised item (HR-LAB-CBC …). */
  catalogue: `${HUREN_FHIR_BASE}/CodeSystem/hr-catalogue`,
  /** Item categories (lab-hematology, imaging-ct …). */
  category: `${HUREN_FHIR_BASE}/CodeSystem/hr-category`,
  /** 全国HR / 本省HR / 本市HR (profiles/CodeSystem-hr-scope.json). */
  hrScope: `${HUREN_FHIR_BASE}/CodeSystem/hr-scope`,
  /** Body part examined, with the DICOM PS3.16 Annex L defined terms as codes (CHEST, HEAD …). */
  bodyPart: `${HUREN_FHIR_BASE}/CodeSystem/hr-body-part`,
  /** Imaging and electrophysiology method (plain = 平扫 without contrast …). */
  imagingMethod: `${HUREN_FHIR_BASE}/CodeSystem/hr-imaging-method`,
  /** Reuse contexts of a check (routine, emergency, pre-surgery, crossmatch). */
  context: `${HUREN_FHIR_BASE}/CodeSystem/hr-reuse-context`,
  /**
   * National medical-service price item codes (全国医疗服务价格项目规范, e.g. 250101015). No canonical FHIR URI is
   * published for them; this Huren URI names the system until one is.
   */
  nationalPriceCode: `${HUREN_FHIR_BASE}/CodeSystem/cn-medical-service-price-item`,
  loinc: 'http://loinc.org',
  /** DICOM modality codes (CID 29): CT, MR, US, DX, NM, ECG. */
  dicom: 'http://dicom.nema.org/resources/ontology/DCM',
} as const;

/** The HR mark extension (profiles/StructureDefinition-hr-mark.json). */
export const HR_MARK_URL = `${HUREN_FHIR_BASE}/StructureDefinition/hr-mark`;

export const HR_SCOPES = ['national', 'provincial', 'municipal'] as const;
export type HrScope = (typeof HR_SCOPES)[number];

/** Scope names as printed on reports. */
export const HR_SCOPE_NAMES: Record<HrScope, Bilingual> = {
  national: { zh: '全国HR', en: 'national HR' },
  provincial: { zh: '本省HR', en: 'provincial HR' },
  municipal: { zh: '本市HR', en: 'municipal HR' },
};

const SCOPE_WIDTH: Record<HrScope, number> = { national: 3, provincial: 2, municipal: 1 };

/** The narrowest of several scopes (municipal < provincial < national). */
export function narrowestScope(...scopes: HrScope[]): HrScope {
  return scopes.reduce((a, b) => (SCOPE_WIDTH[b] < SCOPE_WIDTH[a] ? b : a));
}

export interface Bilingual {
  zh: string;
  en: string;
}

/**
 * Institution levels (医院等级) as used in Qingdao's programme, highest first. 社区 is a community health service
 * centre (社区卫生服务中心), graded like a 一级 institution.
 */
export const INSTITUTION_LEVELS = ['三级甲等', '三级乙等', '二级甲等', '二级', '一级', '社区'] as const;
export type InstitutionLevel = (typeof INSTITUTION_LEVELS)[number];

/** The English name of a level (三级甲等 → tertiary grade A), for answers given in English. */
export const LEVEL_EN: Record<InstitutionLevel | Grade, string> = {
  三级甲等: 'tertiary grade A',
  三级乙等: 'tertiary grade B',
  二级甲等: 'secondary grade A',
  二级: 'secondary',
  一级: 'primary',
  社区: 'community',
  三级: 'tertiary',
};

/** Grades (三级/二级/一级): the unit prices are set by and peers are counted within. */
export const GRADES = ['三级', '二级', '一级'] as const;
export type Grade = (typeof GRADES)[number];

const GRADE_OF: Record<InstitutionLevel, Grade> = {
  三级甲等: '三级',
  三级乙等: '三级',
  二级甲等: '二级',
  二级: '二级',
  一级: '一级',
  社区: '一级',
};

export function gradeOf(level: InstitutionLevel): Grade {
  return GRADE_OF[level];
}

/** 3 for 三级, 2 for 二级, 1 for 一级 and 社区. */
export function gradeRank(level: InstitutionLevel): number {
  return 3 - GRADES.indexOf(GRADE_OF[level]);
}

export function isInstitutionLevel(value: string): value is InstitutionLevel {
  return (INSTITUTION_LEVELS as readonly string[]).includes(value);
}
