import { randomUUID } from 'node:crypto';
import type { AuditEvent, Bundle, Observation, Patient } from 'fhir/r4';
import { decodeJwt } from 'jose';
import type { Response, Test } from 'supertest';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { auditEvent } from '../../src/audit/audit.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { runMaintenance } from '../../src/services.js';
import { createTestApp, type TestApp } from '../support/app.js';

const FHIR_JSON = 'application/fhir+json';
const HOSPITAL_A = 'Organization/demo-hospital-a';
const HOSPITAL_B = 'Organization/demo-hospital-b';
const HIS_A = 'demo-his-hospital-a';
const HIS_B = 'demo-his-hospital-b';
const REQUEST_ID_TAG = 'urn:huren:request-id';
const DAY_MS = 86400_000;

const patient = (): Patient => ({
  resourceType: 'Patient',
  active: true,
  gender: 'female',
  managingOrganization: { reference: HOSPITAL_A },
});

const result = (subject: string, performer = HOSPITAL_A): Observation => ({
  resourceType: 'Observation',
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '718-7', display: 'Hemoglobin [Mass/volume] in Blood' }] },
  subject: { reference: subject },
  effectiveDateTime: '2026-11-20T08:30:00+08:00',
  performer: [{ reference: performer }],
  valueQuantity: { value: 135, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' },
});

const whats = (e: AuditEvent) => (e.entity ?? []).map((x) => x.what?.reference).filter(Boolean);

