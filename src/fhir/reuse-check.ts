/**
 * `POST|GET /fhir/$reuse-check` (design.md, external contracts): can a result of another institution be reused for
 * what the requester is about to order? Parses and checks the input, reads the patient's facts (by pseudonymous
 * key, within the longest validity window before `at`), asks the pure engine, stores the check and answers a
 * Parameters with one `outcome` per requested item.
 */
import { languageOf, type Language } from '../recognition/language.js';
import { randomUUID } from 'node:crypto';
import type { Coding, Identifier, Parameters, ParametersParameter, Reference, ServiceRequest } from 'fhir/r4';
import { assertAllowed } from '../auth/policy.js';
import { SYSTEMS } from '../recognition/vocabulary.js';
import {
  decideReuse,
  requestedItemsFromServiceRequest,
  type RequestedItem,
  type ReuseOutcome,
} from '../recognition/engine.js';
import { RecognitionInputError } from '../recognition/errors.js';
import type { RecognitionRules } from '../recognition/load.js';
import {
  claimFromResidentId,
  corroborateDemographics,
  describeConflicts,
  IDENTIFIER_SYSTEMS,
  isMatchingIdentifierSystem,
  normalizeIdentifier,
  patientKeysFor,
  type Corroboration,
  type DemographicClaim,
} from '../recognition/identity.js';
import type { RecognitionFact } from '../recognition/facts.js';
import { federationNote, type FederationSummary } from '../recognition/federation.js';
import type { Institution } from '../recognition/institutions.js';
import { promptEntries } from '../recognition/ledger.js';
import { storedOutcome, type ReuseCheckDoc } from '../recognition/reuse-checks.js';
import { parseFhirDateTime } from '../recognition/time.js';
import { assertValid, type FhirDeps } from './interactions.js';
import { badRequest, error, forbidden } from './outcomes.js';
import type { FhirRequest, FhirResponse } from './request.js';
import { ID_PATTERN } from './types.js';

export const REUSE_CHECK_OPERATION_URL = 'https://huren.example.org/fhir/OperationDefinition/reuse-check';

/** Days added to the longest validity window when reading facts (zone and day-boundary slack). */
const WINDOW_MARGIN_DAYS = 2;
/** Most items in one check. */
const MAX_ITEMS = 100;
/** Most Patient resources named in the audit event of one check. */
const MAX_AUDIT_PATIENTS = 20;

const PARAMETER_NAMES = ['patient', 'code', 'order', 'requester', 'at', 'context', 'regionWide'] as const;
type ParamName = (typeof PARAMETER_NAMES)[number];

interface Input {
  name: ParamName;
  /** Expression of the value, for OperationOutcome.expression. */
  where: string;
  identifier?: Identifier;
  coding?: Coding;
  reference?: Reference;
  dateTime?: string;
  code?: string;
  resource?: unknown;
  boolean?: boolean;
}

const VALUE_FIELD: Record<ParamName, string> = {
  patient: 'valueIdentifier',
  code: 'valueCoding',
  order: 'resource',
  requester: 'valueReference',
  at: 'valueDateTime',
  context: 'valueCode',
  regionWide: 'valueBoolean',
};

function isParamName(name: unknown): name is ParamName {
  return typeof name === 'string' && (PARAMETER_NAMES as readonly string[]).includes(name);
}

