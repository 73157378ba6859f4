/**
 * `POST /fhir/$reuse-decision` (design.md, external contracts): records what the doctor did with an item of a
 * `$reuse-check` — `accepted`, `declined` (with a reason from the decline-reason CodeSystem), or `viewed` (the prior
 * result was opened; the funnel's middle step). Immutable and idempotent per (check, item): the same decision again
 * answers 200 with the stored record, a different one 409. Within CORRECTION_WINDOW_MS a decision may be corrected
 * once (`correction` = true): a new ledger entry that supersedes the first. Nothing is recorded when the input is wrong.
 */
import type { Coding, Parameters, ParametersParameter, Reference } from 'fhir/r4';
import { DECLINE_REASON_SYSTEM, findDeclineReason, type DeclineReason } from '../recognition/decline-reasons.js';
import { itemCoding } from '../recognition/catalogue.js';
import {
  CORRECTION_WINDOW_MS,
  correctionEntry,
  correctionId,
  decisionEntry,
  sameDecision,
  type DoctorAction,
  type LedgerEntry,
  type RecordResult,
} from '../recognition/ledger.js';
import { SYSTEMS } from '../recognition/vocabulary.js';
import type { FhirDeps } from './interactions.js';
import { badRequest, conflict, error, forbidden, notFound } from './outcomes.js';
import type { FhirRequest, FhirResponse } from './request.js';

export const REUSE_DECISION_OPERATION_URL = 'https://huren.example.org/fhir/OperationDefinition/reuse-decision';

const ACTIONS: readonly DoctorAction[] = ['accepted', 'declined', 'viewed'];
const NAMES = [
  'check',
  'item',
  'decision',
  'reason',
  'reasonText',
  'practitioner',
  'department',
  'correction',
] as const;
type Name = (typeof NAMES)[number];

/** Value field each parameter is given in (check also as valueString, practitioner as valueIdentifier). */
const FIELDS: Record<Name, readonly string[]> = {
  check: ['valueId', 'valueString'],
  item: ['valueCoding'],
  decision: ['valueCode'],
  reason: ['valueCoding'],
  reasonText: ['valueString'],
  practitioner: ['valueReference', 'valueIdentifier'],
  department: ['valueString'],
  correction: ['valueBoolean'],
};

interface Given {
  value: unknown;
  where: string;
}

/** A doctor's action as the ledger needs it, already checked against the check, the catalogue and the reasons. */
export interface DecisionRequest {
  check: string;
  item: string;
  action: DoctorAction;
  reason?: DeclineReason;
  reasonText?: string;
  practitioner?: string;
  /** The doctor's department (科室), as the hospital names it. */
  department?: string;
  /** Corrects the item's recorded decision (within CORRECTION_WINDOW_MS, once) instead of recording a first one. */
  correction?: boolean;
}

function parse(body: unknown): Map<Name, Given> {
  const p = body as Parameters | undefined;
  if (!p || typeof p !== 'object' || p.resourceType !== 'Parameters') {
    throw badRequest('$reuse-decision is invoked with a Parameters resource', 'Parameters');
  }
  if (!Array.isArray(p.parameter) || p.parameter.length === 0) {
    throw badRequest('The Parameters resource has no parameter', 'Parameters.parameter');
  }
  const out = new Map<Name, Given>();
  p.parameter.forEach((param: ParametersParameter, i) => {
    const at = `Parameters.parameter[${i}]`;
    const name = param?.name as Name;
    if (!NAMES.includes(name)) {
      throw badRequest(
        `Unknown parameter '${String(param?.name)}'; $reuse-decision takes ${NAMES.join(', ')}`,
        `${at}.name`,
      );
    }
    if (out.has(name)) throw badRequest(`Parameter '${name}' may be given once`, `${at}.name`);
    const record = param as unknown as Record<string, unknown>;
    const field = FIELDS[name].find((f) => record[f] !== undefined && record[f] !== null);
    if (!field) throw badRequest(`Parameter '${name}' must be given as ${FIELDS[name].join(' or ')}`, `${at}.value[x]`);
    out.set(name, { value: record[field], where: `${at}.${field}` });
  });
  return out;
}

function required(params: Map<Name, Given>, name: Name): Given {
  const g = params.get(name);
  if (!g) throw badRequest(`Parameter '${name}' is required`, 'Parameters.parameter');
  return g;
}

function practitionerOf(g: Given | undefined): string | undefined {
  if (!g) return undefined;
  const ref = (g.value as Reference).reference;
  if (typeof ref === 'string') {
    if (!/^Practitioner(Role)?\/[A-Za-z0-9\-.]{1,64}$/.test(ref)) {
      throw badRequest(`practitioner must reference a Practitioner or PractitionerRole, not '${ref}'`, g.where);
    }
    return ref;
  }
  const id = g.value as { system?: string; value?: string };
  if (typeof id.value === 'string' && id.value.trim()) {
    // A staff identifier (工号) of the requester institution, not patient data.
    return `${id.system ?? ''}|${id.value.trim()}`;
  }
  throw badRequest('practitioner needs a reference or an identifier value', g.where);
}

