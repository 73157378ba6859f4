/**
 * SMART App Launch (EHR launch) for the doctor's prior-results view at /app, with Huren as the authorization server
 * for its own FHIR base (`iss` = `<origin>/fhir`):
 *
 * 1. The EHR (a his or clinician client of an institution, with its bearer token) registers a launch: the patient's
 *    identifiers, optionally the CDS card's appContext — `POST /auth/launch` → `{ launch, url }`.
 * 2. The EHR opens `<origin>/app?iss=<origin>/fhir&launch=<launch>`; the app reads the SMART configuration and sends
 *    the browser to `GET /auth/authorize` (authorization code, PKCE S256, state, aud = iss).
 * 3. The app exchanges the code at `POST /auth/token` (grant_type authorization_code, code_verifier) for a short
 *    clinician access token of the launch's institution, with the launch context (`patient`, `appContext`).
 *
 * A launch is single-use and lives a few minutes; a code is single-use and lives a minute. Both are stored in the
 * database (several broker processes share them). The launch holds patient keys, never identifiers.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { Collection, Db } from 'mongodb';
import { OAuthError, type AccessContext, type TokenDeps } from './tokens.js';

/** The view's client id: a public client (no secret; PKCE protects the code). */
export const APP_CLIENT_ID = 'huren-app';
export const APP_SCOPES = 'launch openid fhirUser user/*.rs user/Parameters.c';
const LAUNCH_LIFETIME_MS = 10 * 60_000;
const CODE_LIFETIME_MS = 60_000;
/** The view's token lives longer than a system token: a doctor reads for a while, then the view asks again. */
const APP_TOKEN_LIFETIME_S = 15 * 60;

export interface LaunchDoc {
  _id: string;
  organization: string;
  /** The client that registered the launch (the EHR). */
  createdBy: string;
  patientKeys: string[];
  /** The broker's Patient id when it holds one (the `patient` launch context). */
  patient?: string;
  /** CDS Hooks card appContext, handed to the app unchanged. */
  appContext?: string;
  practitioner?: string;
  /** The checks the view asked during this launch: a reload decides on them again instead of prompting anew. */
  viewChecks?: string[];
  createdAt: Date;
  expiresAt: Date;
}

interface CodeDoc {
  _id: string;
  launch: string;
  redirectUri: string;
  challenge: string;
  scope: string;
  expiresAt: Date;
}

export class AppLaunches {
  readonly launches: Collection<LaunchDoc>;
  readonly codes: Collection<CodeDoc>;
  /** One document per used launch or code: a unique insert is the one claim that is atomic on FerretDB too. */
  readonly claims: Collection<{ _id: string; at: Date }>;
  /**
   * The view's checks of one patient at one institution on one local day (`<institution>|<patientKey>|<day>`): a
   * re-launch the same day reads the decisions already recorded instead of asking again.
   */
  readonly dayChecks: Collection<{ _id: string; checks: string[]; expiresAt: Date }>;

  constructor(db: Db) {
    this.launches = db.collection<LaunchDoc>('app_launches');
    this.codes = db.collection<CodeDoc>('app_codes');
    this.claims = db.collection<{ _id: string; at: Date }>('app_claims');
    this.dayChecks = db.collection<{ _id: string; checks: string[]; expiresAt: Date }>('app_day_checks');
  }

  /** The checks the view asked for a patient at an institution on a local day (every key of the patient). */
  async checksOfDay(ids: string[]): Promise<string[]> {
    const docs = await Promise.all(ids.map((_id) => this.dayChecks.findOne({ _id })));
    return [...new Set(docs.flatMap((d) => d?.checks ?? []))];
  }

  /** Remembers a check of the view for the day (kept two days). */
  async addDayCheck(id: string, check: string, now = new Date()): Promise<void> {
    const expiresAt = new Date(now.getTime() + 2 * 24 * 3600_000);
    await this.dayChecks.updateOne(
      { _id: id },
      { $addToSet: { checks: check }, $set: { expiresAt } },
      { upsert: true },
    );
  }

  /** Claims a launch or a code for its single use; false when it was already used. */
  private async claim(id: string, at: Date): Promise<boolean> {
    try {
      await this.claims.insertOne({ _id: id, at });
      return true;
    } catch (e) {
      if ((e as { code?: number }).code === 11000) return false;
      throw e;
    }
  }

  async ensureIndexes(): Promise<void> {
    await this.launches.createIndex({ expiresAt: 1 });
    await this.codes.createIndex({ expiresAt: 1 });
  }

  async create(
    access: AccessContext,
    context: { patientKeys: string[]; patient?: string; appContext?: string; practitioner?: string },
    now = new Date(),
  ): Promise<LaunchDoc> {
    const doc: LaunchDoc = {
      _id: randomBytes(18).toString('base64url'),
      organization: access.organization,
      createdBy: access.clientId,
      ...context,
      createdAt: now,
      expiresAt: new Date(now.getTime() + LAUNCH_LIFETIME_MS),
    };
    await this.launches.insertOne(doc);
    return doc;
  }

  async get(id: string): Promise<LaunchDoc | null> {
    return this.launches.findOne({ _id: id });
  }

  /** Expired launches and codes (FerretDB has no TTL indexes). */
  async purgeExpired(now = new Date()): Promise<void> {
    const dayAgo = new Date(now.getTime() - 24 * 3600_000);
    await this.launches.deleteMany({ expiresAt: { $lt: dayAgo } });
    await this.codes.deleteMany({ expiresAt: { $lt: now } });
    await this.claims.deleteMany({ at: { $lt: dayAgo } });
    await this.dayChecks.deleteMany({ expiresAt: { $lt: now } });
  }

