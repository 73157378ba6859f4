/**
 * Sends fuzz requests to the real HTTP server of a test broker (Node's parser and limits included) and judges each
 * answer: 2xx, or a 4xx with the endpoint's error body (OperationOutcome, or the OAuth error on /auth/token), within
 * the deadline; a refused write must leave nothing behind, which is checked by reading back.
 */
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { signCdsJwt, type DemoCdsClientFile } from '../../src/cds/clients.js';
import { LITERAL, MARK, type FuzzRequest } from './requests.js';

export const DEADLINE_MS = 2000;

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  ms: number;
}

export interface FuzzTarget {
  server: Server;
  tokens: Record<string, string>;
  cds: DemoCdsClientFile;
  /** The public origin the broker is configured with (the audience of CDS JWTs). */
  origin: string;
}

/** Requests sent, by kind, and their status classes: printed at the end of a run. */
export class Tally {
  readonly byKind = new Map<string, Map<string, number>>();
  readonly slowest = new Map<string, number>();
  /** The slowest request of the run (method and path, cut short), to look at when it nears the deadline. */
  slowestRequest = { ms: 0, what: '' };
  count(kind: string, status: number | 'timeout', ms = 0, what = ''): void {
    this.slowest.set(kind, Math.max(this.slowest.get(kind) ?? 0, ms));
    if (ms > this.slowestRequest.ms) this.slowestRequest = { ms, what: what.slice(0, 300) };
    const row = this.byKind.get(kind) ?? new Map<string, number>();
    const label = status === 'timeout' ? 'timeout' : `${Math.floor(status / 100)}xx`;
    row.set(label, (row.get(label) ?? 0) + 1);
    this.byKind.set(kind, row);
  }
  total(): number {
    let n = 0;
    for (const row of this.byKind.values()) for (const v of row.values()) n += v;
    return n;
  }
  table(): string {
    const lines = [...this.byKind.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([kind, row]) => {
        const sent = [...row.values()].reduce((a, b) => a + b, 0);
        const parts = [...row.entries()].sort().map(([k, v]) => `${k} ${v}`);
        const slowest = `slowest ${this.slowest.get(kind) ?? 0} ms`;
        return `  ${kind.padEnd(28)} ${String(sent).padStart(6)}   ${parts.join(', ').padEnd(26)} ${slowest}`;
      });
    return [
      `Fuzz requests sent: ${this.total()} (kind, count, status classes, slowest answer)`,
      ...lines,
      `  slowest request: ${this.slowestRequest.ms} ms ${this.slowestRequest.what}`,
    ].join('\n');
  }
}

let marks = 0;

/** The body as bytes on the wire, with its Content-Type (and any header the wire form needs). */
export function render(req: FuzzRequest, mark: string): { bytes?: Buffer; headers: Record<string, string> } {
  const body = req.body;
  if (!body) return { headers: {} };
  if ('raw' in body) {
    return {
      bytes: Buffer.from(body.raw.replaceAll(MARK, mark)),
      headers: body.contentType ? { 'Content-Type': body.contentType } : {},
    };
  }
  let text = JSON.stringify(body.json) ?? 'null';
  // Literals JSON.stringify cannot write (1e400, a "__proto__" key): placed as strings, unquoted here.
  text = text.replace(/"__LITERAL__((?:[^"\\]|\\.)*)"/g, (_m, inner: string) => JSON.parse(`"${inner}"`) as string);
  text = text.replaceAll(MARK, mark);
  const json = { 'Content-Type': 'application/fhir+json' };
  switch (body.wire) {
    case 'json':
      return { bytes: Buffer.from(text), headers: json };
    case 'bom':
      return { bytes: Buffer.from(`\uFEFF${text}`), headers: json };
    case 'utf16':
      return {
        bytes: Buffer.from(text, 'utf16le'),
        headers: { 'Content-Type': 'application/fhir+json; charset=utf-16' },
      };
    case 'utf16-unlabelled':
      return { bytes: Buffer.from(text, 'utf16le'), headers: json };
    case 'latin1':
      return {
        bytes: Buffer.from(text, 'latin1'),
        headers: { 'Content-Type': 'application/json; charset=iso-8859-1' },
      };
    case 'gb18030-label':
      return { bytes: Buffer.from(text), headers: { 'Content-Type': 'application/fhir+json; charset=GB18030' } };
    case 'duplicate-keys':
      return { bytes: Buffer.from(text.replace('{', '{"resourceType":"Patient","id":"dup",')), headers: json };
    case 'truncated':
      return { bytes: Buffer.from(text.slice(0, Math.floor(text.length / 2))), headers: json };
    case 'trailing-garbage':
      return { bytes: Buffer.from(`${text}}{`), headers: json };
    case 'gzip-label':
      return { bytes: Buffer.from(text), headers: { ...json, 'Content-Encoding': 'gzip' } };
    case 'form':
      return { bytes: Buffer.from(text), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } };
    case 'text-plain':
      return { bytes: Buffer.from(text), headers: { 'Content-Type': 'text/plain' } };
  }
}

