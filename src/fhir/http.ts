import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { Logger } from '../log.js';
import { createDispatcher } from './dispatch.js';
import type { FhirDeps } from './interactions.js';
import { error, OperationOutcomeError, outcome, issue, tooLarge, unsupportedMediaType } from './outcomes.js';
import type { FhirRequest, FhirResponse } from './request.js';

export const FHIR_JSON = 'application/fhir+json';

const JSON_TYPES = /^application\/(fhir\+)?json$/;
const JSON_FORMATS = new Set(['json', 'application/json', 'application/fhir+json']);

/** Express adapter for the FHIR layer: raw body → FhirRequest → dispatcher → FhirResponse → HTTP. */
export function fhirRouter(deps: FhirDeps, baseUrlOf: (req: Request) => string): Router {
  const router = express.Router();
  const dispatch = createDispatcher(deps);

  router.use(express.raw({ type: () => true, limit: deps.config.maxBodyBytes }));
  router.use(async (req: Request, res: Response, next: NextFunction) => {
    try {
      negotiate(req);
      const fhirReq: FhirRequest = {
        method: req.method === 'HEAD' ? 'GET' : req.method,
        segments: pathSegments(req.path),
        query: req.query as Record<string, string | string[]>,
        headers: req.headers as Record<string, string | undefined>,
        body: parseBody(req),
        baseUrl: baseUrlOf(req),
      };
      send(req, res, await dispatch(fhirReq));
    } catch (err) {
      next(err);
    }
  });
  return router;
}

/** The path below the FHIR base, split and URL-decoded; a malformed escape (`%E0%A4%A`) is the client's error. */
export function pathSegments(path: string): string[] {
  return path
    .split('/')
    .filter(Boolean)
    .map((segment) => {
      try {
        return decodeURIComponent(segment);
      } catch {
        throw error(400, 'invalid', `The URL path segment '${segment}' is not valid percent-encoded UTF-8`);
      }
    });
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

function parseBody(req: Request): unknown {
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
    const form: Record<string, string | string[]> = {};
    for (const [k, v] of new URLSearchParams(raw.toString('utf8'))) {
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
  const text = raw.toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const detail = err instanceof SyntaxError ? err.message : 'invalid JSON';
    throw error(400, 'structure', `The body is not valid JSON: ${detail}`);
  }
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
    } else if (e?.type === 'request.aborted' || e?.type === 'entity.verify.failed' || e?.status === 400) {
      status = 400;
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
