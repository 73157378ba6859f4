/**
 * Query-time fan-out across the federation (docs/federation.md): a check whose local index has no reusable result
 * asks its neighbours, within a deadline, for the patient's facts (by province-derived pseudonymous key) of the items
 * asked; each holder answers with its own facts whose HR scope covers the requester and forwards the question along
 * the tree (up from a child, down from a parent), so every broker of the province is reached once. What each
 * neighbour did is in the answer: an unreachable one makes it local-only (or partial), never an error.
 *
 * Every call is audited on both sides: the asking broker records whom it asked, the holder records who asked for
 * which of its results and patients. No identifier ever leaves: the wire carries keys, item codes and division codes.
 */
import type { Bundle, BundleEntry, DiagnosticReport, Resource } from 'fhir/r4';
import { auditEvent, patientsOf } from '../audit/audit.js';
import type { AccessContext } from '../auth/tokens.js';
import { badRequest, forbidden, notFound } from '../fhir/outcomes.js';
import type { Logger } from '../log.js';
import type { FactProjector } from '../recognition/fact-store.js';
import type { RecognitionFact } from '../recognition/facts.js';
import type { BrokerReach, FederatedAnswer, FederatedQuery, FederationPort } from '../recognition/federation.js';
import type { Institution } from '../recognition/institutions.js';
import type { ResourceStore } from '../store/resource-store.js';
import type { BrokerRegistry, FederationBroker } from './brokers.js';
import { outboundEvent } from './audit.js';
import { NeighbourClient, NeighbourError } from './client.js';
import { DIVISION_CODE, isWithin, scopeCovers, scopeOf } from './scope.js';

/** Time kept back at each hop for the answer's way back (serialising, the network). */
const HOP_MARGIN_MS = 60;
/** Below this a broker answers from its own index only. */
const MIN_FORWARD_MS = 40;
/** A doctor opening a remote result waits longer than a check at order entry. */
const READ_DEADLINE_MS = 5000;
const MAX_PATH = 8;
const KEY = /^[0-9a-f]{64}$/;

export interface FederationServiceDeps {
  registry: BrokerRegistry;
  facts: FactProjector;
  store: ResourceStore;
  log: Logger;
  /** This broker's FHIR base URL, when configured (HUREN_BASE_URL); else taken from each inbound request. */
  baseUrl: string | undefined;
  /** The longest a check waits for its federation (ms). */
  deadlineMs: number;
}

/** The question on the wire (POST /federation/facts). */
export interface FactsRequest {
  patientKeys: string[];
  items: string[];
  from: string;
  until: string;
  requester: { district: string; level: string };
  /** Base URLs of the brokers the question has passed through (no broker is asked twice). */
  path: string[];
  /** What is left of the asking check's deadline (ms). */
  deadlineMs: number;
}

/** A remote read on the wire (POST /federation/read). */
export interface ReadRequest {
  reference: string;
  requester: { district: string };
  path: string[];
  deadlineMs: number;
}

type Origin = 'local' | FederationBroker;

export class FederationService implements FederationPort {
  private readonly client = new NeighbourClient();

  constructor(private readonly deps: FederationServiceDeps) {}

  async isConfigured(): Promise<boolean> {
    return (await this.deps.registry.list()).some((b) => b.enabled);
  }

  /** FederationPort: asks every neighbour (the check is local to this broker). */
  async ask(query: FederatedQuery): Promise<FederatedAnswer> {
    const self = this.deps.baseUrl ?? 'urn:huren:this-broker';
    const targets = await this.targets('local', [self]);
    const answer = await this.fanOut(
      targets,
      {
        patientKeys: query.patientKeys,
        items: query.items,
        from: query.from.toISOString(),
        until: query.until.toISOString(),
        requester: query.requester,
        path: [self],
        deadlineMs: this.deps.deadlineMs,
      },
      this.deps.deadlineMs,
    );
    await this.auditOutbound(
      'facts',
      answer.reach,
      answer.facts.map((f) => f.source),
    );
    return answer;
  }

