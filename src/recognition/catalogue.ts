/**
 * The recognition catalogue: which items are recognised, their windows and prices, and every code that identifies
 * them. Data lives in seed/catalogue.json and seed/local-codes.json; this module types and validates it, indexes
 * the codes for matching, and publishes the catalogue as FHIR CodeSystem, ValueSet and ConceptMap resources.
 *
 * Panels: a panel (肝功能, 凝血四项 …) is an item of its own whose `members` are analyte items. A panel result covers
 * each of its analytes, so an order for one analyte (ALT) can reuse a liver panel; an order for the panel can reuse
 * a panel result, or the analyte results of one specimen that together cover every member (see engine.ts).
 */
import type { CodeSystem, CodeSystemConcept, ConceptMap, ConceptMapGroup, Coding, ValueSet } from 'fhir/r4';
import { SeedDataError, schemaChecker } from './errors.js';
import { isValidTimeZone } from './time.js';
import {
  GRADES,
  HR_SCOPES,
  HUREN_FHIR_BASE,
  INSTITUTION_LEVELS,
  SYSTEMS,
  gradeOf,
  type Bilingual,
  type Grade,
  type HrScope,
  type InstitutionLevel,
} from './vocabulary.js';

export type ItemKind = 'single' | 'panel' | 'analyte';

/** Price keys: `default` (every level), a grade (三级/二级/一级) or an exact level (三级甲等 …). */
export type PriceKey = 'default' | Grade | InstitutionLevel;

export interface CategoryDef {
  code: string;
  name: Bilingual;
  /** 检验 (lab) or 检查 (exam: imaging, electrophysiology, nuclear medicine). */
  domain: 'lab' | 'exam';
}

/** A check context. Contexts that justify re-testing name the national decline reason that applies. */
export interface ContextDef {
  code: string;
  name: Bilingual;
  retestJustified: boolean;
  declineReason?: string;
}

export interface Term {
  code: string;
  name: Bilingual;
}

/** A code identifying an item. `verified: false` where the source table marks the code "?" (to be verified). */
export interface ItemCode {
  system: string;
  code: string;
  display?: string;
  verified: boolean;
}

/** How exams are identified without a code: DICOM modality + body part examined + method. */
export interface ImagingKey {
  modality: string;
  bodyPart: string;
  method: string;
}

export interface CatalogueItem {
  /** Stable catalogue code, e.g. HR-LAB-CBC. Never reused for another meaning. */
  code: string;
  kind: ItemKind;
  name: Bilingual;
  category: string;
  /** Window in local days after the effective day (see engine.ts for the exact definition). */
  validityDays: number;
  /** List prices in CNY by PriceKey; empty when no price is configured (the saving is then 0). */
  prices: Partial<Record<PriceKey, number>>;
  /** Recognition scope for results that carry no HR mark. */
  scope: HrScope;
  codes: ItemCode[];
  imaging?: ImagingKey;
  nationalPriceCode?: string;
  /** Panels: the analyte item codes the panel reports. */
  members?: string[];
  /** Contexts in which a result of this item is never reused (ABO/Rh typing for a crossmatch). */
  notReusableInContexts?: string[];
  note?: string;
}

export interface Catalogue {
  id: string;
  version: string;
  title: Bilingual;
  /** Division code of the region the catalogue is for (370200 青岛市). */
  region: string;
  /** Zone whose local days windows are counted in. */
  timeZone: string;
  currency: 'CNY';
  priceNote?: string;
  categories: CategoryDef[];
  contexts: ContextDef[];
  modalities: Term[];
  bodyParts: Term[];
  methods: Term[];
  items: CatalogueItem[];
}

/** Per-institution local codes (the codes a HIS orders and a LIS reports with), ConceptMap-like. */
export interface LocalCodeMap {
  institution: string;
  system: string;
  name?: Bilingual;
  codes: { code: string; display?: string; targets: string[] }[];
}

export interface LocalCodesFile {
  maps: LocalCodeMap[];
}

