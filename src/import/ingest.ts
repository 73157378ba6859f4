import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type { Extension, OperationOutcome, Resource } from 'fhir/r4';
import { patientsOf } from '../audit/audit.js';
import type { AuditFn } from '../audit/recorder.js';
import { assertOwnersAllowed } from '../auth/policy.js';
import type { FhirRequest } from '../fhir/request.js';
import { hasErrors, issue, outcome, OperationOutcomeError } from '../fhir/outcomes.js';
import { checkResidentIdentifiers } from '../fhir/resident-ids.js';
import { ID_PATTERN, isClinicalType } from '../fhir/types.js';
import type { Validator } from '../fhir/validation/validator.js';
import { HUREN_FHIR_BASE } from '../recognition/vocabulary.js';
import type { CurrentDoc, WriteOp } from '../store/models.js';
import { stripMeta, type ResourceStore } from '../store/resource-store.js';

/**
 * The one ingest path of the connectors (bulk import, pull sync, subscription intake). A page of resources from a
 * hospital is validated, deduplicated and compared with what is stored, then written as ONE ingest-log entry
 * (`store.commit`), so a crash at any point is replayed at start-up and never half-applied.
 *
 * Idempotency across routes: a resource keeps the id the hospital gave it, so the same result pushed by the HIS
 * (`PUT DiagnosticReport/<id>`), pulled from its FHIR server and imported from its export is one resource, and its
 * references (`result`, `subject`) resolve unchanged. Content equal to the stored one (ignoring server-managed meta
 * and the source marks below) writes nothing.
 *
 * Out-of-order delivery: the source's `meta.lastUpdated` is kept as an extension on `meta`; a version older than the
 * stored one is skipped, so the newest always stays.
 */

/** Extension on `meta`: when the hospital's own server last changed the resource (its `meta.lastUpdated`). */
export const SOURCE_UPDATED_URL = `${HUREN_FHIR_BASE}/StructureDefinition/source-last-updated`;

export interface IngestDeps {
  store: ResourceStore;
  validator: Validator;
  /** The audit trail: every committed page is one AuditEvent naming the connector and what it wrote. */
  audit?: AuditFn;
}

export interface IngestOptions {
  /** The institution every resource must belong to (`Organization/…`): the hospital of a sync endpoint. */
  owner?: string;
  /** Identifies the source system, kept in `meta.source` (R4: "a uri that identifies the source system"). */
  source?: string;
  /** Who writes, for the audit trail: `sync:<endpoint>`, `subscription:<endpoint>`, `import`. */
  agent?: string;
}

/** One resource to ingest, with where it came from for the report (`line 12`, `entry[3]`). */
export interface IngestItem {
  resource: unknown;
  where: string;
}

export type IngestOutcome = 'created' | 'updated' | 'unchanged' | 'older' | 'rejected';

export interface IngestResult {
  where: string;
  outcome: IngestOutcome;
  /** `Type/id` when known. */
  ref?: string;
  /** Why a resource was refused. */
  reason?: OperationOutcome;
}

export type IngestCounts = Record<IngestOutcome, number>;

export const emptyCounts = (): IngestCounts => ({ created: 0, updated: 0, unchanged: 0, older: 0, rejected: 0 });

export function addCounts(into: IngestCounts, results: IngestResult[]): IngestCounts {
  for (const r of results) into[r.outcome]++;
  return into;
}

interface Accepted {
  where: string;
  resource: Resource & { id: string };
  ref: string;
  sourceUpdated?: number;
}

