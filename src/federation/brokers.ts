/**
 * The federation registry (`federation_brokers`): the brokers this one talks to — its parent (the city's or the
 * province's broker), its children (districts, cities) and optional peers — each with its FHIR base URL, the region it
 * serves (administrative division code), this broker's SMART Backend Services credentials at it (outbound) and the
 * public keys of its client here (inbound, registered as a `broker` client). Managed like the hospital sync endpoints
 * (admin routes); shared state lives in the database, each process keeps a copy refreshed every few seconds.
 */
import type { JSONWebKeySet, JWK } from 'jose';
import type { Collection, Db } from 'mongodb';
import type { ClientDoc } from '../auth/tokens.js';
import { badRequest } from '../fhir/outcomes.js';
import { ID_PATTERN } from '../fhir/types.js';
import { DIVISION_CODE } from './scope.js';

export const BROKERS_COLLECTION = 'federation_brokers';
export const RELATIONS = ['parent', 'child', 'peer'] as const;
export type Relation = (typeof RELATIONS)[number];

/** What a broker client may be granted: reading the results it is answered about, through /federation only. */
export const BROKER_SCOPES = 'system/DiagnosticReport.rs system/Observation.rs';

export interface FederationBroker {
  _id: string;
  relation: Relation;
  name?: string;
  /** FHIR base URL of the neighbour (`https://…/fhir`); its federation endpoints are beside it. */
  baseUrl: string;
  /** Division code of the region it serves: 370000 (a province), 370200 (a city), 370211 (a district). */
  region: string;
  /** This broker's client at the neighbour. */
  outbound: { tokenUrl: string; clientId: string; privateJwk: JWK; scope: string };
  /** The neighbour's client at this broker: its id and public keys. */
  inbound: { clientId: string; jwks: JSONWebKeySet };
  /** The longest one call to it may take (ms), within the check's own deadline. */
  timeoutMs: number;
  enabled: boolean;
  /** For the parent: this broker applies its catalogue, with its own additions on top (rules.ts). */
  inheritRules?: boolean;
}

const DEFAULT_TIMEOUT_MS = 400;

/** A broker definition from `PUT /admin/federation/brokers/{id}`, checked field by field (400 naming the field). */
export function parseBroker(id: string, body: unknown): FederationBroker {
  if (!ID_PATTERN.test(id)) throw badRequest(`'${id}' is not a valid broker id (1-64 of A-Z a-z 0-9 - .)`, 'id');
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw badRequest('Expected a JSON object', '$');
  const b = body as Record<string, unknown>;
  if (!(RELATIONS as readonly unknown[]).includes(b.relation)) {
    throw badRequest(`relation must be one of ${RELATIONS.join(', ')}`, 'relation');
  }
  const baseUrl = String(b.baseUrl ?? '').replace(/\/+$/, '');
  if (!/^https?:\/\/[^\s/]+(\/\S*)?\/fhir$/.test(baseUrl)) {
    throw badRequest("baseUrl must be the neighbour's http(s) FHIR base URL, ending in /fhir", 'baseUrl');
  }
  const region = String(b.region ?? '');
  if (!DIVISION_CODE.test(region)) {
    throw badRequest('region must be the six-digit administrative division code the broker serves', 'region');
  }
  const o = (b.outbound ?? {}) as Record<string, unknown>;
  for (const field of ['tokenUrl', 'clientId'] as const) {
    if (typeof o[field] !== 'string' || !o[field])
      throw badRequest(`outbound.${field} is required`, `outbound.${field}`);
  }
  const privateJwk = o.privateJwk as JWK | undefined;
  if (!privateJwk || typeof privateJwk !== 'object' || !('d' in privateJwk)) {
    throw badRequest(
      'outbound.privateJwk must be the private JWK this broker signs its assertions with',
      'outbound.privateJwk',
    );
  }
  const i = (b.inbound ?? {}) as Record<string, unknown>;
  if (typeof i.clientId !== 'string' || !ID_PATTERN.test(i.clientId)) {
    throw badRequest("inbound.clientId is required: the neighbour's client id at this broker", 'inbound.clientId');
  }
  const jwks = i.jwks as JSONWebKeySet | undefined;
  if (!jwks || !Array.isArray(jwks.keys) || jwks.keys.length === 0 || jwks.keys.some((k) => !k || 'd' in k)) {
    throw badRequest("inbound.jwks must be the neighbour's public key set (no private parts)", 'inbound.jwks');
  }
  const timeoutMs = b.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 50 || timeoutMs > 10_000) {
    throw badRequest('timeoutMs must be a whole number from 50 to 10000', 'timeoutMs');
  }
  if (b.name !== undefined && typeof b.name !== 'string') throw badRequest('name must be a string', 'name');
  if (
    b.inheritRules !== undefined &&
    (typeof b.inheritRules !== 'boolean' || (b.inheritRules && b.relation !== 'parent'))
  ) {
    throw badRequest('inheritRules is true or false, and true only for the parent', 'inheritRules');
  }
  return {
    _id: id,
    relation: b.relation as Relation,
    ...(typeof b.name === 'string' ? { name: b.name } : {}),
    baseUrl,
    region,
    outbound: {
      tokenUrl: o.tokenUrl as string,
      clientId: o.clientId as string,
      privateJwk,
      scope: typeof o.scope === 'string' && o.scope ? o.scope : BROKER_SCOPES,
    },
    inbound: { clientId: i.clientId, jwks },
    timeoutMs,
    enabled: b.enabled !== false,
    ...(b.inheritRules === true ? { inheritRules: true } : {}),
  };
}

