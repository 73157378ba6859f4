/**
 * The CDS Hooks services at order entry (`order-select`, `order-sign`): the patient from prefetch, else read from
 * the EHR's FHIR server with the token it passed (`fhirAuthorization`), else 412; each draft ServiceRequest (in the
 * institution's local codes) goes through the same reuse check as `$reuse-check`; cards for what can be reused.
 */
import { randomUUID } from 'node:crypto';
import type { Bundle, Coding, DiagnosticReport, Observation, Patient, Resource, ServiceRequest } from 'fhir/r4';
import { Client } from 'fhir-kit-client';
import type { Collection, Db } from 'mongodb';
import type { AuditFn } from '../audit/recorder.js';
import type { SeenJtiDoc } from '../auth/tokens.js';
import type { FhirDeps } from '../fhir/interactions.js';
import { badRequest, error, forbidden, preconditionFailed } from '../fhir/outcomes.js';
import { runReuseCheck } from '../fhir/reuse-check.js';
import { federationNote } from '../recognition/federation.js';
import { ID_PATTERN } from '../fhir/types.js';
import { requestedItemsFromServiceRequest, type RequestedItem, type ReuseOutcome } from '../recognition/engine.js';
import { corroborateRecords, describeConflicts, patientKeysOf } from '../recognition/identity.js';
import { PROMPTED_DECISIONS } from '../recognition/ledger.js';
import type { ResourceStore } from '../store/resource-store.js';
import {
  federationCard,
  identityCard,
  noIdentifierCard,
  resultCard,
  unmappedCard,
  type Card,
  type Language,
} from './cards.js';
import { fhirServerBases, isUnderBase, type CdsCaller, type CdsClientDoc } from './clients.js';

export interface CdsService {
  id: string;
  hook: 'order-select' | 'order-sign';
  title: string;
  description: string;
  prefetch: Record<string, string>;
  usageRequirements: string;
}

const USAGE =
  'The EHR is registered with Huren (iss, public keys, institution) and signs each call with a JWT; draft orders ' +
  "are ServiceRequests coded with the institution's local order codes, LOINC or the recognition catalogue.";

export const CDS_SERVICES: readonly CdsService[] = [
  {
    id: 'huren-reuse-order-select',
    hook: 'order-select',
    title: '检查检验结果互认提示 (order-select)',
    description:
      'When a doctor selects an exam or lab order, tells whether another institution has a result that can be ' +
      'reused (检查检验结果互认) or consulted for reference, with its values, validity and the saving.',
    prefetch: { patient: 'Patient/{{context.patientId}}' },
    usageRequirements: USAGE,
  },
  {
    id: 'huren-reuse-order-sign',
    hook: 'order-sign',
    title: '检查检验结果互认提示 (order-sign)',
    description:
      'Before exam or lab orders are signed, tells which of them duplicate a recognisable result of another ' +
      'institution, so the doctor can reuse it instead of re-testing.',
    prefetch: { patient: 'Patient/{{context.patientId}}' },
    usageRequirements: USAGE,
  },
];

export const CDS_CARDS_COLLECTION = 'cds_cards';

/** What a card uuid stands for, so feedback finds its (check, item) in any process, after any restart. */
export interface CdsCardDoc {
  _id: string;
  suggestion: string;
  service: string;
  /** The EHR the card was given to: only it may send feedback about it. */
  iss: string;
  institution: string;
  check: string;
  item: string;
  /** The card's verdict: only a reusable result's card has a suggestion to accept or a decline to give. */
  decision?: 'reusable' | 'reference-only';
  /** `ServiceRequest/<id>` of the draft order. */
  order?: string;
  result?: string;
  /** The hook's `context.userId` (Practitioner or PractitionerRole): who decides on the card, for supervision. */
  practitioner?: string;
  createdAt: Date;
}

/** The ordering user of a hook (CDS Hooks 2.0 order-select/order-sign: `context.userId`), when it is a reference. */
export function practitionerOfHook(context: Record<string, unknown>): string | undefined {
  const user = context.userId;
  return typeof user === 'string' && /^Practitioner(Role)?\/[A-Za-z0-9\-.]{1,64}$/.test(user) ? user : undefined;
}

