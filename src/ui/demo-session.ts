/**
 * One-click sign-in for the pages in demo mode: the broker obtains a token for one of its demo clients the way the
 * client itself would (a signed client assertion through the real token endpoint logic), so a newcomer opens the
 * dashboard or the doctor view without pasting tokens. Demo mode only: production has no demo clients, and the
 * route answers 404 there.
 */
import express, { type Request, type Router } from 'express';
import { createClientAssertion } from '../auth/assertion.js';
import { readDemoClients } from '../auth/demo-clients.js';
import { issueToken, type Role, type TokenDeps } from '../auth/tokens.js';
import type { Config } from '../config.js';
import { SHOWCASE } from '../demo/generator.js';
import { badRequest, notFound } from '../fhir/outcomes.js';

/** Roles a page signs in as: the bureau and its expert reviewer (dashboard, supervision) and a clinician (doctor view). */
const PAGE_ROLES: readonly Role[] = ['bureau', 'supervisor', 'clinician'];

export function demoSessionRouter(config: Config, auth: TokenDeps, publicOrigin: (req: Request) => string): Router {
  const router = express.Router();
  // What a page needs to know before signing in: whether one-click demo sign-in exists.
  router.get('/info', (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    // In demo mode the showcase patient (synthetic) is offered to open in the doctor's view.
    res.json(config.mode === 'demo' ? { demo: true, demoPatient: SHOWCASE.idNumber } : { demo: false });
  });
  router.post('/demo-session', express.json({ limit: '2kb' }), async (req, res, next) => {
    try {
      if (config.mode !== 'demo') throw notFound('Demo sign-in exists in demo mode only');
      // A custom header: a cross-site form cannot send it, so another site cannot sign a visitor in.
      if (req.get('X-Huren-Page') !== '1') throw badRequest('Demo sign-in is asked by a Huren page', 'X-Huren-Page');
      const body = (req.body ?? {}) as { role?: string; organization?: string };
      const role = body.role as Role;
      if (!PAGE_ROLES.includes(role)) throw badRequest(`role must be one of ${PAGE_ROLES.join(', ')}`, 'role');
      const demo = readDemoClients(config.dataDir).find(
        (c) => c.role === role && (!body.organization || c.organization === body.organization),
      );
      if (!demo) throw notFound(`No demo client with role '${role}'`);
      const tokenUrl = `${publicOrigin(req)}/auth/token`;
      const granted = await issueToken(
        {
          grant_type: 'client_credentials',
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          client_assertion: await createClientAssertion(demo.clientId, demo.privateJwk, tokenUrl),
          scope: demo.scopes,
        },
        tokenUrl,
        auth,
      );
      res.setHeader('Cache-Control', 'no-store');
      res.json({ ...granted, client_id: demo.clientId, organization: demo.organization });
    } catch (e) {
      next(e);
    }
  });
  return router;
}
