import { createHash, timingSafeEqual } from 'node:crypto';
import type { JWK } from 'jose';
import type { Collection, Db } from 'mongodb';
import { badRequest } from '../fhir/outcomes.js';
import { ID_PATTERN } from '../fhir/types.js';

/**
 * The registry of hospital FHIR servers the broker pulls from (`sync_endpoints`), their sync status
 * (`sync_status`) and the leases that let one broker process at a time pull a hospital (`sync_leases`). Shared state
 * lives in the database: broker processes are stateless (design.md, scale).
 */

export type EndpointAuth =
  | { type: 'none' }
  | { type: 'static'; token: string }
  | { type: 'backend-services'; tokenUrl: string; clientId: string; privateJwk: JWK; scope: string };

export interface SyncEndpoint {
  _id: string;
  /** The hospital (`Organization/…`) every pulled resource must belong to. */
  institution: string;
  /** FHIR base URL of the hospital's server. */
  baseUrl: string;
  auth: EndpointAuth;
  /** Minutes between scheduled pulls; 0 = only on demand (`huren sync`, notifications). */
  scheduleMinutes: number;
  /** Results per page asked for (`_count`). */
  pageSize: number;
  /** Seconds one request to the hospital may take before it counts as failed. */
  timeoutSeconds: number;
  enabled: boolean;
  /** SHA-256 of the secret a hospital's subscription notifications carry (`Authorization: Bearer <secret>`). */
  notifySecretSha256?: string;
}

export interface SyncStatus {
  _id: string;
  /** Source `meta.lastUpdated` of the newest result durably ingested: the next pull starts there. */
  checkpoint?: string;
  lastRunAt?: Date;
  lastSuccessAt?: Date;
  lastErrorAt?: Date;
  lastError?: string;
  consecutiveFailures: number;
  /** Counts of the last run: reports read from the hospital, and what became of the resources, also per type. */
  lastRun?: SyncRunCounts;
  /** The last refused resources (ref, where, first issue), newest run only, at most 20. */
  lastRejects?: { ref?: string; where: string; diagnostics?: string }[];
  lastNotificationAt?: Date;
  lastNotificationType?: string;
}

/** What became of a run's resources (`older`: an older version than the one stored, skipped). */
export interface ResourceCounts {
  created: number;
  updated: number;
  unchanged: number;
  older: number;
  refused: number;
}

export interface SyncRunCounts {
  /** DiagnosticReports read from the hospital (each brings its results and patient). */
  reportsFetched: number;
  /** Every resource of the run, whatever its type. */
  resources: ResourceCounts;
  /** The same per resource type (`unknown`: a refused entry without a type). */
  byType: Record<string, ResourceCounts>;
}

export interface SyncLease {
  _id: string; // `${endpoint}#${generation}`
  endpoint: string;
  generation: number;
  holder: string;
  until: Date;
}

export interface SyncCollections {
  endpoints: Collection<SyncEndpoint>;
  status: Collection<SyncStatus>;
  leases: Collection<SyncLease>;
}

export async function syncCollections(db: Db): Promise<SyncCollections> {
  const c = {
    endpoints: db.collection<SyncEndpoint>('sync_endpoints'),
    status: db.collection<SyncStatus>('sync_status'),
    leases: db.collection<SyncLease>('sync_leases'),
  };
  await c.leases.createIndex({ endpoint: 1, generation: -1 });
  return c;
}

const DEFAULT_PAGE_SIZE = 100;
const DEFAULT_TIMEOUT_SECONDS = 30;

/**
 * An endpoint definition from `PUT /admin/sync/endpoints/{id}`, checked field by field (400 with the field at fault).
 * `notifySecret` is stored only as its hash.
 */
export function parseEndpoint(id: string, body: unknown): SyncEndpoint {
  if (!ID_PATTERN.test(id)) throw badRequest(`'${id}' is not a valid endpoint id (1-64 of A-Z a-z 0-9 - .)`, 'id');
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw badRequest('Expected a JSON object', '$');
  const b = body as Record<string, unknown>;
  const institution = String(b.institution ?? '');
  if (!/^Organization\/[A-Za-z0-9\-.]{1,64}$/.test(institution)) {
    throw badRequest(
      'institution must be Organization/<id>, the hospital whose results this server holds',
      'institution',
    );
  }
  const baseUrl = String(b.baseUrl ?? '').replace(/\/+$/, '');
  if (!/^https?:\/\/\S+$/.test(baseUrl)) throw badRequest('baseUrl must be the http(s) FHIR base URL', 'baseUrl');
  const scheduleMinutes = wholeNumber(b.scheduleMinutes, 'scheduleMinutes', 0, 0, 10080);
  const pageSize = wholeNumber(b.pageSize, 'pageSize', DEFAULT_PAGE_SIZE, 1, 1000);
  const timeoutSeconds = wholeNumber(b.timeoutSeconds, 'timeoutSeconds', DEFAULT_TIMEOUT_SECONDS, 1, 600);
  const endpoint: SyncEndpoint = {
    _id: id,
    institution,
    baseUrl,
    auth: parseAuth(b.auth),
    scheduleMinutes,
    pageSize,
    timeoutSeconds,
    enabled: b.enabled !== false,
  };
  if (b.notifySecret !== undefined) {
    if (typeof b.notifySecret !== 'string' || Buffer.byteLength(b.notifySecret) < 16) {
      throw badRequest('notifySecret must be a string of at least 16 bytes', 'notifySecret');
    }
    endpoint.notifySecretSha256 = sha256(b.notifySecret);
  }
  return endpoint;
}