  /** POST /federation/facts: this broker's facts whose scope covers the requester, and its other neighbours'. */
  async answerFacts(
    access: AccessContext,
    body: unknown,
    selfBase: string,
    requestId?: string,
  ): Promise<FederatedAnswer> {
    const caller = await this.callerOf(access);
    const q = parseFactsRequest(body);
    assertRequesterOf(caller, q.requester.district);
    const rules = this.deps.facts.rules;
    const wanted = new Set(q.items);
    const forwardMs = q.deadlineMs - HOP_MARGIN_MS;
    const path = [...q.path, selfBase];
    const targets = forwardMs >= MIN_FORWARD_MS ? await this.targets(caller, path) : [];
    const [local, remote] = await Promise.all([
      this.deps.facts.facts.findForPatient(q.patientKeys, new Date(q.from), new Date(q.until)),
      this.fanOut(targets, { ...q, path }, forwardMs),
    ]);
    const facts: RecognitionFact[] = [];
    const institutions = new Map<string, Institution>();
    const sent: string[] = [];
    for (const f of local) {
      if (!wanted.has(f.item) || !f.performer) continue;
      const institution = rules.directory.byId.get(f.performer);
      const scope = scopeOf(f, rules.index, institution);
      if (!institution || !scope || !scopeCovers(scope, institution.district.code, q.requester.district)) continue;
      const performer = `${selfBase}/Organization/${institution.id}`;
      const source = `${selfBase}/${f.source}`;
      facts.push({
        ...f,
        id: `${source}#${f.item}`,
        source,
        performer,
        patientKeys: f.patientKeys.filter((k) => q.patientKeys.includes(k)),
      });
      institutions.set(performer, {
        ...institution,
        id: performer,
        // Alliances are local to a region: named by the holder so that no id of another region's alliance matches.
        alliances: institution.alliances.map((a) => `${selfBase}#${a}`),
      });
      sent.push(f.source);
    }
    for (const i of remote.institutions) institutions.set(i.id, i);
    await this.auditInbound(access, 'facts', [...new Set(sent)], await this.patientRefs(q.patientKeys), requestId);
    return { facts: [...facts, ...remote.facts], institutions: [...institutions.values()], reach: remote.reach };
  }

  /**
   * POST /federation/read: a result this broker holds (and its Observations), when its scope covers the requester;
   * otherwise passed on toward the broker that holds it. Not covered and unknown look alike (404).
   */
  async answerRead(access: AccessContext, body: unknown, selfBase: string, requestId?: string): Promise<Bundle> {
    const caller = await this.callerOf(access);
    const q = parseReadRequest(body);
    assertRequesterOf(caller, q.requester.district);
    if (q.reference.startsWith(`${selfBase}/`)) {
      const { bundle, resources, patients } = await this.readLocal(q.reference.slice(selfBase.length + 1), selfBase, q);
      await this.auditInbound(access, 'read', resources, patients, requestId);
      return bundle;
    }
    const path = [...q.path, selfBase];
    return this.forwardRead(await this.targets(caller, path), { ...q, path }, q.deadlineMs - HOP_MARGIN_MS);
  }

  /** FederationPort: a remote result for the doctor's view. */
  readResult(access: AccessContext, reference: string, district: string): Promise<Bundle> {
    return this.readRemote(access, reference, district);
  }

