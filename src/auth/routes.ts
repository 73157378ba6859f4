import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { AppLaunches } from './app-launch.js';
import { issueToken, OAuthError, type TokenDeps } from './tokens.js';

/**
 * SMART Backend Services endpoints: discovery (`/.well-known/smart-configuration`, SMART App Launch 2.0 §Conformance)
 * and the token endpoint. Errors are OAuth errors (RFC 6749 §5.2), not OperationOutcomes.
 */
export function authRouter(deps: TokenDeps, publicOrigin: (req: Request) => string, launches?: AppLaunches): Router {
  const router = express.Router();

  // At the origin (Backend Services) and at the FHIR base, where an EHR-launched app looks for it (`{iss}/.well-known`).
  router.get(['/.well-known/smart-configuration', '/fhir/.well-known/smart-configuration'], (req, res) => {
    const origin = publicOrigin(req);
    res.json({
      issuer: deps.issuer,
      token_endpoint: `${origin}/auth/token`,
      jwks_uri: `${origin}/auth/jwks`,
      grant_types_supported: ['client_credentials', ...(launches ? ['authorization_code'] : [])],
      token_endpoint_auth_methods_supported: ['private_key_jwt', ...(launches ? ['none'] : [])],
      token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
      scopes_supported: [
        'system/*.cruds',
        'system/*.rs',
        'system/DiagnosticReport.cu',
        'system/Observation.cu',
        ...(launches ? ['launch', 'openid', 'fhirUser', 'user/*.rs'] : []),
      ],
      capabilities: [
        'client-confidential-asymmetric',
        'permission-v2',
        'permission-v1',
        ...(launches ? ['launch-ehr', 'client-public', 'context-ehr-patient', 'permission-user'] : []),
      ],
      ...(launches
        ? {
            authorization_endpoint: `${origin}/auth/authorize`,
            code_challenge_methods_supported: ['S256'],
            response_types_supported: ['code'],
          }
        : {}),
    });
  });

  router.get('/auth/jwks', async (_req, res) => {
    res.json({ keys: await deps.keyRing.publicKeys() });
  });

  router.post(
    '/auth/token',
    express.urlencoded({ extended: false, limit: TOKEN_FORM_LIMIT, parameterLimit: 20 }),
    async (req: Request, res: Response) => {
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Pragma', 'no-cache');
      if (!req.is('application/x-www-form-urlencoded')) {
        res.status(400).json({ error: 'invalid_request', error_description: 'Send application/x-www-form-urlencoded' });
        return;
      }
      try {
        const form = req.body as Record<string, string | undefined>;
        if (form.grant_type === 'authorization_code' && launches) {
          res.json(await launches.exchange(form, deps));
          return;
        }
        res.json(await issueToken(form, `${publicOrigin(req)}/auth/token`, deps));
      } catch (err) {
        if (err instanceof OAuthError) {
          res.status(err.status).json({ error: err.error, error_description: err.description });
          return;
        }
        throw err;
      }
    },
  );
  // Another method at the OAuth endpoints is an OAuth error too (GET /auth/authorize is served by the app routes).
  router.all(['/auth/token', '/auth/authorize'], (req: Request, res: Response, next: NextFunction) => {
    if (req.path === '/auth/authorize' && (req.method === 'GET' || req.method === 'HEAD')) return next();
    res.setHeader('Allow', req.path === '/auth/token' ? 'POST' : 'GET');
    res.status(405).json({ error: 'invalid_request', error_description: `${req.method} is not supported here` });
  });

  // What the form parser refuses (too large, too many fields, a charset other than UTF-8) is an OAuth error too: the
  // token endpoint's clients parse RFC 6749 §5.2 errors, not OperationOutcomes.
  router.use('/auth/token', (err: unknown, _req: Request, res: Response, next: NextFunction) => {
    const e = err as { type?: unknown; status?: unknown };
    if (typeof e?.type !== 'string' || typeof e.status !== 'number' || e.status >= 500) return next(err);
    res.setHeader('Cache-Control', 'no-store');
    res.status(e.status).json({
      error: 'invalid_request',
      error_description: FORM_PROBLEMS[e.type] ?? 'The request body could not be read',
    });
  });
  return router;
}

/** A token request is a few hundred bytes: a client assertion, its type, the grant type and the scopes. */
const TOKEN_FORM_LIMIT = '64kb';

const FORM_PROBLEMS: Record<string, string> = {
  'entity.too.large': `The request body exceeds ${TOKEN_FORM_LIMIT}`,
  'parameters.too.many': 'The form has too many fields',
  'charset.unsupported': 'Send the form in UTF-8 (charset=utf-8)',
  'encoding.unsupported': 'Content-Encoding is not supported; send the form as is',
};
