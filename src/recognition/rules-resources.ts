/**
 * The recognition rules as FHIR resources (pure builders) and their publication into the FHIR store: the catalogue
 * and category CodeSystems, the catalogue ValueSet, one ConceptMap per institution's local codes, the identifying-code
 * ConceptMap, the decline-reason CodeSystem, and one Organization per institution. Published under fixed ids, so the
 * store's history versions them and identical content makes no new version.
 */
import type { ConceptMap, Extension, Organization, Resource } from 'fhir/r4';
import type { ResourceStore } from '../store/resource-store.js';
import {
  buildCatalogueCodeSystem,
  buildCatalogueValueSet,
  buildCategoryCodeSystem,
  buildIdentifyingCodeConceptMap,
  buildLocalCodeConceptMap,
} from './catalogue.js';
import { buildDeclineReasonCodeSystem } from './decline-reasons.js';
import type { Institution, InstitutionsFile } from './institutions.js';
import type { RecognitionData } from './load.js';
import { HUREN_FHIR_BASE, SYSTEMS, type Bilingual } from './vocabulary.js';

/** Extensions of the published Organizations (profiles/StructureDefinition-hr-*.json). */
export const ORGANIZATION_EXTENSIONS = {
  level: `${HUREN_FHIR_BASE}/StructureDefinition/hr-institution-level`,
  alliance: `${HUREN_FHIR_BASE}/StructureDefinition/hr-medical-alliance`,
  qualification: `${HUREN_FHIR_BASE}/StructureDefinition/hr-qualification`,
  division: `${HUREN_FHIR_BASE}/StructureDefinition/hr-administrative-division`,
} as const;

/** Identifier system of the participating institutions (the Organization id as registered with the broker). */
export const INSTITUTION_ID_SYSTEM = `${HUREN_FHIR_BASE}/sid/institution`;
export const ALLIANCE_SYSTEM = `${HUREN_FHIR_BASE}/sid/medical-alliance`;
/** GB/T 2260 administrative division codes; no canonical FHIR URI is published for them. */
export const DIVISION_SYSTEM = `${HUREN_FHIR_BASE}/sid/cn-administrative-division`;

const TRANSLATION = 'http://hl7.org/fhir/StructureDefinition/translation';

/** `{ _name: … }` primitive extension carrying the English name (FHIR R4 extension translation). */
function englishOf(name: Bilingual): { extension: Extension[] } {
  return {
    extension: [
      {
        url: TRANSLATION,
        extension: [
          { url: 'lang', valueCode: 'en' },
          { url: 'content', valueString: name.en },
        ],
      },
    ],
  };
}

/** One institution as an Organization: names, level, district, alliances and HR qualifications. */
export function buildInstitutionOrganization(institution: Institution, file: InstitutionsFile): Organization {
  const alliances = new Map(file.alliances.map((a) => [a.id, a]));
  const extension: Extension[] = [{ url: ORGANIZATION_EXTENSIONS.level, valueCode: institution.level }];
  for (const id of institution.alliances) {
    const a = alliances.get(id);
    extension.push({
      url: ORGANIZATION_EXTENSIONS.alliance,
      valueCoding: { system: ALLIANCE_SYSTEM, code: id, ...(a ? { display: a.name.zh } : {}) },
    });
  }
  for (const q of institution.qualifications) {
    const latestQc = [...q.qualityControl].sort((x, y) => y.evaluatedOn.localeCompare(x.evaluatedOn))[0];
    extension.push({
      url: ORGANIZATION_EXTENSIONS.qualification,
      extension: [
        { url: 'category', valueCoding: { system: SYSTEMS.category, code: q.category } },
        { url: 'scope', valueCoding: { system: SYSTEMS.hrScope, code: q.scope } },
        { url: 'validFrom', valueDate: q.validFrom },
        { url: 'validTo', valueDate: q.validTo },
        ...(latestQc
          ? [
              { url: 'qualityControl', valueCode: latestQc.result },
              { url: 'qualityControlDate', valueDate: latestQc.evaluatedOn },
            ]
          : []),
      ],
    });
  }
  return {
    resourceType: 'Organization',
    id: institution.id,
    extension,
    identifier: [{ system: INSTITUTION_ID_SYSTEM, value: institution.id }],
    active: true,
    type: [
      {
        coding: [
          {
            system: 'http://terminology.hl7.org/CodeSystem/organization-type',
            code: 'prov',
            display: 'Healthcare Provider',
          },
        ],
      },
    ],
    name: institution.name.zh,
    _name: englishOf(institution.name),
    alias: [institution.name.en],
    address: [
      {
        extension: [
          {
            url: ORGANIZATION_EXTENSIONS.division,
            valueCoding: {
              system: DIVISION_SYSTEM,
              code: institution.district.code,
              display: institution.district.name.zh,
            },
          },
        ],
        city: file.region.name.zh,
        district: institution.district.name.zh,
        country: 'CN',
      },
    ],
  } as Organization;
}

/** Every resource the rules are published as, in a stable order. */
export function buildRuleResources(data: RecognitionData): Resource[] {
  return [
    buildCatalogueCodeSystem(data.catalogue),
    buildCategoryCodeSystem(data.catalogue),
    buildCatalogueValueSet(data.catalogue),
    buildIdentifyingCodeConceptMap(data.catalogue),
    ...data.localCodes.map((map) => buildLocalCodeConceptMap(data.catalogue, map)),
    buildDeclineReasonCodeSystem(data.declineReasons),
    ...data.institutions.institutions.map((i) => buildInstitutionOrganization(i, data.institutions)),
  ];
}

/**
 * What is no longer in the rules is kept but marked as such, so references to it still resolve: a ConceptMap of
 * local codes removed becomes `retired`, an institution removed becomes an inactive Organization.
 */
export function withdrawnResources(previous: RecognitionData, next: RecognitionData): Resource[] {
  const nextIds = new Set(buildRuleResources(next).map((r) => `${r.resourceType}/${r.id}`));
  return buildRuleResources(previous)
    .filter((r) => !nextIds.has(`${r.resourceType}/${r.id}`))
    .map((r) => {
      if (r.resourceType === 'Organization') return { ...r, active: false } as Organization;
      if (r.resourceType === 'ConceptMap') return { ...r, status: 'retired' } as ConceptMap;
      return r;
    });
}

/** Writes the resources under their fixed ids; unchanged ones make no new version. Returns how many changed. */
export async function publishResources(store: ResourceStore, resources: Resource[]): Promise<number> {
  const ops = [];
  for (const r of resources) {
    const plan = await store.planUpdate(r, r.id!);
    if ('op' in plan) ops.push(plan.op);
  }
  if (ops.length) await store.commit(ops);
  return ops.length;
}