/** One HTTP exchange on a fresh connection; `undefined` when no answer came within the deadline. */
export function exchange(
  server: Server,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: Buffer,
): Promise<Answer | undefined> {
  const { port } = server.address() as AddressInfo;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path, headers: { ...headers, Connection: 'close' }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
            ms: Date.now() - started,
          });
        });
        res.on('error', reject);
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      resolve(undefined);
    }, DEADLINE_MS);
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      // The server may answer (413, 431) and close before it has read the whole body: the answer still counts.
      if (err.code === 'EPIPE' || err.code === 'ECONNRESET')
        resolve({ status: -1, headers: {}, text: err.code, ms: 0 });
      else reject(err);
    });
    if (body) req.end(body);
    else req.end();
  });
}

/** Sends a fuzz request as its role; returns the answer (or undefined: no answer in time) and the mark it carried. */
export async function send(
  target: FuzzTarget,
  req: FuzzRequest,
): Promise<{ answer: Answer | undefined; mark: string; sentText: string }> {
  const mark = `fz${process.pid}x${++marks}`;
  const { bytes, headers } = render(req, mark);
  const all: Record<string, string> = { ...headers };
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) all[k] = v.replaceAll(MARK, mark);
  if (req.cds) {
    const aud = `${target.origin}${req.path.split('?')[0]}`;
    all.Authorization = `Bearer ${await signCdsJwt(target.cds.iss, target.cds.privateJwk, aud)}`;
  } else if (req.role === 'forged') {
    all.Authorization =
      'Bearer eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiJkZW1vLWFkbWluIiwicm9sZSI6ImFkbWluIn0.';
  } else if (req.role !== 'anonymous') {
    all.Authorization = `Bearer ${target.tokens[req.role]}`;
  }
  const path = req.path.replaceAll(MARK, mark);
  const answer = await exchange(target.server, req.method, path, all, bytes);
  return { answer, mark, sentText: bytes ? bytes.toString('utf8') : '' };
}

/** What is wrong with an answer, or undefined when it is acceptable. */
export function problemWith(req: FuzzRequest, answer: Answer | undefined): string | undefined {
  if (!answer) return `no answer within ${DEADLINE_MS} ms`;
  if (answer.status === -1) return undefined; // refused while the body was still being sent (see exchange)
  if (answer.ms > DEADLINE_MS) return `answered after ${answer.ms} ms`;
  if (answer.status >= 500 || answer.status < 100) return `status ${answer.status}: ${answer.text.slice(0, 300)}`;
  if (/\n\s+at .+:\d+:\d+/.test(answer.text)) return 'the answer carries a stack trace';
  if (answer.status < 400 || req.method === 'HEAD') return undefined;
  let body: unknown;
  try {
    body = JSON.parse(answer.text);
  } catch {
    return `status ${answer.status} with a body that is not JSON: ${answer.text.slice(0, 200)}`;
  }
  const b = body as { resourceType?: unknown; issue?: unknown; error?: unknown };
  const oauth = req.path.startsWith('/auth/token') || req.path.startsWith('/auth/authorize');
  if (oauth) {
    return typeof b.error === 'string'
      ? undefined
      : `status ${answer.status} without an OAuth error: ${answer.text.slice(0, 200)}`;
  }
  if (b.resourceType !== 'OperationOutcome' || !Array.isArray(b.issue) || b.issue.length === 0) {
    return `status ${answer.status} without an OperationOutcome: ${answer.text.slice(0, 200)}`;
  }
  return undefined;
}

/** Resource types whose search by the write's mark must find nothing after a refused write. */
export function typesWritten(req: FuzzRequest, sentText: string, mark: string): string[] {
  if (!sentText.includes(mark) || (req.method !== 'POST' && req.method !== 'PUT')) return [];
  const m = /^\/fhir\/(Observation|DiagnosticReport|Patient|ServiceRequest|Organization)(?:[/?]|$)/.exec(req.path);
  if (m) return [m[1]!];
  if (req.path === '/fhir') return ['Observation', 'DiagnosticReport', 'Patient', 'ServiceRequest'];
  return [];
}

export { LITERAL };