/** The parameters of a POSTed Parameters resource, each with the expression of its value. */
function fromBody(body: unknown): Input[] {
  const p = body as Parameters | undefined;
  if (!p || typeof p !== 'object' || p.resourceType !== 'Parameters') {
    throw badRequest(
      '$reuse-check is invoked with a Parameters resource (or with GET and query parameters)',
      'Parameters',
    );
  }
  if (!Array.isArray(p.parameter) || p.parameter.length === 0) {
    throw badRequest('The Parameters resource has no parameter', 'Parameters.parameter');
  }
  return p.parameter.map((param: ParametersParameter, i) => {
    const at = `Parameters.parameter[${i}]`;
    if (!isParamName(param?.name)) {
      throw badRequest(
        `Unknown parameter '${String(param?.name)}'; $reuse-check takes ${PARAMETER_NAMES.join(', ')}`,
        `${at}.name`,
      );
    }
    const name = param.name;
    const field = VALUE_FIELD[name];
    const where = `${at}.${field}`;
    const value = (param as unknown as Record<string, unknown>)[field];
    if (value === undefined || value === null) {
      throw badRequest(`Parameter '${name}' must be given as ${field}`, where);
    }
    assertShape(name, value, where);
    const input: Input = { name, where };
    switch (name) {
      case 'patient':
        input.identifier = value as Identifier;
        break;
      case 'code':
        input.coding = value as Coding;
        break;
      case 'order':
        input.resource = value;
        break;
      case 'requester':
        input.reference = value as Reference;
        break;
      case 'at':
        input.dateTime = typeof value === 'string' ? value : '';
        break;
      case 'context':
        input.code = typeof value === 'string' ? value : '';
        break;
      case 'regionWide':
        if (typeof value !== 'boolean') throw badRequest(`Parameter 'regionWide' must be a boolean`, where);
        input.boolean = value;
        break;
    }
    return input;
  });
}

/** The string elements of each parameter's value type (R4 Identifier, Coding, Reference) that the check reads. */
const STRING_ELEMENTS: Partial<Record<ParamName, string[]>> = {
  patient: ['system', 'value'],
  code: ['system', 'code', 'display'],
  requester: ['reference'],
};

/**
 * The value has the JSON type of its FHIR type: an object whose read elements are strings (the Parameters body is not
 * checked against the schema as a whole; a value of another shape must be a 400, not reach the code that reads it).
 */
function assertShape(name: ParamName, value: unknown, where: string): void {
  const elements = STRING_ELEMENTS[name];
  const isObject = typeof value === 'object' && value !== null && !Array.isArray(value);
  if ((elements || name === 'order') && !isObject) throw badRequest(`Parameter '${name}' must be a JSON object`, where);
  for (const element of elements ?? []) {
    const v = (value as Record<string, unknown>)[element];
    if (v !== undefined && typeof v !== 'string') {
      throw badRequest(`${element} of parameter '${name}' must be a string`, `${where}.${element}`);
    }
  }
}

/** `system|value` of a query parameter (the value may itself contain `|` only after the first one). */
function splitToken(raw: string): { system?: string; value: string } {
  const bar = raw.indexOf('|');
  if (bar < 0) return { value: raw };
  return { system: raw.slice(0, bar) || undefined, value: raw.slice(bar + 1) };
}

/** The parameters of a GET: `patient=system|value&code=system|code&requester=Organization/x&at=…&context=…`. */
function fromQuery(query: Record<string, string | string[]>): Input[] {
  const out: Input[] = [];
  for (const [key, raw] of Object.entries(query)) {
    if (key === '_format' || key === '_pretty') continue;
    if (!isParamName(key) || key === 'order') {
      throw badRequest(
        `Unknown query parameter '${key}'; with GET $reuse-check takes patient, code, requester, at, context, regionWide`,
        key,
      );
    }
    for (const value of [raw].flat()) {
      const input: Input = { name: key, where: key };
      if (key === 'patient') {
        const t = splitToken(value);
        input.identifier = { system: t.system, value: t.value };
      } else if (key === 'code') {
        const t = splitToken(value);
        input.coding = { system: t.system, code: t.value };
      } else if (key === 'requester') input.reference = { reference: value };
      else if (key === 'at') input.dateTime = value;
      else if (key === 'regionWide') {
        if (value !== 'true' && value !== 'false') throw badRequest("regionWide must be 'true' or 'false'", key);
        input.boolean = value === 'true';
      } else input.code = value;
      out.push(input);
    }
  }
  return out;
}

function single(inputs: Input[], name: ParamName, required: boolean, fallbackWhere: string): Input | undefined {
  const found = inputs.filter((i) => i.name === name);
  if (found.length > 1) throw badRequest(`Parameter '${name}' may be given once`, found[1]!.where);
  if (required && found.length === 0) throw badRequest(`Parameter '${name}' is required`, fallbackWhere);
  return found[0];
}

