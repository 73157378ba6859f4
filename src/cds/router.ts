/**
 * CDS Hooks 2.0 HTTP endpoints, mounted at `/cds-services`: discovery (public, like /fhir/metadata: it names no
 * patient), the hook services and their feedback (each call authenticated by the EHR's JWT, and audited: a hook
 * reads patient data, feedback records a decision about it). Errors are OperationOutcomes with the field at fault.
 */
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { AppDeps } from '../app.js';
import { createRateLimiter } from '../auth/bearer.js';
import { jsonLimitsOf, parseJsonBody, type JsonLimits } from '../fhir/json-limits.js';
import { error, notFound, OperationOutcomeError } from '../fhir/outcomes.js';
import type { AuditExtra, FhirRequest } from '../fhir/request.js';
import { languageOf } from './cards.js';
import { CdsOrigins, cdsClients, verifyCdsJwt, type CdsCaller } from './clients.js';
import { recordFeedback } from './feedback.js';
import { answerHook, CDS_SERVICES, cdsCards, parseHookRequest, type CdsDeps, type CdsService } from './hook.js';

const JSON_TYPES = /^application\/(fhir\+)?json$/;
/** Reading the patient from the EHR must leave time to answer within the EHR's patience. */
const FHIR_TIMEOUT_MS = 3000;

export function cdsDepsOf(deps: AppDeps): CdsDeps {
  const db = deps.connection.db!;
  return {
    ...deps,
    clients: cdsClients(db),
    cards: cdsCards(db),
    seenJti: deps.auth.seenJti,
    fhirTimeoutMs: FHIR_TIMEOUT_MS,
  };
}

function parseJson(req: Request, limits: JsonLimits): unknown {
  const raw = req.body as Buffer | undefined;
  if (!Buffer.isBuffer(raw) || raw.length === 0) throw error(400, 'required', 'The request needs a JSON body');
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (!JSON_TYPES.test(type)) {
    throw error(415, 'not-supported', `Content-Type '${type || '(none)'}' is not supported; send application/json`);
  }
  return parseJsonBody(raw, req.headers['content-type'], limits);
}

export function cdsRouter(appDeps: AppDeps, originOf: (req: Request) => string): Router {
  const deps = cdsDepsOf(appDeps);
  const router = express.Router();
  // Per EHR, like the FHIR API per client: a runaway EHR cannot starve the other institutions.
  const rateLimit = createRateLimiter(appDeps.config.rateLimitPerMinute);
  const limits = jsonLimitsOf(appDeps.config);
  const origins = new CdsOrigins(deps.clients);

  // CORS for the registered EHRs' browser origins (documented in the README): a browser-based EHR calls discovery,
  // the services and feedback from its own pages. Other origins get no CORS headers, so browsers refuse them.
  router.use(async (req, res, next) => {
    const origin = req.headers.origin;
    if (!origin || !(await origins.isAllowed(origin))) return next();
    res.setHeader('Access-Control-Allow-Origin', origin);
    res.setHeader('Vary', 'Origin');
    res.setHeader('Access-Control-Expose-Headers', 'X-Request-Id, Retry-After');
    if (req.method !== 'OPTIONS') return next();
    res.setHeader('Access-Control-Allow-Methods', 'GET, POST');
    res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type, Accept-Language');
    res.setHeader('Access-Control-Max-Age', '600');
    res.status(204).end();
  });
  router.use(express.raw({ type: () => true, limit: appDeps.config.maxBodyBytes }));

  router.get('/', (_req, res) => {
    res.json({
      services: CDS_SERVICES.map((s) => ({
        hook: s.hook,
        title: s.title,
        description: s.description,
        id: s.id,
        prefetch: s.prefetch,
        usageRequirements: s.usageRequirements,
      })),
    });
  });

  /** Authenticates the EHR, runs `work`, and audits the call whatever its outcome once the EHR is known. */
  const handle =
    (
      feedback: boolean,
      work: (s: CdsService, caller: CdsCaller, req: Request) => Promise<{ body: unknown; audit: AuditExtra }>,
    ) =>
    async (req: Request, res: Response, next: NextFunction) => {
      let caller: CdsCaller | undefined;
      let audit: AuditExtra = {};
      let status = 500;
      try {
        const service = CDS_SERVICES.find((s) => s.id === req.params.id);
        if (!service) throw notFound(`There is no CDS service '${String(req.params.id)}'; see GET /cds-services`);
        const serviceUrl = `${originOf(req)}/cds-services/${service.id}`;
        caller = await verifyCdsJwt(
          req.headers.authorization,
          feedback ? [serviceUrl, `${serviceUrl}/feedback`] : [serviceUrl],
          deps,
        );
        const limit = rateLimit(caller.iss);
        if (!limit.allowed) {
          throw error(429, 'throttled', 'Too many requests from this EHR; slow down', undefined, {
            'Retry-After': String(limit.retryAfterSeconds),
          });
        }
        const out = await work(service, caller, req);
        audit = out.audit;
        status = 200;
        await auditCall(req, res, caller, status, audit);
        res.status(200).json(out.body);
      } catch (err) {
        if (err instanceof OperationOutcomeError) status = err.status;
        try {
          if (caller && status !== 200) await auditCall(req, res, caller, status, audit);
        } catch (auditErr) {
          return next(auditErr);
        }
        next(err);
      }
    };

  const auditCall = (req: Request, res: Response, caller: CdsCaller, status: number, extra: AuditExtra) => {
    const fhirReq: FhirRequest = {
      method: req.method,
      segments: ['cds-services', ...req.path.split('/').filter(Boolean)],
      query: {},
      headers: {},
      body: undefined,
      baseUrl: originOf(req),
      access: {
        clientId: caller.iss,
        organization: `Organization/${caller.client.institution}`,
        role: 'clinician',
        scope: '',
        jti: caller.jti,
      },
      requestId: String(res.getHeader('X-Request-Id') ?? ''),
    };
    return deps.audit(fhirReq, status, undefined, undefined, extra);
  };

  router.post(
    '/:id',
    handle(false, async (service, caller, req) => {
      const started = process.hrtime.bigint();
      const hookReq = parseHookRequest(parseJson(req, limits), service);
      const lang = languageOf(req.headers['accept-language'], caller.client.language);
      const answer = await answerHook(service, hookReq, caller, deps, { origin: originOf(req), lang });
      appDeps.log.info('CDS hook answered', {
        service: service.id,
        cards: answer.cards.length,
        ms: Number(process.hrtime.bigint() - started) / 1e6,
      });
      return { body: { cards: answer.cards }, audit: { patients: answer.patients, resources: answer.results } };
    }),
  );

  router.post(
    '/:id/feedback',
    handle(true, async (service, caller, req) => {
      const body = parseJson(req, limits);
      const access = {
        clientId: caller.iss,
        organization: `Organization/${caller.client.institution}`,
        role: 'clinician' as const,
        scope: '',
        jti: caller.jti,
      };
      const recorded = await recordFeedback(body, service, caller, { ...deps, access });
      return {
        body: { feedback: recorded },
        audit: { resources: [...new Set(recorded.flatMap((r) => (r.result ? [r.result] : [])))] },
      };
    }),
  );

  router.all('/{*rest}', (_req, _res, next) => {
    next(notFound('No such CDS Hooks endpoint: discovery is GET /cds-services, services POST /cds-services/{id}'));
  });
  return router;
}