  /** A remote result for this broker's doctor (the doctor's view): asked of the neighbours, audited here. */
  async readRemote(access: AccessContext, reference: string, district: string): Promise<Bundle> {
    if (!/^https?:\/\/\S+\/(DiagnosticReport|Observation)\/[A-Za-z0-9\-.]{1,64}$/.test(reference)) {
      throw badRequest(
        'reference must be the absolute URL of a DiagnosticReport or Observation of another broker',
        'reference',
      );
    }
    const self = this.deps.baseUrl ?? 'urn:huren:this-broker';
    const targets = await this.targets('local', [self]);
    let status = 200;
    try {
      return await this.forwardRead(
        targets,
        { reference, requester: { district }, path: [self], deadlineMs: READ_DEADLINE_MS },
        READ_DEADLINE_MS,
      );
    } catch (err) {
      status = (err as { status?: number }).status ?? 500;
      throw err;
    } finally {
      await this.record(
        auditEvent({
          interaction: 'read',
          action: 'R',
          status,
          access,
          resources: [reference],
          patients: [],
          recorded: new Date(),
        }),
      );
    }
  }

  /** The neighbours a question goes to: all from here; from a child, the others and up; from above, down only. */
  private async targets(origin: Origin, path: string[]): Promise<FederationBroker[]> {
    const brokers = (await this.deps.registry.list()).filter((b) => b.enabled && !path.includes(b.baseUrl));
    if (origin === 'local') return brokers;
    if (origin.relation === 'child') return brokers.filter((b) => b._id !== origin._id);
    return brokers.filter((b) => b.relation === 'child');
  }

  private async fanOut(
    targets: FederationBroker[],
    request: FactsRequest,
    deadlineMs: number,
  ): Promise<FederatedAnswer> {
    const answers = await Promise.all(
      targets.map(async (b) => {
        const started = Date.now();
        const ms = Math.min(b.timeoutMs, deadlineMs);
        const reach = (answered: boolean, reason?: string): BrokerReach => ({
          broker: b._id,
          relation: b.relation,
          region: b.region,
          answered,
          ...(reason ? { reason } : {}),
          ms: Date.now() - started,
        });
        try {
          const body = await this.client.post(
            b,
            '/federation/facts',
            { ...request, deadlineMs: ms - HOP_MARGIN_MS },
            ms,
          );
          const answer = parseAnswer(body);
          return { answer, reach: [reach(true), ...answer.reach.map((r) => ({ ...r, via: r.via ?? b._id }))] };
        } catch (err) {
          const reason = err instanceof NeighbourError ? err.message : 'the answer could not be read';
          this.deps.log.warn('Federated broker did not answer', { broker: b._id, reason, ms: Date.now() - started });
          return { answer: undefined, reach: [reach(false, reason)] };
        }
      }),
    );
    const facts = new Map<string, RecognitionFact>();
    const institutions = new Map<string, Institution>();
    for (const { answer } of answers) {
      for (const f of answer?.facts ?? []) facts.set(f.id, f);
      for (const i of answer?.institutions ?? []) institutions.set(i.id, i);
    }
    return {
      facts: [...facts.values()],
      institutions: [...institutions.values()],
      reach: answers.flatMap((a) => a.reach),
    };
  }

  private async forwardRead(targets: FederationBroker[], request: ReadRequest, deadlineMs: number): Promise<Bundle> {
    // The neighbour the reference names first; the others only when none does (a deeper broker holds it).
    const direct = targets.filter((b) => request.reference.startsWith(`${b.baseUrl}/`));
    const asked = direct.length ? direct : targets;
    if (asked.length === 0 || deadlineMs < MIN_FORWARD_MS) {
      throw notFound('No broker of the federation serves this result to this requester');
    }
    try {
      return await Promise.any(
        asked.map(async (b) => {
          const body = (await this.client.post(
            b,
            '/federation/read',
            { ...request, deadlineMs },
            deadlineMs,
          )) as Bundle;
          if (body?.resourceType !== 'Bundle') throw new NeighbourError('the answer is not a Bundle');
          return body;
        }),
      );
    } catch {
      throw notFound('No broker of the federation serves this result to this requester (or none answered in time)');
    }
  }