  /**
   * GET /auth/authorize: checks the request and returns the redirect with a code. Problems the app could act on
   * go back to the redirect URI as `error`; a wrong client or redirect URI is answered directly (RFC 6749 §4.1.2.1).
   */
  async authorize(query: Record<string, unknown>, expected: { redirectUri: string; aud: string }): Promise<string> {
    const q = (name: string) => (typeof query[name] === 'string' ? (query[name] as string) : undefined);
    if (q('client_id') !== APP_CLIENT_ID) {
      throw new OAuthError(400, 'invalid_client', `Unknown client_id; the prior-results view is '${APP_CLIENT_ID}'`);
    }
    const redirectUri = q('redirect_uri');
    if (redirectUri !== expected.redirectUri) {
      throw new OAuthError(400, 'invalid_request', `redirect_uri must be ${expected.redirectUri}`);
    }
    const state = q('state');
    const back = (params: Record<string, string>) => {
      const url = new URL(redirectUri);
      for (const [k, v] of Object.entries({ ...params, ...(state ? { state } : {}) })) url.searchParams.set(k, v);
      return url.toString();
    };
    const fail = (error: string, description: string) => back({ error, error_description: description });
    if (q('response_type') !== 'code') return fail('unsupported_response_type', 'response_type must be code');
    if (!state) return fail('invalid_request', 'state is required');
    if (q('aud') !== expected.aud) return fail('invalid_request', `aud must be the FHIR base ${expected.aud}`);
    const challenge = q('code_challenge');
    if (q('code_challenge_method') !== 'S256' || !challenge || !/^[A-Za-z0-9_-]{43}$/.test(challenge)) {
      return fail('invalid_request', 'PKCE is required: code_challenge_method S256 with a code_challenge');
    }
    const launchId = q('launch');
    if (!launchId) return fail('invalid_request', 'This view is launched by the EHR: the launch parameter is missing');
    const now = new Date();
    // Single use: the first authorize claims the launch.
    const launch = await this.launches.findOne({ _id: launchId, expiresAt: { $gt: now } });
    if (!launch || !(await this.claim(`launch:${launch._id}`, now))) {
      return fail('access_denied', 'The launch is unknown, expired or already used; open the view again');
    }
    const code = randomBytes(24).toString('base64url');
    await this.codes.insertOne({
      _id: code,
      launch: launch._id,
      redirectUri,
      challenge,
      scope: q('scope') ?? APP_SCOPES,
      expiresAt: new Date(now.getTime() + CODE_LIFETIME_MS),
    });
    return back({ code });
  }

  /** POST /auth/token with grant_type authorization_code. */
  async exchange(
    form: Record<string, string | undefined>,
    deps: Pick<TokenDeps, 'keyRing' | 'issuer'>,
  ): Promise<Record<string, unknown>> {
    if (form.client_id !== APP_CLIENT_ID) throw new OAuthError(401, 'invalid_client', 'Unknown client_id');
    const now = new Date();
    const code = form.code ? await this.codes.findOne({ _id: form.code }) : null;
    if (!code || code.expiresAt <= now) {
      throw new OAuthError(400, 'invalid_grant', 'The code is unknown, expired or already used');
    }
    if (form.redirect_uri !== code.redirectUri) {
      throw new OAuthError(400, 'invalid_grant', 'redirect_uri differs from the one the code was issued for');
    }
    if (!form.code_verifier || !matchesChallenge(form.code_verifier, code.challenge)) {
      throw new OAuthError(400, 'invalid_grant', 'The code_verifier does not match the code_challenge (PKCE S256)');
    }
    if (!(await this.claim(`code:${code._id}`, now))) {
      throw new OAuthError(400, 'invalid_grant', 'The code is unknown, expired or already used');
    }
    const launch = await this.launches.findOne({ _id: code.launch });
    if (!launch) throw new OAuthError(400, 'invalid_grant', 'The launch of this code is gone');

    const nowS = Math.floor(now.getTime() / 1000);
    const scope = 'user/*.rs';
    const { kid, key } = await deps.keyRing.signingKey();
    const accessToken = await new SignJWT({
      scope,
      org: launch.organization,
      role: 'clinician',
      launch: launch._id,
      ...(launch.practitioner ? { fhirUser: launch.practitioner } : {}),
    })
      .setProtectedHeader({ alg: 'ES256', kid, typ: 'at+jwt' })
      .setIssuer(deps.issuer)
      .setAudience(deps.issuer)
      .setSubject(APP_CLIENT_ID)
      .setJti(randomUUID())
      .setIssuedAt(nowS)
      .setExpirationTime(nowS + APP_TOKEN_LIFETIME_S)
      .sign(key);
    return {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: APP_TOKEN_LIFETIME_S,
      scope: `${code.scope.includes('launch') ? 'launch ' : ''}${scope}`,
      huren_launch: launch._id,
      organization: launch.organization,
      ...(launch.patient ? { patient: launch.patient } : {}),
      ...(launch.appContext ? { appContext: launch.appContext } : {}),
      ...(launch.practitioner ? { fhirUser: launch.practitioner } : {}),
    };
  }
}

/** RFC 7636 §4.6: BASE64URL(SHA256(verifier)) equals the challenge. */
export function matchesChallenge(verifier: string, challenge: string): boolean {
  if (!/^[A-Za-z0-9\-._~]{43,128}$/.test(verifier)) return false;
  const computed = Buffer.from(createHash('sha256').update(verifier).digest('base64url'));
  const expected = Buffer.from(challenge);
  return computed.length === expected.length && timingSafeEqual(computed, expected);
}
