import { randomUUID } from 'node:crypto';
import type { AuditEvent, AuditEventEntity } from 'fhir/r4';
import type { AccessContext } from '../auth/tokens.js';

/**
 * One AuditEvent per access to patient data, in the style of IHE Basic Audit Log Patterns (BALP): who (client,
 * its organization, the token's jti), what (interaction, resources), which patient (by reference to the broker's own
 * Patient id — a server-assigned id, not an identifier), and the outcome. Query strings are not recorded: they may
 * carry identifiers; the parameter names are.
 */
export interface AuditRecord {
  interaction: string;
  /** FHIR AuditEvent.action: C create, R read/search, U update, D delete, E execute (operations, bundles). */
  action: 'C' | 'R' | 'U' | 'D' | 'E';
  status: number;
  access?: AccessContext;
  /** `Type/id` of the resources the request touched (first 100). */
  resources: string[];
  /** `Patient/id` of the patients whose data was touched. */
  patients: string[];
  /** The resource type searched, with the names (not values) of the parameters. */
  query?: { type: string; params: string[] };
  /** Which of the broker's own operations (outside FHIR's REST interactions), e.g. `identity-verified`. */
  operation?: string;
  requestId?: string;
  recorded: Date;
}

const MAX_ENTITIES = 100;

/** The code system of the broker's own operations in AuditEvent.subtype (beside the REST interaction). */
export const AUDIT_OPERATION_SYSTEM = 'urn:huren:audit-operation';

export function auditEvent(r: AuditRecord): AuditEvent {
  const outcome = r.status < 400 ? '0' : r.status < 500 ? '4' : '8';
  const entity: AuditEventEntity[] = [
    ...r.patients.slice(0, MAX_ENTITIES).map((ref) => ({
      what: { reference: ref },
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '1', display: 'Person' },
      role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1', display: 'Patient' },
    })),
    ...r.resources
      .filter((ref) => !r.patients.includes(ref))
      .slice(0, MAX_ENTITIES)
      .map((ref) => ({
        what: { reference: ref },
        type: {
          system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type',
          code: '2',
          display: 'System Object',
        },
      })),
  ];
  if (r.query) {
    entity.push({
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '2', display: 'System Object' },
      role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '24', display: 'Query' },
      name: r.query.type,
      description: `search parameters: ${r.query.params.join(', ') || '(none)'}`,
    });
  }
  const event: AuditEvent = {
    resourceType: 'AuditEvent',
    id: randomUUID(),
    type: {
      system: 'http://terminology.hl7.org/CodeSystem/audit-event-type',
      code: 'rest',
      display: 'RESTful Operation',
    },
    subtype: [
      { system: 'http://hl7.org/fhir/restful-interaction', code: r.interaction },
      ...(r.operation ? [{ system: AUDIT_OPERATION_SYSTEM, code: r.operation }] : []),
    ],
    action: r.action,
    recorded: r.recorded.toISOString(),
    outcome,
    agent: [
      {
        type: {
          coding: [
            { system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110153', display: 'Source Role ID' },
          ],
        },
        who: r.access ? { reference: r.access.organization } : { display: 'anonymous' },
        altId: r.access?.clientId,
        name: r.access ? `${r.access.clientId} (${r.access.role})` : 'anonymous',
        requestor: true,
        policy: r.access ? [`urn:huren:token:${r.access.jti}`] : undefined,
      },
    ],
    source: {
      site: 'Huren',
      observer: { display: 'Huren FHIR broker' },
      type: [
        {
          system: 'http://terminology.hl7.org/CodeSystem/security-source-type',
          code: '4',
          display: 'Application Server',
        },
      ],
    },
    entity: entity.length ? entity : undefined,
  };
  if (r.requestId) event.meta = { tag: [{ system: 'urn:huren:request-id', code: r.requestId }] };
  return JSON.parse(JSON.stringify(event)) as AuditEvent; // drops undefined members: FHIR JSON has no nulls
}

/** Patient references of a resource: itself if a Patient, else its subject/patient. */
export function patientsOf(resource: {
  resourceType?: string;
  id?: string;
  subject?: { reference?: string };
  patient?: { reference?: string };
}): string[] {
  if (resource.resourceType === 'Patient' && resource.id) return [`Patient/${resource.id}`];
  const refs = [resource.subject?.reference, resource.patient?.reference].filter(
    (r): r is string => typeof r === 'string' && r.startsWith('Patient/'),
  );
  return [...new Set(refs)];
}