const bilingual = {
  type: 'object',
  required: ['zh', 'en'],
  additionalProperties: false,
  properties: { zh: { type: 'string', minLength: 1 }, en: { type: 'string', minLength: 1 } },
};
const term = {
  type: 'object',
  required: ['code', 'name'],
  additionalProperties: false,
  properties: { code: { type: 'string', minLength: 1 }, name: bilingual },
};
// 二级 and 一级 are both a grade and a level.
const priceKeys = [...new Set(['default', ...GRADES, ...INSTITUTION_LEVELS])];

const checkCatalogueShape = schemaChecker({
  type: 'object',
  required: [
    'id',
    'version',
    'title',
    'region',
    'timeZone',
    'currency',
    'categories',
    'contexts',
    'modalities',
    'bodyParts',
    'methods',
    'items',
  ],
  additionalProperties: false,
  properties: {
    $comment: { type: 'string' },
    id: { type: 'string', pattern: '^[A-Za-z0-9\\-.]{1,64}$' },
    version: { type: 'string', minLength: 1 },
    title: bilingual,
    region: { type: 'string', pattern: '^[1-9]\\d{5}$' },
    timeZone: { type: 'string', minLength: 1 },
    currency: { const: 'CNY' },
    priceNote: { type: 'string' },
    categories: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['code', 'name', 'domain'],
        additionalProperties: false,
        properties: {
          code: { type: 'string', pattern: '^[a-z][a-z-]*$' },
          name: bilingual,
          domain: { enum: ['lab', 'exam'] },
        },
      },
    },
    contexts: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['code', 'name', 'retestJustified'],
        additionalProperties: false,
        properties: {
          code: { type: 'string', pattern: '^[a-z][a-z-]*$' },
          name: bilingual,
          retestJustified: { type: 'boolean' },
          declineReason: { type: 'string', minLength: 1 },
        },
      },
    },
    modalities: { type: 'array', items: term },
    bodyParts: { type: 'array', items: term },
    methods: { type: 'array', items: term },
    items: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['code', 'kind', 'name', 'category', 'validityDays', 'prices', 'scope', 'codes'],
        additionalProperties: false,
        properties: {
          code: { type: 'string', pattern: '^HR-[A-Z0-9]+(-[A-Z0-9]+)*$' },
          kind: { enum: ['single', 'panel', 'analyte'] },
          name: bilingual,
          category: { type: 'string', minLength: 1 },
          validityDays: { type: 'integer', minimum: 0, maximum: 3660 },
          prices: {
            type: 'object',
            propertyNames: { enum: priceKeys },
            additionalProperties: { type: 'number', minimum: 0 },
          },
          scope: { enum: [...HR_SCOPES] },
          codes: {
            type: 'array',
            items: {
              type: 'object',
              required: ['system', 'code', 'verified'],
              additionalProperties: false,
              properties: {
                system: { type: 'string', minLength: 1 },
                code: { type: 'string', minLength: 1 },
                display: { type: 'string' },
                verified: { type: 'boolean' },
              },
            },
          },
          imaging: {
            type: 'object',
            required: ['modality', 'bodyPart', 'method'],
            additionalProperties: false,
            properties: {
              modality: { type: 'string', minLength: 1 },
              bodyPart: { type: 'string', minLength: 1 },
              method: { type: 'string', minLength: 1 },
            },
          },
          nationalPriceCode: { type: 'string', pattern: '^\\d{9}$' },
          members: { type: 'array', items: { type: 'string' } },
          notReusableInContexts: { type: 'array', items: { type: 'string' } },
          note: { type: 'string' },
        },
      },
    },
  },
});

const checkLocalCodesShape = schemaChecker({
  type: 'object',
  required: ['maps'],
  additionalProperties: false,
  properties: {
    $comment: { type: 'string' },
    maps: {
      type: 'array',
      items: {
        type: 'object',
        required: ['institution', 'system', 'codes'],
        additionalProperties: false,
        properties: {
          institution: { type: 'string', minLength: 1 },
          system: { type: 'string', minLength: 1 },
          name: bilingual,
          codes: {
            type: 'array',
            items: {
              type: 'object',
              required: ['code', 'targets'],
              additionalProperties: false,
              properties: {
                code: { type: 'string', minLength: 1 },
                display: { type: 'string' },
                targets: { type: 'array', minItems: 1, items: { type: 'string' } },
              },
            },
          },
        },
      },
    },
  },
});

function hasAtMostTwoDecimals(n: number): boolean {
  return Math.abs(Math.round(n * 100) - n * 100) < 1e-6;
}

