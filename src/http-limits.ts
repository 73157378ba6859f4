import http, { type IncomingMessage, type RequestListener, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Config } from './config.js';
import { FHIR_JSON } from './fhir/http.js';
import { issue, outcome, type IssueCode } from './fhir/outcomes.js';
import { controlMessage, hasControlCharacter } from './fhir/json-limits.js';
import { countParameters, tooManyParameters } from './fhir/request.js';

/**
 * Server-level limits, answered the way each endpoint answers its errors (an OperationOutcome naming the limit, or
 * the OAuth error JSON on /auth/token and /auth/authorize): the request line and headers (Node's parser, `HUREN_MAX_HEADER_SIZE`), the URL
 * (`HUREN_MAX_URL_LENGTH`, kept below the header limit so the app answers it) and the number of query parameters
 * (`HUREN_MAX_PARAMETERS`). Body limits (size, depth, arrays, strings, numbers) are checked where bodies are read.
 */
export type HttpLimits = Pick<Config, 'maxHeaderBytes' | 'maxUrlLength' | 'maxParameters'>;

/**
 * Refuses a request line and headers larger than the limit (431), a URL longer than its limit (414) or with more query
 * parameters than the limit (400).
 */
export function requestLimits(limits: HttpLimits): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const url = req.originalUrl;
    let headerBytes = req.method.length + url.length + 11; // "GET /url HTTP/1.1\r\n"
    for (const h of req.rawHeaders) headerBytes += Buffer.byteLength(h) + 2; // "name: value\r\n"
    if (headerBytes > limits.maxHeaderBytes) {
      return refuse(
        req,
        res,
        431,
        'too-costly',
        `The request line and headers have ${headerBytes} bytes; at most ${limits.maxHeaderBytes} are accepted (HUREN_MAX_HEADER_SIZE)`,
      );
    }
    if (url.length > limits.maxUrlLength) {
      return refuse(
        req,
        res,
        414,
        'too-costly',
        `The URL has ${url.length} characters; at most ${limits.maxUrlLength} are accepted (HUREN_MAX_URL_LENGTH): ` +
          'send a long search as POST [type]/_search with a form body',
      );
    }
    const q = url.indexOf('?');
    const count = q < 0 ? 0 : countParameters(url.slice(q + 1));
    if (count > limits.maxParameters) {
      return refuse(req, res, 400, 'too-costly', tooManyParameters(count, limits.maxParameters));
    }
    if (q >= 0) {
      // A NUL in a search value would reach the database, which cannot hold it; FHIR strings have no control characters.
      for (const [key, value] of new URLSearchParams(url.slice(q + 1))) {
        if (hasControlCharacter(key) || hasControlCharacter(value)) {
          return refuse(req, res, 400, 'value', controlMessage(`The query parameter '${key.slice(0, 40)}'`));
        }
      }
    }
    next();
  };
}

/** The OAuth endpoints' clients parse RFC 6749 §5.2 errors; everything else (/auth/launch too) speaks OperationOutcome. */
function refuse(req: Request, res: Response, status: number, code: IssueCode, diagnostics: string): void {
  if (req.path === '/auth/token' || req.path === '/auth/authorize') {
    res.status(status).setHeader('Cache-Control', 'no-store');
    res.json({ error: 'invalid_request', error_description: diagnostics });
    return;
  }
  res
    .status(status)
    .type(FHIR_JSON)
    .send(JSON.stringify(outcome(issue('error', code, diagnostics))));
}

/**
 * The HTTP server of the app. Node's parser reads up to four times `maxHeaderBytes` of request line and headers, so
 * that the app answers a request over the limit itself (requestLimits: it knows the method and the endpoint). What
 * the parser refuses (headers far too large, malformed HTTP, a request that took too long to arrive) is answered with
 * an OperationOutcome instead of Node's empty 431/400/408.
 */
export function createHttpServer(app: RequestListener, limits: Pick<Config, 'maxHeaderBytes'>): Server {
  const parserLimit = PARSER_HEADROOM * limits.maxHeaderBytes;
  const server = http.createServer({ maxHeaderSize: parserLimit }, app);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    answerClientError(err, socket, parserLimit);
  });
  return server;
}

const PARSER_HEADROOM = 4;

function answerClientError(err: NodeJS.ErrnoException, socket: Duplex, maxHeaderBytes: number): void {
  // As Node itself: answer only on a connection that has not been answered on yet (bytes after a request the app
  // already answered, e.g. the body of a TRACE, are not a request of their own).
  if (err.code === 'ECONNRESET' || !socket.writable || (socket as Socket).bytesWritten > 0) {
    socket.destroy();
    return;
  }
  const [status, reason, code, diagnostics]: [number, string, IssueCode, string] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [
          431,
          'Request Header Fields Too Large',
          'too-costly',
          `The request line and headers exceed ${maxHeaderBytes} bytes (4 × HUREN_MAX_HEADER_SIZE)`,
        ]
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'timeout', 'The request did not arrive in time']
        : [400, 'Bad Request', 'structure', 'The request is not valid HTTP/1.1'];
  // The start of the request, when the refused chunk holds it: a HEAD gets the headers only (RFC 9110 §9.3.2), and
  // the OAuth endpoints answer with their own error JSON.
  const start = /^([A-Z]+) (\/[^ ?]*)/.exec(
    (err as { rawPacket?: Buffer }).rawPacket?.subarray(0, 200).toString('latin1') ?? '',
  );
  const isOAuth = start?.[2] === '/auth/token' || start?.[2] === '/auth/authorize';
  const body = JSON.stringify(
    isOAuth ? { error: 'invalid_request', error_description: diagnostics } : outcome(issue('error', code, diagnostics)),
  );
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: ${isOAuth ? 'application/json' : FHIR_JSON}\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${start?.[1] === 'HEAD' ? '' : body}`,
  );
}

/** `/metrics` without a token, on its own listener (HUREN_METRICS_PORT), for a Prometheus scraper. */
export function createMetricsServer(metrics: {
  registry: { contentType: string; metrics(): Promise<string> };
}): Server {
  return http.createServer((req: IncomingMessage, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Only GET /metrics is served here\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(text),
      () => res.writeHead(500, { 'Content-Type': 'text/plain' }).end('Metrics could not be collected\n'),
    );
  });
}
