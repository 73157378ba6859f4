import type { Observation, Patient, ServiceRequest } from 'fhir/r4';
import { describe, expect, test, vi } from 'vitest';
import { createRateLimiter } from '../../src/auth/bearer.js';
import { assertAllowed, assertWritable, ownersOf } from '../../src/auth/policy.js';
import { scopeStore } from '../../src/auth/scoped-store.js';
import type { AccessContext } from '../../src/auth/tokens.js';
import { OperationOutcomeError } from '../../src/fhir/outcomes.js';
import type { CurrentDoc, WriteOp } from '../../src/store/models.js';
import type { ResourceStore } from '../../src/store/resource-store.js';

const HOSPITAL_A = 'Organization/demo-hospital-a';
const HOSPITAL_B = 'Organization/demo-hospital-b';

const access = (role: AccessContext['role'], scope: string, organization = HOSPITAL_A): AccessContext => ({
  clientId: `client-${role}`,
  organization,
  role,
  scope,
  jti: 'jti-1',
});
const hisA = access('his', 'system/Observation.cruds system/Patient.cruds');
const hisB = access('his', 'system/Observation.cruds', HOSPITAL_B);

const observation = (performer: string): Observation => ({
  resourceType: 'Observation',
  id: 'o1',
  status: 'final',
  code: { text: 'Hb' },
  performer: [{ reference: performer }],
});
const create = (performer: string): WriteOp => ({
  type: 'Observation',
  id: 'o1',
  prevVid: 0,
  method: 'POST',
  resource: observation(performer),
});

/** The status a check refuses with, or 'allowed'. */
function outcomeOf(check: () => void): number | 'allowed' {
  try {
    check();
    return 'allowed';
  } catch (err) {
    if (err instanceof OperationOutcomeError) return err.status;
    throw err;
  }
}

/** A store that records what reached it; `current` is what the database holds. */
function fakeStore(current: Partial<CurrentDoc> | null = null) {
  const commit = vi.fn(async (ops: WriteOp[]) => ops.map(() => ({})));
  const store = {
    commit,
    findCurrent: vi.fn(async () => current),
    planUpdate: vi.fn(async () => ({ unchanged: {} })),
  } as unknown as ResourceStore;
  return { store, commit };
}

describe('who a resource belongs to', () => {
  test('a result belongs to its performing organizations, a patient to its managing organization', () => {
    expect(ownersOf(observation(HOSPITAL_A))).toEqual([HOSPITAL_A]);
    const patient: Patient = { resourceType: 'Patient', managingOrganization: { reference: HOSPITAL_B } };
    expect(ownersOf(patient)).toEqual([HOSPITAL_B]);
    expect(ownersOf({ resourceType: 'Observation', status: 'final', code: {} } as Observation)).toEqual([]);
  });
});

describe('roles and scopes', () => {
  test('the bureau reads no patient-level resource; a clinician reads but never writes', () => {
    expect(outcomeOf(() => assertAllowed(access('bureau', 'system/*.rs'), 'Observation', 's'))).toBe(403);
    const clinician = access('clinician', 'system/*.rs');
    expect(outcomeOf(() => assertAllowed(clinician, 'Observation', 'r'))).toBe('allowed');
    expect(outcomeOf(() => assertAllowed(clinician, 'Observation', 'c'))).toBe(403);
  });

  test('a hospital system may do only what its token’s scopes name', () => {
    const noDelete = access('his', 'system/Observation.crus');
    expect(outcomeOf(() => assertAllowed(noDelete, 'Observation', 'u'))).toBe('allowed');
    expect(outcomeOf(() => assertAllowed(noDelete, 'Observation', 'd'))).toBe(403);
    expect(outcomeOf(() => assertAllowed(noDelete, 'Patient', 'r'))).toBe(403);
  });

  test('only administrators read the audit trail, and nobody writes it', () => {
    const admin = access('admin', 'system/*.cruds');
    expect(outcomeOf(() => assertAllowed(admin, 'AuditEvent', 's'))).toBe('allowed');
    expect(outcomeOf(() => assertAllowed(admin, 'AuditEvent', 'c'))).toBe(403);
    expect(outcomeOf(() => assertAllowed(hisA, 'AuditEvent', 'r'))).toBe(403);
  });
});

