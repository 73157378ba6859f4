import { randomUUID } from 'node:crypto';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  SignJWT,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
} from 'jose';
import type { Collection } from 'mongodb';
import type { KeyRing } from './keys.js';
import { isCoveredBy, parseScope, parseScopes } from './scopes.js';

/**
 * `supervisor`: the health commission's expert reviewer of declines (aggregates, and the cases with their prior result).
 * `broker`: another Huren broker of the federation (issue 22), registered through /admin/federation/brokers.
 */
export type Role = 'his' | 'clinician' | 'bureau' | 'supervisor' | 'admin' | 'broker';
export const ROLES: readonly Role[] = ['his', 'clinician', 'bureau', 'supervisor', 'admin', 'broker'];

/** A registered system client (SMART Backend Services). */
export interface ClientDoc {
  _id: string; // client_id
  name: string;
  /** `Organization/{id}` the client acts for. */
  organization: string;
  /**
   * Other institutions this client is registered to write for as well (`Organization/{id}`), e.g. a regional lab
   * system that reports for its member hospitals: they may be co-owners (performer, requester, …) of what it writes.
   */
  actsFor?: string[];
  role: Role;
  /** Space-separated SMART scopes the client may be granted. */
  scopes: string;
  jwks?: JSONWebKeySet;
  jwksUri?: string;
  active: boolean;
  /** Seeded for the demo; never present in production mode. */
  demo?: boolean;
}

/** Assertion `jti`s already used, so a replayed assertion is refused (SMART Backend Services §Authenticating). */
export interface SeenJtiDoc {
  _id: string; // `${client_id} ${jti}`
  expiresAt: Date;
}

/** An OAuth 2.0 error response (RFC 6749 §5.2). */
export class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly error: 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'unsupported_grant_type' | 'invalid_scope',
    readonly description: string,
  ) {
    super(description);
  }
}

export interface AccessContext {
  clientId: string;
  organization: string;
  /** Other institutions the client is registered to write for (ClientDoc.actsFor); usually none. */
  actsFor?: string[];
  role: Role;
  scope: string;
  /** The access token's id, recorded in audit events. */
  jti: string;
}

export interface TokenDeps {
  clients: Collection<ClientDoc>;
  seenJti: Collection<SeenJtiDoc>;
  keyRing: KeyRing;
  /** The broker's own identifier, `iss` and `aud` of its access tokens. */
  issuer: string;
  tokenLifetimeSeconds: number;
  clock?: () => Date;
}

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const ASSERTION_ALGS = ['RS384', 'ES384'];
const MAX_ASSERTION_LIFETIME_S = 300;
const CLOCK_SKEW_S = 30;

/**
 * `POST /auth/token` for SMART Backend Services: client_credentials with a private_key_jwt client assertion.
 * `tokenUrl` is the audience the assertion must carry.
 */
export async function issueToken(
  form: Record<string, string | undefined>,
  tokenUrl: string,
  deps: TokenDeps,
): Promise<{ access_token: string; token_type: 'bearer'; expires_in: number; scope: string }> {
  const now = (deps.clock ?? (() => new Date()))();
  if (form.grant_type !== 'client_credentials') {
    throw new OAuthError(400, 'unsupported_grant_type', 'grant_type must be client_credentials');
  }
  if (form.client_assertion_type !== ASSERTION_TYPE) {
    throw new OAuthError(400, 'invalid_request', `client_assertion_type must be ${ASSERTION_TYPE}`);
  }
  const assertion = form.client_assertion;
  if (!assertion) throw new OAuthError(400, 'invalid_request', 'client_assertion is required');
  if (!form.scope) throw new OAuthError(400, 'invalid_scope', 'scope is required, e.g. system/Observation.rs');

  let claimedIssuer: string | undefined;
  try {
    decodeProtectedHeader(assertion);
    claimedIssuer = decodeJwt(assertion).iss;
  } catch {
    throw new OAuthError(401, 'invalid_client', 'client_assertion is not a JWT');
  }
  // Only a string may reach the query: an `iss` such as {"$regex": "^demo-"} would probe which clients exist.
  const client = typeof claimedIssuer === 'string' ? await deps.clients.findOne({ _id: claimedIssuer }) : null;
  if (!client || !client.active) throw new OAuthError(401, 'invalid_client', 'Unknown or inactive client (iss)');

  const keys: JWTVerifyGetKey | undefined = client.jwks
    ? createLocalJWKSet(client.jwks)
    : client.jwksUri
      ? createRemoteJWKSet(new URL(client.jwksUri))
      : undefined;
  if (!keys) throw new OAuthError(401, 'invalid_client', 'The client has no registered keys');

  let payload;
  try {
    ({ payload } = await jwtVerify(assertion, keys, {
      issuer: client._id,
      subject: client._id,
      audience: tokenUrl,
      algorithms: ASSERTION_ALGS,
      clockTolerance: CLOCK_SKEW_S,
      currentDate: now,
      requiredClaims: ['exp', 'jti'],
    }));
  } catch (err) {
    throw new OAuthError(401, 'invalid_client', assertionProblem(err, tokenUrl));
  }
  const nowS = Math.floor(now.getTime() / 1000);
  if (payload.exp! > nowS + MAX_ASSERTION_LIFETIME_S + CLOCK_SKEW_S) {
    throw new OAuthError(401, 'invalid_client', 'The assertion exp is more than 5 minutes in the future');
  }
  try {
    await deps.seenJti.insertOne({
      _id: `${client._id} ${payload.jti}`,
      expiresAt: new Date((payload.exp! + CLOCK_SKEW_S) * 1000),
    });
  } catch (err) {
    if ((err as { code?: number }).code === 11000) {
      throw new OAuthError(401, 'invalid_client', 'The assertion jti was already used (replay)');
    }
    throw err;
  }

  const allowed = parseScopes(client.scopes);
  const requested = form.scope.split(/\s+/).filter(Boolean);
  for (const text of requested) {
    const scope = parseScope(text);
    if (!scope)
      throw new OAuthError(400, 'invalid_scope', `'${text}' is not a SMART system scope such as system/Observation.rs`);
    if (!isCoveredBy(scope, allowed)) {
      throw new OAuthError(
        400,
        'invalid_scope',
        `'${text}' is not allowed for this client (allowed: ${client.scopes})`,
      );
    }
  }
  const granted = requested.join(' ');
  const { kid, key } = await deps.keyRing.signingKey();
  const actsFor = (client.actsFor ?? []).filter((o) => typeof o === 'string');
  const accessToken = await new SignJWT({
    scope: granted,
    org: client.organization,
    role: client.role,
    ...(actsFor.length ? { acts_for: actsFor } : {}),
  })
    .setProtectedHeader({ alg: 'ES256', kid, typ: 'at+jwt' })
    .setIssuer(deps.issuer)
    .setAudience(deps.issuer)
    .setSubject(client._id)
    .setJti(randomUUID())
    .setIssuedAt(nowS)
    .setExpirationTime(nowS + deps.tokenLifetimeSeconds)
    .sign(key);
  return { access_token: accessToken, token_type: 'bearer', expires_in: deps.tokenLifetimeSeconds, scope: granted };
}