/** Reads and checks the operation's input; throws an OperationOutcome naming the parameter at fault. */
export function parseDecisionRequest(body: unknown, deps: FhirDeps): DecisionRequest {
  const rules = deps.facts!.rules;
  const params = parse(body);

  const checkIn = required(params, 'check');
  const check = typeof checkIn.value === 'string' ? checkIn.value.trim() : '';
  if (!/^[A-Za-z0-9\-.]{1,64}$/.test(check)) throw badRequest(`check '${check}' is not a check id`, checkIn.where);

  const itemIn = required(params, 'item');
  const coding = itemIn.value as Coding;
  if (coding.system !== SYSTEMS.catalogue || typeof coding.code !== 'string') {
    throw badRequest(
      `item is the catalogue Coding returned by $reuse-check (system ${SYSTEMS.catalogue})`,
      `${itemIn.where}.system`,
    );
  }
  if (!rules.index.items.has(coding.code)) {
    throw badRequest(`'${coding.code}' is not an item of the recognition catalogue`, `${itemIn.where}.code`);
  }

  const decisionIn = required(params, 'decision');
  const action = decisionIn.value as DoctorAction;
  if (!ACTIONS.includes(action)) {
    throw badRequest(`decision '${String(decisionIn.value)}' is not one of ${ACTIONS.join(', ')}`, decisionIn.where);
  }

  const reasonIn = params.get('reason');
  let reason: DeclineReason | undefined;
  if (reasonIn) {
    const rc = reasonIn.value as Coding;
    if (rc.system !== DECLINE_REASON_SYSTEM) {
      throw badRequest(`reason is a Coding of ${DECLINE_REASON_SYSTEM}`, `${reasonIn.where}.system`);
    }
    reason = findDeclineReason(rules.declineReasons, String(rc.code ?? ''));
    if (!reason) {
      throw badRequest(
        `'${String(rc.code ?? '')}' is not a decline reason; use one of ${rules.declineReasons.reasons.map((r) => r.code).join(', ')}`,
        `${reasonIn.where}.code`,
      );
    }
  }
  const textIn = params.get('reasonText');
  const reasonText = typeof textIn?.value === 'string' ? textIn.value : undefined;
  if (reasonText !== undefined && reasonText.length > 500) {
    throw badRequest('reasonText is at most 500 characters', textIn!.where);
  }
  const departmentIn = params.get('department');
  const department = typeof departmentIn?.value === 'string' ? departmentIn.value.trim() : undefined;
  if (departmentIn && (!department || department.length > 100)) {
    throw badRequest('department is a name of 1 to 100 characters', departmentIn.where);
  }
  return {
    check,
    item: coding.code,
    ...(department ? { department } : {}),
    action,
    ...(reason ? { reason } : {}),
    ...(reasonText !== undefined ? { reasonText } : {}),
    ...(params.has('practitioner') ? { practitioner: practitionerOf(params.get('practitioner')) } : {}),
    ...(params.get('correction')?.value === true ? { correction: true } : {}),
  };
}

/** Where a problem found by the ledger's rules points in the Parameters. */
const PROBLEM_AT: Record<string, string> = {
  'unknown-item': 'item',
  'nothing-to-decide': 'item',
  'reason-required': 'reason',
  'reason-not-allowed': 'reason',
  'text-required': 'reasonText',
  'not-correctable': 'correction',
};

/**
 * Records a doctor's action through the one path shared by the FHIR operation, CDS Hooks feedback and the doctor
 * view: the check must exist and belong to the caller's institution; the ledger keeps it once.
 */
export async function recordDecision(
  deps: FhirDeps,
  request: DecisionRequest,
  channel: LedgerEntry['channel'],
  options: { card?: string; now?: Date } = {},
): Promise<RecordResult> {
  if (!deps.reuseChecks || !deps.ledger || !deps.facts) {
    throw error(500, 'exception', 'The recognition service is not configured');
  }
  const rules = deps.facts.rules;
  const check = await deps.reuseChecks.get(request.check);
  if (!check) throw notFound(`There is no reuse check '${request.check}'`);
  const access = deps.access;
  if (access && access.organization !== `Organization/${check.requester}`) {
    throw forbidden(`Check ${request.check} was asked by another institution`, 'check');
  }
  const now = options.now ?? new Date();
  const entry = decisionEntry({
    check,
    item: request.item,
    action: request.action,
    ...(request.reason ? { reason: request.reason } : {}),
    ...(request.reasonText !== undefined ? { reasonText: request.reasonText } : {}),
    ...(request.practitioner ? { practitioner: request.practitioner } : {}),
    ...(request.department ? { department: request.department } : {}),
    ...(access ? { clientId: access.clientId } : {}),
    channel,
    ...(options.card ? { card: options.card } : {}),
    now,
    timeZone: rules.catalogue.timeZone,
    category: rules.index.items.get(request.item)?.category ?? 'unknown',
  });
  if ('kind' in entry) {
    const status = entry.kind === 'unknown-item' || entry.kind === 'nothing-to-decide' ? 409 : 400;
    throw status === 409
      ? conflict(entry.message, PROBLEM_AT[entry.kind])
      : badRequest(entry.message, PROBLEM_AT[entry.kind]);
  }
  if (request.correction) {
    // A correction already recorded decides: the same one again is unchanged, another is refused (once only).
    const [corrected, stored] = await Promise.all([
      deps.ledger.collection.findOne({ _id: correctionId(check._id, request.item) }),
      deps.ledger.collection.findOne({ _id: entry._id }),
    ]);
    if (corrected) return { status: sameDecision(corrected, entry) ? 'unchanged' : 'conflict', entry: corrected };
    if (stored && !sameDecision(stored, entry)) {
      const correction = correctionEntry(stored, entry, now);
      if ('kind' in correction) throw conflict(correction.message, 'correction');
      return deps.ledger.record(correction);
    }
    // Nothing recorded yet (or the same decision again): an ordinary first decision.
  }
  return deps.ledger.record(entry);
}