/** Validates seed/catalogue.json: structure first, then the rules between items. Throws SeedDataError. */
export function parseCatalogue(json: unknown, file = 'catalogue.json'): Catalogue {
  const shape = checkCatalogueShape(json);
  if (shape.length > 0) throw new SeedDataError(file, shape);
  const c = json as Catalogue;
  const problems: string[] = [];
  if (!isValidTimeZone(c.timeZone)) problems.push(`timeZone: '${c.timeZone}' is not an IANA zone or ±HH:MM offset`);

  const unique = (what: string, codes: string[]) => {
    const seen = new Set<string>();
    for (const code of codes) {
      if (seen.has(code)) problems.push(`${what} '${code}' is defined twice`);
      seen.add(code);
    }
    return seen;
  };
  const categories = new Map(c.categories.map((x) => [x.code, x]));
  unique(
    'category',
    c.categories.map((x) => x.code),
  );
  const contexts = unique(
    'context',
    c.contexts.map((x) => x.code),
  );
  const modalities = unique(
    'modality',
    c.modalities.map((x) => x.code),
  );
  const bodyParts = unique(
    'body part',
    c.bodyParts.map((x) => x.code),
  );
  const methods = unique(
    'method',
    c.methods.map((x) => x.code),
  );
  unique(
    'item',
    c.items.map((x) => x.code),
  );
  c.contexts.forEach((x, i) => {
    if (x.retestJustified && !x.declineReason) {
      problems.push(`contexts[${i}] (${x.code}): a context that justifies re-testing names its declineReason`);
    }
  });

  const items = new Map(c.items.map((x) => [x.code, x]));
  const codeOwner = new Map<string, string>();
  const imagingOwner = new Map<string, string>();
  const memberOf = new Map<string, string[]>();
  c.items.forEach((item, i) => {
    const at = `items[${i}] (${item.code})`;
    const category = categories.get(item.category);
    if (!category) problems.push(`${at}: category '${item.category}' is not in categories`);
    for (const [key, price] of Object.entries(item.prices)) {
      if (!hasAtMostTwoDecimals(price)) problems.push(`${at}.prices.${key}: ${price} has more than 2 decimals (fen)`);
    }
    for (const code of item.codes) {
      const key = `${code.system}|${code.code}`;
      const owner = codeOwner.get(key);
      if (owner) problems.push(`${at}: code ${key} already identifies ${owner}`);
      else codeOwner.set(key, item.code);
      if (code.system === SYSTEMS.catalogue) problems.push(`${at}: the catalogue code is implied, do not list it`);
    }
    if (item.nationalPriceCode) {
      const key = `${SYSTEMS.nationalPriceCode}|${item.nationalPriceCode}`;
      const owner = codeOwner.get(key);
      if (owner) problems.push(`${at}: national price code ${item.nationalPriceCode} already identifies ${owner}`);
      else codeOwner.set(key, item.code);
    }
    for (const ctx of item.notReusableInContexts ?? []) {
      if (!contexts.has(ctx)) problems.push(`${at}.notReusableInContexts: '${ctx}' is not in contexts`);
    }
    if (item.imaging) {
      const { modality, bodyPart, method } = item.imaging;
      if (!modalities.has(modality)) problems.push(`${at}.imaging.modality: '${modality}' is not in modalities`);
      if (!bodyParts.has(bodyPart)) problems.push(`${at}.imaging.bodyPart: '${bodyPart}' is not in bodyParts`);
      if (!methods.has(method)) problems.push(`${at}.imaging.method: '${method}' is not in methods`);
      if (
        modality !== modality.toUpperCase() ||
        bodyPart !== bodyPart.toUpperCase() ||
        method !== method.toLowerCase()
      ) {
        problems.push(`${at}.imaging: modality and body part are upper case, method lower case`);
      }
      const key = imagingKeyOf(item.imaging);
      const owner = imagingOwner.get(key);
      if (owner) problems.push(`${at}: imaging key ${key} already identifies ${owner}`);
      else imagingOwner.set(key, item.code);
      if (category?.domain === 'lab') problems.push(`${at}: a lab category item cannot have an imaging key`);
    } else if (category?.domain === 'exam') {
      problems.push(`${at}: an exam item needs an imaging key (modality + body part + method)`);
    }
    if (item.kind === 'panel') {
      const members = item.members ?? [];
      if (members.length < 2) problems.push(`${at}: a panel lists at least two members`);
      for (const m of members) {
        const member = items.get(m);
        if (!member) {
          problems.push(`${at}.members: '${m}' is not an item`);
          continue;
        }
        if (member.kind !== 'analyte') problems.push(`${at}.members: '${m}' is a ${member.kind}, not an analyte`);
        if (member.category !== item.category) {
          problems.push(`${at}.members: '${m}' is in category ${member.category}, the panel in ${item.category}`);
        }
        // A panel is reusable only while every analyte in it is: its window cannot outlast a member's.
        if (member.validityDays < item.validityDays) {
          problems.push(`${at}: window ${item.validityDays} days outlasts member ${m} (${member.validityDays} days)`);
        }
        memberOf.set(m, [...(memberOf.get(m) ?? []), item.code]);
      }
      if (new Set(members).size !== members.length) problems.push(`${at}.members: a member is listed twice`);
    } else if (item.members) {
      problems.push(`${at}: only a panel has members`);
    }
  });
  c.items.forEach((item, i) => {
    if (item.kind === 'analyte' && !memberOf.has(item.code)) {
      problems.push(`items[${i}] (${item.code}): an analyte belongs to at least one panel`);
    }
  });
  if (problems.length > 0) throw new SeedDataError(file, problems);
  return c;
}