describe('tenancy of writes', () => {
  test('a hospital writes only results it performed, and never over another hospital’s', () => {
    expect(outcomeOf(() => assertWritable(hisA, create(HOSPITAL_A), null))).toBe('allowed');
    expect(outcomeOf(() => assertWritable(hisA, create(HOSPITAL_B), null))).toBe(403);
    const theirs = { owner: [HOSPITAL_A], deleted: false };
    expect(outcomeOf(() => assertWritable(hisB, create(HOSPITAL_B), theirs))).toBe(403);
    expect(outcomeOf(() => assertWritable(access('admin', 'system/*.cruds'), create(HOSPITAL_B), theirs))).toBe(
      'allowed',
    );
  });
  test('a hospital names no other institution as a co-owner unless it is registered to act for it', () => {
    const coPerformed: Observation = {
      ...observation(HOSPITAL_A),
      performer: [{ reference: HOSPITAL_A }, { reference: HOSPITAL_B }],
    };
    const both: WriteOp = { ...create(HOSPITAL_A), resource: coPerformed };
    expect(outcomeOf(() => assertWritable(hisA, both, null))).toBe(403);
    expect(outcomeOf(() => assertWritable({ ...hisA, actsFor: [HOSPITAL_B] }, both, null))).toBe('allowed');
    // Acting for B does not let it write what only B owns: its own institution stays among the owners.
    expect(outcomeOf(() => assertWritable({ ...hisA, actsFor: [HOSPITAL_B] }, create(HOSPITAL_B), null))).toBe(403);
    const request: ServiceRequest = {
      resourceType: 'ServiceRequest',
      status: 'active',
      intent: 'order',
      subject: { reference: 'Patient/p1' },
      requester: { reference: HOSPITAL_A },
      performer: [{ reference: HOSPITAL_B }],
    };
    const order: WriteOp = { type: 'ServiceRequest', id: 's1', prevVid: 0, method: 'POST', resource: request };
    expect(outcomeOf(() => assertWritable(hisA, order, null))).toBe(403);
  });
});

describe('the store as one caller sees it', () => {
  test('writes a role may not make are refused before they reach the store, whoever planned them', async () => {
    for (const caller of [access('clinician', 'system/*.rs'), access('bureau', 'system/Measure.rs')]) {
      const { store, commit } = fakeStore();
      await expect(scopeStore(store, caller).commit([create(HOSPITAL_A)])).rejects.toMatchObject({ status: 403 });
      expect(commit).not.toHaveBeenCalled();
    }
    const { store, commit } = fakeStore({ owner: [HOSPITAL_A], deleted: false });
    const remove: WriteOp = { type: 'Observation', id: 'o1', prevVid: 1, method: 'DELETE', resource: null };
    await expect(scopeStore(store, access('his', 'system/Observation.crus')).commit([remove])).rejects.toMatchObject({
      status: 403,
    });
    expect(commit).not.toHaveBeenCalled();
  });

  test('an update of another hospital’s resource is refused at planning, even when it would change nothing', async () => {
    const { store } = fakeStore({ owner: [HOSPITAL_A], deleted: false, vid: 1 });
    await expect(scopeStore(store, hisB).planUpdate(observation(HOSPITAL_A), 'o1')).rejects.toMatchObject({
      status: 403,
    });
    expect(store.planUpdate).not.toHaveBeenCalled();
    await expect(scopeStore(store, hisA).planUpdate(observation(HOSPITAL_A), 'o1')).resolves.toBeDefined();
  });

  test('an administrator’s writes reach the store unchanged', async () => {
    const { store, commit } = fakeStore();
    await scopeStore(store, access('admin', 'system/*.cruds')).commit([create(HOSPITAL_B)]);
    expect(commit).toHaveBeenCalledOnce();
  });
});

describe('rate limit', () => {
  test('a client gets its allowance per minute; the next minute starts afresh and others are not affected', () => {
    let now = Date.UTC(2026, 10, 20, 8, 30, 0);
    const limit = createRateLimiter(3, () => now);
    expect([1, 2, 3].map(() => limit('a').allowed)).toEqual([true, true, true]);
    now += 15_000;
    const fourth = limit('a');
    expect(fourth.allowed).toBe(false);
    expect(fourth.retryAfterSeconds).toBe(45);
    expect(limit('b').allowed).toBe(true);
    now += 45_000;
    expect(limit('a').allowed).toBe(true);
  });
});
