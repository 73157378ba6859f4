/**
 * The EHRs allowed to call Huren's CDS Hooks services (`cds_clients` collection) and the check of their JWT bearer
 * (CDS Hooks 2.0, "Trusting CDS Clients"): signed with an asymmetric algorithm by a key of an allow-listed `iss`,
 * `aud` the exact URL of the endpoint called, `exp` and `iat` present, `jti` never seen before. Each EHR acts for one
 * institution: its orders are checked, and its doctors' feedback recorded, as that institution's.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  errors as joseErrors,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
  SignJWT,
  type JSONWebKeySet,
  type JWK,
  type JWTVerifyGetKey,
} from 'jose';
import type { Collection, Db } from 'mongodb';
import type { SeenJtiDoc } from '../auth/tokens.js';
import { error } from '../fhir/outcomes.js';

export const CDS_CLIENTS_COLLECTION = 'cds_clients';

export interface CdsClientDoc {
  /** The `iss` the EHR signs its JWTs with. */
  _id: string;
  name: string;
  /** Institution id (Organization id) the EHR orders for. */
  institution: string;
  jwks?: JSONWebKeySet;
  jwksUri?: string;
  /**
   * FHIR base URLs the EHR's `fhirServer` may name (the URL or below it); unset: the EHR's own origin, the origin of
   * its `iss`. Anything else is refused: Huren never fetches a URL an EHR merely names (request forgery).
   */
  fhirServers?: string[];
  /** Browser origins the EHR's pages call the services from (CORS); unset: the origin of its `iss`. */
  origins?: string[];
  /** Language of the cards when the request does not say (`zh-CN` default, `en`). */
  language?: string;
  active: boolean;
  demo?: boolean;
}

/** Who is calling a CDS service, once its JWT checked out. */
export interface CdsCaller {
  iss: string;
  jti: string;
  client: CdsClientDoc;
}

/** Asymmetric algorithms only: `none` and HMAC (shared secrets) are refused, as the specification requires. */
export const CDS_JWT_ALGS = ['RS384', 'ES384', 'RS256', 'ES256'];
const CLOCK_SKEW_S = 30;
/** Longest JWT lifetime accepted: its jti is remembered that long. */
const MAX_LIFETIME_S = 3600;

/** Whether `url` is `base` or below it: same origin, and the path at a segment boundary (not a look-alike host). */
export function isUnderBase(url: string, base: string): boolean {
  let u: URL;
  let b: URL;
  try {
    u = new URL(url);
    b = new URL(base);
  } catch {
    return false;
  }
  if (u.origin !== b.origin) return false;
  const prefix = b.pathname.replace(/\/+$/, '');
  return u.pathname === prefix || u.pathname.startsWith(`${prefix}/`) || prefix === '';
}

/** The FHIR bases an EHR's `fhirServer` may be under: the registered ones, else the EHR's own origin. */
export function fhirServerBases(client: CdsClientDoc): string[] {
  if (client.fhirServers?.length) return client.fhirServers;
  try {
    return [new URL(client._id).origin];
  } catch {
    return [];
  }
}

/** The browser origins of an EHR: the registered ones, else the origin of its `iss`. */
export function browserOrigins(client: CdsClientDoc): string[] {
  if (client.origins?.length) return client.origins;
  try {
    return [new URL(client._id).origin];
  } catch {
    return [];
  }
}

/**
 * The browser origins of the registered EHRs, for CORS (CDS Hooks 2.0: browser-based CDS clients need it). Read from
 * the database at most every 30 s: EHRs are few, and a newly registered one is served within half a minute.
 */
export class CdsOrigins {
  private cached: { at: number; origins: Set<string> } | undefined;

  constructor(private readonly clients: Collection<CdsClientDoc>) {}

  async isAllowed(origin: string, now = Date.now()): Promise<boolean> {
    if (!this.cached || now - this.cached.at > 30_000) {
      const all = await this.clients.find({}).toArray();
      this.cached = { at: now, origins: new Set(all.filter((c) => c.active).flatMap(browserOrigins)) };
    }
    return this.cached.origins.has(origin);
  }
}

export function cdsClients(db: Db): Collection<CdsClientDoc> {
  return db.collection<CdsClientDoc>(CDS_CLIENTS_COLLECTION);
}

const remoteSets = new Map<string, JWTVerifyGetKey>();

/** The EHR's keys: inline, or fetched (and cached by jose) from its JWKS URL. */
function keysOf(client: CdsClientDoc): JWTVerifyGetKey | undefined {
  if (client.jwks) return createLocalJWKSet(client.jwks);
  if (!client.jwksUri) return undefined;
  let set = remoteSets.get(client.jwksUri);
  if (!set) {
    set = createRemoteJWKSet(new URL(client.jwksUri));
    remoteSets.set(client.jwksUri, set);
  }
  return set;
}

function unauthorized(detail: string): never {
  throw error(401, 'login', detail, undefined, {
    'WWW-Authenticate': `Bearer realm="huren-cds", error="invalid_token", error_description="${detail.replace(/"/g, "'")}"`,
  });
}

/**
 * Checks `Authorization: Bearer <JWT>` of a CDS Hooks call. `audiences` are the URLs the JWT may be addressed to
 * (the service URL; for feedback also the feedback URL). Throws 401 OperationOutcomes saying what is wrong.
 */
