import client from 'prom-client';
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

/** A low-cardinality route label: resource ids and version ids are replaced by placeholders. */
export function routeLabel(path: string): string {
  const parts = path.split('/').filter(Boolean);
  if (parts[0] !== 'fhir') return '/' + parts.slice(0, 2).join('/');
  const [, type, id, hist, vid] = parts;
  const out = ['fhir'];
  if (type) out.push(type.startsWith('$') || type.startsWith('_') || type === 'metadata' ? type : type);
  if (id) out.push(id.startsWith('$') || id.startsWith('_') ? id : ':id');
  if (hist) out.push(hist);
  if (vid) out.push(':vid');
  return '/' + out.join('/');
}