/** Systems a requested code may be in: the catalogue's, the imaging facets', and the requester's local systems. */
function knownSystems(
  rules: RecognitionRules,
  requester: string,
): { known: Set<string>; othersLocal: Map<string, string> } {
  const known = new Set<string>([SYSTEMS.catalogue, SYSTEMS.dicom, SYSTEMS.bodyPart, SYSTEMS.imagingMethod]);
  for (const item of rules.catalogue.items) for (const c of item.codes) known.add(c.system);
  if (rules.catalogue.items.some((i) => i.nationalPriceCode)) known.add(SYSTEMS.nationalPriceCode);
  const othersLocal = new Map<string, string>();
  for (const map of rules.localCodes) {
    if (map.institution === requester) known.add(map.system);
    else othersLocal.set(map.system, map.institution);
  }
  return { known, othersLocal };
}

export async function reuseCheck(req: FhirRequest, deps: FhirDeps): Promise<FhirResponse> {
  const access = req.access;
  if (access && access.role !== 'his' && access.role !== 'clinician') {
    throw forbidden(
      access.role === 'bureau'
        ? 'The bureau role sees aggregate reports only; $reuse-check is for hospital systems and clinicians'
        : '$reuse-check is asked by a hospital system or a clinician for their own institution',
    );
  }
  // The answer names other institutions' results: the token must allow reading them.
  assertAllowed(access, 'DiagnosticReport', 'r');
  if (!deps.facts || !deps.reuseChecks) throw error(500, 'exception', 'The recognition service is not configured');
  const rules = deps.facts.rules;
  const isPost = req.method === 'POST';
  const inputs = isPost ? fromBody(req.body) : fromQuery(req.query);
  const where = (name: ParamName) => (isPost ? `Parameters.parameter` : name);

  // Requester: a participating institution, and the caller's own.
  const requesterIn = single(inputs, 'requester', true, where('requester'))!;
  const ref = requesterIn.reference?.reference?.trim() ?? '';
  const m = /^Organization\/(.+)$/.exec(ref);
  if (!m || !ID_PATTERN.test(m[1]!)) {
    throw badRequest(`requester must reference an Organization ('Organization/<id>'), not '${ref}'`, requesterIn.where);
  }
  const requester = m[1]!;
  if (!rules.directory.byId.has(requester)) {
    throw badRequest(`Organization/${requester} is not a participating institution`, requesterIn.where);
  }
  if (access && access.organization !== `Organization/${requester}`) {
    throw forbidden(
      `A check is asked for the caller's own institution (${access.organization}), not Organization/${requester}`,
      requesterIn.where,
    );
  }

  // Patient: a matching identifier, well formed.
  const patientIn = single(inputs, 'patient', true, where('patient'))!;
  const system = patientIn.identifier?.system?.trim() ?? '';
  const value = patientIn.identifier?.value ?? '';
  const idWhere = isPost ? patientIn.where : 'patient';
  if (!isMatchingIdentifierSystem(system)) {
    throw badRequest(
      `Patients are matched on a resident ID card, e-health card or medical-insurance code; '${system || '(no system)'}' is not one of them`,
      isPost ? `${idWhere}.system` : idWhere,
    );
  }
  let normalized: { system: string; value: string };
  try {
    normalized = normalizeIdentifier(system, value);
  } catch (e) {
    if (e instanceof RecognitionInputError) throw badRequest(e.message, isPost ? `${idWhere}.value` : idWhere);
    throw e;
  }
  const patientKeys = patientKeysFor(deps.facts.secret, normalized.system, normalized.value);

  // At and context.
  const timeZone = rules.catalogue.timeZone;
  const atIn = single(inputs, 'at', false, where('at'));
  let at = new Date();
  if (atIn) {
    const parsed = parseFhirDateTime(atIn.dateTime ?? '', timeZone);
    if (!parsed || parsed.assumedZone || !/^\d{4}-\d{2}-\d{2}/.test(atIn.dateTime ?? '')) {
      throw badRequest(`at '${atIn.dateTime ?? ''}' is not a FHIR date or dateTime with a zone`, atIn.where);
    }
    at = new Date(parsed.ms);
  }
  const contextIn = single(inputs, 'context', false, where('context'));
  const context = contextIn?.code?.trim() || 'routine';
  if (!rules.index.contexts.has(context)) {
    throw badRequest(
      `context '${context}' is not one of ${[...rules.index.contexts.keys()].join(', ')}`,
      contextIn?.where ?? where('context'),
    );
  }

  // Requested items: codes and orders, in the order given.
  const { known, othersLocal } = knownSystems(rules, requester);
  const items: RequestedItem[] = [];
  for (const input of inputs) {
    if (input.name === 'code') {
      const c = input.coding ?? {};
      const s = typeof c.system === 'string' ? c.system.trim() : '';
      const code = typeof c.code === 'string' ? c.code.trim() : '';
      if (!s || !code) {
        throw badRequest('A code needs both a system and a code', isPost ? input.where : 'code');
      }
      if (!known.has(s)) {
        const owner = othersLocal.get(s);
        throw badRequest(
          owner
            ? `'${s}' is a local code system of Organization/${owner}; only the requester's own local codes are mapped`
            : `The code system '${s}' is not mapped by the recognition catalogue (LOINC, the catalogue, national price codes or the requester's local codes)`,
          isPost ? `${input.where}.system` : 'code',
        );
      }
      items.push({ coding: [{ system: s, code, ...(c.display ? { display: c.display } : {}) }] });
    } else if (input.name === 'order') {
      const order = assertValid(deps, input.resource, 'ServiceRequest', input.where) as ServiceRequest;
      if (!order.code?.coding?.length) {
        throw badRequest('The ServiceRequest has no code.coding to check', `${input.where}.code`);
      }
      items.push(...requestedItemsFromServiceRequest(order));
    }
  }
  if (items.length === 0) {
    throw badRequest('Give at least one code (valueCoding) or order (ServiceRequest) to check', where('code'));
  }
  if (items.length > MAX_ITEMS) throw badRequest(`At most ${MAX_ITEMS} items per check`, where('code'));

  // The patient's records (audit trail, identity) are read while the check runs: neither needs the other. They
  // include the requester's own record, which has no result to reuse but must agree with the others.
  const regionWide = single(inputs, 'regionWide', false, where('regionWide'))?.boolean === true;
  const [{ checkId, outcomes, federation }, { patients, claims }] = await Promise.all([
    runReuseCheck(deps, {
      requester,
      patientKeys,
      items,
      context,
      at,
      regionWide,
      ...(access ? { clientId: access.clientId } : {}),
    }),
    patientsFor(deps, patientKeys),
  ]);
  const idClaim =
    normalized.system === IDENTIFIER_SYSTEMS.residentIdCard ? claimFromResidentId(normalized.value) : undefined;
  const identity = corroborateDemographics([...(idClaim ? [idClaim] : []), ...claims]);
  // The reason in the requester's language (Accept-Language; zh-CN by default).
  const lang = languageOf(req.headers['accept-language']);
  const body: Parameters = {
    resourceType: 'Parameters',
    parameter: [
      { name: 'check', valueId: checkId },
      ...(identity.consistent ? [] : [identityParameter(identity)]),
      ...(federation ? [federationParameter(federation, lang)] : []),
      ...outcomes.map((o) => outcomeParameter(o, lang, federation?.institutions)),
    ],
  };
  const results = outcomes.flatMap((o) => (o.fact ? [o.fact.source] : []));
  return { status: 200, body, audit: { patients, resources: [...new Set(results)] } };
}