export interface CdsDeps extends FhirDeps {
  audit: AuditFn;
  clients: Collection<CdsClientDoc>;
  cards: Collection<CdsCardDoc>;
  seenJti: Collection<SeenJtiDoc>;
  /** How long reading the patient from the EHR's FHIR server may take. */
  fhirTimeoutMs: number;
}

export function cdsCards(db: Db): Collection<CdsCardDoc> {
  return db.collection<CdsCardDoc>(CDS_CARDS_COLLECTION);
}

/** Most draft orders looked at in one call. */
const MAX_ORDERS = 100;
/** Most Observations shown in a card's detail. */
const MAX_OBSERVATIONS = 40;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export interface HookRequest {
  hook: string;
  hookInstance: string;
  context: Record<string, unknown>;
  patientId: string;
  prefetch?: Record<string, unknown>;
  fhirServer?: string;
  fhirAuthorization?: { access_token: string };
}

/** The CDS Hooks request envelope, checked field by field (400 with the field's path). */
export function parseHookRequest(body: unknown, service: CdsService): HookRequest {
  if (!isObject(body)) throw badRequest('A CDS Hooks request is a JSON object (hook, hookInstance, context …)');
  if (typeof body.hook !== 'string' || !body.hook) throw badRequest('hook is required', 'hook');
  if (body.hook !== service.hook) {
    throw badRequest(
      `Service ${service.id} answers the '${service.hook}' hook, not '${body.hook}'; see GET /cds-services`,
      'hook',
    );
  }
  if (typeof body.hookInstance !== 'string' || !body.hookInstance.trim()) {
    throw badRequest('hookInstance (a UUID for this call) is required', 'hookInstance');
  }
  if (!isObject(body.context)) throw badRequest('context is required and is an object', 'context');
  const patientId = body.context.patientId;
  if (typeof patientId !== 'string' || !ID_PATTERN.test(patientId)) {
    throw badRequest('context.patientId is required and is a FHIR id', 'context.patientId');
  }
  if (body.prefetch !== undefined && body.prefetch !== null && !isObject(body.prefetch)) {
    throw badRequest('prefetch is an object of prefetched resources by key', 'prefetch');
  }
  const out: HookRequest = {
    hook: body.hook,
    hookInstance: body.hookInstance,
    context: body.context,
    patientId,
    ...(isObject(body.prefetch) ? { prefetch: body.prefetch } : {}),
  };
  if (body.fhirServer !== undefined) {
    if (typeof body.fhirServer !== 'string' || !/^https?:\/\/[^\s]+$/.test(body.fhirServer)) {
      throw badRequest('fhirServer is the http(s) base URL of the EHR FHIR server', 'fhirServer');
    }
    out.fhirServer = body.fhirServer.replace(/\/+$/, '');
  }
  if (body.fhirAuthorization !== undefined && body.fhirAuthorization !== null) {
    const auth = body.fhirAuthorization;
    if (!isObject(auth) || typeof auth.access_token !== 'string' || !auth.access_token) {
      throw badRequest('fhirAuthorization needs an access_token', 'fhirAuthorization.access_token');
    }
    if (typeof auth.token_type === 'string' && auth.token_type.toLowerCase() !== 'bearer') {
      throw badRequest("fhirAuthorization.token_type must be 'Bearer'", 'fhirAuthorization.token_type');
    }
    if (!out.fhirServer) throw badRequest('fhirAuthorization is given only with fhirServer', 'fhirServer');
    out.fhirAuthorization = { access_token: auth.access_token };
  }
  return out;
}

export interface DraftOrder {
  /** `ServiceRequest/<id>`, when the draft has an id. */
  ref?: string;
  request: ServiceRequest;
}