  private async readLocal(
    ref: string,
    selfBase: string,
    q: ReadRequest,
  ): Promise<{ bundle: Bundle; resources: string[]; patients: string[] }> {
    const m = /^(DiagnosticReport|Observation)\/([A-Za-z0-9\-.]{1,64})$/.exec(ref);
    if (!m) throw notFound('Only DiagnosticReports and Observations are served to other brokers');
    const rules = this.deps.facts.rules;
    const facts = await this.deps.facts.facts.collection.find({ source: ref }).toArray();
    const covered = facts.some((f) => {
      const institution = f.performer ? rules.directory.byId.get(f.performer) : undefined;
      const scope = scopeOf(f, rules.index, institution);
      return institution && scope && scopeCovers(scope, institution.district.code, q.requester.district);
    });
    const doc = covered ? await this.deps.store.findCurrent(m[1]!, m[2]!) : null;
    if (!doc || doc.deleted || !doc.resource) {
      throw notFound('No result of this broker with that reference is recognisable for this requester');
    }
    const resources: Resource[] = [doc.resource];
    if (doc.resource.resourceType === 'DiagnosticReport') {
      const refs = ((doc.resource as DiagnosticReport).result ?? [])
        .map((r) => r.reference ?? '')
        .filter((r) => /^Observation\/[A-Za-z0-9\-.]{1,64}$/.test(r));
      const members = refs.length ? await this.deps.store.findCurrentMany(refs) : [];
      for (const d of members) if (!d.deleted && d.resource) resources.push(d.resource);
    }
    const entry: BundleEntry[] = resources.map((r) => ({
      fullUrl: `${selfBase}/${r.resourceType}/${r.id}`,
      resource: r,
    }));
    return {
      bundle: { resourceType: 'Bundle', type: 'collection', entry },
      resources: resources.map((r) => `${r.resourceType}/${r.id}`),
      patients: [...new Set(resources.flatMap((r) => patientsOf(r as Parameters<typeof patientsOf>[0])))],
    };
  }

  private async callerOf(access: AccessContext): Promise<FederationBroker> {
    const caller = access.role === 'broker' ? await this.deps.registry.byClient(access.clientId) : undefined;
    if (!caller || !caller.enabled) {
      throw forbidden('/federation is called by the registered brokers of the federation only');
    }
    return caller;
  }

  private async patientRefs(keys: string[]): Promise<string[]> {
    return (await this.deps.facts.patients.lookup(keys, 20)).map((r) => r.ref);
  }

  private async auditInbound(
    access: AccessContext,
    what: 'facts' | 'read',
    resources: string[],
    patients: string[],
    requestId?: string,
  ): Promise<void> {
    const event = auditEvent({
      interaction: what === 'read' ? 'read' : 'operation',
      action: what === 'read' ? 'R' : 'E',
      status: 200,
      access,
      resources,
      patients,
      ...(requestId ? { requestId } : {}),
      recorded: new Date(),
    });
    event.entity = [
      ...(event.entity ?? []),
      { name: what === 'read' ? 'federation-read' : 'federation-facts', description: 'asked by a federated broker' },
    ];
    await this.record(event);
  }

  /** The asking side's record: which neighbours were asked, which answered, which results they named. */
  private async auditOutbound(what: 'facts', reach: BrokerReach[], results: string[]): Promise<void> {
    if (reach.length === 0) return;
    await this.record(
      outboundEvent(
        reach.some((r) => r.answered),
        results,
        reach.map((r) => ({
          name: `federation-${what}`,
          description: `${r.relation} ${r.broker} (${r.region}): ${r.answered ? 'answered' : `not answered, ${r.reason ?? ''}`} in ${r.ms} ms`,
        })),
      ),
    );
  }

  private async record(event: ReturnType<typeof auditEvent>): Promise<void> {
    try {
      await this.deps.store.append(event as typeof event & { id: string });
    } catch (err) {
      this.deps.log.error('Audit event could not be written', { error: (err as Error).message });
      throw err;
    }
  }
}