/**
 * Validates seed/local-codes.json against the catalogue (targets must be items) and, when given, the known
 * institution ids. Throws SeedDataError.
 */
export function parseLocalCodes(
  json: unknown,
  catalogue: Catalogue,
  file = 'local-codes.json',
  institutions?: ReadonlySet<string>,
): LocalCodesFile {
  const shape = checkLocalCodesShape(json);
  if (shape.length > 0) throw new SeedDataError(file, shape);
  const data = json as LocalCodesFile;
  const items = new Set(catalogue.items.map((i) => i.code));
  const problems: string[] = [];
  const seen = new Set<string>();
  data.maps.forEach((map, i) => {
    const at = `maps[${i}] (${map.institution})`;
    if (institutions && !institutions.has(map.institution)) {
      problems.push(`${at}: institution '${map.institution}' is not in institutions`);
    }
    map.codes.forEach((entry, j) => {
      const key = `${map.institution}|${map.system}|${entry.code}`;
      if (seen.has(key)) problems.push(`${at}.codes[${j}]: local code ${entry.code} is mapped twice`);
      seen.add(key);
      for (const t of entry.targets) {
        if (!items.has(t)) problems.push(`${at}.codes[${j}] (${entry.code}): target '${t}' is not a catalogue item`);
      }
    });
  });
  if (problems.length > 0) throw new SeedDataError(file, problems);
  return data;
}

// ---------------------------------------------------------------------------------------------------------------
// Code index

/**
 * How a coding matched an item, in order of authority: the catalogue code itself, the institution's own local
 * mapping, an identifying code of the catalogue (LOINC, national price code; `verified` false for "?" codes), and
 * last the imaging key (modality + body part + method).
 */
export type MatchVia = 'catalogue' | 'local' | 'code' | 'imaging';

export interface CodeMatch {
  item: string;
  via: MatchVia;
  verified: boolean;
  /** The coding that matched (for imaging: the modality coding; the key is in `imagingKey`). */
  system: string;
  code: string;
  imagingKey?: string;
}

export interface CodeIndex {
  readonly catalogue: Catalogue;
  readonly items: ReadonlyMap<string, CatalogueItem>;
  /** Analyte code → the panels listing it. */
  readonly panelsOf: ReadonlyMap<string, readonly string[]>;
  readonly categories: ReadonlyMap<string, CategoryDef>;
  readonly contexts: ReadonlyMap<string, ContextDef>;
  readonly localCodeMaps: readonly LocalCodeMap[];
  /** `system|code` → matches (catalogue codes, LOINC, national price codes). */
  readonly byCode: ReadonlyMap<string, readonly CodeMatch[]>;
  /** `institution|system|code` → matches. */
  readonly byLocalCode: ReadonlyMap<string, readonly CodeMatch[]>;
  /** `MODALITY|BODYPART|method` → item code. */
  readonly byImagingKey: ReadonlyMap<string, string>;
}