/** The draft ServiceRequests of `context.draftOrders` (for order-select: the selected ones). */
export function draftServiceRequests(context: Record<string, unknown>, hook: string): DraftOrder[] {
  const where = 'context.draftOrders';
  const bundle = context.draftOrders;
  if (!isObject(bundle) || bundle.resourceType !== 'Bundle') {
    throw badRequest('context.draftOrders is required and is a FHIR Bundle of the draft orders', where);
  }
  if (bundle.entry !== undefined && !Array.isArray(bundle.entry))
    throw badRequest('Bundle.entry is an array', `${where}.entry`);
  const entries = (bundle as unknown as Bundle).entry ?? [];
  let selections: Set<string> | undefined;
  if (hook === 'order-select' && context.selections !== undefined) {
    if (!Array.isArray(context.selections) || !context.selections.every((s) => typeof s === 'string')) {
      throw badRequest('context.selections is an array of references such as ServiceRequest/123', 'context.selections');
    }
    selections = new Set(context.selections as string[]);
  }
  const out: DraftOrder[] = [];
  entries.forEach((entry: unknown, i) => {
    const at = `${where}.entry[${i}].resource`;
    if (!isObject(entry) || !isObject(entry.resource) || typeof entry.resource.resourceType !== 'string') {
      throw badRequest('Each entry of draftOrders holds a FHIR resource', at);
    }
    const r = entry.resource as unknown as Resource;
    if (r.resourceType !== 'ServiceRequest') return; // medications, nutrition …: not exams or tests
    const sr = r as ServiceRequest;
    if (sr.id !== undefined && (typeof sr.id !== 'string' || !ID_PATTERN.test(sr.id))) {
      throw badRequest('ServiceRequest.id is a FHIR id', `${at}.id`);
    }
    const ref = sr.id ? `ServiceRequest/${sr.id}` : undefined;
    if (selections && !(ref && (selections.has(ref) || selections.has(sr.id!)))) return;
    const codings = sr.code?.coding;
    if (
      !Array.isArray(codings) ||
      codings.length === 0 ||
      !codings.every(
        (c) => isObject(c) && typeof c.code === 'string' && (c.system === undefined || typeof c.system === 'string'),
      )
    ) {
      throw badRequest('A draft ServiceRequest needs code.coding with system and code', `${at}.code.coding`);
    }
    const sites = sr.bodySite;
    if (sites !== undefined && (!Array.isArray(sites) || !sites.every((s) => isObject(s)))) {
      throw badRequest('ServiceRequest.bodySite is an array of CodeableConcepts', `${at}.bodySite`);
    }
    out.push({ ...(ref ? { ref } : {}), request: sr });
  });
  if (out.length > MAX_ORDERS) throw badRequest(`At most ${MAX_ORDERS} draft orders per call`, `${where}.entry`);
  return out;
}

/** The Patient from prefetch (a resource, or a searchset Bundle holding it), or undefined when not prefetched. */
function prefetchedPatient(req: HookRequest): Patient | undefined {
  const value = req.prefetch?.patient;
  if (value === undefined || value === null) return undefined;
  let patient: unknown = value;
  if (isObject(value) && value.resourceType === 'Bundle') {
    patient = ((value as unknown as Bundle).entry ?? [])
      .map((e) => e.resource)
      .find((r) => r?.resourceType === 'Patient');
    if (!patient) return undefined;
  }
  if (!isObject(patient) || patient.resourceType !== 'Patient') {
    throw badRequest(
      'prefetch.patient is the Patient resource read with Patient/{{context.patientId}}',
      'prefetch.patient',
    );
  }
  if (patient.id !== undefined && patient.id !== req.patientId) {
    throw badRequest(
      `prefetch.patient is Patient/${String(patient.id)}, not context.patientId ${req.patientId}`,
      'prefetch.patient.id',
    );
  }
  return patient as unknown as Patient;
}

