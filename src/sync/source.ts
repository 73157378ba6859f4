import type { Bundle, Resource } from 'fhir/r4';
import { Client } from 'fhir-kit-client';
import { requestToken } from '../auth/assertion.js';
import type { SyncEndpoint } from './endpoints.js';

/**
 * A hospital's FHIR server as the broker reads it: fhir-kit-client with the endpoint's authentication, a timeout on
 * every request and retries with exponential backoff on what is worth retrying (429, 5xx, timeouts, connection
 * errors, answers that are not a FHIR Bundle). fhir-kit-client's `{ response: { status, data } }` errors become a
 * `SourceError` here, the one adapter that calls it (style.md).
 */

export interface RetryPolicy {
  /** Tries per request, the first included. */
  attempts: number;
  /** Delay before the second try; doubled each time, with jitter, capped at `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 4, baseDelayMs: 1000, maxDelayMs: 30_000 };

export class SourceError extends Error {
  override name = 'SourceError';
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export class HospitalSource {
  private readonly client: Client;
  private token: { value: string; until: number } | undefined;

  constructor(
    private readonly endpoint: SyncEndpoint,
    private readonly retry: RetryPolicy = DEFAULT_RETRY,
    private readonly onRetry: (error: SourceError) => void = () => {},
  ) {
    this.client = new Client({ baseUrl: endpoint.baseUrl });
  }

  /** A searchset page (the first one by a relative URL, the next ones by their `link.next`). */
  async bundle(url: string): Promise<Bundle> {
    return this.withRetries(async () => {
      const body = await this.get(url);
      if (body?.resourceType !== 'Bundle' || (body.entry !== undefined && !Array.isArray(body.entry))) {
        throw new SourceError(`The answer to a search is not a FHIR Bundle`, true);
      }
      return body as Bundle;
    });
  }

  /** One resource by reference (`Observation/1`) or absolute URL; undefined when the hospital says 404/410. */
  async resource(url: string): Promise<Resource | undefined> {
    return this.withRetries(async () => {
      try {
        const body = await this.get(url);
        if (typeof body?.resourceType !== 'string') throw new SourceError('The answer is not a FHIR resource', true);
        return body as Resource;
      } catch (err) {
        if (err instanceof SourceError && (err.status === 404 || err.status === 410)) return undefined;
        throw err;
      }
    });
  }

  private async get(url: string): Promise<{ resourceType?: unknown; entry?: unknown }> {
    const headers = await this.authHeaders();
    try {
      return (await this.client.request(url, {
        method: 'GET',
        options: { headers, signal: AbortSignal.timeout(this.endpoint.timeoutSeconds * 1000) },
      })) as { resourceType?: unknown };
    } catch (err) {
      throw this.toSourceError(err);
    }
  }

  private async withRetries<T>(attempt: () => Promise<T>): Promise<T> {
    for (let n = 1; ; n++) {
      try {
        return await attempt();
      } catch (err) {
        const e = err instanceof SourceError ? err : new SourceError((err as Error).message, false);
        if (!e.retryable || n >= this.retry.attempts) throw e;
        this.onRetry(e);
        const backoff = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (n - 1));
        const delay = Math.max(e.retryAfterMs ?? 0, backoff * (0.5 + Math.random() / 2));
        await new Promise((resolve) => setTimeout(resolve, Math.min(delay, this.retry.maxDelayMs)));
      }
    }
  }

  private toSourceError(err: unknown): SourceError {
    const response = (err as { response?: { status?: number; data?: unknown } })?.response;
    const name = (err as Error)?.name;
    if (name === 'TimeoutError' || name === 'AbortError') {
      return new SourceError(`No answer within ${this.endpoint.timeoutSeconds} s`, true);
    }
    if (!response?.status) {
      const cause = (err as { cause?: { code?: string } })?.cause?.code;
      return new SourceError(`Connection failed${cause ? ` (${cause})` : ''}`, true);
    }
    const { status } = response;
    if (status >= 200 && status < 300) return new SourceError('The answer is not valid JSON', true, status);
    if (status === 401) this.token = undefined; // expired or revoked: a new one on the next try
    const retryable = status === 429 || status >= 500 || status === 401;
    const headers = (err as { config?: { headers?: Headers } })?.config?.headers;
    const retryAfter = Number(headers?.get?.('retry-after'));
    return new SourceError(
      `The hospital's server answered HTTP ${status}`,
      retryable,
      status,
      Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined,
    );
  }

  /** The Authorization header: a static token, or one obtained with SMART Backend Services and kept until expiry. */
  private async authHeaders(): Promise<Record<string, string>> {
    const auth = this.endpoint.auth;
    if (auth.type === 'none') return {};
    if (auth.type === 'static') return { authorization: `Bearer ${auth.token}` };
    if (!this.token || this.token.until < Date.now()) {
      let answer: Awaited<ReturnType<typeof requestToken>>;
      try {
        answer = await requestToken(auth.tokenUrl, auth.clientId, auth.privateJwk, auth.scope);
      } catch {
        throw new SourceError('The token endpoint could not be reached', true);
      }
      if (answer.status !== 200 || !answer.body.access_token) {
        throw new SourceError(
          `The token endpoint refused the client: ${answer.body.error ?? `HTTP ${answer.status}`}`,
          answer.status >= 500 || answer.status === 429,
          answer.status,
        );
      }
      const lifetime = Number((answer.body as { expires_in?: number }).expires_in ?? 300);
      this.token = { value: answer.body.access_token, until: Date.now() + Math.max(10, lifetime - 30) * 1000 };
    }
    return { authorization: `Bearer ${this.token.value}` };
  }
}
