import { randomUUID } from 'node:crypto';
import type { Bundle, Observation } from 'fhir/r4';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createClientAssertion } from '../../src/auth/assertion.js';
import { readDemoClients, type DemoClientFile } from '../../src/auth/demo-clients.js';
import { KeyRing, type SigningKeyDoc } from '../../src/auth/keys.js';
import { issueToken, verifyAccessToken } from '../../src/auth/tokens.js';
import { createTestApp, type TestApp } from '../support/app.js';

const FHIR_JSON = 'application/fhir+json';
/** createTestApp sets HUREN_BASE_URL=http://huren.test/fhir, so this is the audience assertions must name. */
const TOKEN_URL = 'http://huren.test/auth/token';
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const RESULT_ID = 'https://huren.example.org/fhir/sid/auth-test/result';
const HOSPITAL_A = 'Organization/demo-hospital-a';
const HOSPITAL_B = 'Organization/demo-hospital-b';

let seq = 0;
const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;

function result(performer: string, overrides: Partial<Observation> = {}): Observation {
  return {
    resourceType: 'Observation',
    identifier: [{ system: RESULT_ID, value: unique('hgb') }],
    status: 'final',
    category: [
      { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] },
    ],
    code: { coding: [{ system: 'http://loinc.org', code: '718-7', display: 'Hemoglobin [Mass/volume] in Blood' }] },
    subject: { reference: 'Patient/auth-p1' },
    effectiveDateTime: '2026-11-20T08:30:00+08:00',
    performer: [{ reference: performer }],
    valueQuantity: { value: 135, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' },
    ...overrides,
  } satisfies Observation;
}

/** Signs an assertion with any claims, for the malformed ones createClientAssertion would never build. */
async function signAssertion(privateJwk: JWK, claims: Record<string, unknown>, alg = 'ES384'): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ jti: randomUUID(), iat: now, exp: now + 240, aud: TOKEN_URL, ...claims })
    .setProtectedHeader({ alg, kid: privateJwk.kid, typ: 'JWT' })
    .sign(await importJWK(privateJwk, alg));
}

