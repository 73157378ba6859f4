import type { Bundle, Resource } from 'fhir/r4';
import type { AuditExtra, FhirRequest } from '../fhir/request.js';
import { isClinicalType } from '../fhir/types.js';
import type { Logger } from '../log.js';
import type { ResourceStore } from '../store/resource-store.js';
import { auditEvent, patientsOf, type AuditRecord } from './audit.js';

export type AuditFn = (
  req: FhirRequest,
  status: number,
  body: Resource | undefined,
  location?: string,
  extra?: AuditExtra,
) => Promise<void>;

/**
 * Records one AuditEvent for each FHIR request that touches patient data (clinical types and bundles), whether it
 * succeeded or was refused. Written before the response is sent: no access goes unrecorded.
 */
export function createAuditRecorder(store: ResourceStore, log: Logger, clock: () => Date = () => new Date()): AuditFn {
  return async (req, status, body, location, extra) => {
    const what = classify(req);
    if (!what) return;
    const resources = new Set<string>();
    const patients = new Set<string>();
    const add = (r: Resource | undefined) => {
      if (!r || !r.id || r.resourceType === 'OperationOutcome') return;
      resources.add(`${r.resourceType}/${r.id}`);
      for (const p of patientsOf(r as Parameters<typeof patientsOf>[0])) patients.add(p);
    };
    if (body?.resourceType === 'Bundle') {
      for (const e of (body as Bundle).entry ?? []) {
        add(e.resource);
        const ref = refFromLocation(e.response?.location);
        if (ref) resources.add(ref);
      }
    } else add(body);
    const addPatientsOf = (r: unknown) => {
      if (r && typeof r === 'object')
        for (const p of patientsOf(r as Parameters<typeof patientsOf>[0])) patients.add(p);
    };
    // With Prefer: return=minimal (or an OperationOutcome) the answer carries no resource: the patient is named in
    // what was sent. A delete answers with an OperationOutcome: the patient is in the version it removed.
    if (what.action === 'C' || what.action === 'U') addPatientsOf(req.body);
    if (what.action === 'D' && what.target && status < 400) {
      const [type, id] = what.target.split('/');
      const { entries } = await store.history({ type, id }, { count: 2 });
      addPatientsOf(entries.find((e) => e.resource)?.resource);
    }
    for (const p of extra?.patients ?? []) patients.add(p);
    for (const r of extra?.resources ?? []) resources.add(r);
    const ref = refFromLocation(location);
    for (const r of [ref, what.target]) {
      if (!r) continue;
      resources.add(r);
      if (r.startsWith('Patient/')) patients.add(r);
    }
    const record: AuditRecord = {
      ...what,
      status,
      access: req.access,
      resources: [...resources],
      patients: [...patients],
      requestId: req.requestId,
      recorded: clock(),
    };
    try {
      const event = auditEvent(record);
      await store.append(event as typeof event & { id: string });
    } catch (err) {
      // An access that cannot be audited must not be answered as if it had been.
      log.error('Audit event could not be written', { error: (err as Error).message, requestId: req.requestId });
      throw err;
    }
  };
}

function refFromLocation(location: string | undefined): string | undefined {
  const m = location && /\/([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})\/_history\//.exec(location);
  return m ? `${m[1]}/${m[2]}` : undefined;
}

type Classified = Pick<AuditRecord, 'interaction' | 'action' | 'query' | 'operation'> & { target?: string };

/** Which interaction a request is, or undefined when it touches no patient data. */
function classify(req: FhirRequest): Classified | undefined {
  const [type, b, c] = req.segments;
  const m = req.method;
  if (type === undefined) {
    if (m !== 'POST') return undefined;
    const isBatch = (req.body as { type?: unknown } | undefined)?.type === 'batch';
    return { interaction: isBatch ? 'batch' : 'transaction', action: 'E' };
  }
  // $reuse-check reads other institutions' results of a patient: an operation, executed.
  if (type === '$reuse-check' && b === undefined) return { interaction: 'operation', action: 'E' };
  // A doctor's decision about a patient's prior result: an operation, executed.
  if (type === '$reuse-decision' && b === undefined) return { interaction: 'operation', action: 'E' };
  // A CDS Hooks call reads a patient's prior results (hook) or records a decision about them (feedback).
  if (type === 'cds-services') return { interaction: 'operation', action: 'E' };
  // The doctor's view reads a patient's prior results across institutions.
  if (type === 'prior-results') return { interaction: 'operation', action: 'R', operation: 'prior-results' };
  // The doctor confirmed whose results these are where the institutions' records of the patient disagree.
  if (type === 'identity-verified') return { interaction: 'operation', action: 'E', operation: 'identity-verified' };
  // An expert reviewer reads the prior result of a supervised decline (src/reports/routes.ts).
  if (type === 'supervision-case') return { interaction: 'read', action: 'R', operation: 'supervision-case' };
  // System history lists every version of every clinical resource.
  if (type === '_history' && b === undefined) return { interaction: 'history-system', action: 'R' };
  // Reading the audit trail is itself recorded: who looked at the record of accesses to patient data, and when.
  // (Writing it through the API is refused for everyone; only the broker appends to it.)
  if (type === 'AuditEvent' && m !== 'GET' && b !== '_search') return undefined;
  if (!isClinicalType(type) && type !== 'AuditEvent') return undefined;
  if (b === '$validate' || c === '$validate') return undefined;
  if (b === undefined || b === '_search') {
    if (m === 'GET' || b === '_search') {
      const params = Object.keys(req.query).filter((k) => !k.startsWith('_format'));
      return { interaction: 'search-type', action: 'R', query: { type, params } };
    }
    return m === 'POST' ? { interaction: 'create', action: 'C' } : { interaction: 'update', action: 'U' };
  }
  if (b === '_history') return { interaction: 'history-type', action: 'R' };
  const target = `${type}/${b}`;
  if (c === '_history') return { interaction: req.segments[3] ? 'vread' : 'history-instance', action: 'R', target };
  if (m === 'GET') return { interaction: 'read', action: 'R', target };
  if (m === 'PUT') return { interaction: 'update', action: 'U', target };
  if (m === 'DELETE') return { interaction: 'delete', action: 'D', target };
  return undefined;
}
