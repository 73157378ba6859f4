import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request that went through the proxy, as it was on the wire. */
export interface WireRecord {
  method: string;
  url: string;
  headers: string;
  body: string;
}

/**
 * A loopback HTTP proxy in front of a broker: every request that reaches the broker through it is recorded as it was
 * sent (method, URL, headers, body), so a test can assert what crosses a broker's boundary. `blackhole()` makes it
 * take requests and never answer (a broker that hangs); `close()` makes connections fail (a broker that is down).
 */
export class RecordingProxy {
  readonly records: WireRecord[] = [];
  private target = 0;
  private holding = false;
  private readonly server = http.createServer((req, res) => this.handle(req, res));
  private readonly sockets = new Set<import('node:net').Socket>();

  async listen(): Promise<number> {
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  forwardTo(port: number): void {
    this.target = port;
  }

  blackhole(hold = true): void {
    this.holding = hold;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      this.records.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: JSON.stringify(req.headers),
        body: body.toString('utf8'),
      });
      if (this.holding) return; // never answered: the caller's deadline must end it
      const upstream = http.request(
        { host: '127.0.0.1', port: this.target, method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => {
        res.writeHead(502).end();
      });
      upstream.end(body);
    });
  }
}