function assertionProblem(err: unknown, tokenUrl: string): string {
  if (err instanceof joseErrors.JWTExpired) return 'The assertion has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return `The assertion aud must be the token endpoint ${tokenUrl}`;
    return `The assertion claim '${err.claim}' is invalid (${err.reason}): iss and sub must be the client_id, exp and jti are required`;
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'The assertion must be signed with RS384 or ES384';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed || err instanceof joseErrors.JWKSNoMatchingKey) {
    return 'The assertion signature does not match any key registered for the client';
  }
  return 'The assertion could not be verified';
}

/** A token already verified: its caller, its expiry and the key that signed it. */
interface VerifiedToken {
  access: AccessContext;
  kid: string;
  expMs: number;
  nbfMs: number;
}
/** Tokens verified by each key ring: a hospital system sends the same token for minutes, one request after another. */
const verifiedTokens = new WeakMap<KeyRing, Map<string, VerifiedToken>>();
const MAX_VERIFIED_TOKENS = 10_000;

/**
 * Checks a bearer access token issued by this broker; returns who is calling, or undefined when invalid. A token's
 * signature is verified once (an ECDSA verification is the largest CPU cost of a small request); later uses check
 * that it has not expired and that its signing key is still accepted.
 */
export async function verifyAccessToken(
  token: string,
  deps: Pick<TokenDeps, 'keyRing' | 'issuer' | 'clock'>,
): Promise<AccessContext | undefined> {
  const now = (deps.clock ?? (() => new Date()))();
  let cache = verifiedTokens.get(deps.keyRing);
  if (!cache) verifiedTokens.set(deps.keyRing, (cache = new Map()));
  const key = `${deps.issuer} ${token}`;
  const known = cache.get(key);
  if (known) {
    const ms = now.getTime();
    if (ms >= known.expMs) {
      cache.delete(key);
      return undefined;
    }
    if (ms < known.nbfMs || !(await deps.keyRing.verificationKey(known.kid))) return undefined;
    return { ...known.access };
  }
  try {
    const { kid } = decodeProtectedHeader(token);
    if (!kid) return undefined;
    const signingKey = await deps.keyRing.verificationKey(kid);
    if (!signingKey) return undefined;
    const { payload } = await jwtVerify(token, signingKey, {
      issuer: deps.issuer,
      audience: deps.issuer,
      algorithms: ['ES256'],
      currentDate: now,
      typ: 'at+jwt',
    });
    const { sub, scope, org, role, jti, exp, nbf, acts_for } = payload as Record<string, unknown>;
    if (typeof sub !== 'string' || typeof scope !== 'string' || typeof org !== 'string' || typeof jti !== 'string')
      return undefined;
    if (!ROLES.includes(role as Role)) return undefined;
    const access: AccessContext = { clientId: sub, scope, organization: org, role: role as Role, jti };
    if (Array.isArray(acts_for) && acts_for.every((o) => typeof o === 'string')) access.actsFor = acts_for as string[];
    if (typeof exp === 'number') {
      if (cache.size >= MAX_VERIFIED_TOKENS) {
        for (const [k, v] of cache) if (v.expMs <= now.getTime()) cache.delete(k);
        if (cache.size >= MAX_VERIFIED_TOKENS) cache.clear();
      }
      cache.set(key, { access, kid, expMs: exp * 1000, nbfMs: typeof nbf === 'number' ? nbf * 1000 : 0 });
    }
    return access;
  } catch {
    return undefined;
  }
}
