import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { FederationBroker } from '../../src/federation/brokers.js';
import { NeighbourClient } from '../../src/federation/client.js';

/**
 * A neighbour on loopback that issues tokens and answers every federation call 429 with Retry-After: 120 — as a
 * broker does when another broker floods it (src/federation/routes.ts).
 */
describe('a neighbour that answers 429', () => {
  const calls: string[] = [];
  let server: http.Server;
  let broker: FederationBroker;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      calls.push(`${req.method} ${req.url}`);
      req.resume();
      req.on('end', () => {
        if (req.url === '/auth/token') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ access_token: 'token-of-the-neighbour', expires_in: 300 }));
          return;
        }
        res.writeHead(429, { 'content-type': 'application/fhir+json', 'retry-after': '120' });
        res.end(
          JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'throttled' }] }),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const { privateKey } = await generateKeyPair('ES384', { extractable: true });
    broker = {
      _id: 'qingdao',
      relation: 'parent',
      baseUrl: `${origin}/fhir`,
      region: '370200',
      outbound: {
        tokenUrl: `${origin}/auth/token`,
        clientId: 'broker-huangdao',
        privateJwk: { ...(await exportJWK(privateKey)), alg: 'ES384', kid: 'k1' },
        scope: 'system/DiagnosticReport.rs',
      },
      inbound: { clientId: 'broker-qingdao', jwks: { keys: [] } },
      timeoutMs: 2000,
      enabled: true,
    };
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  test('is reported with its wait, then not asked again before its Retry-After', async () => {
    const client = new NeighbourClient();
    await expect(client.post(broker, '/federation/facts', {}, 5000)).rejects.toMatchObject({
      name: 'NeighbourError',
      status: 429,
      message: 'HTTP 429: rate limited by the neighbour for 120 s',
    });
    expect(calls).toEqual(['POST /auth/token', 'POST /federation/facts']);
    // The next call is answered at once, from the wait the neighbour asked for: no request leaves.
    await expect(client.post(broker, '/federation/facts', {}, 5000)).rejects.toThrow(
      /^rate limited by the neighbour for 1[12]\d s more$/,
    );
    await expect(client.get(broker, '/federation/rules', 5000)).rejects.toMatchObject({ status: 429 });
    expect(calls).toHaveLength(2);
  });
});
