import type { CapabilityStatement, CapabilityStatementRestResource, StructureDefinition } from 'fhir/r4';
import type { FhirDeps } from './interactions.js';
import { supportedSearchParams } from './search/index.js';
import { REUSE_CHECK_OPERATION_URL } from './reuse-check.js';
import { REUSE_DECISION_OPERATION_URL } from './reuse-decision.js';
import { AUDIT_TYPES, CLINICAL_TYPES, CONFORMANCE_TYPES } from './types.js';

const VERSION = '0.1.0';

/** Result parameters every search accepts (FHIR R4 §3.1.1.5). */
const RESULT_PARAMS = '_count, _sort, _include, _revinclude, _total=accurate, _summary=count, _elements';

/** The CapabilityStatement, built from what the code really supports (types, interactions, search params). */
export function capabilityStatement(deps: FhirDeps, baseUrl: string): CapabilityStatement {
  const profiles = new Map<string, string[]>();
  for (const resource of deps.validator.conformanceResources()) {
    if (resource.resourceType !== 'StructureDefinition') continue;
    const r = resource as StructureDefinition;
    if (r.resourceType === 'StructureDefinition' && r.kind === 'resource' && r.derivation === 'constraint' && r.url) {
      profiles.set(r.type, [...(profiles.get(r.type) ?? []), r.url]);
    }
  }
  const searchParams = (type: string) =>
    supportedSearchParams(deps.registry, type).map((p) => ({
      name: p.name,
      type: p.type,
      definition: p.definition,
      documentation: p.documentation,
    })) as CapabilityStatementRestResource['searchParam'];

  const clinical: CapabilityStatementRestResource[] = CLINICAL_TYPES.map((type) => ({
    type,
    profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
    supportedProfile: profiles.get(type),
    interaction: ['read', 'vread', 'update', 'delete', 'history-instance', 'history-type', 'create', 'search-type'].map(
      (code) => ({ code: code as 'read' }),
    ),
    versioning: 'versioned-update',
    readHistory: true,
    updateCreate: true,
    conditionalCreate: true,
    conditionalUpdate: true,
    conditionalDelete: 'not-supported',
    referencePolicy: ['literal', 'local'],
    searchInclude: supportedSearchParams(deps.registry, type)
      .filter((p) => p.type === 'reference')
      .map((p) => `${type}:${p.name}`),
    searchRevInclude: revIncludes(deps, type),
    searchParam: searchParams(type),
    operation: [{ name: 'validate', definition: 'http://hl7.org/fhir/OperationDefinition/Resource-validate' }],
  }));
  const conformance: CapabilityStatementRestResource[] = [...CONFORMANCE_TYPES, ...AUDIT_TYPES].map((type) => ({
    type,
    profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
    interaction: ['read', 'vread', 'history-instance', 'search-type'].map((code) => ({ code: code as 'read' })),
    searchParam: searchParams(type),
    ...(type === 'Measure'
      ? {
          operation: [
            {
              name: 'evaluate-measure',
              definition: 'http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure',
              documentation:
                'GET /fhir/Measure/reuse-savings/$evaluate-measure?periodStart=&periodEnd=[&subject=Organization/…][&scope=federation]: a summary MeasureReport of the savings (bureau and admin roles); scope=federation adds the child brokers’ figures, stratified by region.',
            },
          ],
        }
      : {}),
  }));

  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    publisher: 'Huren',
    kind: 'instance',
    software: { name: 'Huren', version: VERSION },
    implementation: {
      description: 'Huren (互认): FHIR R4 broker for cross-hospital mutual recognition of exam and lab results',
      url: baseUrl,
    },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        documentation: `Search result parameters: ${RESULT_PARAMS}. Unknown search parameters are rejected (400) unless Prefer: handling=lenient. Paging follows link.next; no total unless _total=accurate.`,
        security: {
          cors: deps.config.corsOrigins.length > 0,
          service: [
            {
              coding: [
                { system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' },
              ],
            },
          ],
          description:
            'SMART Backend Services: POST a private_key_jwt client assertion to the token endpoint; send the access token as Authorization: Bearer. AuditEvent is readable by the admin role only.',
          extension: [
            {
              url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
              // SMART App Launch 2.0 §Conformance (oauth-uris): both endpoints the broker serves, the EHR launch of
              // the doctor's view going through /auth/authorize.
              extension: [
                { url: 'token', valueUri: `${baseUrl.replace(/\/fhir$/, '')}/auth/token` },
                { url: 'authorize', valueUri: `${baseUrl.replace(/\/fhir$/, '')}/auth/authorize` },
              ],
            },
          ],
        },
        resource: [
          ...clinical,
          ...conformance,
          {
            // Bundles are not stored (POST /fhir processes transactions and batches) but can be checked entry by entry.
            type: 'Bundle',
            profile: 'http://hl7.org/fhir/StructureDefinition/Bundle',
            operation: [{ name: 'validate', definition: 'http://hl7.org/fhir/OperationDefinition/Resource-validate' }],
          },
        ],
        interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'history-system' }],
        operation: [
          {
            name: 'reuse-check',
            definition: REUSE_CHECK_OPERATION_URL,
            documentation:
              'POST a Parameters (patient, code or order, requester, at, context) or GET with query parameters: one outcome per requested item (reusable, reference-only, expired, none, not-recognized) with the rule path, and a check id.',
          },
          {
            name: 'reuse-decision',
            definition: REUSE_DECISION_OPERATION_URL,
            documentation:
              'POST a Parameters (check, item, decision accepted | declined | viewed, reason from the hr-decline-reason CodeSystem, reasonText, practitioner): recorded once per (check, item) in the decisions ledger; the same decision again answers 200, a different one 409.',
          },
        ],
      },
    ],
  };
}

function revIncludes(deps: FhirDeps, target: string): string[] {
  const out: string[] = [];
  for (const source of CLINICAL_TYPES) {
    for (const p of supportedSearchParams(deps.registry, source)) {
      if (p.type === 'reference' && (p.target ?? []).includes(target)) out.push(`${source}:${p.name}`);
    }
  }
  return out;
}