export function imagingKeyOf(key: ImagingKey): string {
  return `${key.modality.toUpperCase()}|${key.bodyPart.toUpperCase()}|${key.method.toLowerCase()}`;
}

/** Builds the lookup index once (catalogue + local code maps); every projection and check reuses it. */
export function buildCodeIndex(catalogue: Catalogue, localCodeMaps: readonly LocalCodeMap[] = []): CodeIndex {
  const byCode = new Map<string, CodeMatch[]>();
  const add = (map: Map<string, CodeMatch[]>, key: string, match: CodeMatch) => {
    const list = map.get(key) ?? [];
    if (!list.some((m) => m.item === match.item)) list.push(match);
    map.set(key, list);
  };
  const panelsOf = new Map<string, string[]>();
  const byImagingKey = new Map<string, string>();
  for (const item of catalogue.items) {
    add(byCode, `${SYSTEMS.catalogue}|${item.code}`, {
      item: item.code,
      via: 'catalogue',
      verified: true,
      system: SYSTEMS.catalogue,
      code: item.code,
    });
    for (const c of item.codes) {
      const code = c.code.trim();
      add(byCode, `${c.system}|${code}`, {
        item: item.code,
        via: 'code',
        verified: c.verified,
        system: c.system,
        code,
      });
    }
    if (item.nationalPriceCode) {
      add(byCode, `${SYSTEMS.nationalPriceCode}|${item.nationalPriceCode}`, {
        item: item.code,
        via: 'code',
        verified: true,
        system: SYSTEMS.nationalPriceCode,
        code: item.nationalPriceCode,
      });
    }
    if (item.imaging) byImagingKey.set(imagingKeyOf(item.imaging), item.code);
    for (const m of item.members ?? []) panelsOf.set(m, [...(panelsOf.get(m) ?? []), item.code]);
  }
  const byLocalCode = new Map<string, CodeMatch[]>();
  for (const map of localCodeMaps) {
    for (const entry of map.codes) {
      for (const target of entry.targets) {
        add(byLocalCode, `${map.institution}|${map.system}|${entry.code.trim()}`, {
          item: target,
          via: 'local',
          verified: true,
          system: map.system,
          code: entry.code,
        });
      }
    }
  }
  return {
    catalogue,
    items: new Map(catalogue.items.map((i) => [i.code, i])),
    panelsOf,
    categories: new Map(catalogue.categories.map((c) => [c.code, c])),
    contexts: new Map(catalogue.contexts.map((c) => [c.code, c])),
    localCodeMaps,
    byCode,
    byLocalCode,
    byImagingKey,
  };
}

/** The items one coding identifies: catalogue or identifying codes, else the institution's local codes. */
export function lookupCoding(
  index: CodeIndex,
  coding: Pick<Coding, 'system' | 'code'>,
  institution?: string,
): readonly CodeMatch[] {
  const system = coding.system?.trim();
  const code = coding.code?.trim();
  if (!system || !code) return [];
  const direct = index.byCode.get(`${system}|${code}`);
  if (direct) return direct;
  if (institution) return index.byLocalCode.get(`${institution}|${system}|${code}`) ?? [];
  return [];
}

const AUTHORITY: Record<MatchVia, number> = { catalogue: 0, local: 1, code: 2, imaging: 4 };

function authority(m: CodeMatch): number {
  return AUTHORITY[m.via] + (m.verified ? 0 : 1);
}

export interface Resolution {
  /** The items the concept stands for (one, or several for an order set or a multi-part exam). */
  matches: CodeMatch[];
  /** Matches of less authoritative codings that disagree with `matches` (a mapping error to look at). */
  disagreeing: CodeMatch[];
}

/**
 * Resolves the codings of one concept (a DiagnosticReport/Observation code, a ServiceRequest code) to catalogue
 * items. All codings of a CodeableConcept mean the same thing, so when they point to different items the most
 * authoritative coding wins and the others are reported as disagreeing. Imaging facets (a DICOM modality coding,
 * Huren body-part and method codings, from the code, category, bodySite or method) add the items of every body part
 * named: an exam of chest and abdomen is two items. An exam without a method coding is never guessed to be plain.
 */