/** A child speaks for its own region only; the parent and peers for the requesters of the whole tree above. */
function assertRequesterOf(caller: FederationBroker, district: string): void {
  if (caller.relation === 'child' && !isWithin(district, caller.region)) {
    throw forbidden(`The requester is outside region ${caller.region} of the calling broker`, 'requester.district');
  }
}

function stringArray(v: unknown, field: string, max: number, pattern?: RegExp): string[] {
  if (!Array.isArray(v) || v.length > max || v.some((s) => typeof s !== 'string' || (pattern && !pattern.test(s)))) {
    throw badRequest(
      `${field} must be an array of at most ${max} strings${pattern ? ' of the right form' : ''}`,
      field,
    );
  }
  return v as string[];
}

function deadlineOf(v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v > 10_000) {
    throw badRequest('deadlineMs must be a number of milliseconds up to 10000', 'deadlineMs');
  }
  return v;
}

function requesterOf(v: unknown): { district: string; level: string } {
  const r = (v ?? {}) as Record<string, unknown>;
  if (typeof r.district !== 'string' || !DIVISION_CODE.test(r.district)) {
    throw badRequest('requester.district must be a six-digit division code', 'requester.district');
  }
  return { district: r.district, level: typeof r.level === 'string' ? r.level : '' };
}

export function parseFactsRequest(body: unknown): FactsRequest {
  const b = (body ?? {}) as Record<string, unknown>;
  const patientKeys = stringArray(b.patientKeys, 'patientKeys', 8, KEY);
  if (patientKeys.length === 0) throw badRequest('patientKeys must name at least one key', 'patientKeys');
  const from = typeof b.from === 'string' ? Date.parse(b.from) : NaN;
  const until = typeof b.until === 'string' ? Date.parse(b.until) : NaN;
  if (Number.isNaN(from)) throw badRequest('from must be an instant', 'from');
  if (Number.isNaN(until) || until < from) throw badRequest('until must be an instant after from', 'until');
  return {
    patientKeys,
    items: stringArray(b.items, 'items', 1000),
    from: new Date(from).toISOString(),
    until: new Date(until).toISOString(),
    requester: requesterOf(b.requester),
    path: stringArray(b.path, 'path', MAX_PATH),
    deadlineMs: deadlineOf(b.deadlineMs),
  };
}

function parseReadRequest(body: unknown): ReadRequest {
  const b = (body ?? {}) as Record<string, unknown>;
  if (typeof b.reference !== 'string' || !/^https?:\/\/\S+$/.test(b.reference)) {
    throw badRequest('reference must be an absolute URL', 'reference');
  }
  return {
    reference: b.reference,
    requester: requesterOf(b.requester),
    path: stringArray(b.path, 'path', MAX_PATH),
    deadlineMs: deadlineOf(b.deadlineMs),
  };
}

/** A neighbour's answer, checked enough that nothing of another shape reaches the engine. */
function parseAnswer(body: unknown): FederatedAnswer {
  const b = (body ?? {}) as Record<string, unknown>;
  if (!Array.isArray(b.facts) || !Array.isArray(b.institutions) || !Array.isArray(b.reach)) {
    throw new NeighbourError('the answer is not a federation answer');
  }
  const facts = (b.facts as RecognitionFact[]).filter(
    (f) =>
      typeof f?.id === 'string' &&
      typeof f.source === 'string' &&
      /^https?:\/\//.test(f.source) &&
      typeof f.performer === 'string' &&
      typeof f.item === 'string' &&
      typeof f.effective === 'string' &&
      typeof f.effectiveDay === 'string' &&
      Array.isArray(f.patientKeys),
  );
  const institutions = (b.institutions as Institution[]).filter(
    (i) => typeof i?.id === 'string' && /^https?:\/\//.test(i.id) && typeof i.district?.code === 'string',
  );
  return { facts, institutions, reach: b.reach as BrokerReach[] };
}
