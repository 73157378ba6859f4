import { setMaxListeners } from 'node:events';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { Logger } from '../log.js';
import { routeLabel } from '../ops/metrics.js';
import { createDispatcher } from './dispatch.js';
import type { AuditFn } from '../audit/recorder.js';
import { authenticate, createRateLimiter } from '../auth/bearer.js';
import type { TokenDeps } from '../auth/tokens.js';
import type { FhirDeps } from './interactions.js';
import { controlMessage, hasControlCharacter, jsonLimitsOf, parseJsonBody, type JsonLimits } from './json-limits.js';
import { error, OperationOutcomeError, outcome, issue, tooLarge, unsupportedMediaType } from './outcomes.js';
import {
  ClientGoneError,
  countParameters,
  pathSegments,
  tooManyParameters,
  type FhirRequest,
  type FhirResponse,
} from './request.js';

export const FHIR_JSON = 'application/fhir+json';

const JSON_TYPES = /^application\/(fhir\+)?json$/;
const JSON_FORMATS = new Set(['json', 'application/json', 'application/fhir+json']);

export interface FhirHttpDeps extends FhirDeps {
  auth: Pick<TokenDeps, 'keyRing' | 'issuer'>;
  audit: AuditFn;
}

/**
 * Express adapter for the FHIR layer: raw body → caller (bearer token) → FhirRequest → dispatcher → FhirResponse →
 * HTTP. Every request but `GET /metadata` needs a token; every one that touches patient data is audited.
 */
export function fhirRouter(deps: FhirHttpDeps, baseUrlOf: (req: Request) => string): Router {
  const router = express.Router();
  const dispatch = createDispatcher(deps);
  const rateLimit = createRateLimiter(deps.config.rateLimitPerMinute);
  const limits = jsonLimitsOf(deps.config);

  router.use(express.raw({ type: () => true, limit: deps.config.maxBodyBytes }));
  router.use(async (req: Request, res: Response, next: NextFunction) => {
    let fhirReq: FhirRequest | undefined;
    const signal = clientGoneSignal(res);
    try {
      negotiate(req);
      const segments = pathSegments(req.path);
      const isPublic = req.method === 'GET' && segments.length === 1 && segments[0] === 'metadata';
      const access = isPublic ? undefined : await authenticate(req, deps.auth);
      if (access) {
        const limit = rateLimit(access.clientId);
        if (!limit.allowed) {
          throw error(429, 'throttled', 'Too many requests from this client; slow down', undefined, {
            'Retry-After': String(limit.retryAfterSeconds),
          });
        }
      }
      fhirReq = {
        method: req.method === 'HEAD' ? 'GET' : req.method,
        segments,
        query: req.query as Record<string, string | string[]>,
        headers: req.headers as Record<string, string | undefined>,
        body: parseBody(req, limits, deps.config.maxParameters),
        baseUrl: baseUrlOf(req),
        access,
        requestId: String(res.getHeader('X-Request-Id') ?? ''),
        signal,
      };
      const out = await dispatch(fhirReq);
      if (access) await deps.audit(fhirReq, out.status, out.body, out.headers?.Location, out.audit);
      send(req, res, out);
    } catch (err) {
      try {
        // Refused and failed accesses are part of the audit trail too.
        if (fhirReq?.access) await deps.audit(fhirReq, statusOf(err), undefined);
      } catch (auditErr) {
        return next(auditErr);
      }
      next(err);
    }
  });
  return router;
}

/**
 * Aborted when the connection closes before the answer has been sent, i.e. the client went away (a timeout, a
 * cancelled page): the FHIR layer then starts no further database work for a request nobody waits for.
 */
function clientGoneSignal(res: Response): AbortSignal {
  const controller = new AbortController();
  // Each database read under way listens to it (a transaction's searches run together): not a leak.
  setMaxListeners(0, controller.signal);
  const abort = () => {
    if (!res.writableFinished) controller.abort(new ClientGoneError());
  };
  if (!res.socket || res.socket.destroyed) abort();
  else res.once('close', abort);
  return controller.signal;
}

/** 499: the status nginx and others log for a request its client closed (no response can be sent). */
const CLIENT_CLOSED_REQUEST = 499;

function statusOf(err: unknown): number {
  if (err instanceof OperationOutcomeError) return err.status;
  return err instanceof ClientGoneError ? CLIENT_CLOSED_REQUEST : 500;
}

/** Only JSON is spoken here: `_format`/Accept for XML or Turtle gets 406 (FHIR R4 §2.6.0 content types). */
function negotiate(req: Request): void {
  const format = req.query._format;
  if (typeof format === 'string' && !JSON_FORMATS.has(format)) {
    throw error(
      406,
      'not-supported',
      `_format=${format} is not supported; this server speaks application/fhir+json`,
      '_format',
    );
  }
  const accept = req.headers.accept;
  if (accept && !/(\*\/\*|application\/\*|json)/.test(accept) && typeof format !== 'string') {
    throw error(406, 'not-supported', `Accept: ${accept} is not supported; ask for application/fhir+json`);
  }
}