describe('audit trail: one AuditEvent per access to patient data', () => {
  let t: TestApp;
  let patientRef: string;
  let observationId: string;
  let observationRef: string;
  let startedAt: string;

  /**
   * The administrator's view of the audit trail. Reading it is itself audited: the event of this count is recorded
   * once it has answered, so the next count sees it.
   */
  const auditTotal = async (): Promise<number> => {
    const res = await t.as('admin').get('/fhir/AuditEvent?_total=accurate&_count=0');
    expect(res.status).toBe(200);
    return res.body.total as number;
  };
  const auditSearch = async (query: string): Promise<AuditEvent[]> => {
    const res = await t.as('admin').get(`/fhir/AuditEvent?${query}&_count=1000`);
    expect(res.status).toBe(200);
    return ((res.body as Bundle).entry ?? []).map((e) => e.resource as AuditEvent);
  };

  /**
   * Makes one request with a known X-Request-Id and returns its response and the AuditEvents it left: the trail
   * must have grown by exactly one, and that one must carry the request id.
   */
  async function audited(send: () => Test): Promise<{ res: Response; event: AuditEvent }> {
    const before = await auditTotal();
    const requestId = `audit-${randomUUID()}`;
    const res = await send().set('X-Request-Id', requestId);
    expect(await auditTotal()).toBe(before + 2); // the first count's own read, and this request

    const events = await auditSearch(`_tag=${REQUEST_ID_TAG}|${requestId}`);
    expect(events).toHaveLength(1);
    return { res, event: events[0] };
  }

  /** Who the event names as the requesting agent: client, its organization and the access token's jti. */
  function expectAgent(event: AuditEvent, clientId: string, organization: string): void {
    const agent = event.agent.find((a) => a.requestor)!;
    expect(agent.altId).toBe(clientId);
    expect(agent.who?.reference).toBe(organization);
    expect(agent.policy).toEqual([`urn:huren:token:${decodeJwt(t.tokens[clientId]).jti}`]);
  }

  function expectEvent(
    event: AuditEvent,
    expected: { action: AuditEvent['action']; subtype: string; outcome: '0' | '4' },
  ): void {
    expect(event.resourceType).toBe('AuditEvent');
    expect(event.action).toBe(expected.action);
    expect(event.subtype?.map((c) => c.code)).toEqual([expected.subtype]);
    expect(event.outcome).toBe(expected.outcome);
    expect(new Date(event.recorded).getTime()).toBeGreaterThanOrEqual(new Date(startedAt).getTime());
  }

  beforeAll(async () => {
    t = await createTestApp('audit');
    startedAt = new Date(Date.now() - 1000).toISOString();
    const p = await t.as('his').post('/fhir/Patient').set('Content-Type', FHIR_JSON).send(patient());
    expect(p.status).toBe(201);
    patientRef = `Patient/${p.body.id}`;
  });
  afterAll(async () => {
    await t.close();
  });

  test('a create leaves one event: action C, who created it, the result and its patient', async () => {
    const { res, event } = await audited(() =>
      t.as('his').post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(result(patientRef)),
    );
    expect(res.status).toBe(201);
    observationId = res.body.id as string;
    observationRef = `Observation/${observationId}`;
    expectEvent(event, { action: 'C', subtype: 'create', outcome: '0' });
    expectAgent(event, HIS_A, HOSPITAL_A);
    expect(whats(event)).toEqual(expect.arrayContaining([observationRef, patientRef]));
    const patientEntity = event.entity!.find((e) => e.what?.reference === patientRef)!;
    expect(patientEntity.role?.code).toBe('1');
  });

  test('a create answered with Prefer: return=minimal still names the patient', async () => {
    const { res, event } = await audited(() =>
      t
        .as('his')
        .post('/fhir/Observation')
        .set('Content-Type', FHIR_JSON)
        .set('Prefer', 'return=minimal')
        .send(result(patientRef)),
    );
    expect(res.status).toBe(201);
    expectEvent(event, { action: 'C', subtype: 'create', outcome: '0' });
    expect(whats(event)).toEqual(expect.arrayContaining([patientRef]));
  });

  test('a read leaves one event: action R, the result and its patient', async () => {
    const { res, event } = await audited(() => t.as('clinician').get(`/fhir/${observationRef}`));
    expect(res.status).toBe(200);
    expectEvent(event, { action: 'R', subtype: 'read', outcome: '0' });
    expectAgent(event, 'demo-clinician-hospital-b', HOSPITAL_B);
    expect(whats(event)).toEqual(expect.arrayContaining([observationRef, patientRef]));
  });

  test('a version read leaves one event', async () => {
    const { res, event } = await audited(() => t.as('his').get(`/fhir/${observationRef}/_history/1`));
    expect(res.status).toBe(200);
    expectEvent(event, { action: 'R', subtype: 'vread', outcome: '0' });
    expectAgent(event, HIS_A, HOSPITAL_A);
    expect(whats(event)).toEqual(expect.arrayContaining([observationRef, patientRef]));
  });

  test('a search leaves one event naming what it returned and the parameter names, never their values', async () => {
    const { res, event } = await audited(() => t.as('his').get(`/fhir/Observation?subject=${patientRef}`));
    expect(res.status).toBe(200);
    expect(res.body.entry.length).toBeGreaterThanOrEqual(1);
    expectEvent(event, { action: 'R', subtype: 'search-type', outcome: '0' });
    expectAgent(event, HIS_A, HOSPITAL_A);
    expect(whats(event)).toEqual(expect.arrayContaining([observationRef, patientRef]));
    const query = event.entity!.find((e) => e.role?.code === '24')!;
    expect(query.description).toContain('subject');
    expect(JSON.stringify(event)).not.toContain(`subject=${patientRef}`);
  });

  test('a history read leaves one event', async () => {
    const { res, event } = await audited(() => t.as('his').get(`/fhir/${observationRef}/_history`));
    expect(res.status).toBe(200);
    expectEvent(event, { action: 'R', subtype: 'history-instance', outcome: '0' });
    expect(whats(event)).toEqual(expect.arrayContaining([observationRef, patientRef]));
  });

  test('an administrator’s system history read leaves one event naming what it returned', async () => {
    const { res, event } = await audited(() => t.as('admin').get('/fhir/_history?_count=5'));
    expect(res.status).toBe(200);
    expectEvent(event, { action: 'R', subtype: 'history-system', outcome: '0' });
    expectAgent(event, 'demo-admin', 'Organization/huren-operator');
    expect(whats(event)).toContain(observationRef);
  });

  test('an update leaves one event: action U', async () => {
    const current = (await t.as('his').get(`/fhir/${observationRef}`)).body as Observation;
    const { res, event } = await audited(() =>
      t
        .as('his')
        .put(`/fhir/${observationRef}`)
        .set('Content-Type', FHIR_JSON)
        .send({ ...current, status: 'amended', valueQuantity: { ...current.valueQuantity, value: 128 } }),
    );
    expect(res.status).toBe(200);
    expectEvent(event, { action: 'U', subtype: 'update', outcome: '0' });
    expectAgent(event, HIS_A, HOSPITAL_A);
    expect(whats(event)).toEqual(expect.arrayContaining([observationRef, patientRef]));
  });

  test('a refused read leaves one event with outcome 4 and who tried', async () => {
    const { res, event } = await audited(() => t.as(HIS_B).get(`/fhir/${observationRef}`));
    expect(res.status).toBe(403);
    expectEvent(event, { action: 'R', subtype: 'read', outcome: '4' });
    expectAgent(event, HIS_B, HOSPITAL_B);
    expect(whats(event)).toContain(observationRef);
  });

  test('a refused write leaves one event with outcome 4', async () => {
    const { res, event } = await audited(() =>
      t.as(HIS_B).post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(result(patientRef, HOSPITAL_A)),
    );
    expect(res.status).toBe(403);
    expectEvent(event, { action: 'C', subtype: 'create', outcome: '4' });
    expectAgent(event, HIS_B, HOSPITAL_B);
  });

  test('a transaction leaves one event for the whole bundle, naming every resource it wrote', async () => {
    const p = `urn:uuid:${randomUUID()}`;
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: p, resource: patient(), request: { method: 'POST', url: 'Patient' } },
        { resource: result(p), request: { method: 'POST', url: 'Observation' } },
        { resource: result(p), request: { method: 'POST', url: 'Observation' } },
      ],
    };
    const { res, event } = await audited(() => t.as('his').post('/fhir').set('Content-Type', FHIR_JSON).send(bundle));
    expect(res.status).toBe(200);
    expectEvent(event, { action: 'E', subtype: 'transaction', outcome: '0' });
    expectAgent(event, HIS_A, HOSPITAL_A);
    const written = (res.body as Bundle).entry!.map(
      (e) => /\/(\w+\/[\w.-]+)\/_history\//.exec(e.response!.location!)![1],
    );
    expect(written).toHaveLength(3);
    expect(whats(event)).toEqual(expect.arrayContaining(written));
    const patientEntity = event.entity!.find((e) => e.what?.reference === written[0])!;
    expect(patientEntity.role?.code).toBe('1');
  });

  test('a batch leaves one event for the whole bundle, its entries included', async () => {
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { request: { method: 'GET', url: observationRef } },
        { request: { method: 'GET', url: `Observation?subject=${patientRef}` } },
      ],
    };
    const { res, event } = await audited(() => t.as('his').post('/fhir').set('Content-Type', FHIR_JSON).send(bundle));
    expect(res.status).toBe(200);
    expectEvent(event, { action: 'E', subtype: 'batch', outcome: '0' });
    expect(whats(event)).toEqual(expect.arrayContaining([observationRef, patientRef]));
  });

  test('a delete leaves one event: action D', async () => {
    const { res, event } = await audited(() => t.as('his').delete(`/fhir/${observationRef}`));
    expect(res.status).toBe(200);
    expectEvent(event, { action: 'D', subtype: 'delete', outcome: '0' });
    expectAgent(event, HIS_A, HOSPITAL_A);
    expect(whats(event)).toEqual(expect.arrayContaining([observationRef, patientRef]));
  });

  test('reading the broker’s conformance resources touches no patient data and leaves no event', async () => {
    const before = await auditTotal();
    expect((await t.as('his').get('/fhir/metadata')).status).toBe(200);
    expect((await t.as('his').get('/fhir/StructureDefinition?_count=1')).status).toBe(200);
    expect(await auditTotal()).toBe(before + 1); // only the first count's own read of the trail
  });

  test('the trail is searchable by date, agent organization, entity and action', async () => {
    const recent = await auditSearch(`date=ge${encodeURIComponent(startedAt)}`);
    expect(recent.length).toBeGreaterThanOrEqual(10);
    expect(recent.every((e) => e.recorded >= startedAt)).toBe(true);
    expect(await auditSearch(`date=lt${encodeURIComponent(startedAt)}`)).toEqual([]);

    const byB = await auditSearch(`agent=${HOSPITAL_B}`);
    expect(byB.length).toBeGreaterThanOrEqual(3);
    expect(byB.every((e) => e.agent.some((a) => a.who?.reference === HOSPITAL_B))).toBe(true);
    expect(byB.some((e) => e.outcome === '4')).toBe(true);

    const aboutResult = await auditSearch(`entity=${observationRef}`);
    expect(aboutResult.every((e) => whats(e).includes(observationRef))).toBe(true);
    expect(new Set(aboutResult.map((e) => e.subtype![0].code))).toEqual(
      new Set([
        'create',
        'read',
        'vread',
        'search-type',
        'history-instance',
        'history-system',
        'update',
        'batch',
        'delete',
      ]),
    );

    const reads = await auditSearch('action=R');
    expect(reads.length).toBeGreaterThanOrEqual(5);
    expect(reads.every((e) => e.action === 'R')).toBe(true);
  });

  test('the API never writes audit events, not even for an administrator', async () => {
    const before = await auditTotal();
    const [existing] = await auditSearch('action=R');
    const forged = { ...existing, outcome: '0', agent: [{ requestor: true, who: { reference: HOSPITAL_A } }] };
    for (const who of ['admin', 'his']) {
      const post = await t.as(who).post('/fhir/AuditEvent').set('Content-Type', FHIR_JSON).send(forged);
      expect([403, 405]).toContain(post.status);
      expect(post.body.resourceType).toBe('OperationOutcome');
    }
    const put = await t.as('admin').put(`/fhir/AuditEvent/${existing.id}`).set('Content-Type', FHIR_JSON).send(forged);
    expect([403, 405]).toContain(put.status);
    expect([403, 405]).toContain((await t.as('admin').delete(`/fhir/AuditEvent/${existing.id}`)).status);
    const inBundle = await t
      .as('admin')
      .post('/fhir')
      .set('Content-Type', FHIR_JSON)
      .send({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [{ resource: forged, request: { method: 'PUT', url: `AuditEvent/${existing.id}` } }],
      });
    expect(inBundle.status).toBeGreaterThanOrEqual(400);
    const kept = await t.as('admin').get(`/fhir/AuditEvent/${existing.id}`);
    expect(kept.body).toEqual(existing);
    // The refused bundle is itself an audited access, and so are the three reads of the trail (the count, the search,
    // the read back): four more events, none from the refused writes.
    expect(await auditTotal()).toBe(before + 4);
  });

  describe('retention', () => {
    test('maintenance removes events past the retention period and keeps the recent ones', async () => {
      const retention = t.deps.config.auditRetentionDays;
      const now = Date.now();
      const aged = (daysAgo: number) => {
        const event = auditEvent({
          interaction: 'read',
          action: 'R',
          status: 200,
          resources: [observationRef],
          patients: [patientRef],
          recorded: new Date(now - daysAgo * DAY_MS),
        });
        return { event: event as AuditEvent & { id: string }, at: new Date(now - daysAgo * DAY_MS) };
      };
      const expired = aged(retention + 40);
      const kept = aged(retention - 20);
      for (const { event, at } of [expired, kept]) await t.deps.store.append(event, at);
      const recent = await auditSearch(`date=ge${encodeURIComponent(startedAt)}`);
      expect(recent.length).toBeGreaterThan(0);

      // Run as it would run ten days from now: the event retention-20 days old is then retention+-10, still kept.
      await runMaintenance(t.deps, new Date(now + 10 * DAY_MS));

      expect((await t.as('admin').get(`/fhir/AuditEvent/${expired.event.id}`)).status).toBe(404);
      expect((await t.as('admin').get(`/fhir/AuditEvent/${kept.event.id}`)).status).toBe(200);
      // Every recent event is kept, and the three reads of the trail since (a search, two reads) were recorded.
      expect(await auditSearch(`date=ge${encodeURIComponent(startedAt)}`)).toHaveLength(recent.length + 3);
    });

    test('a retention shorter than 180 days is a configuration error', () => {
      expect(() => loadConfig({ HUREN_AUDIT_RETENTION_DAYS: '90' })).toThrow(ConfigError);
      expect(() => loadConfig({ HUREN_AUDIT_RETENTION_DAYS: '179' })).toThrow(/HUREN_AUDIT_RETENTION_DAYS/);
      expect(loadConfig({ HUREN_AUDIT_RETENTION_DAYS: '180' }).auditRetentionDays).toBe(180);
    });
  });
});
