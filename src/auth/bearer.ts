import type { Request } from 'express';
import { error } from '../fhir/outcomes.js';
import { verifyAccessToken, type AccessContext, type TokenDeps } from './tokens.js';

/** The caller of a request from its `Authorization: Bearer` access token; 401 with what is wrong otherwise. */
export async function authenticate(req: Request, deps: Pick<TokenDeps, 'keyRing' | 'issuer'>): Promise<AccessContext> {
  const header = req.headers.authorization;
  const challenge = (detail: string) => ({
    'WWW-Authenticate': `Bearer realm="huren", error="invalid_token", error_description="${detail}"`,
  });
  if (!header) {
    throw error(
      401,
      'login',
      'Authentication required: send Authorization: Bearer <access token> (obtain one at /auth/token)',
      undefined,
      {
        'WWW-Authenticate': 'Bearer realm="huren"',
      },
    );
  }
  const m = /^Bearer\s+([\w-]+\.[\w-]+\.[\w-]+)$/i.exec(header);
  if (!m)
    throw error(
      401,
      'login',
      'The Authorization header must be "Bearer <access token>"',
      undefined,
      challenge('malformed'),
    );
  const access = await verifyAccessToken(m[1], deps);
  if (!access) {
    throw error(
      401,
      'login',
      'The access token is invalid or expired; request a new one at /auth/token',
      undefined,
      challenge('invalid or expired'),
    );
  }
  return access;
}

/**
 * Requests per minute per client, counted in fixed one-minute windows. Per process: with N processes behind a
 * load balancer a client gets at most N times the limit, which is enough to stop a runaway client.
 */
export function createRateLimiter(perMinute: number, clock: () => number = Date.now) {
  let window = 0;
  let counts = new Map<string, number>();
  return (clientId: string): { allowed: boolean; retryAfterSeconds: number } => {
    const now = clock();
    const current = Math.floor(now / 60000);
    if (current !== window) {
      window = current;
      counts = new Map();
    }
    const n = (counts.get(clientId) ?? 0) + 1;
    counts.set(clientId, n);
    return { allowed: n <= perMinute, retryAfterSeconds: Math.ceil(((current + 1) * 60000 - now) / 1000) };
  };
}
