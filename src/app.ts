import { randomUUID } from 'node:crypto';
import express, { type Express, type Request, type RequestHandler } from 'express';
import helmet from 'helmet';
import type { Connection } from 'mongoose';
import type { Config } from './config.js';
import { fhirErrorHandler, fhirRouter } from './fhir/http.js';
import type { AppLaunches } from './auth/app-launch.js';
import { authRouter } from './auth/routes.js';
import { appRouter } from './ui/app-routes.js';
import { cdsRouter } from './cds/router.js';
import type { TokenDeps } from './auth/tokens.js';
import type { FhirHttpDeps } from './fhir/http.js';
import { forbidden, notFound } from './fhir/outcomes.js';
import { authenticate } from './auth/bearer.js';
import { requestLimits } from './http-limits.js';
import type { Logger } from './log.js';
import { routeLabel, type Metrics } from './ops/metrics.js';
import { uiAssetsRouter, uiProblems } from './ui/assets.js';
import { demoSessionRouter } from './ui/demo-session.js';
import { pagesRouter } from './ui/pages.js';
import type { FactProjector } from './recognition/fact-store.js';
import { syncRouter } from './sync/routes.js';
import { federationRouter } from './federation/routes.js';
import type { BrokerRegistry } from './federation/brokers.js';
import type { FederationService } from './federation/service.js';
import type { FederatedFigures } from './federation/figures.js';
import type { LayeredRules } from './federation/rules.js';
import type { SyncService } from './sync/service.js';
import type { RulesAdmin } from './admin/rules-admin.js';
import { refreshRules, rulesRouter } from './admin/rules-routes.js';
import { reportsRouter } from './reports/routes.js';

export interface AppDeps extends FhirHttpDeps {
  auth: TokenDeps;
  connection: Connection;
  metrics: Metrics;
  config: Config;
  log: Logger;
  /** The recognition fact index, kept up to date by the store. */
  facts: FactProjector;
  /** Hospital connectors: pull sync, its registry and status, subscription intake. */
  sync: SyncService;
  /** The recognition rules in the database: current version, edits, publication. */
  rules: RulesAdmin;
  /** SMART EHR launches of the doctor's view (/app). */
  launches: AppLaunches;
  /** The brokers this one federates with (parent, children, peers) and the fan-out to them (docs/federation.md). */
  federation: { registry: BrokerRegistry; service: FederationService; figures: FederatedFigures; rules: LayeredRules };
}

/** How long `/readyz` waits for the database's answer to a ping before it reports it unreachable. */
export const READY_TIMEOUT_MS = 1500;

