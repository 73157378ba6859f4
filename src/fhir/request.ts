import type { Resource } from 'fhir/r4';
import type { AccessContext } from '../auth/tokens.js';
import { error } from './outcomes.js';

/** An HTTP request as the FHIR layer sees it: independent of Express (style.md, Medplum model). */
export interface FhirRequest {
  method: string;
  /** Path below the FHIR base, split on '/', already URL-decoded. */
  segments: string[];
  query: Record<string, string | string[]>;
  /** Lower-case header names. */
  headers: Record<string, string | undefined>;
  body: unknown;
  /** Absolute base URL of the FHIR endpoint, without trailing slash. */
  baseUrl: string;
  /** Who is calling (from the bearer token); set for every request but `metadata`. */
  access?: AccessContext;
  /** The X-Request-Id of the HTTP request, for the audit trail. */
  requestId?: string;
  /**
   * Aborted (with a ClientGoneError) when the client goes away before its answer is sent: no further database work
   * is started for it (abortableStore).
   */
  signal?: AbortSignal;
}

/** The client closed the connection before its answer was sent; nobody is left to answer. */
export class ClientGoneError extends Error {
  override name = 'ClientGoneError';
  constructor() {
    super('The client closed the connection before the answer was sent');
  }
}

export interface FhirResponse {
  status: number;
  body?: Resource;
  headers?: Record<string, string>;
  /** What the audit trail should name besides the body (an operation's patients and the results it pointed to). */
  audit?: AuditExtra;
}

export interface AuditExtra {
  patients?: string[];
  resources?: string[];
}

export function header(req: FhirRequest, name: string): string | undefined {
  return req.headers[name.toLowerCase()];
}

/** `Prefer: return=minimal|representation|OperationOutcome` (FHIR R4 §3.1.0.6). */
export function preferReturn(req: FhirRequest): 'minimal' | 'representation' | 'OperationOutcome' {
  const m = /return=(minimal|representation|OperationOutcome)/.exec(header(req, 'prefer') ?? '');
  return (m?.[1] as 'minimal' | 'representation' | 'OperationOutcome' | undefined) ?? 'representation';
}

/** `Prefer: handling=lenient` makes unknown search parameters a warning instead of an error (FHIR R4 §3.1.1.5.1). */
export function isLenient(req: FhirRequest): boolean {
  return /handling=lenient/.test(header(req, 'prefer') ?? '');
}

/** The path below the FHIR base, split and URL-decoded; a malformed escape (`%E0%A4%A`) is the client's error. */
export function pathSegments(path: string, expression?: string): string[] {
  return path
    .split('/')
    .filter(Boolean)
    .map((segment) => {
      try {
        return decodeURIComponent(segment);
      } catch {
        throw error(400, 'invalid', `The URL path segment '${segment}' is not valid percent-encoded UTF-8`, expression);
      }
    });
}

/** `a=1&b=2&&c` has 3 parameters: the non-empty `&`-separated pairs, as URLSearchParams reads them. */
export function countParameters(query: string): number {
  let n = 0;
  for (const pair of query.split('&')) if (pair !== '') n++;
  return n;
}

/** The diagnostics of a request with more parameters (query string or search form) than HUREN_MAX_PARAMETERS. */
export function tooManyParameters(count: number, max: number): string {
  return `The request has ${count} query parameters; at most ${max} are accepted (HUREN_MAX_PARAMETERS)`;
}