/** What a reuse check is asked about, already parsed and checked (by $reuse-check or a CDS Hooks service). */
export interface ReuseCheckInput {
  /** Institution id of the requester. */
  requester: string;
  patientKeys: string[];
  items: RequestedItem[];
  context: string;
  at: Date;
  /** The client that asked (for the decisions ledger). */
  clientId?: string;
  /** False: decide only, store no check and no prompts (the doctor's view re-reading items already prompted). */
  record?: boolean;
  /** Ask the federation even for items the local index has a reusable result for (the region-wide answer). */
  regionWide?: boolean;
}

/**
 * The core of every reuse check: reads the patient's facts younger than the longest window, asks the engine,
 * stores the check and records the ledger's prompts. Shared by `$reuse-check` and the CDS Hooks services so both
 * decide, store and count the same way.
 */
export async function runReuseCheck(
  deps: FhirDeps,
  input: ReuseCheckInput,
): Promise<{ checkId: string; doc: ReuseCheckDoc; outcomes: ReuseOutcome[]; federation?: FederationSummary }> {
  if (!deps.facts || !deps.reuseChecks) throw error(500, 'exception', 'The recognition service is not configured');
  const rules = deps.facts.rules;
  const timeZone = rules.catalogue.timeZone;
  const { requester, patientKeys, items, context, at } = input;
  // The patient's facts younger than the longest window, then the engine.
  const longest = Math.max(...rules.catalogue.items.map((i) => i.validityDays));
  const from = new Date(at.getTime() - (longest + WINDOW_MARGIN_DAYS) * 86400_000);
  const facts = await deps.facts.facts.findForPatient(patientKeys, from, at);
  let outcomes: ReuseOutcome[];
  try {
    outcomes = decideReuse(
      { patientKeys, requester, items, context },
      facts,
      rules.directory,
      rules.index,
      rules.matrix,
      at,
    );
  } catch (e) {
    if (e instanceof RecognitionInputError) throw badRequest(e.message, e.expression ?? 'Parameters');
    throw e;
  }
  const federated = await askFederation(deps, input, outcomes, facts, from);
  if (federated) outcomes = federated.outcomes;
  const federation = federated?.summary;

  const checkId = randomUUID();
  const doc: ReuseCheckDoc = {
    _id: checkId,
    requester,
    ...(input.clientId ? { clientId: input.clientId } : {}),
    patientKeys,
    createdAt: new Date(),
    at,
    context,
    outcomes: outcomes.map(storedOutcome),
  };
  if (input.record === false) return { checkId, doc, outcomes, ...(federation ? { federation } : {}) };
  // The check and its prompts together: both are stored before the answer is sent (a crash before it may leave a
  // prompt of a check nobody saw, never a decision without its check).
  const categoryOf = (item: string) => rules.index.items.get(item)?.category ?? 'unknown';
  await Promise.all([
    deps.reuseChecks.insert(doc),
    deps.ledger?.recordPrompts(promptEntries(doc, categoryOf, timeZone)),
  ]);

  return { checkId, doc, outcomes, ...(federation ? { federation } : {}) };
}

