import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { authenticate } from '../auth/bearer.js';
import type { TokenDeps } from '../auth/tokens.js';
import type { Config } from '../config.js';
import { FHIR_JSON } from '../fhir/http.js';
import { jsonLimitsOf, parseJsonBody } from '../fhir/json-limits.js';
import { forbidden, notFound, unsupportedMediaType } from '../fhir/outcomes.js';
import { parseEndpoint, publicView } from './endpoints.js';
import { receiveNotification } from './notify.js';
import type { SyncService } from './service.js';

export interface SyncRouteDeps {
  sync: SyncService;
  auth: Pick<TokenDeps, 'keyRing' | 'issuer'>;
  config: Pick<Config, 'maxBodyBytes' | 'maxJsonDepth' | 'maxArrayItems' | 'maxBundleEntries' | 'maxStringLength'>;
}

type Handler = (req: Request, res: Response) => Promise<void>;

/** Errors go to the app's error handler, which answers with an OperationOutcome. */
const wrap = (h: Handler) => (req: Request, res: Response, next: NextFunction) => h(req, res).catch(next);

/**
 * The connectors' HTTP surface:
 *   GET  /admin/sync/endpoints, PUT|DELETE /admin/sync/endpoints/{id}, POST /admin/sync/endpoints/{id}/$sync,
 *   GET  /admin/sync/status                       (admin bearer token)
 *   POST /subscriptions/notify/{id}               (the hospital's notification secret)
 */
export function syncRouter(deps: SyncRouteDeps): Router {
  const router = express.Router();
  const limits = jsonLimitsOf(deps.config);
  const json = [
    express.raw({ type: () => true, limit: deps.config.maxBodyBytes }),
    (req: Request, _res: Response, next: NextFunction) => {
      // The same reading and bounds as on the FHIR API (UTF-8 only, depth, arrays, strings, finite numbers); an empty
      // body stays empty (a classic rest-hook notification without payload).
      const raw = req.body as Buffer | undefined;
      if (!Buffer.isBuffer(raw) || raw.length === 0) {
        req.body = undefined;
        return next();
      }
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/json' && type !== FHIR_JSON) {
        throw unsupportedMediaType(`Content-Type '${type || '(none)'}' is not supported; send ${FHIR_JSON}`);
      }
      req.body = parseJsonBody(raw, req.headers['content-type'], limits);
      next();
    },
  ];
  const admin = async (req: Request) => {
    const access = await authenticate(req, deps.auth);
    if (access.role !== 'admin') throw forbidden('Sync endpoints are managed by administrators only');
  };
  const endpointOf = async (id: string) => {
    const e = await deps.sync.endpoint(id);
    if (!e) throw notFound(`No sync endpoint '${id}'; list them at GET /admin/sync/endpoints`);
    return e;
  };

  router.get(
    '/admin/sync/endpoints',
    wrap(async (req, res) => {
      await admin(req);
      res.json((await deps.sync.endpoints()).map(publicView));
    }),
  );
  router.put(
    '/admin/sync/endpoints/:id',
    json,
    wrap(async (req, res) => {
      await admin(req);
      const endpoint = parseEndpoint(String(req.params.id), req.body);
      const { created } = await deps.sync.putEndpoint(endpoint);
      res.status(created ? 201 : 200).json(publicView(endpoint));
    }),
  );
  router.delete(
    '/admin/sync/endpoints/:id',
    wrap(async (req, res) => {
      await admin(req);
      if (!(await deps.sync.deleteEndpoint(String(req.params.id)))) await endpointOf(String(req.params.id));
      res.status(204).end();
    }),
  );
  router.post(
    '/admin/sync/endpoints/:id/\\$sync',
    wrap(async (req, res) => {
      await admin(req);
      const endpoint = await endpointOf(String(req.params.id));
      void deps.sync.syncEndpoint(endpoint); // its outcome lands in the status
      res.status(202).json({ endpoint: endpoint._id, status: `/admin/sync/status` });
    }),
  );
  router.get(
    '/admin/sync/status',
    wrap(async (req, res) => {
      await admin(req);
      res.json(await deps.sync.status());
    }),
  );
  router.post(
    '/subscriptions/notify/:id',
    json,
    wrap(async (req, res) => {
      const answer = await receiveNotification(deps.sync, String(req.params.id), req.headers.authorization, req.body);
      res.status(answer.status).type(FHIR_JSON).send(JSON.stringify(answer.body));
    }),
  );
  return router;
}