function parseAuth(value: unknown): EndpointAuth {
  const a = (value ?? { type: 'none' }) as Record<string, unknown>;
  switch (a.type) {
    case 'none':
      return { type: 'none' };
    case 'static':
      if (typeof a.token !== 'string' || !a.token) throw badRequest('auth.token is required', 'auth.token');
      return { type: 'static', token: a.token };
    case 'backend-services': {
      for (const field of ['tokenUrl', 'clientId', 'scope'] as const) {
        if (typeof a[field] !== 'string' || !a[field]) throw badRequest(`auth.${field} is required`, `auth.${field}`);
      }
      const jwk = a.privateJwk as JWK | undefined;
      if (!jwk || typeof jwk !== 'object' || !('d' in jwk)) {
        throw badRequest(
          'auth.privateJwk must be the private JWK the client signs its assertions with',
          'auth.privateJwk',
        );
      }
      return {
        type: 'backend-services',
        tokenUrl: a.tokenUrl as string,
        clientId: a.clientId as string,
        scope: a.scope as string,
        privateJwk: jwk,
      };
    }
    default:
      throw badRequest("auth.type must be 'none', 'static' or 'backend-services'", 'auth.type');
  }
}

function wholeNumber(value: unknown, field: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw badRequest(`${field} must be a whole number from ${min} to ${max}`, field);
  }
  return value;
}

/** What an administrator sees of an endpoint: no token, key or secret. */
export function publicView(e: SyncEndpoint) {
  const { _id, auth, notifySecretSha256, ...rest } = e;
  const shownAuth =
    auth.type === 'backend-services'
      ? { type: auth.type, tokenUrl: auth.tokenUrl, clientId: auth.clientId, scope: auth.scope }
      : { type: auth.type };
  return { id: _id, ...rest, auth: shownAuth, notifications: notifySecretSha256 !== undefined };
}

export const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** Constant-time check of a notification's secret against the stored hash. */
export function secretMatches(endpoint: SyncEndpoint, secret: string): boolean {
  if (!endpoint.notifySecretSha256) return false;
  const a = Buffer.from(sha256(secret), 'hex');
  const b = Buffer.from(endpoint.notifySecretSha256, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * A lease on pulling one hospital. Taking one is a unique insert of the next generation's document, the one write
 * that is atomic on MongoDB and FerretDB 1.24 alike (a compare-and-set update is not atomic on FerretDB); only the
 * holder ever updates its own document afterwards.
 */
export async function acquireLease(
  leases: Collection<SyncLease>,
  endpoint: string,
  holder: string,
  ms: number,
  now = new Date(),
): Promise<SyncLease | { busyUntil: Date }> {
  const latest = await leases.find({ endpoint }).sort({ generation: -1 }).limit(1).next();
  if (latest && latest.until > now && latest.holder !== holder) return { busyUntil: latest.until };
  const generation = (latest?.generation ?? 0) + 1;
  const lease: SyncLease = {
    _id: `${endpoint}#${generation}`,
    endpoint,
    generation,
    holder,
    until: new Date(now.getTime() + ms),
  };
  try {
    await leases.insertOne(lease);
  } catch (err) {
    if ((err as { code?: number }).code === 11000) return { busyUntil: lease.until }; // another process took it first
    throw err;
  }
  await leases.deleteMany({ endpoint, generation: { $lt: generation } });
  return lease;
}

export async function renewLease(leases: Collection<SyncLease>, lease: SyncLease, ms: number): Promise<void> {
  lease.until = new Date(Date.now() + ms);
  await leases.updateOne({ _id: lease._id }, { $set: { until: lease.until } });
}

export async function releaseLease(leases: Collection<SyncLease>, lease: SyncLease): Promise<void> {
  await leases.updateOne({ _id: lease._id }, { $set: { until: new Date(0) } });
}