/**
 * The federation's part of a check (docs/federation.md): for the items without a reusable local result (every item
 * when the requester asks region-wide) the other brokers are asked, within the deadline, for the patient's facts by
 * pseudonymous key; the engine then decides on local and remote facts together, with the remote institutions as the
 * holders describe them. Undefined when no broker is configured or nothing is left to ask.
 */
async function askFederation(
  deps: FhirDeps,
  input: ReuseCheckInput,
  local: ReuseOutcome[],
  facts: RecognitionFact[],
  from: Date,
): Promise<{ outcomes: ReuseOutcome[]; summary: FederationSummary } | undefined> {
  const port = deps.federationPort;
  if (!port || !(await port.isConfigured())) return undefined;
  const rules = deps.facts!.rules;
  const pending = local.filter((o) => o.item?.code && (input.regionWide || o.decision !== 'reusable'));
  if (pending.length === 0) return undefined;
  const items = new Set<string>();
  for (const o of pending) {
    items.add(o.item!.code!);
    for (const member of rules.index.items.get(o.item!.code!)?.members ?? []) items.add(member);
  }
  const requester = rules.directory.byId.get(input.requester)!;
  const answer = await port.ask({
    patientKeys: input.patientKeys,
    items: [...items],
    from,
    until: input.at,
    requester: { district: requester.district.code, level: requester.level },
  });
  const direct = answer.reach.filter((r) => !r.via);
  const status = answer.reach.every((r) => r.answered)
    ? 'complete'
    : direct.some((r) => r.answered)
      ? 'partial'
      : 'local-only';
  const summary: FederationSummary = {
    status,
    reach: answer.reach,
    institutions: new Map(answer.institutions.map((i) => [i.id, i])),
    deadlineMs: deps.config.federationDeadlineMs,
  };
  if (answer.facts.length === 0) return { outcomes: local, summary };
  const directory = { ...rules.directory, byId: new Map([...rules.directory.byId, ...summary.institutions]) };
  const outcomes = decideReuse(
    { patientKeys: input.patientKeys, requester: input.requester, items: input.items, context: input.context },
    [...facts, ...answer.facts],
    directory,
    rules.index,
    rules.matrix,
    input.at,
  );
  return { outcomes, summary };
}