describe('SMART Backend Services authorization', () => {
  let t: TestApp;
  let his: DemoClientFile;
  let clinician: DemoClientFile;

  /** `POST /auth/token` as a client sends it. */
  const tokenRequest = (form: Record<string, string>) => request(t.app).post('/auth/token').type('form').send(form);
  const clientCredentials = (assertion: string, scope: string) => ({
    grant_type: 'client_credentials',
    client_assertion_type: JWT_BEARER,
    client_assertion: assertion,
    scope,
  });
  const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
  /** What the administrator sees: the check that nothing was written behind a refusal. */
  const storedWith = async (identifier: string): Promise<number> => {
    const res = await t.as('admin').get(`/fhir/Observation?identifier=${RESULT_ID}|${identifier}&_total=accurate`);
    expect(res.status).toBe(200);
    return res.body.total as number;
  };
  const create = async (who: string, resource: Observation): Promise<Observation> => {
    const res = await t.as(who).post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(resource);
    expect(res.status).toBe(201);
    return res.body as Observation;
  };

  beforeAll(async () => {
    t = await createTestApp('auth');
    const demo = readDemoClients(t.deps.config.dataDir);
    his = demo.find((c) => c.clientId === 'demo-his-hospital-a')!;
    clinician = demo.find((c) => c.clientId === 'demo-clinician-hospital-b')!;
  });
  afterAll(async () => {
    await t.close();
  });

  describe('discovery and the token endpoint', () => {
    test('smart-configuration names the token endpoint, private_key_jwt with RS384/ES384 and client_credentials', async () => {
      const res = await request(t.app).get('/.well-known/smart-configuration');
      expect(res.status).toBe(200);
      expect(res.body.token_endpoint).toBe(TOKEN_URL);
      // private_key_jwt for systems; none (a public client with PKCE) for the doctor's view launched by the EHR.
      expect(res.body.token_endpoint_auth_methods_supported).toEqual(['private_key_jwt', 'none']);
      expect(res.body.token_endpoint_auth_signing_alg_values_supported).toEqual(
        expect.arrayContaining(['RS384', 'ES384']),
      );
      expect(res.body.grant_types_supported).toEqual(['client_credentials', 'authorization_code']);
      expect(res.body.capabilities).toEqual(expect.arrayContaining(['client-confidential-asymmetric', 'launch-ehr']));
      expect(res.body.code_challenge_methods_supported).toEqual(['S256']);
      expect(res.body.authorization_endpoint).toBe(TOKEN_URL.replace(/token$/, 'authorize'));
      // Also at the FHIR base, where an EHR-launched app looks for it.
      const atBase = await request(t.app).get('/fhir/.well-known/smart-configuration');
      expect(atBase.body).toEqual(res.body);
    });

    test('a hospital system with an ES384 key obtains a short-lived bearer token and reads the FHIR API with it', async () => {
      const assertion = await createClientAssertion(his.clientId, his.privateJwk, TOKEN_URL);
      const res = await tokenRequest(clientCredentials(assertion, 'system/Observation.rs'));
      expect(res.status).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.body.token_type).toBe('bearer');
      expect(res.body.expires_in).toBeGreaterThan(0);
      expect(res.body.expires_in).toBeLessThanOrEqual(300);
      expect(res.body.scope).toBe('system/Observation.rs');
      const claims = decodeJwt(res.body.access_token as string);
      expect(claims.sub).toBe(his.clientId);
      expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBeLessThanOrEqual(300);

      const read = await request(t.app)
        .get('/fhir/Observation')
        .set(bearer(res.body.access_token as string));
      expect(read.status).toBe(200);
      expect(read.body.resourceType).toBe('Bundle');
    });

    test('a client registered with an RS384 key obtains a token and reads the FHIR API with it', async () => {
      const { privateKey, publicKey } = await generateKeyPair('RS384', { extractable: true });
      const kid = 'lab-rs384-1';
      await t.deps.auth.clients.insertOne({
        _id: 'lab-rs384',
        name: 'A laboratory system signing with RSA',
        organization: HOSPITAL_A,
        role: 'his',
        scopes: 'system/Observation.rs',
        jwks: { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'RS384' }] },
        active: true,
      });
      const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS384' };
      const assertion = await createClientAssertion('lab-rs384', privateJwk, TOKEN_URL);
      expect(decodeProtectedHeader(assertion).alg).toBe('RS384');

      const res = await tokenRequest(clientCredentials(assertion, 'system/Observation.rs'));
      expect(res.status).toBe(200);
      expect(res.body.token_type).toBe('bearer');
      expect(res.body.expires_in).toBeLessThanOrEqual(300);
      const read = await request(t.app)
        .get('/fhir/Observation')
        .set(bearer(res.body.access_token as string));
      expect(read.status).toBe(200);
    });

    test('an assertion signed by a key the client never registered is refused as invalid_client', async () => {
      const { privateKey } = await generateKeyPair('ES384', { extractable: true });
      const forgedKey = { ...(await exportJWK(privateKey)), kid: his.privateJwk.kid, alg: 'ES384' };
      const assertion = await createClientAssertion(his.clientId, forgedKey, TOKEN_URL);
      const res = await tokenRequest(clientCredentials(assertion, 'system/Observation.rs'));
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('invalid_client');
      expect(res.body.error_description).toMatch(/signature/);
      expect(res.body.access_token).toBeUndefined();
    });

    test('an assertion signed with a shared secret (HS256) is refused', async () => {
      const now = Math.floor(Date.now() / 1000);
      const assertion = await new SignJWT({ jti: randomUUID() })
        .setProtectedHeader({ alg: 'HS256', kid: his.privateJwk.kid })
        .setIssuer(his.clientId)
        .setSubject(his.clientId)
        .setAudience(TOKEN_URL)
        .setExpirationTime(now + 240)
        .sign(new TextEncoder().encode('a-secret-anyone-could-guess-0123456789'));
      const res = await tokenRequest(clientCredentials(assertion, 'system/Observation.rs'));
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('invalid_client');
    });

    test('an expired assertion is refused as invalid_client', async () => {
      const assertion = await createClientAssertion(his.clientId, his.privateJwk, TOKEN_URL, {
        now: new Date(Date.now() - 10 * 60_000),
      });
      const res = await tokenRequest(clientCredentials(assertion, 'system/Observation.rs'));
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('invalid_client');
      expect(res.body.error_description).toMatch(/expired/);
    });

    test('an assertion valid for more than five minutes is refused as invalid_client', async () => {
      const assertion = await createClientAssertion(his.clientId, his.privateJwk, TOKEN_URL, {
        expiresInSeconds: 3600,
      });
      const res = await tokenRequest(clientCredentials(assertion, 'system/Observation.rs'));
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('invalid_client');
      expect(res.body.error_description).toMatch(/5 minutes/);
    });

    test('a replayed assertion is refused on its second use', async () => {
      const assertion = await createClientAssertion(his.clientId, his.privateJwk, TOKEN_URL);
      const first = await tokenRequest(clientCredentials(assertion, 'system/Observation.rs'));
      expect(first.status).toBe(200);
      const replay = await tokenRequest(clientCredentials(assertion, 'system/Observation.rs'));
      expect(replay.status).toBe(401);
      expect(replay.body.error).toBe('invalid_client');
      expect(replay.body.error_description).toMatch(/replay/);
      expect(replay.body.access_token).toBeUndefined();
    });

    test('an assertion addressed to another token endpoint is refused as invalid_client', async () => {
      const assertion = await createClientAssertion(
        his.clientId,
        his.privateJwk,
        'https://other-broker.example/auth/token',
      );
      const res = await tokenRequest(clientCredentials(assertion, 'system/Observation.rs'));
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('invalid_client');
      expect(res.body.error_description).toContain(TOKEN_URL);
    });

    test('an assertion whose sub is not its iss is refused as invalid_client', async () => {
      const assertion = await signAssertion(his.privateJwk, { iss: his.clientId, sub: 'demo-admin' });
      const res = await tokenRequest(clientCredentials(assertion, 'system/Observation.rs'));
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('invalid_client');
      expect(res.body.error_description).toMatch(/sub/);
    });

    test('an assertion from a client the broker does not know is refused as invalid_client', async () => {
      const assertion = await signAssertion(his.privateJwk, { iss: 'no-such-client', sub: 'no-such-client' });
      const res = await tokenRequest(clientCredentials(assertion, 'system/Observation.rs'));
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('invalid_client');
      expect(res.body.error_description).toMatch(/Unknown/);
    });

    test('an assertion whose iss is a query rather than a client id learns nothing about which clients exist', async () => {
      const { privateKey } = await generateKeyPair('ES384', { extractable: true });
      const key = { ...(await exportJWK(privateKey)), kid: 'probe-1', alg: 'ES384' };
      for (const iss of [{ $regex: '^demo-admin' }, { $ne: 'nobody' }]) {
        const assertion = await signAssertion(key, { iss, sub: 'demo-admin' });
        const res = await tokenRequest(clientCredentials(assertion, 'system/Observation.rs'));
        expect(res.status).toBe(401);
        expect(res.body.error).toBe('invalid_client');
        expect(res.body.error_description).toMatch(/Unknown/);
      }
    });

    test('a deactivated client can no longer obtain tokens', async () => {
      const { privateKey, publicKey } = await generateKeyPair('ES384', { extractable: true });
      await t.deps.auth.clients.insertOne({
        _id: 'retired-lis',
        name: 'A retired laboratory system',
        organization: HOSPITAL_A,
        role: 'his',
        scopes: 'system/Observation.rs',
        jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'retired-1', alg: 'ES384' }] },
        active: false,
      });
      const privateJwk = { ...(await exportJWK(privateKey)), kid: 'retired-1', alg: 'ES384' };
      const assertion = await createClientAssertion('retired-lis', privateJwk, TOKEN_URL);
      const res = await tokenRequest(clientCredentials(assertion, 'system/Observation.rs'));
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('invalid_client');
    });

    test('a token request without a scope is refused as invalid_scope', async () => {
      const assertion = await createClientAssertion(his.clientId, his.privateJwk, TOKEN_URL);
      const { scope: _scope, ...form } = clientCredentials(assertion, 'unused');
      const res = await tokenRequest(form);
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_scope');
    });

    test('a scope the client is not registered for is refused as invalid_scope', async () => {
      const assertion = await createClientAssertion(clinician.clientId, clinician.privateJwk, TOKEN_URL);
      const res = await tokenRequest(clientCredentials(assertion, 'system/Observation.rs system/Observation.c'));
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_scope');
      expect(res.body.error_description).toContain('system/Observation.c');
      expect(res.body.access_token).toBeUndefined();
    });

    test('a grant type other than client_credentials is refused as unsupported_grant_type', async () => {
      const assertion = await createClientAssertion(his.clientId, his.privateJwk, TOKEN_URL);
      const res = await tokenRequest({
        ...clientCredentials(assertion, 'system/Observation.rs'),
        grant_type: 'password',
      });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('unsupported_grant_type');
    });

    test('a token request sent as JSON instead of a form is refused as invalid_request', async () => {
      const assertion = await createClientAssertion(his.clientId, his.privateJwk, TOKEN_URL);
      const res = await request(t.app)
        .post('/auth/token')
        .set('Content-Type', 'application/json')
        .send(JSON.stringify(clientCredentials(assertion, 'system/Observation.rs')));
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_request');
      expect(res.body.error_description).toMatch(/x-www-form-urlencoded/);
    });

    test('the JWKS lists the public key that verifies the access tokens', async () => {
      const res = await request(t.app).get('/auth/jwks');
      expect(res.status).toBe(200);
      const kids = (res.body.keys as JWK[]).map((k) => k.kid);
      expect(kids).toContain(decodeProtectedHeader(t.tokens.his).kid);
      expect((res.body.keys as JWK[]).every((k) => k.d === undefined)).toBe(true);
    });
  });

  describe('bearer tokens on the FHIR API', () => {
    test('a request without a token is refused with 401, an OperationOutcome and a Bearer challenge', async () => {
      const res = await request(t.app).get('/fhir/Observation');
      expect(res.status).toBe(401);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].code).toBe('login');
      expect(res.body.issue[0].diagnostics).toMatch(/\/auth\/token/);
      expect(res.headers['www-authenticate']).toMatch(/^Bearer /);
    });

    test('the capability statement is readable without a token', async () => {
      const res = await request(t.app).get('/fhir/metadata');
      expect(res.status).toBe(200);
      expect(res.body.resourceType).toBe('CapabilityStatement');
    });

    test('a write without a token is refused with 401 and nothing is stored', async () => {
      const obs = result(HOSPITAL_A);
      const res = await request(t.app).post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(obs);
      expect(res.status).toBe(401);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(await storedWith(obs.identifier![0].value!)).toBe(0);
    });

    test('a garbage token is refused with 401 invalid_token', async () => {
      for (const header of ['Bearer not-a-token', 'Bearer a.b.c', 'Basic dXNlcjpwYXNz']) {
        const res = await request(t.app).get('/fhir/Observation').set('Authorization', header);
        expect(res.status).toBe(401);
        expect(res.body.resourceType).toBe('OperationOutcome');
        expect(res.headers['www-authenticate']).toMatch(/error="invalid_token"/);
      }
    });

    test('a token whose claims were altered (role raised to admin) is refused with 401', async () => {
      const [header, payload, signature] = t.tokens.his.split('.');
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
      const raised = Buffer.from(JSON.stringify({ ...claims, role: 'admin', scope: 'system/*.cruds' })).toString(
        'base64url',
      );
      const res = await request(t.app)
        .get('/fhir/AuditEvent')
        .set(bearer(`${header}.${raised}.${signature}`));
      expect(res.status).toBe(401);
      expect(res.body.resourceType).toBe('OperationOutcome');
    });

    test('an access token past its expiry is refused with 401', async () => {
      // Issued ten minutes ago by the broker itself, with the five-minute lifetime: expired now.
      const then = new Date(Date.now() - 10 * 60_000);
      const assertion = await createClientAssertion(his.clientId, his.privateJwk, TOKEN_URL, { now: then });
      const issued = await issueToken(clientCredentials(assertion, 'system/Observation.rs'), TOKEN_URL, {
        ...t.deps.auth,
        clock: () => then,
      });
      expect(await verifyAccessToken(issued.access_token, { ...t.deps.auth, clock: () => then })).toBeDefined();

      const res = await request(t.app).get('/fhir/Observation').set(bearer(issued.access_token));
      expect(res.status).toBe(401);
      expect(res.body.issue[0].diagnostics).toMatch(/expired/);
      expect(res.headers['www-authenticate']).toMatch(/invalid_token/);
    });

    test('after a key rotation earlier tokens keep working and new tokens carry the new key id', async () => {
      const before = t.tokens.clinician;
      const oldKid = decodeProtectedHeader(before).kid;
      const newKid = await t.deps.auth.keyRing.rotate();
      expect(newKid).not.toBe(oldKid);

      expect((await request(t.app).get('/fhir/Observation').set(bearer(before))).status).toBe(200);
      const assertion = await createClientAssertion(clinician.clientId, clinician.privateJwk, TOKEN_URL);
      const res = await tokenRequest(clientCredentials(assertion, 'system/*.rs'));
      expect(res.status).toBe(200);
      const after = res.body.access_token as string;
      expect(decodeProtectedHeader(after).kid).toBe(newKid);
      expect((await request(t.app).get('/fhir/Observation').set(bearer(after))).status).toBe(200);

      expect(await verifyAccessToken(before, t.deps.auth)).toMatchObject({ clientId: clinician.clientId });
      expect(await verifyAccessToken(after, t.deps.auth)).toMatchObject({ clientId: clinician.clientId });
      const jwks = await request(t.app).get('/auth/jwks');
      expect((jwks.body.keys as JWK[]).map((k) => k.kid)).toEqual(expect.arrayContaining([oldKid, newKid]));
    });

    test('after a rotation the retired key stops verifying once the tokens it signed have expired', async () => {
      // A rotation is how a suspected key leak is answered: whoever holds the old key must not mint valid tokens.
      const keys = t.deps.connection.db!.collection<SigningKeyDoc>('signing_keys');
      const { kid: oldKid } = await t.deps.auth.keyRing.signingKey();
      const newKid = await t.deps.auth.keyRing.rotate();
      const later = new Date(Date.now() + t.deps.config.tokenLifetimeSeconds * 1000 + 2 * 60_000);
      const mintAt = async (kid: string, at: Date) => {
        const doc = (await keys.findOne({ _id: kid }))!;
        const iat = Math.floor(at.getTime() / 1000);
        return new SignJWT({ scope: 'system/*.cruds', org: 'Organization/huren-operator', role: 'admin' })
          .setProtectedHeader({ alg: 'ES256', kid, typ: 'at+jwt' })
          .setIssuer(t.deps.auth.issuer)
          .setAudience(t.deps.auth.issuer)
          .setSubject('demo-admin')
          .setJti(randomUUID())
          .setIssuedAt(iat)
          .setExpirationTime(iat + 300)
          .sign(await importJWK(doc.privateJwk, 'ES256'));
      };
      const ringThen = new KeyRing(keys, {
        rotationMs: t.deps.config.keyRotationHours * 3600_000,
        tokenLifetimeMs: t.deps.config.tokenLifetimeSeconds * 1000,
        clock: () => later,
      });
      const verifyThen = (token: string) =>
        verifyAccessToken(token, { keyRing: ringThen, issuer: t.deps.auth.issuer, clock: () => later });
      expect(await verifyThen(await mintAt(oldKid, later))).toBeUndefined();
      expect(await verifyThen(await mintAt(newKid, later))).toMatchObject({ role: 'admin' });
    });
  });

  describe('roles and scopes', () => {
    test('the bureau may not read patient-level results (403 OperationOutcome)', async () => {
      const res = await t.as('bureau').get('/fhir/Observation');
      expect(res.status).toBe(403);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].code).toBe('forbidden');
      expect(res.body.issue[0].diagnostics).toMatch(/aggregate/);
    });

    test('a clinician reads results but may not create them (403, nothing stored)', async () => {
      expect((await t.as('clinician').get('/fhir/Observation')).status).toBe(200);
      const obs = result(HOSPITAL_B);
      const res = await t.as('clinician').post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(obs);
      expect(res.status).toBe(403);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].diagnostics).toMatch(/clinician/);
      expect(await storedWith(obs.identifier![0].value!)).toBe(0);
    });

    test('neither a clinician nor the bureau writes results inside a transaction (403, nothing changed)', async () => {
      const existing = await create('his', result(HOSPITAL_A));
      for (const who of ['clinician', 'bureau']) {
        const obs = result(HOSPITAL_B);
        const bundle: Bundle = {
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [
            { resource: obs, request: { method: 'POST', url: 'Observation' } },
            { request: { method: 'DELETE', url: `Observation/${existing.id}` } },
          ],
        };
        const res = await t.as(who).post('/fhir').set('Content-Type', FHIR_JSON).send(bundle);
        expect(res.status).toBe(403);
        expect(res.body.resourceType).toBe('OperationOutcome');
        expect(await storedWith(obs.identifier![0].value!)).toBe(0);
      }
      expect((await t.as('admin').get(`/fhir/Observation/${existing.id}`)).status).toBe(200);
    });

    test('a hospital token whose scopes lack delete cannot delete (403) and the result stays', async () => {
      const created = await create('his', result(HOSPITAL_A));
      const assertion = await createClientAssertion(his.clientId, his.privateJwk, TOKEN_URL);
      const granted = await tokenRequest(clientCredentials(assertion, 'system/Observation.crus'));
      expect(granted.status).toBe(200);
      const noDelete = granted.body.access_token as string;

      const res = await request(t.app).delete(`/fhir/Observation/${created.id}`).set(bearer(noDelete));
      expect(res.status).toBe(403);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].diagnostics).toContain('system/Observation.d');

      const viaTransaction = await request(t.app)
        .post('/fhir')
        .set(bearer(noDelete))
        .set('Content-Type', FHIR_JSON)
        .send({
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [{ request: { method: 'DELETE', url: `Observation/${created.id}` } }],
        } satisfies Bundle);
      expect(viaTransaction.status).toBe(403);

      expect((await t.as('his').get(`/fhir/Observation/${created.id}`)).status).toBe(200);
    });

    test('only administrators search the audit trail', async () => {
      for (const who of ['his', 'clinician', 'bureau']) {
        const res = await t.as(who).get('/fhir/AuditEvent');
        expect(res.status).toBe(403);
        expect(res.body.resourceType).toBe('OperationOutcome');
      }
      expect((await t.as('admin').get('/fhir/AuditEvent')).status).toBe(200);
    });

    test('nobody writes the audit trail through the API, not even an administrator', async () => {
      const forged = {
        resourceType: 'AuditEvent',
        type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
        recorded: new Date().toISOString(),
        agent: [{ requestor: true, who: { reference: HOSPITAL_A } }],
        source: { observer: { display: 'forger' } },
      };
      const before = await t.as('admin').get('/fhir/AuditEvent?_total=accurate&_count=0');
      for (const who of ['admin', 'his']) {
        const res = await t.as(who).post('/fhir/AuditEvent').set('Content-Type', FHIR_JSON).send(forged);
        expect([403, 405]).toContain(res.status);
        expect(res.body.resourceType).toBe('OperationOutcome');
      }
      const existing = await t.as('admin').get('/fhir/AuditEvent?_count=1');
      const id = (existing.body.entry?.[0]?.resource?.id as string | undefined) ?? 'some-event';
      const put = await t
        .as('admin')
        .put(`/fhir/AuditEvent/${id}`)
        .set('Content-Type', FHIR_JSON)
        .send({ ...forged, id });
      expect([403, 405]).toContain(put.status);
      expect([403, 405]).toContain((await t.as('admin').delete(`/fhir/AuditEvent/${id}`)).status);
      const after = await t.as('admin').get('/fhir/AuditEvent?_total=accurate&_count=0');
      // Only the two reads of the trail before this one were recorded (reading the audit trail is audited).
      expect(after.body.total).toBe(before.body.total + 2);
    });
  });

  describe('tenancy: a hospital system writes and reads only its own institution’s results', () => {
    test('hospital A creates a result it performed', async () => {
      const res = await t.as('his').post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(result(HOSPITAL_A));
      expect(res.status).toBe(201);
      expect(res.body.performer[0].reference).toBe(HOSPITAL_A);
    });

    test('hospital A cannot write a result performed by hospital B (403, nothing stored)', async () => {
      const obs = result(HOSPITAL_B);
      const res = await t.as('his').post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(obs);
      expect(res.status).toBe(403);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].diagnostics).toContain(HOSPITAL_A);
      expect(res.body.issue[0].expression).toEqual(['Observation.performer']);
      expect(await storedWith(obs.identifier![0].value!)).toBe(0);
    });

    test('hospital B cannot update hospital A’s result, whether or not it claims it (403, unchanged)', async () => {
      const mine = await create('his', result(HOSPITAL_A));
      const changed = { ...mine, valueQuantity: { ...mine.valueQuantity, value: 1 } };
      const attempts: Observation[] = [
        changed,
        { ...changed, performer: [{ reference: HOSPITAL_B }] },
        mine, // the very same content: not even an "unchanged" answer (which would return A's result)
      ];
      for (const body of attempts) {
        const res = await t
          .as('demo-his-hospital-b')
          .put(`/fhir/Observation/${mine.id}`)
          .set('Content-Type', FHIR_JSON)
          .send(body);
        expect(res.status).toBe(403);
        expect(res.body.resourceType).toBe('OperationOutcome');
        const inBundle = await t
          .as('demo-his-hospital-b')
          .post('/fhir')
          .set('Content-Type', FHIR_JSON)
          .send({
            resourceType: 'Bundle',
            type: 'transaction',
            entry: [{ resource: body, request: { method: 'PUT', url: `Observation/${mine.id}` } }],
          } satisfies Bundle);
        expect(inBundle.status).toBe(403);
        expect(JSON.stringify(inBundle.body)).not.toContain(mine.identifier![0].value);
      }
      const now = await t.as('admin').get(`/fhir/Observation/${mine.id}`);
      expect(now.body.meta.versionId).toBe('1');
      expect(now.body.valueQuantity.value).toBe(135);
      expect(now.body.performer[0].reference).toBe(HOSPITAL_A);
    });

    test('hospital B cannot delete hospital A’s result (403, still there)', async () => {
      const mine = await create('his', result(HOSPITAL_A));
      const res = await t.as('demo-his-hospital-b').delete(`/fhir/Observation/${mine.id}`);
      expect(res.status).toBe(403);
      expect(res.body.resourceType).toBe('OperationOutcome');
      const now = await t.as('admin').get(`/fhir/Observation/${mine.id}`);
      expect(now.status).toBe(200);
      expect(now.body.meta.versionId).toBe('1');
    });

    test('hospital B cannot read hospital A’s result or its versions (403)', async () => {
      const mine = await create('his', result(HOSPITAL_A));
      for (const path of [`/fhir/Observation/${mine.id}`, `/fhir/Observation/${mine.id}/_history/1`]) {
        const res = await t.as('demo-his-hospital-b').get(path);
        expect(res.status).toBe(403);
        expect(res.body.resourceType).toBe('OperationOutcome');
        expect(res.body.issue[0].diagnostics).toMatch(/another institution/);
        expect(JSON.stringify(res.body)).not.toContain('135');
      }
      expect((await t.as('his').get(`/fhir/Observation/${mine.id}`)).status).toBe(200);
    });

    test('a result hospital A deleted stays A’s: B can neither re-create its id nor read its earlier versions', async () => {
      const mine = await create('his', result(HOSPITAL_A));
      expect((await t.as('his').delete(`/fhir/Observation/${mine.id}`)).status).toBe(200);
      expect((await t.as('his').get(`/fhir/Observation/${mine.id}`)).status).toBe(410);
      expect((await t.as('his').get(`/fhir/Observation/${mine.id}/_history/1`)).status).toBe(200);

      const takeover = await t
        .as('demo-his-hospital-b')
        .put(`/fhir/Observation/${mine.id}`)
        .set('Content-Type', FHIR_JSON)
        .send({ ...result(HOSPITAL_B), id: mine.id });
      expect(takeover.status).toBe(403);
      expect(takeover.body.resourceType).toBe('OperationOutcome');
      for (const path of [`/fhir/Observation/${mine.id}/_history/1`, `/fhir/Observation/${mine.id}/_history`]) {
        const res = await t.as('demo-his-hospital-b').get(path);
        expect(res.status).toBe(403);
        expect(JSON.stringify(res.body)).not.toContain(mine.identifier![0].value);
      }
      const history = await t.as('admin').get(`/fhir/Observation/${mine.id}/_history`);
      expect(history.body.entry).toHaveLength(2);
    });

    test('hospital B’s search sees only its own results', async () => {
      const subject = { reference: `Patient/${unique('shared')}` };
      await create('his', result(HOSPITAL_A, { subject }));
      await create('demo-his-hospital-b', result(HOSPITAL_B, { subject }));
      const res = await t.as('demo-his-hospital-b').get(`/fhir/Observation?subject=${subject.reference}`);
      expect(res.status).toBe(200);
      const performers = (res.body.entry as { resource: Observation }[]).map((e) => e.resource.performer![0].reference);
      expect(performers).toEqual([HOSPITAL_B]);
      const all = await t.as('admin').get(`/fhir/Observation?subject=${subject.reference}`);
      expect(all.body.entry).toHaveLength(2);
    });

    test('a transaction from hospital A with one entry of hospital B is refused (403) and nothing of it is stored', async () => {
      const ours = result(HOSPITAL_A);
      const theirs = result(HOSPITAL_B);
      const bundle: Bundle = {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { fullUrl: `urn:uuid:${randomUUID()}`, resource: ours, request: { method: 'POST', url: 'Observation' } },
          { fullUrl: `urn:uuid:${randomUUID()}`, resource: theirs, request: { method: 'POST', url: 'Observation' } },
        ],
      };
      const res = await t.as('his').post('/fhir').set('Content-Type', FHIR_JSON).send(bundle);
      expect(res.status).toBe(403);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].diagnostics).toContain(HOSPITAL_A);
      expect(await storedWith(ours.identifier![0].value!)).toBe(0);
      expect(await storedWith(theirs.identifier![0].value!)).toBe(0);
    });

    test('in a batch from hospital A only the entry of hospital B fails (403 in its response)', async () => {
      const ours = result(HOSPITAL_A);
      const theirs = result(HOSPITAL_B);
      const bundle: Bundle = {
        resourceType: 'Bundle',
        type: 'batch',
        entry: [
          { resource: ours, request: { method: 'POST', url: 'Observation' } },
          { resource: theirs, request: { method: 'POST', url: 'Observation' } },
        ],
      };
      const res = await t.as('his').post('/fhir').set('Content-Type', FHIR_JSON).send(bundle);
      expect(res.status).toBe(200);
      expect(res.body.type).toBe('batch-response');
      expect(res.body.entry[0].response.status).toMatch(/^201/);
      expect(res.body.entry[1].response.status).toMatch(/^403/);
      expect(res.body.entry[1].response.outcome.resourceType).toBe('OperationOutcome');
      expect(await storedWith(ours.identifier![0].value!)).toBe(1);
      expect(await storedWith(theirs.identifier![0].value!)).toBe(0);
    });
  });

  describe('request hardening', () => {
    test('a JSON body nested deeper than the configured limit is refused (400) and nothing is stored', async () => {
      const obs = result(HOSPITAL_A);
      let deep: Record<string, unknown> = { value: 'x' };
      for (let i = 0; i < t.deps.config.maxJsonDepth + 5; i++) deep = { nested: deep };
      const res = await t
        .as('his')
        .post('/fhir/Observation')
        .set('Content-Type', FHIR_JSON)
        .send(JSON.stringify({ ...obs, extension: [{ url: 'urn:deep', valueString: 'x', deep }] }));
      expect(res.status).toBe(400);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].diagnostics).toMatch(/nested deeper/);
      expect(await storedWith(obs.identifier![0].value!)).toBe(0);
    });
  });
});

