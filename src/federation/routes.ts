import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { authenticate, createRateLimiter } from '../auth/bearer.js';
import type { TokenDeps } from '../auth/tokens.js';
import type { Config } from '../config.js';
import { FHIR_JSON } from '../fhir/http.js';
import { jsonLimitsOf, parseJsonBody } from '../fhir/json-limits.js';
import { badRequest, error, forbidden, notFound, unsupportedMediaType } from '../fhir/outcomes.js';
import type { FactProjector } from '../recognition/fact-store.js';
import { parseBroker, publicView, type BrokerRegistry } from './brokers.js';
import type { FederationService } from './service.js';
import type { FederatedFigures } from './figures.js';
import type { LayeredRules } from './rules.js';
import { assertPeriod, parseBound } from '../reports/savings.js';

export interface FederationRouteDeps {
  federation: { registry: BrokerRegistry; service: FederationService; figures: FederatedFigures; rules: LayeredRules };
  facts: FactProjector;
  auth: Pick<TokenDeps, 'keyRing' | 'issuer'>;
  config: Pick<
    Config,
    | 'baseUrl'
    | 'maxBodyBytes'
    | 'maxJsonDepth'
    | 'maxArrayItems'
    | 'maxBundleEntries'
    | 'maxStringLength'
    | 'federationRateLimitPerMinute'
  >;
}

type Handler = (req: Request, res: Response) => Promise<void>;
const wrap = (h: Handler) => (req: Request, res: Response, next: NextFunction) => h(req, res).catch(next);

/**
 * The federation's HTTP surface:
 *   GET /admin/federation/brokers, PUT|DELETE /admin/federation/brokers/{id}      (admin bearer token)
 *   POST /federation/facts, POST /federation/read                                (a registered broker's token)
 *   GET /federation/remote?reference=<absolute URL>                              (a clinician or HIS of this broker)
 *   POST /federation/figures                                                     (this broker's parent)
 *   GET /federation/rules                                                        (a registered broker)
 *   GET /admin/federation/rules, PUT /admin/federation/rules/additions,
 *   POST /admin/federation/rules/$pull                                           (admin bearer token)
 *   GET /reports/federated?from=&to=                                             (bureau or admin)
 */
