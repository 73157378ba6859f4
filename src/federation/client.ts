/**
 * Calls to a neighbouring broker: SMART Backend Services tokens (kept until shortly before they expire) and JSON
 * requests, each bounded by a deadline (AbortSignal): a neighbour that does not answer in time is a reason in the
 * answer, never a hang. Errors carry a reason without patient data.
 */
import { requestToken } from '../auth/assertion.js';
import { originOf, type FederationBroker } from './brokers.js';

export class NeighbourError extends Error {
  override name = 'NeighbourError';
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/** How long a token request may take: longer than a check's deadline, so that a slow first one still lands. */
const TOKEN_TIMEOUT_MS = 10_000;

export class NeighbourClient {
  private readonly tokens = new Map<string, { value: string; until: number }>();
  /** Token requests in flight, shared by the checks that wait for them; not aborted with a check's deadline. */
  private readonly pending = new Map<string, Promise<string>>();
  /** Neighbours that answered 429: not asked again before their Retry-After (a reason at once, no request). */
  private readonly throttledUntil = new Map<string, number>();

  /** POST a JSON body to `<origin><path>` of the neighbour within `ms`; the parsed JSON answer. */
  async post(broker: FederationBroker, path: string, body: unknown, ms: number): Promise<unknown> {
    return this.send(broker, path, { method: 'POST', body: JSON.stringify(body) }, ms);
  }

  async get(broker: FederationBroker, path: string, ms: number): Promise<unknown> {
    return this.send(broker, path, { method: 'GET' }, ms);
  }

  private async send(
    broker: FederationBroker,
    path: string,
    init: { method: string; body?: string },
    ms: number,
  ): Promise<unknown> {
    const until = this.throttledUntil.get(broker._id) ?? 0;
    if (until > Date.now()) {
      throw new NeighbourError(
        `rate limited by the neighbour for ${Math.ceil((until - Date.now()) / 1000)} s more`,
        429,
      );
    }
    const signal = AbortSignal.timeout(Math.max(1, ms));
    try {
      const token = await this.token(broker, signal);
      let res = await this.request(broker, path, init, token, signal);
      if (res.status === 401) {
        // A token the neighbour no longer accepts (its keys rotated, it restarted on another database): one new try.
        this.tokens.delete(broker._id);
        res = await this.request(broker, path, init, await this.token(broker, signal), signal);
      }
      const text = await res.text();
      if (res.status === 429) {
        const seconds = Number(res.headers.get('retry-after'));
        const wait = Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 600) : 60;
        this.throttledUntil.set(broker._id, Date.now() + wait * 1000);
        throw new NeighbourError(`HTTP 429: rate limited by the neighbour for ${wait} s`, 429);
      }
      if (res.status !== 200) throw new NeighbourError(`HTTP ${res.status}`, res.status);
      return JSON.parse(text) as unknown;
    } catch (err) {
      if (err instanceof NeighbourError) throw err;
      const name = (err as Error)?.name;
      if (name === 'TimeoutError' || name === 'AbortError') throw new NeighbourError(`no answer within ${ms} ms`);
      const cause = (err as { cause?: { code?: string } })?.cause?.code;
      throw new NeighbourError(cause ? `connection failed (${cause})` : 'connection failed');
    }
  }

  private request(
    broker: FederationBroker,
    path: string,
    init: { method: string; body?: string },
    token: string,
    signal: AbortSignal,
  ): Promise<Response> {
    return fetch(`${originOf(broker.baseUrl)}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json' },
      signal,
    });
  }

  /**
   * A token for the neighbour: the kept one, else the request in flight, else a new request. A check waits for it
   * within its own deadline; the request itself runs on, so that the next check finds the token ready.
   */
  private async token(broker: FederationBroker, signal: AbortSignal): Promise<string> {
    const kept = this.tokens.get(broker._id);
    if (kept && kept.until > Date.now()) return kept.value;
    let pending = this.pending.get(broker._id);
    if (!pending) {
      pending = this.newToken(broker).finally(() => this.pending.delete(broker._id));
      pending.catch(() => undefined); // a failure is reported to the checks waiting for it, never unhandled
      this.pending.set(broker._id, pending);
    }
    signal.throwIfAborted();
    return new Promise<string>((resolve, reject) => {
      const abort = () => reject(signal.reason as Error);
      signal.addEventListener('abort', abort, { once: true });
      pending.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
    });
  }

  private async newToken(broker: FederationBroker): Promise<string> {
    const { tokenUrl, clientId, privateJwk, scope } = broker.outbound;
    const { status, body } = await requestToken(
      tokenUrl,
      clientId,
      privateJwk,
      scope,
      AbortSignal.timeout(TOKEN_TIMEOUT_MS),
    );
    if (status !== 200 || !body.access_token) {
      throw new NeighbourError(`the token endpoint refused this broker: ${body.error ?? `HTTP ${status}`}`, status);
    }
    const lifetime = Number(body.expires_in ?? 300);
    this.tokens.set(broker._id, { value: body.access_token, until: Date.now() + Math.max(10, lifetime - 30) * 1000 });
    return body.access_token;
  }
}