/** Reads the Patient from the EHR's FHIR server with the token the EHR passed; 412 when that is not possible. */
async function fetchPatient(req: HookRequest, client: CdsClientDoc, deps: CdsDeps): Promise<Patient> {
  if (!req.fhirServer || !req.fhirAuthorization) {
    throw preconditionFailed(
      'The patient was not prefetched (prefetch.patient) and no fhirServer with fhirAuthorization was given to read it',
      'prefetch.patient',
    );
  }
  if (deps.config.mode === 'production' && !req.fhirServer.startsWith('https://')) {
    throw badRequest('fhirServer must use https', 'fhirServer');
  }
  // Only the EHR's registered FHIR base (by default its own origin) is read: never a URL the request merely names.
  const bases = fhirServerBases(client);
  if (!bases.some((base) => isUnderBase(req.fhirServer!, base))) {
    throw forbidden(
      `fhirServer ${req.fhirServer} is not the FHIR server registered for this EHR (${bases.join(', ') || 'none'}); an administrator registers others with cds-client --fhir-server`,
      'fhirServer',
    );
  }
  const fhir = new Client({ baseUrl: req.fhirServer, bearerToken: req.fhirAuthorization.access_token });
  let resource: unknown;
  try {
    resource = await fhir.read({
      resourceType: 'Patient',
      id: req.patientId,
      options: { signal: AbortSignal.timeout(deps.fhirTimeoutMs) },
    });
  } catch (err) {
    const status = (err as { response?: { status?: number } }).response?.status;
    throw preconditionFailed(
      `Patient/${req.patientId} could not be read from the EHR FHIR server (${status ? `HTTP ${status}` : 'no answer'}); prefetch it instead`,
      'fhirServer',
    );
  }
  if (!isObject(resource) || resource.resourceType !== 'Patient') {
    throw preconditionFailed(
      `The EHR FHIR server did not answer Patient/${req.patientId} with a Patient`,
      'fhirServer',
    );
  }
  return resource as unknown as Patient;
}

export async function patientOf(req: HookRequest, client: CdsClientDoc, deps: CdsDeps): Promise<Patient> {
  return prefetchedPatient(req) ?? (await fetchPatient(req, client, deps));
}

/**
 * Current versions by reference, read one by one in parallel: a lookup by `_id` is served by the primary key on
 * every backend, where `$in` over ids makes FerretDB scan the resources collection.
 */
async function readAll(store: ResourceStore, refs: string[]): Promise<Map<string, Resource | undefined>> {
  const docs = await Promise.all(
    refs.map((ref) => {
      const [type, id] = ref.split('/');
      return type && id ? store.findCurrent(type, id) : null;
    }),
  );
  return new Map(
    refs.map((ref, i) => [ref, docs[i] && !docs[i].deleted ? (docs[i].resource ?? undefined) : undefined]),
  );
}

/** The result's Observations: itself when it is one, else those a DiagnosticReport lists. */
async function observationsOf(store: ResourceStore, sources: string[]): Promise<Map<string, Observation[]>> {
  // Results of other brokers of the federation are not in this store: the doctor opens them through /federation.
  const byRef = await readAll(store, [...new Set(sources.filter((s) => !/^https?:/.test(s)))]);
  const listed = new Map<string, string[]>();
  for (const source of new Set(sources)) {
    const r = byRef.get(source);
    if (r?.resourceType === 'Observation') listed.set(source, [source]);
    else if (r?.resourceType === 'DiagnosticReport') {
      const refs = ((r as DiagnosticReport).result ?? []).flatMap((x) => (x.reference ? [x.reference] : []));
      listed.set(source, refs.slice(0, MAX_OBSERVATIONS));
    }
  }
  const wanted = [...new Set([...listed.values()].flat().filter((ref) => !byRef.has(ref)))];
  for (const [ref, r] of await readAll(store, wanted)) byRef.set(ref, r);
  const out = new Map<string, Observation[]>();
  for (const [source, refs] of listed) {
    out.set(
      source,
      refs.map((ref) => byRef.get(ref)).filter((r): r is Observation => r?.resourceType === 'Observation'),
    );
  }
  return out;
}

export interface HookAnswer {
  cards: Card[];
  /** For the audit trail. */
  patients: string[];
  results: string[];
}