/** Validates, compares and commits one page; every item gets a result, in input order. */
export async function ingestPage(
  deps: IngestDeps,
  items: IngestItem[],
  options: IngestOptions = {},
): Promise<IngestResult[]> {
  const results: IngestResult[] = new Array(items.length);
  const newest = new Map<string, { index: number; item: Accepted }>();
  items.forEach((item, index) => {
    const checked = checkItem(deps, item, options);
    if (!('resource' in checked)) {
      results[index] = checked;
      return;
    }
    // The same resource twice in a page: the newer source version wins, the other counts as older.
    const seen = newest.get(checked.ref);
    if (seen && (seen.item.sourceUpdated ?? 0) > (checked.sourceUpdated ?? 0)) {
      results[index] = { where: item.where, outcome: 'older', ref: checked.ref };
      return;
    }
    if (seen) results[seen.index] = { where: seen.item.where, outcome: 'older', ref: checked.ref };
    newest.set(checked.ref, { index, item: checked });
  });

  const refs = [...newest.keys()];
  const stored = new Map<string, CurrentDoc>();
  for (const doc of await deps.store.findCurrentMany(refs)) stored.set(doc._id, doc);
  const ops: { index: number; op: WriteOp }[] = [];
  for (const [ref, { index, item }] of newest) {
    const current = stored.get(ref) ?? null;
    const decided = decide(item, current, options);
    if (decided === 'write') {
      ops.push({ index, op: toOp(item, current, options) });
    } else {
      results[index] = { where: item.where, ref, ...decided };
    }
  }
  // Audited before the write, not after: a process killed between the two would leave written patient data without
  // its AuditEvent, and the re-run finds the page unchanged and audits nothing. Killed after the audit, the re-run
  // writes the page and audits it again (an access is never unrecorded; at worst recorded twice).
  if (ops.length && deps.audit)
    await auditPage(
      deps.audit,
      ops.map((o) => o.op.resource),
      options,
    );
  const applied = await deps.store.commit(ops.map((o) => o.op));
  applied.forEach((w, i) => {
    const { index } = ops[i];
    results[index] = {
      where: items[index].where,
      ref: `${w.type}/${w.id}`,
      outcome: w.created ? 'created' : 'updated',
    };
  });
  return results;
}

/** One AuditEvent for a committed page: a transaction by the connector, naming the resources and their patients. */
async function auditPage(audit: AuditFn, written: (Resource | null)[], options: IngestOptions): Promise<void> {
  const resources: string[] = [];
  const patients = new Set<string>();
  for (const r of written) {
    if (!r?.id) continue;
    resources.push(`${r.resourceType}/${r.id}`);
    for (const p of patientsOf(r as Parameters<typeof patientsOf>[0])) patients.add(p);
  }
  const req: FhirRequest = {
    method: 'POST',
    segments: [],
    query: {},
    headers: {},
    body: { resourceType: 'Bundle', type: 'transaction' },
    baseUrl: '',
    access: {
      clientId: options.agent ?? 'connector',
      organization: options.owner ?? 'Organization/huren-operator',
      role: 'his',
      scope: '',
      jti: `${options.agent ?? 'connector'}:${randomUUID()}`,
    },
    requestId: randomUUID(),
  };
  await audit(req, 200, undefined, undefined, { patients: [...patients], resources });
}

function reject(where: string, code: Parameters<typeof issue>[1], diagnostics: string, expression?: string) {
  return { where, outcome: 'rejected' as const, reason: outcome(issue('error', code, diagnostics, expression)) };
}

