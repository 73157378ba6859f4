import type { Resource } from 'fhir/r4';
import type { Document, Filter } from 'mongodb';
import { forbidden } from '../fhir/outcomes.js';
import { isClinicalType } from '../fhir/types.js';
import type { CurrentDoc, WriteOp } from '../store/models.js';
import { allows, parseScopes, type Permission } from './scopes.js';
import type { AccessContext } from './tokens.js';

/**
 * Who may do what. Roles (issue 3): `his` writes and reads its own institution's data; `clinician` reads (audited);
 * `bureau` sees aggregates only, never patient-level resources; `admin` manages everything. Within a role, the
 * token's SMART scopes decide per type and interaction.
 */

const toRef = (r: { reference?: string } | undefined) =>
  typeof r?.reference === 'string' && r.reference.startsWith('Organization/') ? [r.reference] : [];

/** The institutions a resource belongs to: whoever produced it (performer), requested it, or manages it. */
export function ownersOf(resource: Resource): string[] {
  const r = resource as unknown as Record<string, unknown>;
  const out: string[] = [];
  switch (resource.resourceType) {
    case 'DiagnosticReport':
    case 'Observation':
      for (const p of (r.performer as { reference?: string }[] | undefined) ?? []) out.push(...toRef(p));
      break;
    case 'ServiceRequest':
      out.push(...toRef(r.requester as { reference?: string }));
      for (const p of (r.performer as { reference?: string }[] | undefined) ?? []) out.push(...toRef(p));
      break;
    case 'Patient':
      out.push(...toRef(r.managingOrganization as { reference?: string }));
      break;
    case 'Organization':
      if (resource.id) out.push(`Organization/${resource.id}`);
      out.push(...toRef(r.partOf as { reference?: string }));
      break;
  }
  return [...new Set(out)];
}

/** Scope and role check for one interaction on one type; throws 403 with what is missing. */
export function assertAllowed(
  access: AccessContext | undefined,
  type: string,
  permission: Permission,
  where?: string,
): void {
  if (!access) return; // unauthenticated calls never get here (the HTTP layer answers 401)
  if (type === 'AuditEvent') {
    if (access.role !== 'admin' || (permission !== 'r' && permission !== 's')) {
      throw forbidden('The audit trail is read by administrators only', where);
    }
    return;
  }
  // The broker's conformance resources are public knowledge; writing them is refused as read-only (405) later.
  if (!isClinicalType(type)) return;
  // The institution directory (Organizations, published from the recognition rules) is no patient data: every role
  // reads it, whatever its scopes name.
  if (isDirectoryRead(type, permission)) return;
  if (access.role === 'bureau') {
    throw forbidden('The bureau role sees aggregate reports only, never patient-level resources', where);
  }
  if (access.role === 'supervisor') {
    throw forbidden(
      'The supervisor role reads the prior result of a supervised case only, through /reports/supervision/cases/{id}',
      where,
    );
  }
  if (access.role === 'broker') {
    throw forbidden('A federated broker reads results through /federation, scoped to what it was answered', where);
  }
  if (access.role === 'clinician' && permission !== 'r' && permission !== 's') {
    throw forbidden('The clinician role reads results; writing them is for hospital systems (his)', where);
  }
  if (!allows(parseScopes(access.scope), type, permission)) {
    throw forbidden(`The token's scopes do not allow this: it needs system/${type}.${permission}`, where);
  }
}

const isDirectoryRead = (type: string, permission: Permission) =>
  type === 'Organization' && (permission === 'r' || permission === 's');

/** Types a `his` client reads only for its own institution: patient-level data, not the directory or conformance. */
const TENANT_TYPES = ['DiagnosticReport', 'Observation', 'Patient', 'ServiceRequest'];

/** A `his` client sees only its own institution's patient-level resources; other roles are not narrowed. */
export function tenantFilter(access: AccessContext | undefined): Filter<Document> | undefined {
  return access?.role === 'his'
    ? { $or: [{ owner: access.organization }, { type: { $nin: TENANT_TYPES } }] }
    : undefined;
}

export function isReadable(access: AccessContext | undefined, doc: Pick<CurrentDoc, 'type' | 'owner'>): boolean {
  if (access?.role !== 'his' || !TENANT_TYPES.includes(doc.type)) return true;
  return (doc.owner ?? []).includes(access.organization);
}

export function assertReadable(
  access: AccessContext | undefined,
  doc: Pick<CurrentDoc, 'type' | 'id' | 'owner'>,
): void {
  if (!isReadable(access, doc)) {
    throw forbidden(
      `${doc.type}/${doc.id} belongs to another institution; prior results of other hospitals are reached through $reuse-check`,
    );
  }
}

/**
 * Tenancy of writes: a `his` client may create or change only resources that belong to its own organization, and
 * may not take over another institution's resource. Checked op by op (entry by entry in bundles).
 */
export function assertWritable(
  access: AccessContext | undefined,
  op: WriteOp,
  current: Pick<CurrentDoc, 'owner' | 'deleted'> | null,
  where?: string,
): void {
  if (access?.role !== 'his') return;
  const org = access.organization;
  // A deleted resource still belongs to its institution (its tombstone keeps the owners): its id is not another's to
  // re-create, which would reach its earlier versions.
  const owners = current?.owner ?? [];
  if (current && !owners.includes(org) && !(current.deleted && owners.length === 0)) {
    throw forbidden(`${op.type}/${op.id} belongs to another institution and cannot be changed by ${org}`, where);
  }
  if (op.resource) assertOwnersAllowed(op.resource, org, access.actsFor ?? [], where);
}

/**
 * Every institution a written resource names as its owner (ownersOf: performer, requester, managingOrganization,
 * partOf) must be the writer's own or one it is registered to act for (ClientDoc.actsFor), and its own must be among
 * them: a hospital cannot attribute a result — and the recognitions and savings that follow it — to another one.
 */
export function assertOwnersAllowed(resource: Resource, org: string, actsFor: readonly string[], where?: string): void {
  const owners = ownersOf(resource);
  const element = ownerElement(resource.resourceType);
  const at = where ? `${where}.${element}` : `${resource.resourceType}.${element}`;
  if (!owners.includes(org)) {
    throw forbidden(
      `A ${resource.resourceType} written by this client must belong to ${org} (${element} = ${org})`,
      at,
    );
  }
  const foreign = owners.filter((o) => o !== org && !actsFor.includes(o));
  if (foreign.length) {
    throw forbidden(
      `${foreign.join(', ')} is another institution: ${org} is not registered to write on its behalf ` +
        `(${element} may name only ${[org, ...actsFor].join(', ')})`,
      at,
    );
  }
}

function ownerElement(type: string): string {
  return { Patient: 'managingOrganization', ServiceRequest: 'requester', Organization: 'id' }[type] ?? 'performer';
}
