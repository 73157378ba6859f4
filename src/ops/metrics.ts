import client from 'prom-client';
import { isKnownType } from '../fhir/types.js';
import type { NextFunction, Request, Response } from 'express';

/** Prometheus metrics of one app instance (its own registry, so tests can build several apps). */
export function createMetrics() {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const requests = new client.Counter({
    name: 'huren_http_requests_total',
    help: 'HTTP requests served, by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new client.Histogram({
    name: 'huren_http_request_duration_seconds',
    help: 'HTTP request duration in seconds, by method and route',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const replayed = new client.Counter({
    name: 'huren_ingest_replayed_total',
    help: 'Ingest-log entries replayed at start-up after an interrupted write',
    registers: [registry],
  });

  function middleware(req: Request, res: Response, next: NextFunction): void {
    const end = duration.startTimer();
    res.on('finish', () => {
      const route = routeLabel(req.originalUrl.split('?')[0]);
      requests.inc({ method: req.method, route, status: String(res.statusCode) });
      end({ method: req.method, route });
    });
    next();
  }
  return { registry, middleware, replayed };
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * A low-cardinality route label: known resource types and operations are kept, ids become placeholders, anything
 * else is a constant (a path may carry anything a client typed, identifiers included).
 */
export function routeLabel(path: string): string {
  const parts = path.split('/').filter(Boolean);
  if (parts[0] !== 'fhir') return KNOWN_ROOTS.has(`/${parts.join('/')}`) ? `/${parts.join('/')}` : '/(other)';
  const [, type, id, hist, vid, ...rest] = parts;
  if (type === undefined) return '/fhir';
  if (rest.length || !(isKnownType(type) || FHIR_WORDS.has(type))) return '/fhir/(other)';
  const out = ['fhir', type];
  if (id) out.push(id.startsWith('$') || id.startsWith('_') ? (FHIR_WORDS.has(id) ? id : '(other)') : ':id');
  if (hist) out.push(FHIR_WORDS.has(hist) ? hist : '(other)');
  if (vid) out.push(':vid');
  return '/' + out.join('/');
}

const FHIR_WORDS = new Set([
  'metadata',
  '_history',
  '_search',
  '$validate',
  '$reuse-check',
  '$reuse-decision',
  '$evaluate-measure',
]);
const KNOWN_ROOTS = new Set([
  '/healthz',
  '/readyz',
  '/metrics',
  '/auth/token',
  '/auth/jwks',
  '/.well-known/smart-configuration',
  '/',
]);