export function resolveCodings(index: CodeIndex, codings: readonly Coding[], institution?: string): Resolution {
  const found = codings.flatMap((c) => lookupCoding(index, c, institution));
  let matches: CodeMatch[] = [];
  const disagreeing: CodeMatch[] = [];
  if (found.length > 0) {
    const best = Math.min(...found.map(authority));
    for (const m of found) {
      if (authority(m) === best) {
        if (!matches.some((x) => x.item === m.item)) matches.push(m);
      }
    }
    for (const m of found) {
      if (!matches.some((x) => x.item === m.item) && !disagreeing.some((x) => x.item === m.item)) disagreeing.push(m);
    }
  }
  const onlyImaging = matches.every((m) => index.items.get(m.item)?.imaging);
  if (onlyImaging) {
    for (const m of imagingMatches(index, codings)) {
      if (!matches.some((x) => x.item === m.item)) matches.push(m);
    }
  } else {
    for (const m of imagingMatches(index, codings)) {
      if (!matches.some((x) => x.item === m.item)) disagreeing.push(m);
    }
  }
  matches = matches.filter((m) => index.items.has(m.item));
  return { matches, disagreeing };
}

function imagingMatches(index: CodeIndex, codings: readonly Coding[]): CodeMatch[] {
  const pick = (system: string, normalise: (s: string) => string) => [
    ...new Set(
      codings.filter((c) => c.system === system && c.code?.trim()).map((c) => normalise((c.code as string).trim())),
    ),
  ];
  const modalities = pick(SYSTEMS.dicom, (s) => s.toUpperCase());
  const bodyParts = pick(SYSTEMS.bodyPart, (s) => s.toUpperCase());
  const methods = pick(SYSTEMS.imagingMethod, (s) => s.toLowerCase());
  const matches: CodeMatch[] = [];
  for (const modality of modalities) {
    for (const bodyPart of bodyParts) {
      for (const method of methods) {
        const key = imagingKeyOf({ modality, bodyPart, method });
        const item = index.byImagingKey.get(key);
        if (item)
          matches.push({
            item,
            via: 'imaging',
            verified: true,
            system: SYSTEMS.dicom,
            code: modality,
            imagingKey: key,
          });
      }
    }
  }
  return matches;
}

/** The catalogue Coding of an item. */
export function itemCoding(index: CodeIndex, code: string): Coding {
  const item = index.items.get(code);
  return { system: SYSTEMS.catalogue, version: index.catalogue.version, code, display: item?.name.zh };
}

export interface Price {
  amount: number;
  /** Which price entry applied; undefined when the item has no price for that level (amount 0). */
  key?: PriceKey;
}

/**
 * The list price of an item at an institution level: exact level, else its grade, else `default`, else 0 (domain.md:
 * the saving is the receiving institution's price, 0 when no price is configured).
 */
export function priceFor(item: CatalogueItem, level: InstitutionLevel): Price {
  for (const key of [level, gradeOf(level), 'default'] as const) {
    const amount = item.prices[key];
    if (amount !== undefined) return { amount, key };
  }
  return { amount: 0 };
}

// ---------------------------------------------------------------------------------------------------------------
// Publishing as FHIR terminology resources (pure builders)

export const CATALOGUE_VALUE_SET_URL = `${HUREN_FHIR_BASE}/ValueSet/hr-catalogue`;

const EN_DISPLAY = { system: 'http://terminology.hl7.org/CodeSystem/designation-usage', code: 'display' };

function english(value: string) {
  return [{ language: 'en', use: EN_DISPLAY, value }];
}