export function federationRouter(deps: FederationRouteDeps): Router {
  const router = express.Router();
  const limits = jsonLimitsOf(deps.config);
  const json = [
    express.raw({ type: () => true, limit: deps.config.maxBodyBytes }),
    (req: Request, _res: Response, next: NextFunction) => {
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/json' && type !== FHIR_JSON) {
        throw unsupportedMediaType(`Content-Type '${type || '(none)'}' is not supported; send application/json`);
      }
      req.body = parseJsonBody(req.body as Buffer, req.headers['content-type'], limits);
      next();
    },
  ];
  const { registry, service } = deps.federation;
  const admin = async (req: Request) => {
    const access = await authenticate(req, deps.auth);
    if (access.role !== 'admin') throw forbidden('Federated brokers are managed by administrators only');
  };
  // What other brokers call (facts, reads, rules, figures): a budget per calling client, apart from the FHIR API's.
  const rateLimit = createRateLimiter(deps.config.federationRateLimitPerMinute);
  const neighbour = async (req: Request) => {
    const access = await authenticate(req, deps.auth);
    const limit = rateLimit(access.clientId);
    if (!limit.allowed) {
      throw error(
        429,
        'throttled',
        `More than ${deps.config.federationRateLimitPerMinute} federation requests a minute from this client; retry after ${limit.retryAfterSeconds} s`,
        undefined,
        { 'Retry-After': String(limit.retryAfterSeconds) },
      );
    }
    return access;
  };
  const selfBase = (req: Request) => deps.config.baseUrl ?? `${req.protocol}://${req.get('host') ?? 'localhost'}/fhir`;
  const requestId = (res: Response) => String(res.getHeader('X-Request-Id') ?? '') || undefined;

  router.get(
    '/admin/federation/brokers',
    wrap(async (req, res) => {
      await admin(req);
      res.json((await registry.list()).map(publicView));
    }),
  );
  router.put(
    '/admin/federation/brokers/:id',
    json,
    wrap(async (req, res) => {
      await admin(req);
      const broker = parseBroker(String(req.params.id), req.body);
      const { created } = await registry.put(broker);
      res.status(created ? 201 : 200).json(publicView(broker));
    }),
  );
  router.delete(
    '/admin/federation/brokers/:id',
    wrap(async (req, res) => {
      await admin(req);
      if (!(await registry.delete(String(req.params.id)))) {
        throw notFound(`No federated broker '${String(req.params.id)}'; list them at GET /admin/federation/brokers`);
      }
      res.status(204).end();
    }),
  );
  router.post(
    '/federation/facts',
    json,
    wrap(async (req, res) => {
      const access = await neighbour(req);
      res.json(await service.answerFacts(access, req.body, selfBase(req), requestId(res)));
    }),
  );
  router.post(
    '/federation/read',
    json,
    wrap(async (req, res) => {
      const access = await neighbour(req);
      res
        .type(FHIR_JSON)
        .send(JSON.stringify(await service.answerRead(access, req.body, selfBase(req), requestId(res))));
    }),
  );
  router.get(
    '/federation/rules',
    wrap(async (req, res) => {
      const access = await neighbour(req);
      res.json(await deps.federation.rules.published(access));
    }),
  );
  router.get(
    '/admin/federation/rules',
    wrap(async (req, res) => {
      await admin(req);
      const { _id: _unused, ...additions } = await deps.federation.rules.additions();
      res.json({ additions, lastPull: deps.federation.rules.status() ?? null });
    }),
  );
  router.put(
    '/admin/federation/rules/additions',
    json,
    wrap(async (req, res) => {
      const access = await authenticate(req, deps.auth);
      if (access.role !== 'admin') throw forbidden('Rules are managed by administrators only');
      const { _id: _unused, ...saved } = await deps.federation.rules.putAdditions(req.body, access.clientId);
      res.json(saved);
    }),
  );
  router.post(
    '/admin/federation/rules/\\$pull',
    wrap(async (req, res) => {
      await admin(req);
      const result = await deps.federation.rules.pull();
      res.status(result.error ? 502 : 200).json(result);
    }),
  );
  router.post(
    '/federation/figures',
    json,
    wrap(async (req, res) => {
      const access = await neighbour(req);
      res.json(await deps.federation.figures.answer(access, req.body));
    }),
  );
  router.get(
    '/reports/federated',
    wrap(async (req, res) => {
      const access = await authenticate(req, deps.auth);
      if (access.role !== 'bureau' && access.role !== 'admin') {
        throw forbidden('The federated report is read by the bureau role and administrators');
      }
      const from = parseBound(req.query.from, 'from', 'start');
      const to = parseBound(req.query.to, 'to', 'end');
      assertPeriod(from, to, { from: 'from', to: 'to' });
      res.json(await deps.federation.figures.report(from, to));
    }),
  );
  router.get(
    '/federation/remote',
    wrap(async (req, res) => {
      const access = await authenticate(req, deps.auth);
      if (access.role !== 'clinician' && access.role !== 'his') {
        throw forbidden('Remote results are opened by a clinician or hospital system of this broker');
      }
      const reference = typeof req.query.reference === 'string' ? req.query.reference : '';
      if (!reference) throw badRequest('reference is required', 'reference');
      const own = deps.facts.rules.directory.byId.get(access.organization.replace(/^Organization\//, ''));
      if (!own) throw forbidden(`${access.organization} is not a participating institution of this broker`);
      res.type(FHIR_JSON).send(JSON.stringify(await service.readRemote(access, reference, own.district.code)));
    }),
  );
  return router;
}
