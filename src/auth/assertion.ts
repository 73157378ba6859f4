import { randomUUID } from 'node:crypto';
import { importJWK, SignJWT, type JWK } from 'jose';

/**
 * A SMART Backend Services client assertion (private_key_jwt), as a hospital system builds it: iss = sub = client_id,
 * aud = the token endpoint, a short exp and a unique jti. Used by `huren token` and by the tests.
 */
export async function createClientAssertion(
  clientId: string,
  privateJwk: JWK,
  tokenUrl: string,
  overrides: { jti?: string; expiresInSeconds?: number; now?: Date } = {},
): Promise<string> {
  const alg = privateJwk.alg ?? (privateJwk.kty === 'RSA' ? 'RS384' : 'ES384');
  const key = await importJWK(privateJwk, alg);
  const now = Math.floor((overrides.now ?? new Date()).getTime() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg, kid: privateJwk.kid, typ: 'JWT' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(tokenUrl)
    .setJti(overrides.jti ?? randomUUID())
    .setIssuedAt(now)
    .setExpirationTime(now + (overrides.expiresInSeconds ?? 240))
    .sign(key);
}

/** What a token endpoint answers (RFC 6749 §5.1, §5.2). */
export interface TokenAnswer {
  access_token?: string;
  expires_in?: number;
  scope?: string;
  error?: string;
  error_description?: string;
}

/**
 * Obtains an access token from a token endpoint with a client assertion (SMART Backend Services). `signal` bounds the
 * request (a broker's neighbour client gives it a timeout).
 */
export async function requestToken(
  tokenUrl: string,
  clientId: string,
  privateJwk: JWK,
  scope: string,
  signal?: AbortSignal,
): Promise<{ status: number; body: TokenAnswer }> {
  const res = await fetch(tokenUrl, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await createClientAssertion(clientId, privateJwk, tokenUrl),
      scope,
    }),
    ...(signal ? { signal } : {}),
  });
  return { status: res.status, body: (await res.json()) as TokenAnswer };
}
