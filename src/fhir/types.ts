/** Resource types the broker stores and hospitals write (design.md, external contracts). */
export const CLINICAL_TYPES = ['DiagnosticReport', 'Observation', 'Patient', 'Organization', 'ServiceRequest'] as const;

/** Conformance resources the broker defines and serves read-only (loaded from profiles/ at start-up). */
export const CONFORMANCE_TYPES = [
  'StructureDefinition',
  'CodeSystem',
  'ValueSet',
  'ConceptMap',
  'OperationDefinition',
  'SearchParameter',
  'Measure',
] as const;

/** The audit trail: written by the broker itself, searchable by administrators. */
export const AUDIT_TYPES = ['AuditEvent'] as const;

export const ALL_TYPES: readonly string[] = [...CLINICAL_TYPES, ...CONFORMANCE_TYPES, ...AUDIT_TYPES];

export const isClinicalType = (type: string) => (CLINICAL_TYPES as readonly string[]).includes(type);
export const isKnownType = (type: string) => ALL_TYPES.includes(type);

/** FHIR R4 id datatype: [A-Za-z0-9\-\.]{1,64}. */
export const ID_PATTERN = /^[A-Za-z0-9\-.]{1,64}$/;