function parseBody(req: Request, limits: JsonLimits, maxParameters: number): unknown {
  const raw = req.body as Buffer | undefined;
  if (!Buffer.isBuffer(raw) || raw.length === 0) {
    if (req.method === 'POST' || req.method === 'PUT') {
      if (req.path.endsWith('/_search')) return {};
      throw error(400, 'required', `${req.method} needs a JSON body (Content-Type: ${FHIR_JSON})`);
    }
    return undefined;
  }
  const contentType = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (contentType === 'application/x-www-form-urlencoded' && req.path.endsWith('/_search')) {
    // Repeated parameters stay arrays (`date=ge…&date=lt…` is an AND), as in the query string.
    const text = raw.toString('utf8');
    const count = countParameters(text);
    if (count > maxParameters) throw error(400, 'too-costly', tooManyParameters(count, maxParameters));
    const form: Record<string, string | string[]> = {};
    for (const [k, v] of new URLSearchParams(text)) {
      if (hasControlCharacter(k) || hasControlCharacter(v)) {
        throw error(400, 'value', controlMessage(`The search parameter '${k.slice(0, 40)}'`));
      }
      const prev = form[k];
      form[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    return form;
  }
  if (!JSON_TYPES.test(contentType)) {
    throw unsupportedMediaType(
      `Content-Type '${contentType || '(none)'}' is not supported; send ${FHIR_JSON} (or application/json)`,
    );
  }
  return parseJsonBody(raw, req.headers['content-type'], limits);
}

export function send(req: Request, res: Response, out: FhirResponse): void {
  for (const [k, v] of Object.entries(out.headers ?? {})) res.setHeader(k, v);
  res.status(out.status);
  if (out.body === undefined) {
    res.end();
    return;
  }
  res.type(FHIR_JSON);
  const pretty = req.query._pretty === 'true';
  res.send(JSON.stringify(out.body, null, pretty ? 2 : undefined));
}

/** Turns every error into an OperationOutcome; never a stack trace (style.md). */
export function fhirErrorHandler(log: Logger) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    let status = 500;
    let body = outcome(
      issue('fatal', 'exception', 'Internal error; the request id in X-Request-Id identifies it in the logs'),
    );
    let headers: Record<string, string> = {};
    const e = err as { type?: string; status?: number; message?: string };
    if (err instanceof ClientGoneError) {
      // Nobody is left to answer; not a failure of the broker.
      log.info('Request abandoned by the client', {
        requestId: res.getHeader('X-Request-Id'),
        method: req.method,
        path: routeLabel(req.originalUrl.split('?')[0]),
      });
      if (!res.headersSent) res.status(CLIENT_CLOSED_REQUEST).end();
      return;
    }
    if (err instanceof OperationOutcomeError) {
      status = err.status;
      body = err.outcome;
      headers = err.headers;
    } else if (e?.type === 'entity.too.large') {
      const tl = tooLarge(
        `The request body exceeds the limit of ${Math.round(((e as { limit?: number }).limit ?? 0) / 1024)} KiB`,
      );
      status = tl.status;
      body = tl.outcome;
    } else if (e?.type === 'encoding.unsupported') {
      const um = unsupportedMediaType(
        `Content-Encoding '${String((e as { encoding?: unknown }).encoding)}' is not supported; send the body as is or compressed with gzip, deflate or br`,
      );
      status = um.status;
      body = um.outcome;
    } else if (e?.type === 'charset.unsupported') {
      const um = unsupportedMediaType('Only UTF-8 bodies are supported (charset=utf-8)');
      status = um.status;
      body = um.outcome;
    } else if (e?.type === 'parameters.too.many') {
      const tl = tooLarge('The form has too many fields');
      status = tl.status;
      body = tl.outcome;
    } else if (
      e?.type === 'request.aborted' ||
      e?.type === 'entity.verify.failed' ||
      (typeof e?.status === 'number' && e.status >= 400 && e.status < 500)
    ) {
      // Any other refusal of a body parser (express.json on the pages' small JSON endpoints) stays a 4xx.
      status = typeof e?.status === 'number' && e.status >= 400 && e.status < 500 ? e.status : 400;
      body = outcome(issue('error', 'structure', 'The request body could not be read'));
    } else {
      log.error('Request failed', { requestId: res.getHeader('X-Request-Id'), error: e?.message, path: req.path });
    }
    if (!res.headersSent) {
      for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
      res.status(status).type(FHIR_JSON).send(JSON.stringify(body));
    }
  };
}