/** The catalogue as a CodeSystem: one concept per item, with its rules as concept properties. */
export function buildCatalogueCodeSystem(catalogue: Catalogue): CodeSystem {
  const concept: CodeSystemConcept[] = catalogue.items.map((item) => {
    const property: NonNullable<CodeSystemConcept['property']> = [
      { code: 'kind', valueCode: item.kind },
      { code: 'category', valueCode: item.category },
      { code: 'validity-days', valueInteger: item.validityDays },
      { code: 'scope', valueCode: item.scope },
    ];
    for (const m of item.members ?? []) property.push({ code: 'member', valueCode: m });
    for (const panel of catalogue.items.filter((p) => p.members?.includes(item.code))) {
      property.push({ code: 'panel', valueCode: panel.code });
    }
    for (const c of item.codes) {
      property.push({
        code: c.verified ? 'identifying-code' : 'unverified-code',
        valueCoding: { system: c.system, code: c.code, ...(c.display ? { display: c.display } : {}) },
      });
    }
    if (item.nationalPriceCode) property.push({ code: 'national-price-code', valueString: item.nationalPriceCode });
    if (item.imaging) {
      property.push({ code: 'modality', valueCoding: { system: SYSTEMS.dicom, code: item.imaging.modality } });
      property.push({ code: 'body-part', valueCoding: { system: SYSTEMS.bodyPart, code: item.imaging.bodyPart } });
      property.push({ code: 'method', valueCoding: { system: SYSTEMS.imagingMethod, code: item.imaging.method } });
    }
    for (const [key, amount] of Object.entries(item.prices)) {
      property.push({ code: 'price', valueString: `${key}=${amount.toFixed(2)} CNY` });
    }
    for (const ctx of item.notReusableInContexts ?? []) {
      property.push({ code: 'not-reusable-in-context', valueCode: ctx });
    }
    return {
      code: item.code,
      display: item.name.zh,
      designation: english(item.name.en),
      ...(item.note ? { definition: item.note } : {}),
      property,
    };
  });
  return {
    resourceType: 'CodeSystem',
    id: catalogue.id,
    url: SYSTEMS.catalogue,
    version: catalogue.version,
    name: 'HrCatalogue',
    title: `${catalogue.title.zh} (${catalogue.title.en})`,
    status: 'active',
    experimental: false,
    publisher: 'Huren',
    description:
      'Items recognised across institutions (检查检验结果互认项目) with their category, validity window in local days ' +
      'counted from the effective time, recognition scope, list prices (CNY) and the codes that identify them. ' +
      "Unverified identifying codes are marked 'unverified-code'.",
    language: 'zh-CN',
    caseSensitive: true,
    valueSet: CATALOGUE_VALUE_SET_URL,
    content: 'complete',
    count: concept.length,
    property: [
      { code: 'kind', type: 'code', description: 'single | panel | analyte' },
      { code: 'category', type: 'code', uri: SYSTEMS.category, description: 'Item category' },
      { code: 'validity-days', type: 'integer', description: 'Window in local days after the effective day' },
      { code: 'scope', type: 'code', uri: SYSTEMS.hrScope, description: 'Recognition scope without an HR mark' },
      { code: 'member', type: 'code', description: 'An analyte reported by this panel' },
      { code: 'panel', type: 'code', description: 'A panel reporting this analyte' },
      { code: 'identifying-code', type: 'Coding', description: 'A code identifying the item (LOINC …)' },
      { code: 'unverified-code', type: 'Coding', description: 'A code to verify ("?" in the source table)' },
      { code: 'national-price-code', type: 'string', description: '全国医疗服务价格项目编码' },
      { code: 'modality', type: 'Coding', description: 'DICOM modality' },
      { code: 'body-part', type: 'Coding', description: 'Body part examined' },
      { code: 'method', type: 'Coding', description: 'Method (plain = without contrast …)' },
      { code: 'price', type: 'string', description: 'List price: <level or grade or default>=<amount> CNY' },
      { code: 'not-reusable-in-context', type: 'code', uri: SYSTEMS.context, description: 'Never reused here' },
    ],
    concept,
  };
}

/** The categories as a CodeSystem. */
export function buildCategoryCodeSystem(catalogue: Catalogue): CodeSystem {
  return {
    resourceType: 'CodeSystem',
    id: 'hr-category',
    url: SYSTEMS.category,
    version: catalogue.version,
    name: 'HrCategory',
    title: '互认项目类别 (recognition item categories)',
    status: 'active',
    experimental: false,
    publisher: 'Huren',
    language: 'zh-CN',
    caseSensitive: true,
    content: 'complete',
    count: catalogue.categories.length,
    concept: catalogue.categories.map((c) => ({ code: c.code, display: c.name.zh, designation: english(c.name.en) })),
  };
}