describe('browser origins (CORS)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp('auth-cors', { HUREN_CORS_ORIGINS: 'https://ehr.example' });
  });
  afterAll(async () => {
    await t.close();
  });

  test('a configured origin is allowed and its preflight answered with 204', async () => {
    const res = await t.as('clinician').get('/fhir/Observation').set('Origin', 'https://ehr.example');
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBe('https://ehr.example');
    const preflight = await request(t.app)
      .options('/fhir/Observation')
      .set('Origin', 'https://ehr.example')
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', 'authorization, content-type');
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe('https://ehr.example');
    expect(preflight.headers['access-control-allow-headers']).toMatch(/Authorization/);
    expect(preflight.headers['access-control-allow-methods']).toMatch(/POST/);
  });

  test('any other origin gets no CORS headers', async () => {
    const res = await t.as('clinician').get('/fhir/Observation').set('Origin', 'https://evil.example');
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    const preflight = await request(t.app)
      .options('/fhir/Observation')
      .set('Origin', 'https://evil.example')
      .set('Access-Control-Request-Method', 'POST');
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('rate limit', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp('auth-rate', { HUREN_RATE_LIMIT: '5' });
  });
  afterAll(async () => {
    await t.close();
  });

  test('a client beyond its requests per minute is answered 429 with Retry-After', async () => {
    // Counted in one-minute windows: five requests always pass; eleven in a row cross at most one window boundary,
    // so one of the windows sees a sixth request.
    const statuses: number[] = [];
    let throttled: request.Response | undefined;
    for (let i = 0; i < 11 && !throttled; i++) {
      const res = await t.as('clinician').get('/fhir/Observation');
      statuses.push(res.status);
      if (res.status === 429) throttled = res;
    }
    expect(statuses.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
    expect(throttled).toBeDefined();
    expect(throttled!.body.resourceType).toBe('OperationOutcome');
    expect(throttled!.body.issue[0].code).toBe('throttled');
    const retryAfter = Number(throttled!.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Another client has its own allowance.
    expect((await t.as('his').get('/fhir/Observation')).status).toBe(200);
  });
});

describe('production mode', () => {
  let t: TestApp;
  let demoAdminToken: string;
  beforeAll(async () => {
    // A database first served in demo mode, then by the broker restarted in production mode.
    const demo = await createTestApp('auth-production', {}, { keepDatabase: true });
    demoAdminToken = demo.tokens.admin;
    await demo.close();
    t = await createTestApp(
      'auth-production',
      { HUREN_MODE: 'production', HUREN_PATIENT_KEY_SECRET: 'production-test-secret-0123456789' },
      { dbName: demo.dbName, fetchTokens: false },
    );
  });
  afterAll(async () => {
    await t.close();
  });

  test('the demo clients are gone: the demo administrator’s key obtains no token', async () => {
    expect(demoAdminToken).toBeTruthy();
    expect(await t.deps.auth.clients.countDocuments({ demo: true })).toBe(0);
    const admin = readDemoClients(t.deps.config.dataDir).find((c) => c.clientId === 'demo-admin')!;
    const assertion = await createClientAssertion(admin.clientId, admin.privateJwk, TOKEN_URL);
    const res = await request(t.app).post('/auth/token').type('form').send({
      grant_type: 'client_credentials',
      client_assertion_type: JWT_BEARER,
      client_assertion: assertion,
      scope: 'system/*.cruds',
    });
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('invalid_client');
  });
});