/** What an administrator sees of a broker: no private key. */
export function publicView(b: FederationBroker) {
  const { _id, outbound, ...rest } = b;
  const { privateJwk: _secret, ...shownOutbound } = outbound;
  return { id: _id, ...rest, outbound: shownOutbound };
}

/** The origin of a FHIR base URL (`http://host:port/fhir` → `http://host:port`): where /federation lives. */
export function originOf(baseUrl: string): string {
  return baseUrl.replace(/\/fhir$/, '');
}

export class BrokerRegistry {
  readonly collection: Collection<FederationBroker>;
  private readonly clients: Collection<ClientDoc>;
  private cache: { at: number; brokers: FederationBroker[] } | undefined;

  constructor(
    db: Db,
    private readonly refreshMs = 5000,
  ) {
    this.collection = db.collection<FederationBroker>(BROKERS_COLLECTION);
    this.clients = db.collection<ClientDoc>('clients');
  }

  /** Every registered broker (a handful: one parent, a few children and peers), from the copy when fresh. */
  async list(): Promise<FederationBroker[]> {
    if (this.cache && Date.now() - this.cache.at < this.refreshMs) return this.cache.brokers;
    const brokers = await this.collection.find({}).toArray();
    this.cache = { at: Date.now(), brokers };
    return brokers;
  }

  async get(id: string): Promise<FederationBroker | null> {
    return this.collection.findOne({ _id: id });
  }

  /** The registered neighbour a `broker` client is, by its client id. */
  async byClient(clientId: string): Promise<FederationBroker | undefined> {
    return (await this.list()).find((b) => b.inbound.clientId === clientId);
  }

  /** Stores a broker and registers (or updates) its client here with role `broker`. */
  async put(broker: FederationBroker): Promise<{ created: boolean }> {
    const previous = await this.get(broker._id);
    if (previous && previous.inbound.clientId !== broker.inbound.clientId) {
      await this.clients.updateOne({ _id: previous.inbound.clientId }, { $set: { active: false } });
    }
    await this.clients.replaceOne(
      { _id: broker.inbound.clientId },
      {
        name: `Federated broker ${broker.name ?? broker._id} (${broker.relation}, region ${broker.region})`,
        organization: `Organization/broker-${broker._id}`,
        role: 'broker',
        scopes: BROKER_SCOPES,
        jwks: broker.inbound.jwks,
        active: broker.enabled,
      },
      { upsert: true },
    );
    const result = await this.collection.replaceOne({ _id: broker._id }, broker, { upsert: true });
    this.cache = undefined;
    return { created: result.upsertedCount > 0 };
  }

  /** Removes a broker and deactivates its client. */
  async delete(id: string): Promise<boolean> {
    const previous = await this.get(id);
    if (!previous) return false;
    await this.clients.updateOne({ _id: previous.inbound.clientId }, { $set: { active: false } });
    await this.collection.deleteOne({ _id: id });
    this.cache = undefined;
    return true;
  }
}
