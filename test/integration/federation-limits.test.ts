import type { OperationOutcome } from 'fhir/r4';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createClientAssertion } from '../../src/auth/assertion.js';
import { createTestApp, type TestApp } from '../support/app.js';

/**
 * The endpoints a broker serves to other brokers (/federation/*) have a budget per calling broker, apart from the
 * FHIR API's: a neighbour that floods the broker gets 429 with an OperationOutcome and Retry-After, and the others
 * are served on.
 */
const LIMIT = 2;

describe('rate limiting of the federation endpoints', () => {
  let t: TestApp;
  const keys: Record<string, JWK> = {};

  /** Registers a child broker with its public key (the admin endpoint), keeping its private key for its tokens. */
  async function registerChild(name: string, region: string) {
    const { privateKey, publicKey } = await generateKeyPair('ES384', { extractable: true });
    keys[name] = { ...(await exportJWK(privateKey)), kid: `${name}-1`, alg: 'ES384' };
    const res = await t
      .as('admin')
      .put(`/admin/federation/brokers/${name}`)
      .set('Content-Type', 'application/json')
      .send({
        relation: 'child',
        baseUrl: `https://${name}.example/fhir`,
        region,
        outbound: {
          tokenUrl: `https://${name}.example/auth/token`,
          clientId: 'broker-shandong',
          privateJwk: keys[name],
        },
        inbound: {
          clientId: `broker-${name}`,
          jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: `${name}-1`, alg: 'ES384' }] },
        },
      });
    expect([200, 201], res.text).toContain(res.status);
  }

  async function brokerToken(name: string): Promise<string> {
    const res = await request(t.app)
      .post('/auth/token')
      .type('form')
      .send({
        grant_type: 'client_credentials',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await createClientAssertion(`broker-${name}`, keys[name]!, 'http://huren.test/auth/token'),
        scope: 'system/DiagnosticReport.rs system/Observation.rs',
      });
    expect(res.status, res.text).toBe(200);
    return res.body.access_token as string;
  }

  beforeAll(async () => {
    t = await createTestApp('federation-limits', { HUREN_FEDERATION_RATE_LIMIT: String(LIMIT) });
    await registerChild('qingdao', '370200');
    await registerChild('yantai', '370600');
  }, 60_000);

  afterAll(async () => {
    await t.close();
  });

  test('a neighbour over its budget gets 429 with an OperationOutcome and Retry-After; another neighbour is served', async () => {
    const token = await brokerToken('qingdao');
    const rules = (bearer: string) => request(t.app).get('/federation/rules').set('Authorization', `Bearer ${bearer}`);
    // Within one minute's window the budget is LIMIT calls; a window that turns over mid-way gives LIMIT more.
    let refused: request.Response | undefined;
    for (let i = 0; i < 2 * LIMIT + 2 && !refused; i++) {
      const res = await rules(token);
      if (res.status === 429) refused = res;
      else expect(res.status, res.text).toBe(200);
    }
    expect(refused, 'no 429 within twice the budget').toBeDefined();
    const outcome = refused!.body as OperationOutcome;
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0]).toMatchObject({ severity: 'error', code: 'throttled' });
    expect(outcome.issue[0]!.diagnostics).toContain(`More than ${LIMIT} federation requests a minute`);
    const retryAfter = Number(refused!.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Another broker has a budget of its own.
    expect((await rules(await brokerToken('yantai'))).status).toBe(200);
  });
});
