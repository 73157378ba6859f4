import { createHash, randomBytes } from 'node:crypto';
import type { AuditEvent } from 'fhir/r4';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.js';
import { FHIR_JSON, HOSPITAL_A, ID_CARD, LOINC, daysAgo } from '../fixtures/recognition.js';

/**
 * The SMART EHR launch of the doctor's view, as the view's browser code and the EHR drive it: a launch registered by
 * the EHR, authorize with PKCE S256, code exchange — and every way it must refuse.
 */

const ORIGIN = 'http://huren.test';
const REDIRECT = `${ORIGIN}/app`;
const ID_NUMBER = '370202198003150025';

let t: TestApp;

function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

async function registerLaunch(who = 'clinician'): Promise<string> {
  const res = await t
    .as(who)
    .post('/auth/launch')
    .send({ patient: [{ system: ID_CARD, value: ID_NUMBER }] });
  expect(res.status, res.text).toBe(201);
  return res.body.launch as string;
}

function authorize(launch: string, challenge: string, overrides: Record<string, string> = {}) {
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: 'huren-app',
    redirect_uri: REDIRECT,
    scope: 'launch openid fhirUser user/*.rs',
    state: 'st4te',
    aud: `${ORIGIN}/fhir`,
    launch,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...overrides,
  });
  return request(t.app).get(`/auth/authorize?${query}`);
}

function exchange(code: string, verifier: string, overrides: Record<string, string> = {}) {
  return request(t.app)
    .post('/auth/token')
    .type('form')
    .send({
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT,
      client_id: 'huren-app',
      code_verifier: verifier,
      ...overrides,
    });
}

const redirectParams = (location: string) => new URL(location).searchParams;