/** All catalogue items, or those of one category, as a ValueSet. */
export function buildCatalogueValueSet(catalogue: Catalogue, category?: string): ValueSet {
  const include = category
    ? {
        system: SYSTEMS.catalogue,
        version: catalogue.version,
        filter: [{ property: 'category', op: '=' as const, value: category }],
      }
    : { system: SYSTEMS.catalogue, version: catalogue.version };
  return {
    resourceType: 'ValueSet',
    id: category ? `hr-catalogue-${category}` : 'hr-catalogue',
    url: category ? `${CATALOGUE_VALUE_SET_URL}-${category}` : CATALOGUE_VALUE_SET_URL,
    version: catalogue.version,
    name: category ? `HrCatalogue_${category.replace(/-/g, '_')}` : 'HrCatalogue',
    title: category ? `${catalogue.title.zh}: ${category}` : catalogue.title.zh,
    status: 'active',
    experimental: false,
    publisher: 'Huren',
    compose: { include: [include] },
  };
}

/** One institution's local codes as a ConceptMap to the catalogue (an order set maps to several items). */
export function buildLocalCodeConceptMap(catalogue: Catalogue, map: LocalCodeMap): ConceptMap {
  const names = new Map(catalogue.items.map((i) => [i.code, i.name.zh]));
  const id = `local-codes-${map.institution}`;
  return {
    resourceType: 'ConceptMap',
    id,
    url: `${HUREN_FHIR_BASE}/ConceptMap/${id}`,
    version: catalogue.version,
    name: `LocalCodes_${map.institution.replace(/[^A-Za-z0-9]/g, '_')}`,
    title: `${map.name?.zh ?? map.institution} → ${catalogue.title.zh}`,
    status: 'active',
    experimental: false,
    publisher: 'Huren',
    description: `Local codes of Organization/${map.institution} mapped to the recognition catalogue.`,
    targetCanonical: CATALOGUE_VALUE_SET_URL,
    group: [
      {
        source: map.system,
        target: SYSTEMS.catalogue,
        targetVersion: catalogue.version,
        element: map.codes.map((entry) => ({
          code: entry.code,
          ...(entry.display ? { display: entry.display } : {}),
          target: entry.targets.map((t) =>
            entry.targets.length === 1
              ? { code: t, display: names.get(t), equivalence: 'equivalent' as const }
              : {
                  code: t,
                  display: names.get(t),
                  equivalence: 'narrower' as const,
                  comment: 'The local code orders several catalogue items; this is one of them.',
                },
          ),
        })),
      },
    ],
  };
}

/** The catalogue's identifying codes (LOINC, national price codes) as a ConceptMap to the catalogue. */
export function buildIdentifyingCodeConceptMap(catalogue: Catalogue): ConceptMap {
  const groups = new Map<string, ConceptMapGroup>();
  const group = (system: string) => {
    let g = groups.get(system);
    if (!g) {
      g = { source: system, target: SYSTEMS.catalogue, targetVersion: catalogue.version, element: [] };
      groups.set(system, g);
    }
    return g;
  };
  for (const item of catalogue.items) {
    for (const c of item.codes) {
      group(c.system).element.push({
        code: c.code,
        ...(c.display ? { display: c.display } : {}),
        target: [
          c.verified
            ? { code: item.code, display: item.name.zh, equivalence: 'equivalent' }
            : {
                code: item.code,
                display: item.name.zh,
                equivalence: 'relatedto',
                comment: 'Unverified: the code is marked "?" in the seed catalogue and must be checked.',
              },
        ],
      });
    }
    if (item.nationalPriceCode) {
      group(SYSTEMS.nationalPriceCode).element.push({
        code: item.nationalPriceCode,
        target: [{ code: item.code, display: item.name.zh, equivalence: 'equivalent' }],
      });
    }
  }
  return {
    resourceType: 'ConceptMap',
    id: 'hr-catalogue-codes',
    url: `${HUREN_FHIR_BASE}/ConceptMap/hr-catalogue-codes`,
    version: catalogue.version,
    name: 'HrCatalogueCodes',
    title: 'LOINC and national price codes → recognition catalogue',
    status: 'active',
    experimental: false,
    publisher: 'Huren',
    targetCanonical: CATALOGUE_VALUE_SET_URL,
    group: [...groups.values()],
  };
}