export async function verifyCdsJwt(
  authorization: string | undefined,
  audiences: string[],
  deps: { clients: Collection<CdsClientDoc>; seenJti: Collection<SeenJtiDoc>; now?: Date },
): Promise<CdsCaller> {
  if (!authorization) {
    unauthorized(
      'A CDS Hooks call needs Authorization: Bearer <JWT signed by the EHR> (CDS Hooks, Trusting CDS Clients)',
    );
  }
  const m = /^Bearer\s+([\w-]+\.[\w-]+\.[\w-]*)$/i.exec(authorization);
  if (!m) unauthorized('The Authorization header must be "Bearer <JWT>"');
  const jwt = m[1]!;
  let iss: unknown;
  try {
    iss = decodeJwt(jwt).iss;
  } catch {
    unauthorized('The bearer token is not a JWT');
  }
  // Only a string reaches the query: an object `iss` would probe the registry.
  const client = typeof iss === 'string' ? await deps.clients.findOne({ _id: iss }) : null;
  if (!client || !client.active) unauthorized('The JWT iss is not a registered EHR');
  const keys = keysOf(client);
  if (!keys) unauthorized('The EHR has no registered keys');
  const now = deps.now ?? new Date();
  let payload;
  try {
    ({ payload } = await jwtVerify(jwt, keys, {
      issuer: client._id,
      audience: audiences,
      algorithms: CDS_JWT_ALGS,
      clockTolerance: CLOCK_SKEW_S,
      currentDate: now,
      requiredClaims: ['exp', 'iat', 'jti'],
    }));
  } catch (err) {
    unauthorized(problemOf(err, audiences[0]!));
  }
  const nowS = Math.floor(now.getTime() / 1000);
  if (payload.exp! > nowS + MAX_LIFETIME_S + CLOCK_SKEW_S) {
    unauthorized(`The JWT exp is more than ${MAX_LIFETIME_S / 60} minutes in the future`);
  }
  if (typeof payload.jti !== 'string' || payload.jti.length > 256) unauthorized('The JWT jti must be a string');
  try {
    await deps.seenJti.insertOne({
      _id: `cds ${client._id} ${payload.jti}`,
      expiresAt: new Date((payload.exp! + CLOCK_SKEW_S) * 1000),
    });
  } catch (err) {
    if ((err as { code?: number }).code === 11000) unauthorized('The JWT jti was already used (replay)');
    throw err;
  }
  return { iss: client._id, jti: payload.jti, client };
}

function problemOf(err: unknown, audience: string): string {
  if (err instanceof joseErrors.JWTExpired) return 'The JWT has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return `The JWT aud must be the URL of the service called: ${audience}`;
    return `The JWT claim '${err.claim}' is invalid (${err.reason}); iss, aud, exp, iat and jti are required`;
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) {
    return `The JWT must be signed with one of ${CDS_JWT_ALGS.join(', ')} (none and HMAC are refused)`;
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed || err instanceof joseErrors.JWKSNoMatchingKey) {
    return 'The JWT signature does not match any key registered for the EHR';
  }
  return 'The JWT could not be verified';
}

// ---- demo EHR ----

export interface DemoCdsClientFile {
  iss: string;
  institution: string;
  privateJwk: JWK;
}

export const DEMO_CDS_CLIENT = {
  iss: 'https://ehr.demo-hospital-b.example.org',
  name: 'Demo EHR of Hospital B (CDS Hooks client)',
  institution: 'demo-hospital-b',
};

function demoFile(dataDir: string): string {
  return path.join(dataDir, 'demo-cds-clients', 'demo-ehr-hospital-b.json');
}

/**
 * Registers the demo EHR of Hospital B; its private key is generated once into `<dataDir>/demo-cds-clients/` (never
 * committed), like the demo SMART clients.
 */
export async function seedDemoCdsClient(clients: Collection<CdsClientDoc>, dataDir: string): Promise<void> {
  const file = demoFile(dataDir);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  let saved = readDemoCdsClient(dataDir);
  if (!saved) {
    const { privateKey } = await generateKeyPair('ES384', { extractable: true });
    const jwk = { ...(await exportJWK(privateKey)), kid: 'demo-ehr-hospital-b-1', alg: 'ES384' };
    saved = { iss: DEMO_CDS_CLIENT.iss, institution: DEMO_CDS_CLIENT.institution, privateJwk: jwk };
    try {
      fs.writeFileSync(file, JSON.stringify(saved, null, 2), { flag: 'wx', mode: 0o600 });
    } catch {
      // A second process starting at the same time wrote it first: use that one.
      saved = readDemoCdsClient(dataDir)!;
    }
  }
  const { d: _d, ...publicJwk } = saved.privateJwk;
  await clients.replaceOne(
    { _id: saved.iss },
    {
      name: DEMO_CDS_CLIENT.name,
      institution: saved.institution,
      jwks: { keys: [publicJwk] },
      active: true,
      demo: true,
    },
    { upsert: true },
  );
}

export async function removeDemoCdsClients(clients: Collection<CdsClientDoc>): Promise<void> {
  await clients.deleteMany({ demo: true });
}

export function readDemoCdsClient(dataDir: string): DemoCdsClientFile | undefined {
  const file = demoFile(dataDir);
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as DemoCdsClientFile) : undefined;
}

/** A CDS Hooks JWT as an EHR signs it for one call (`aud` = the URL of the endpoint called), valid 5 minutes. */
export async function signCdsJwt(iss: string, privateJwk: JWK, aud: string, lifetimeS = 300): Promise<string> {
  const alg = privateJwk.alg ?? 'ES384';
  const key = await importJWK(privateJwk, alg);
  const nowS = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg, kid: privateJwk.kid, typ: 'JWT' })
    .setIssuer(iss)
    .setAudience(aud)
    .setIssuedAt(nowS)
    .setExpirationTime(nowS + lifetimeS)
    .setJti(randomUUID())
    .sign(key);
}