/** Express assembly without listen (tests drive it with supertest). */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', (qs: string) => {
    // Repeated parameters stay arrays; no nested-object parsing (a FHIR query is flat: `a=1&a=2`).
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of new URLSearchParams(qs)) {
      const prev = out[k];
      out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    return out;
  });
  app.use(helmet({ contentSecurityPolicy: false }));
  app.use(cors(deps.config.corsOrigins));
  app.use((req, res, next) => {
    const incoming = req.headers['x-request-id'];
    const requestId = typeof incoming === 'string' && /^[\w.-]{1,64}$/.test(incoming) ? incoming : randomUUID();
    res.setHeader('X-Request-Id', requestId);
    const started = process.hrtime.bigint();
    // The route label, not the raw path: a path may carry whatever a client typed, identifiers included.
    const path = routeLabel(req.path); // taken before routers strip their mount point
    res.on('finish', () => {
      // Paths carry resource ids only, never identifiers; query strings may carry identifiers and are not logged.
      deps.log.info('Request served', {
        requestId,
        method: req.method,
        path,
        status: res.statusCode,
        ms: Number(process.hrtime.bigint() - started) / 1e6,
      });
    });
    next();
  });
  app.use(deps.metrics.middleware);
  app.use(requestLimits(deps.config));

  // Liveness answers from the process alone, before anything that may wait on the database (the rules refresh
  // below): a database that does not answer must not get the broker restarted.
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  // Readiness asks the database, but answers 503 within READY_TIMEOUT_MS when it does not answer, so that a load
  // balancer's probe is not left hanging. It also fails while the pages or the recognition rules cannot be served
  // (an image built without its pages, rules that did not load): such a process must not take traffic.
  app.get('/readyz', async (_req, res) => {
    const [database, pages] = await Promise.all([
      deps.connection
        .db!.command({ ping: 1 }, { signal: AbortSignal.timeout(READY_TIMEOUT_MS) })
        .then(() => 'reachable' as const)
        .catch(() => 'unreachable' as const),
      uiProblems(),
    ]);
    const rules = deps.rules.store.isLoaded ? `version ${deps.rules.store.current.version}` : 'not loaded';
    const ready = database === 'reachable' && pages.length === 0 && deps.rules.store.isLoaded;
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'not ready',
      database,
      pages: pages.length ? `missing: ${pages.join(', ')}` : 'servable',
      rules,
    });
  });
  // Operational figures (request counts by route, sync lag per hospital) are for operators: an admin token here, or
  // no token on the separate listener of HUREN_METRICS_PORT, which a Prometheus scraper on the inside network reads.
  app.get('/metrics', async (req, res) => {
    const access = await authenticate(req, deps.auth);
    if (access.role !== 'admin') throw forbidden('/metrics is read with an admin token (or on HUREN_METRICS_PORT)');
    res.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
  app.use(refreshRules(deps.rules, deps.log));
  app.get('/', (req, res) => {
    res.json({
      name: 'Huren',
      fhir: `${baseUrlOf(deps.config, req)}`,
      metadata: `${baseUrlOf(deps.config, req)}/metadata`,
    });
  });

  app.use(authRouter(deps.auth, (req) => publicOrigin(deps.config, req), deps.launches));
  app.use(pagesRouter());
  app.use(appRouter(deps, (req) => publicOrigin(deps.config, req)));
  app.use(
    '/cds-services',
    cdsRouter(deps, (req) => publicOrigin(deps.config, req)),
  );
  app.use(syncRouter(deps)); // before /admin's catch-all authentication and body parsing
  app.use(federationRouter(deps));
  app.use('/admin', rulesRouter(deps));
  app.use('/reports', reportsRouter(deps));
  app.use(
    '/ui',
    uiAssetsRouter(),
    demoSessionRouter(deps.config, deps.auth, (req) => publicOrigin(deps.config, req)),
  );
  app.use(
    '/fhir',
    fhirRouter(deps, (req) => baseUrlOf(deps.config, req)),
  );
  app.use((_req, _res, next) => next(notFound('No such endpoint; the FHIR API is at /fhir')));
  app.use(fhirErrorHandler(deps.log));
  return app;
}

function baseUrlOf(config: Config, req: Request): string {
  return config.baseUrl ?? `${req.protocol}://${req.get('host') ?? 'localhost'}/fhir`;
}

/** Origin of the broker's public URLs (the token endpoint is `${origin}/auth/token`). */
function publicOrigin(config: Config, req: Request): string {
  return config.baseUrl ? config.baseUrl.replace(/\/fhir$/, '') : `${req.protocol}://${req.get('host') ?? 'localhost'}`;
}

/**
 * CORS for configured browser origins only (none by default): the API is called by systems with tokens, and by
 * the broker's own pages from the same origin.
 */
function cors(origins: string[]): RequestHandler {
  return (req, res, next) => {
    const origin = req.headers.origin;
    if (!origin || !origins.includes(origin)) return next();
    res.setHeader('Access-Control-Allow-Origin', origin);
    res.setHeader('Vary', 'Origin');
    res.setHeader('Access-Control-Expose-Headers', 'Location, ETag, Last-Modified, X-Request-Id');
    if (req.method === 'OPTIONS') {
      res.setHeader('Access-Control-Allow-Methods', 'GET, POST, PUT, DELETE');
      res.setHeader(
        'Access-Control-Allow-Headers',
        'Authorization, Content-Type, If-Match, If-None-Exist, Prefer, X-Request-Id',
      );
      res.setHeader('Access-Control-Max-Age', '600');
      res.status(204).end();
      return;
    }
    next();
  };
}