/**
 * One outcome: the catalogue item and every coding that was asked for it (`requested`), the verdict and its result,
 * `reason` — one plain sentence in the requester's language — and `rulePath`, one `step` per rule applied.
 */
function outcomeParameter(
  o: ReuseOutcome,
  lang: Language,
  remote: ReadonlyMap<string, Institution> = new Map(),
): ParametersParameter {
  const part: ParametersParameter[] = [];
  if (o.item) part.push({ name: 'item', valueCoding: o.item });
  for (const coding of o.requested) part.push({ name: 'requested', valueCoding: coding });
  part.push({ name: 'decision', valueCode: o.decision });
  if (o.fact) part.push({ name: 'result', valueReference: { reference: o.fact.source } });
  // A result of another broker: its institution by absolute reference to that broker, with its name.
  const holder = o.performer ? remote.get(o.performer) : undefined;
  if (o.performer) {
    part.push({
      name: 'performer',
      valueReference: holder
        ? { reference: o.performer, display: holder.name[lang] }
        : { reference: `Organization/${o.performer}` },
    });
  }
  if (o.effective) part.push({ name: 'effective', valueDateTime: o.effective });
  if (o.validUntil) part.push({ name: 'validUntil', valueDateTime: o.validUntil });
  part.push({ name: 'saving', valueMoney: { value: o.saving.value, currency: o.saving.currency } });
  part.push({ name: 'reason', valueString: o.summary[lang] });
  part.push({
    name: 'rulePath',
    part: o.path.map((step) => ({
      name: 'step',
      part: [
        { name: 'rule', valueCode: step.rule },
        { name: 'passed', valueBoolean: step.passed },
        { name: 'text', valueString: step[lang] },
      ],
    })),
  });
  return { name: 'outcome', part };
}

/**
 * What the federation did for this check: `status` (complete | partial | local-only), a sentence for the doctor
 * when it is not complete, and one `broker` part per broker asked (whether it answered in time, and if not why).
 */
function federationParameter(f: FederationSummary, lang: Language): ParametersParameter {
  const note = federationNote(f);
  return {
    name: 'federation',
    part: [
      { name: 'status', valueCode: f.status },
      ...(note ? [{ name: 'note', valueString: note[lang] }] : []),
      ...f.reach.map((r) => ({
        name: 'broker',
        part: [
          { name: 'id', valueString: r.broker },
          { name: 'relation', valueCode: r.relation },
          { name: 'region', valueString: r.region },
          { name: 'answered', valueBoolean: r.answered },
          ...(r.via ? [{ name: 'via', valueString: r.via }] : []),
          ...(r.reason ? [{ name: 'reason', valueString: r.reason }] : []),
        ],
      })),
    ],
  };
}

/**
 * The identity warning of a check: institutions (or the ID number itself) disagree on the patient's sex or birth
 * date. The broker never picks a side: the identifier may be mistyped or shared, and the doctor must verify it
 * before reusing anything.
 */
function identityParameter(identity: Corroboration): ParametersParameter {
  return {
    name: 'identity',
    part: [
      { name: 'consistent', valueBoolean: false },
      ...describeConflicts(identity).map((line) => ({ name: 'conflict', valueString: line })),
      {
        name: 'advice',
        valueString:
          '患者身份信息在各机构间不一致，互认前请核实身份。\nThe institutions disagree about this patient: verify the identity before reusing a result.',
      },
    ],
  };
}

/**
 * The broker's Patient records of the patient, from the patient index (one lookup by key): their ids for the audit
 * trail (a server id, not the identifier), and what each institution's record says about sex and birth date.
 */
async function patientsFor(
  deps: FhirDeps,
  patientKeys: string[],
): Promise<{ patients: string[]; claims: DemographicClaim[] }> {
  const records = await deps.facts!.patients.lookup(patientKeys, MAX_AUDIT_PATIENTS);
  return {
    patients: records.map((r) => r.ref),
    claims: records.map((r) => ({
      source: r.organization ?? r.ref,
      ...(r.sex ? { sex: r.sex } : {}),
      ...(r.birthDate ? { birthDate: r.birthDate } : {}),
    })),
  };
}