describe('SMART EHR launch of the prior-results view', () => {
  beforeAll(async () => {
    t = await createTestApp('app-launch');
    // A patient of hospital A with a CBC of yesterday: what hospital B's doctor will see.
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          resource: {
            resourceType: 'Patient',
            id: 'al-patient',
            identifier: [{ system: ID_CARD, value: ID_NUMBER }],
            managingOrganization: { reference: HOSPITAL_A },
          },
          request: { method: 'PUT', url: 'Patient/al-patient' },
        },
        {
          resource: {
            resourceType: 'DiagnosticReport',
            id: 'al-cbc',
            status: 'final',
            code: { coding: [{ system: LOINC, code: '57021-8' }] },
            subject: { reference: 'Patient/al-patient' },
            effectiveDateTime: daysAgo(1),
            performer: [{ reference: HOSPITAL_A }],
          },
          request: { method: 'PUT', url: 'DiagnosticReport/al-cbc' },
        },
      ],
    };
    const pushed = await t.as('his').post('/fhir').set('Content-Type', FHIR_JSON).send(bundle);
    expect(pushed.status, pushed.text).toBe(200);
  });
  afterAll(async () => {
    await t.close();
  });

  test('launch, authorize, exchange: a clinician token of the launching institution, used once', async () => {
    const { verifier, challenge } = pkce();
    const launch = await registerLaunch();
    const auth = await authorize(launch, challenge);
    expect(auth.status).toBe(302);
    const back = redirectParams(auth.headers.location as string);
    expect(back.get('state')).toBe('st4te');
    const code = back.get('code')!;

    const token = await exchange(code, verifier);
    expect(token.status, token.text).toBe(200);
    expect(token.body).toMatchObject({
      token_type: 'Bearer',
      organization: 'Organization/demo-hospital-b',
      huren_launch: launch,
    });
    expect(token.headers['cache-control']).toBe('no-store');

    const view = await request(t.app)
      .get('/app/api/prior-results')
      .set('Authorization', `Bearer ${token.body.access_token}`);
    expect(view.status, view.text).toBe(200);
    expect(view.body.organization.id).toBe('demo-hospital-b');

    // The code and the launch are single-use.
    const again = await exchange(code, verifier);
    expect(again.status).toBe(400);
    expect(again.body.error).toBe('invalid_grant');
    const reused = await authorize(launch, challenge);
    expect(redirectParams(reused.headers.location as string).get('error')).toBe('access_denied');
  });

  test('a wrong verifier or redirect URI gets no token', async () => {
    const { challenge } = pkce();
    const auth = await authorize(await registerLaunch(), challenge);
    const code = redirectParams(auth.headers.location as string).get('code')!;
    const wrongVerifier = await exchange(code, pkce().verifier);
    expect(wrongVerifier.status).toBe(400);
    expect(wrongVerifier.body.error_description).toMatch(/PKCE/);
    const wrongRedirect = await exchange(code, pkce().verifier, { redirect_uri: 'https://evil.example/app' });
    expect(wrongRedirect.status).toBe(400);
  });

  test('authorize refuses what the app could fix by redirecting, and a stranger client directly', async () => {
    const launch = await registerLaunch();
    const { challenge } = pkce();
    const plain = await authorize(launch, challenge, { code_challenge_method: 'plain' });
    expect(redirectParams(plain.headers.location as string).get('error')).toBe('invalid_request');
    const wrongAud = await authorize(launch, challenge, { aud: 'https://other.example/fhir' });
    expect(redirectParams(wrongAud.headers.location as string).get('error_description')).toMatch(/aud/);
    const stranger = await authorize(launch, challenge, { client_id: 'someone-else' });
    expect(stranger.status).toBe(400);
    expect(stranger.body.error).toBe('invalid_client');
    const elsewhere = await authorize(launch, challenge, { redirect_uri: 'https://evil.example/app' });
    expect(elsewhere.status).toBe(400);
    expect(elsewhere.headers.location).toBeUndefined();
  });

  test('the doctor’s verification of the patient’s identity is recorded in the audit trail', async () => {
    const { verifier, challenge } = pkce();
    const auth = await authorize(await registerLaunch(), challenge);
    const token = await exchange(redirectParams(auth.headers.location as string).get('code')!, verifier);
    expect(token.status, token.text).toBe(200);
    const verified = await request(t.app)
      .post('/app/api/identity-verified')
      .set('Authorization', `Bearer ${token.body.access_token}`);
    expect(verified.status, verified.text).toBe(204);

    const trail = await t
      .as('admin')
      .get('/fhir/AuditEvent')
      .query({ subtype: 'urn:huren:audit-operation|identity-verified' });
    expect(trail.status, trail.text).toBe(200);
    const events = ((trail.body as { entry?: { resource: AuditEvent }[] }).entry ?? []).map((e) => e.resource);
    expect(events).toHaveLength(1);
    expect(events[0]!.action).toBe('E');
    expect(events[0]!.agent[0]!.altId).toBe('huren-app');
    expect(events[0]!.entity?.map((e) => e.what?.reference)).toContain('Patient/al-patient');

    // Only a launched session of the view may say so.
    expect((await t.as('clinician').post('/app/api/identity-verified')).status).toBe(403);
    expect((await request(t.app).post('/app/api/identity-verified')).status).toBe(401);
  });

  test('only an EHR of an institution registers launches; the view data needs a launched session', async () => {
    const bureau = await t
      .as('bureau')
      .post('/auth/launch')
      .send({ patient: [{ system: ID_CARD, value: ID_NUMBER }] });
    expect(bureau.status).toBe(403);
    const bad = await t
      .as('clinician')
      .post('/auth/launch')
      .send({ patient: [{ system: ID_CARD, value: '370202198003150027' }] });
    expect(bad.status).toBe(400);
    expect(bad.body.issue[0].expression).toEqual(['patient[0].value']);
    const systemToken = await t.as('clinician').get('/app/api/prior-results');
    expect(systemToken.status).toBe(403);
    expect((await request(t.app).get('/app/api/prior-results')).status).toBe(401);
  });
});
