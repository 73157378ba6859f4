/**
 * The fuzzing suite (issue 23): requests generated with fast-check from the R4 JSON schema and the R4 search-parameter
 * definitions, valid ones first and then mutated, sent as every role to every endpoint of a real broker over HTTP.
 * Every answer must be a 2xx, or a 4xx with the endpoint's error body, within 2 s; the server must stay up; a refused
 * write must leave nothing behind (read back by its mark).
 *
 * In the test run it is a short budget with a fixed seed; `npm run fuzz -- --runs 5000 --seed 42` runs a long one
 * (HUREN_FUZZ_RUNS per family of requests, HUREN_FUZZ_SEED).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readDemoCdsClient } from '../../src/cds/clients.js';
import { createSearchRegistry } from '../../src/fhir/search/registry.js';
import { createHttpServer } from '../../src/http-limits.js';
import { createTestApp, TEST_DATA_DIR, type TestApp } from '../support/app.js';
import { exchange, problemWith, send, Tally, typesWritten, type FuzzTarget } from './harness.js';
import {
  admin,
  authToken,
  cdsHook,
  fhirBundle,
  fhirCreate,
  fhirRead,
  fhirSearch,
  fhirUpdate,
  oddHttp,
  reports,
  reuseCheck,
  reuseDecision,
  type FuzzRequest,
} from './requests.js';

const RUNS = Number(process.env.HUREN_FUZZ_RUNS ?? 25);
const SEED = Number(process.env.HUREN_FUZZ_SEED ?? 23);
const FHIR_JSON = 'application/fhir+json';
/** Each request has 2 s and a refused write's read-back a few more: a long budget gets the time it needs. */
const TEST_TIMEOUT_MS = 60_000 + RUNS * 5_000;

describe(`fuzzing every endpoint as every role (seed ${SEED}, ${RUNS} runs per family)`, () => {
  let t: TestApp;
  let target: FuzzTarget;
  const tally = new Tally();

  beforeAll(async () => {
    // Rate limiting would answer 429 (a fine 4xx) long before the long budget ends; the fuzz wants the real handlers.
    // A search the indexes cannot narrow reads its whole type (the audit trail grows by one event per request here):
    // past HUREN_SEARCH_TIMEOUT_MS it is refused as too costly, which the 2 s deadline needs below 2 s.
    t = await createTestApp('fuzz', { HUREN_RATE_LIMIT: '1000000', HUREN_SEARCH_TIMEOUT_MS: '1500' });
    const server = createHttpServer(t.app, t.deps.config);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    target = { server, tokens: t.tokens, cds: readDemoCdsClient(TEST_DATA_DIR)!, origin: 'http://huren.test' };
    // Something for reads, references and $reuse-check to find.
    for (const id of ['fuzz-p1', 'fuzz-p2']) {
      const res = await t
        .as('his')
        .put(`/fhir/Patient/${id}`)
        .set('Content-Type', FHIR_JSON)
        .send({
          resourceType: 'Patient',
          id,
          identifier: [{ system: 'urn:oid:2.16.156.10011.1.1', value: '370202196803151238' }],
          managingOrganization: { reference: 'Organization/demo-hospital-a' },
        });
      expect([200, 201]).toContain(res.status);
    }
    const obs = await t
      .as('his')
      .put('/fhir/Observation/fuzz-o1')
      .set('Content-Type', FHIR_JSON)
      .send({
        resourceType: 'Observation',
        id: 'fuzz-o1',
        status: 'final',
        code: { coding: [{ system: 'http://loinc.org', code: '718-7' }] },
        subject: { reference: 'Patient/fuzz-p1' },
        effectiveDateTime: '2026-12-01T08:00:00+08:00',
        performer: [{ reference: 'Organization/demo-hospital-a' }],
        valueQuantity: { value: 135, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' },
      });
    expect([200, 201]).toContain(obs.status);
  });

  afterAll(async () => {
    console.log(tally.table());
    await new Promise((resolve) => target.server.close(resolve));
    await t.close();
  });

  /** Sends one request and checks its answer, and that a refused write stored nothing. */
  async function judge(req: FuzzRequest): Promise<void> {
    const { answer, mark, sentText } = await send(target, req);
    tally.count(req.kind, answer ? answer.status : 'timeout', answer?.ms, `${req.method} ${req.path} as ${req.role}`);
    const problem = problemWith(req, answer);
    if (problem) {
      // The broker's own account of a failure (its log carries the error message, never the request's data).
      const logged = t.logLines.filter((l) => l.includes('"Request failed"')).slice(-1)[0] ?? '';
      throw new Error(`${req.method} ${req.path.slice(0, 200)} as ${req.role}: ${problem}\n${logged.slice(0, 500)}`);
    }
    const refused = answer!.status >= 400 || answer!.status === -1;
    if (!refused) return;
    for (const type of typesWritten(req, sentText, mark)) {
      const back = await exchange(target.server, 'GET', `/fhir/${type}?identifier=${mark}`, {
        Authorization: `Bearer ${t.tokens.admin}`,
      });
      tally.count('read back of a refused write', back?.status ?? 'timeout', back?.ms);
      expect(back?.status, back?.text).toBe(200);
      const found = (JSON.parse(back!.text) as { entry?: unknown[] }).entry ?? [];
      if (found.length) {
        throw new Error(`${req.method} ${req.path} as ${req.role} was refused (${answer!.status}) but left a ${type}`);
      }
    }
  }

  /** The broker still answers its liveness probe at once. */
  async function assertUp(): Promise<void> {
    const res = await exchange(target.server, 'GET', '/healthz', {});
    tally.count('liveness probe', res?.status ?? 'timeout');
    expect(res?.status).toBe(200);
  }

  const families: [string, () => fc.Arbitrary<FuzzRequest>][] = [
    ['FHIR create', () => fhirCreate],
    ['FHIR update and conditional update', () => fhirUpdate],
    ['FHIR read, vread, history, delete', () => fhirRead],
    ['FHIR search (GET and POST _search)', () => fhirSearch(createSearchRegistry())],
    ['transaction and batch Bundles', () => fhirBundle],
    ['$reuse-check', () => reuseCheck],
    ['$reuse-decision', () => reuseDecision],
    ['CDS Hooks', () => cdsHook],
    ['/auth/token', () => authToken],
    ['/reports/savings, supervision and $evaluate-measure', () => reports],
    ['admin endpoints and subscriptions', () => admin],
    ['odd HTTP: methods, paths, headers, sizes', () => oddHttp],
  ];

  test.each(families)(
    '%s: 2xx or 4xx with the error body, within 2 s, nothing left by a refusal',
    async (_name, arb) => {
      await fc.assert(
        fc.asyncProperty(arb(), (req) => judge(req)),
        {
          seed: SEED,
          numRuns: RUNS,
          endOnFailure: true,
          // The failing request cut short (a counterexample may carry megabytes), and how to replay the run.
          asyncReporter: async (details) => {
            if (!details.failed) return;
            const request = JSON.stringify(details.counterexample?.[0] ?? null);
            const cause = details.errorInstance instanceof Error ? details.errorInstance.message : 'failed';
            throw new Error(
              `${cause}\nrequest: ${request.length > 1500 ? `${request.slice(0, 1500)}… (${request.length} characters)` : request}` +
                `\nreplay: npm run fuzz -- --runs ${RUNS} --seed ${SEED} (fast-check path ${details.counterexamplePath})`,
            );
          },
        },
      );
      await assertUp();
    },
    TEST_TIMEOUT_MS,
  );
});