/** How the bureau's report counts a ledger entry (src/reports/savings.ts DEFINITIONS). */
export function reportedAs(
  entry: Pick<LedgerEntry, 'event' | 'outcome' | 'countsAsDecline'>,
): 'accepted' | 'reference-accepted' | 'declined' | 'not-counted' | 'viewed' {
  const reusable = entry.outcome === 'reusable';
  if (entry.event === 'accepted') return reusable ? 'accepted' : 'reference-accepted';
  if (entry.event === 'declined') return reusable && entry.countsAsDecline !== false ? 'declined' : 'not-counted';
  return 'viewed';
}

/** The stored record as Parameters. */
export function decisionParameters(entry: LedgerEntry, deps: FhirDeps): Parameters {
  const index = deps.facts!.rules.index;
  const parameter: ParametersParameter[] = [
    { name: 'check', valueId: entry.check },
    { name: 'item', valueCoding: itemCoding(index, entry.item) },
    { name: 'decision', valueCode: entry.event },
    { name: 'outcome', valueCode: entry.outcome },
    { name: 'reportedAs', valueCode: reportedAs(entry) },
  ];
  if (entry.reason) {
    const reason = findDeclineReason(deps.facts!.rules.declineReasons, entry.reason);
    parameter.push({
      name: 'reason',
      valueCoding: { system: DECLINE_REASON_SYSTEM, code: entry.reason, display: reason?.display.zh },
    });
    parameter.push({ name: 'countsAsDecline', valueBoolean: entry.countsAsDecline ?? true });
  }
  if (entry.reasonText) parameter.push({ name: 'reasonText', valueString: entry.reasonText });
  if (entry.result) parameter.push({ name: 'result', valueReference: { reference: entry.result } });
  if (entry.supersedes) parameter.push({ name: 'supersedes', valueString: entry.supersedes });
  else if (entry.event === 'accepted' || entry.event === 'declined') {
    const until = new Date(entry.recordedAt.getTime() + CORRECTION_WINDOW_MS);
    parameter.push({ name: 'correctableUntil', valueInstant: until.toISOString() });
  }
  parameter.push({ name: 'saving', valueMoney: { value: entry.saving, currency: entry.currency } });
  parameter.push({ name: 'recorded', valueInstant: entry.recordedAt.toISOString() });
  return { resourceType: 'Parameters', parameter };
}

export async function reuseDecision(req: FhirRequest, deps: FhirDeps): Promise<FhirResponse> {
  const access = req.access;
  if (access && access.role !== 'his' && access.role !== 'clinician') {
    throw forbidden('Decisions are recorded by the hospital system or the clinician who asked the check');
  }
  if (!deps.facts) throw error(500, 'exception', 'The recognition service is not configured');
  const request = parseDecisionRequest(req.body, deps);
  const result = await recordDecision(deps, request, 'operation');
  if (result.status === 'conflict') {
    const stored = result.entry;
    if (stored.supersedes) {
      throw conflict(
        `The decision for item ${stored.item} of check ${stored.check} was already corrected (${stored.event}${stored.reason ? `, ${stored.reason}` : ''}) and is final`,
        'correction',
      );
    }
    throw conflict(
      `Check ${stored.check} already has ${stored.event === 'viewed' ? 'a view' : `the decision '${stored.event}'${stored.reason ? ` (${stored.reason})` : ''}`} for item ${stored.item}, recorded ${stored.recordedAt.toISOString()}; recorded decisions are immutable (a decision may be corrected once within ${CORRECTION_WINDOW_MS / 60_000} minutes with correction = true)`,
      'decision',
    );
  }
  return {
    status: result.status === 'created' ? 201 : 200,
    body: decisionParameters(result.entry, deps),
    audit: { patients: [], resources: result.entry.result ? [result.entry.result] : [] },
  };
}