/** Structural checks, validation and tenancy of one item, before anything is read from the store. */
function checkItem(deps: IngestDeps, item: IngestItem, options: IngestOptions): Accepted | IngestResult {
  const r = item.resource as { resourceType?: unknown; id?: unknown; meta?: { lastUpdated?: unknown } } | null;
  if (r === null || typeof r !== 'object' || Array.isArray(r)) {
    return reject(item.where, 'structure', 'Expected a FHIR resource (a JSON object with resourceType)');
  }
  const type = r.resourceType;
  if (typeof type !== 'string' || !isClinicalType(type)) {
    return reject(
      item.where,
      'not-supported',
      `Resource type '${String(type)}' is not indexed by the broker (DiagnosticReport, Observation, Patient, Organization, ServiceRequest)`,
      'resourceType',
    );
  }
  if (typeof r.id !== 'string' || !ID_PATTERN.test(r.id)) {
    return reject(
      item.where,
      'required',
      `A ${type} from a hospital needs its own id (1-64 characters of A-Z, a-z, 0-9, '-' and '.'): it keeps it here`,
      `${type}.id`,
    );
  }
  const issues = deps.validator.validate(r, { expectedType: type });
  // Resident ID numbers as on a write through the API: a wrong check character refused, the rest normalised.
  if (!hasErrors(issues)) issues.push(...checkResidentIdentifiers(r, type));
  if (hasErrors(issues)) {
    return {
      where: item.where,
      outcome: 'rejected',
      ref: `${type}/${r.id}`,
      reason: outcome(...issues.filter((i) => i.severity !== 'information')),
    };
  }
  const resource = r as Resource & { id: string };
  if (options.owner) {
    // The same rule as a hospital system's own writes: it names its institution, and no other one, as an owner.
    try {
      assertOwnersAllowed(resource, options.owner, []);
    } catch (err) {
      if (!(err instanceof OperationOutcomeError)) throw err;
      return { where: item.where, outcome: 'rejected', reason: err.outcome, ref: `${type}/${r.id}` };
    }
  }
  const lastUpdated = typeof r.meta?.lastUpdated === 'string' ? Date.parse(r.meta.lastUpdated) : NaN;
  return {
    where: item.where,
    resource,
    ref: `${type}/${r.id}`,
    sourceUpdated: Number.isNaN(lastUpdated) ? undefined : lastUpdated,
  };
}

/** Whether to write, or why not: another institution's resource, an older version, or nothing new. */
function decide(
  item: Accepted,
  current: CurrentDoc | null,
  options: IngestOptions,
): 'write' | Pick<IngestResult, 'outcome' | 'reason'> {
  const owners = current?.owner ?? [];
  if (options.owner && current && owners.length > 0 && !owners.includes(options.owner)) {
    return reject(
      item.where,
      'forbidden',
      `${item.ref} belongs to another institution and cannot be changed by ${options.owner}`,
      `${item.resource.resourceType}.id`,
    );
  }
  if (!current?.resource || current.deleted) return 'write';
  const storedUpdated = sourceUpdatedOf(current.resource);
  if (storedUpdated !== undefined && item.sourceUpdated !== undefined && item.sourceUpdated < storedUpdated) {
    return { outcome: 'older' };
  }
  return isDeepStrictEqual(comparable(current.resource), comparable(item.resource))
    ? { outcome: 'unchanged' }
    : 'write';
}

function toOp(item: Accepted, current: CurrentDoc | null, options: IngestOptions): WriteOp {
  const { resource } = item;
  const meta = { ...resource.meta };
  delete meta.versionId;
  delete meta.lastUpdated;
  const extension = (meta.extension ?? []).filter((e) => e.url !== SOURCE_UPDATED_URL);
  if (item.sourceUpdated !== undefined) {
    extension.push({ url: SOURCE_UPDATED_URL, valueInstant: new Date(item.sourceUpdated).toISOString() });
  }
  if (extension.length) meta.extension = extension;
  else delete meta.extension;
  if (options.source) meta.source = options.source;
  const next = { ...resource, meta } as Resource;
  if (Object.keys(meta).length === 0) delete next.meta;
  return { type: resource.resourceType, id: resource.id, prevVid: current?.vid ?? 0, method: 'PUT', resource: next };
}

/** When the source last changed a stored resource, from its mark. */
function sourceUpdatedOf(resource: Resource): number | undefined {
  const mark = resource.meta?.extension?.find((e: Extension) => e.url === SOURCE_UPDATED_URL)?.valueInstant;
  return mark ? Date.parse(mark) : undefined;
}

/** The content that matters: server-managed meta and the marks of where a copy came from removed. */
function comparable(resource: Resource): Resource {
  const copy = stripMeta(resource, resource.id ?? '');
  if (!copy.meta) return copy;
  const meta = { ...copy.meta };
  delete meta.source;
  const extension = (meta.extension ?? []).filter((e) => e.url !== SOURCE_UPDATED_URL);
  if (extension.length) meta.extension = extension;
  else delete meta.extension;
  const out = { ...copy, meta } as Resource;
  if (Object.keys(meta).length === 0) delete out.meta;
  return out;
}
