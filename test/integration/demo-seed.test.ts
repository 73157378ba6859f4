import type { Parameters, ParametersParameter } from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SHOWCASE, showcasePatient } from '../../src/demo/generator.js';
import { showcaseQuery } from '../../src/demo/instructions.js';
import { readDemoMarker, refreshShowcase, seedDemo, seedDemoIfNeeded, seedDepsOf } from '../../src/demo/seed.js';
import { createTestApp, type TestApp } from '../support/app.js';

const PATIENTS = 4;

function decisionsOf(body: Parameters): string[] {
  return (body.parameter ?? [])
    .filter((p) => p.name === 'outcome')
    .map((p) => (p.part ?? []).find((x: ParametersParameter) => x.name === 'decision')?.valueCode ?? '');
}

describe('demo data', () => {
  let t: TestApp;

  async function counts() {
    const db = t.deps.connection.db!;
    const n = (name: string, filter = {}) => db.collection(name).countDocuments(filter);
    return {
      patients: await n('resources', { type: 'Patient' }),
      results: await n('resources', { type: { $in: ['DiagnosticReport', 'Observation'] } }),
      versions: await n('history'),
      facts: await n('facts'),
      checks: await n('reuse_checks'),
      ledger: await n('decisions'),
    };
  }

  beforeAll(async () => {
    t = await createTestApp('demo-seed');
    const deps = seedDepsOf(t.deps);
    await seedDemo(deps, { patients: PATIENTS, progress: null });
    await refreshShowcase(deps);
  }, 120_000);
  afterAll(async () => {
    await t.close();
  });

  test("hospital B's first check of the showcase patient returns all five decisions", async () => {
    const res = await t.as('demo-his-hospital-b').get(`/fhir/$reuse-check?${showcaseQuery()}`);
    expect(res.status, res.text).toBe(200);
    expect(decisionsOf(res.body as Parameters)).toEqual(SHOWCASE.codes.map((c) => c.expected));
  });

  test('the seeded patients, results, facts and a history of checks and decisions are in the database', async () => {
    const c = await counts();
    expect(c.patients).toBe(PATIENTS + 1);
    expect(c.results).toBeGreaterThan(PATIENTS * 3);
    expect(c.facts).toBeGreaterThan(PATIENTS);
    expect(c.checks).toBeGreaterThan(0);
    expect(c.ledger).toBeGreaterThan(0);
    // Amended results keep their first version in history.
    expect(c.versions).toBeGreaterThanOrEqual(c.results + c.patients);
    const marker = await readDemoMarker(seedDepsOf(t.deps));
    expect(marker).toMatchObject({ state: 'done', patients: PATIENTS, seed: 1 });
  });

  test('seeding again with the same seed and size, and a restart in demo mode, change nothing', async () => {
    const before = await counts();
    const deps = seedDepsOf(t.deps);
    const again = await seedDemo(deps, { patients: PATIENTS, progress: null });
    expect(again).toMatchObject({ created: 0, updated: 0 });
    const showcase = showcasePatient(deps.facts.rules, new Date());
    expect(again.unchanged).toBe(before.patients + before.results - 1 - showcase.results.length);
    expect(await refreshShowcase(deps)).toMatchObject({ created: 0, updated: 0 });
    expect(await seedDemoIfNeeded(deps, { patients: 50, progress: null })).toBeUndefined();
    expect(await counts()).toEqual(before);
  }, 120_000);
});