/** Runs a hook call for an authenticated EHR. */
export async function answerHook(
  service: CdsService,
  req: HookRequest,
  caller: CdsCaller,
  deps: CdsDeps,
  ctx: { origin: string; lang: Language },
): Promise<HookAnswer> {
  if (!deps.facts) throw error(500, 'exception', 'The recognition service is not configured');
  const rules = deps.facts.rules;
  const institution = caller.client.institution;
  if (!rules.directory.byId.has(institution)) {
    throw forbidden(`The EHR is registered for '${institution}', which is not a participating institution`);
  }
  const orders = draftServiceRequests(req.context, service.hook);
  const patient = await patientOf(req, caller.client, deps);
  const patientKeys = patientKeysOf(deps.facts.secret, patient.identifier);
  // The patient's records, looked up while the check runs: the audit trail names them (the broker's Patient ids,
  // never the identifier), and what they say about sex and birth date must agree with the EHR's own record.
  const recordsLookup = deps.facts.patients.lookup(patientKeys);
  const patientsLookup = recordsLookup.then((records) => records.map((r) => r.ref));
  if (orders.length === 0) return { cards: [], patients: await patientsLookup, results: [] };
  if (patientKeys.length === 0)
    return { cards: [noIdentifierCard(ctx.lang)], patients: await patientsLookup, results: [] };

  const items: RequestedItem[] = [];
  const orderOfItem: DraftOrder[] = [];
  for (const order of orders) {
    for (const item of requestedItemsFromServiceRequest(order.request)) {
      items.push(item);
      orderOfItem.push(order);
    }
  }
  const now = new Date();
  const { checkId, outcomes, federation } = await runReuseCheck(deps, {
    requester: institution,
    patientKeys,
    items,
    context: 'routine',
    at: now,
    clientId: caller.iss,
  });
  const prompted = outcomes.filter(
    (o): o is ReuseOutcome & { item: Coding & { code: string } } =>
      PROMPTED_DECISIONS.includes(o.decision) && typeof o.item?.code === 'string',
  );
  const observations = await observationsOf(
    deps.store,
    prompted.flatMap((o) => (o.fact ? [o.fact.source] : [])),
  );
  const reasons = rules.declineReasons.reasons;
  const cards: Card[] = [];
  const docs: CdsCardDoc[] = [];
  const identity = corroborateRecords(await recordsLookup, patient.identifier ?? [], [
    {
      source: institution,
      ...(patient.gender ? { sex: patient.gender } : {}),
      ...(patient.birthDate ? { birthDate: patient.birthDate } : {}),
    },
  ]);
  if (!identity.consistent && prompted.length > 0) {
    const nameOf = (id: string) => rules.directory.byId.get(id)?.name.zh;
    cards.push(identityCard(describeConflicts(identity, { lang: ctx.lang, nameOf }), ctx.lang));
  }
  // An institution of this broker, or of the broker of the federation that holds the result.
  const performerOf = (id: string | undefined) =>
    id ? (rules.directory.byId.get(id) ?? federation?.institutions.get(id)) : undefined;
  for (const o of prompted) {
    const item = rules.index.items.get(o.item.code);
    if (!item) continue;
    const order = orderOfItem[o.requestIndex];
    const cardUuid = randomUUID();
    const suggestionUuid = randomUUID();
    cards.push(
      resultCard({
        outcome: o,
        item,
        ...(performerOf(o.performer) ? { performer: performerOf(o.performer)! } : {}),
        observations: (o.fact && observations.get(o.fact.source)) || [],
        check: checkId,
        ...(order?.ref ? { order: order.ref } : {}),
        cardUuid,
        suggestionUuid,
        origin: ctx.origin,
        reasons,
        lang: ctx.lang,
        now,
        timeZone: rules.catalogue.timeZone,
        identityConflict: !identity.consistent,
      }),
    );
    docs.push({
      _id: cardUuid,
      suggestion: suggestionUuid,
      service: service.id,
      iss: caller.iss,
      institution,
      check: checkId,
      item: item.code,
      decision: o.decision === 'reusable' ? 'reusable' : 'reference-only',
      ...(order?.ref ? { order: order.ref } : {}),
      ...(o.fact ? { result: o.fact.source } : {}),
      createdAt: now,
    });
  }
  const unmapped = outcomes.filter((o) => o.decision === 'not-recognized').map((o) => o.requested);
  if (unmapped.length > 0) cards.push(unmappedCard(unmapped, ctx.lang));
  const practitioner = practitionerOfHook(req.context);
  if (practitioner) for (const d of docs) d.practitioner = practitioner;
  const note = federation ? federationNote(federation) : undefined;
  if (note) cards.push(federationCard(note, ctx.lang));
  if (docs.length > 0) await deps.cards.insertMany(docs);
  const results = [...new Set(prompted.flatMap((o) => (o.fact ? [o.fact.source] : [])))];
  return { cards, patients: await patientsLookup, results };
}
