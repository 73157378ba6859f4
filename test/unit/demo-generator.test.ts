import type { DiagnosticReport, Observation } from 'fhir/r4';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  demoHistory,
  generateDemoPatients,
  SHOWCASE,
  showcasePatient,
  type DemoPatient,
} from '../../src/demo/generator.js';
import { createValidator, type Validator } from '../../src/fhir/validation/validator.js';
import { decideReuse } from '../../src/recognition/engine.js';
import { projectFacts } from '../../src/recognition/facts.js';
import { checkResidentId, IDENTIFIER_SYSTEMS, patientKey } from '../../src/recognition/identity.js';
import { loadRecognitionRules } from '../../src/recognition/load.js';
import { SYSTEMS } from '../../src/recognition/vocabulary.js';

const rules = loadRecognitionRules('seed');
const NOW = new Date('2026-11-25T09:00:00+08:00');
const SECRET = 'demo-generator-test-secret-0123456789';
const DAY = 86400_000;

const generate = (count: number, seed = 1, now = NOW) => [...generateDemoPatients(rules, { seed, count, now })];

describe('demo data generator', () => {
  let validator: Validator;
  let demos: DemoPatient[];
  beforeAll(() => {
    validator = createValidator();
    demos = generate(40);
  });

  test('the same seed and time give the same data; another seed gives other data', () => {
    expect(generate(5)).toEqual(generate(5));
    expect(generate(5, 2)[0]!.patient.identifier).not.toEqual(generate(5, 1)[0]!.patient.identifier);
    // Patient i does not depend on how many are generated: a larger set only adds patients.
    expect(generate(10).slice(0, 5)).toEqual(generate(5));
  });

  test('every patient has a valid, unique Qingdao resident ID matching its sex and birth date', () => {
    const numbers = new Set<string>();
    for (const { patient } of demos) {
      const id = patient.identifier![0]!;
      expect(id.system).toBe(IDENTIFIER_SYSTEMS.residentIdCard);
      const check = checkResidentId(id.value!, '2026-11-25');
      expect(check.valid, id.value).toBe(true);
      if (!check.valid) continue;
      expect(check.regionCode).toMatch(/^3702\d\d$/);
      expect(check.sex).toBe(patient.gender);
      expect(check.birthDate).toBe(patient.birthDate);
      expect(patient.name?.[0]?.text).toBeTruthy();
      numbers.add(check.value);
    }
    expect(numbers.size).toBe(demos.length);
    expect(numbers.has(SHOWCASE.idNumber)).toBe(false);
    expect(checkResidentId(SHOWCASE.idNumber).valid).toBe(true);
  });

  test('every resource passes the validator and the Huren profiles', () => {
    const all = [...demos, showcasePatient(rules, NOW)].flatMap((d) => [d.patient, ...d.results, ...d.originals]);
    const problems = all.flatMap((r) =>
      validator
        .validate(r)
        .filter((i) => i.severity === 'error' || i.severity === 'fatal')
        .map((i) => `${r.resourceType}/${r.id}: ${i.diagnostics}`),
    );
    expect(problems).toEqual([]);
    expect(all.filter((r) => r.resourceType !== 'Patient').every((r) => r.meta?.profile?.length === 1)).toBe(true);
  });

  test('results spread over the past 12 months across the demo institutions, with panels, units, flags and marks', () => {
    const results: (DiagnosticReport | Observation)[] = demos.flatMap((d) => d.results);
    const institutions = new Set(rules.institutions.institutions.map((i) => `Organization/${i.id}`));
    for (const r of results) {
      const at = Date.parse(r.effectiveDateTime!);
      expect(at).toBeLessThan(NOW.getTime());
      expect(at).toBeGreaterThan(NOW.getTime() - 367 * DAY);
      expect(Date.parse(r.issued!)).toBeGreaterThanOrEqual(at);
      expect(institutions.has(r.performer![0]!.reference!)).toBe(true);
    }
    const performers = new Set(results.map((r) => r.performer![0]!.reference));
    expect(performers.size).toBeGreaterThanOrEqual(8);
    const months = new Set(results.map((r) => r.effectiveDateTime!.slice(0, 7)));
    expect(months.size).toBeGreaterThanOrEqual(10);

    const observations = results.filter((r): r is Observation => r.resourceType === 'Observation');
    const ids = new Set(observations.map((o) => `Observation/${o.id}`));
    const reports = results.filter((r): r is DiagnosticReport => r.resourceType === 'DiagnosticReport');
    // Panels list their analytes, which are in the set.
    const cbc = reports.find((r) => r.code.coding?.some((c) => c.code === '57021-8'));
    expect(cbc?.result?.length).toBe(6);
    for (const ref of reports.flatMap((r) => r.result ?? [])) expect(ids.has(ref.reference!)).toBe(true);
    expect(observations.every((o) => o.valueQuantity?.system === 'http://unitsofmeasure.org')).toBe(true);
    const flags = new Set(observations.map((o) => o.interpretation?.[0]?.coding?.[0]?.code));
    expect([...flags].sort()).toEqual(['H', 'L', 'N']);
    expect(results.some((r) => r.extension?.some((e) => e.url.endsWith('/hr-mark')))).toBe(true);
    expect(results.some((r) => r.status === 'amended')).toBe(true);
    expect(demos.flatMap((d) => d.originals).every((r) => r.status === 'final')).toBe(true);
    // Hospital A's reports carry its LIS codes; exams are keyed by modality for the projection.
    expect(results.some((r) => r.code.coding?.some((c) => c.system?.includes('demo-hospital-a.example.org')))).toBe(
      true,
    );
    const modalities = new Set(
      reports
        .flatMap((r) => r.category!.flatMap((c) => c.coding!.filter((x) => x.system === SYSTEMS.dicom)))
        .map((c) => c.code),
    );
    expect([...modalities]).toEqual(expect.arrayContaining(['CT', 'MR', 'US', 'DX']));
  });

  test('results project to recognition facts, exams by their modality, body part and method', () => {
    const key = () => ['k'];
    const items = new Set(
      demos
        .flatMap((d) => d.results)
        .flatMap((r) => projectFacts(r, { index: rules.index, resolvePatientKeys: key }).facts.map((f) => f.item)),
    );
    for (const item of ['HR-LAB-CBC', 'HR-LAB-HBA1C', 'HR-LAB-ALT', 'HR-IMG-CT-CHEST', 'HR-IMG-US-ABD']) {
      expect(items.has(item), item).toBe(true);
    }
  });

  test('the showcase patient gives all five decisions to hospital B', () => {
    const showcase = showcasePatient(rules, NOW);
    expect(showcase.patient.identifier![0]!.value).toBe(SHOWCASE.idNumber);
    const key = patientKey(SECRET, IDENTIFIER_SYSTEMS.residentIdCard, SHOWCASE.idNumber);
    const facts = showcase.results.flatMap(
      (r) => projectFacts(r, { index: rules.index, resolvePatientKeys: () => [key] }).facts,
    );
    const outcomes = decideReuse(
      {
        patientKeys: [key],
        requester: SHOWCASE.requester,
        items: SHOWCASE.codes.map((c) => ({ coding: [{ system: SYSTEMS.loinc, code: c.code }] })),
      },
      facts,
      rules.directory,
      rules.index,
      rules.matrix,
      NOW,
    );
    expect(outcomes.map((o) => o.decision)).toEqual(SHOWCASE.codes.map((c) => c.expected));
    // Refreshing on the same day writes the same content; the next day moves the results along.
    expect(showcasePatient(rules, new Date(NOW.getTime() + 3600_000))).toEqual(showcase);
    expect(showcasePatient(rules, new Date(NOW.getTime() + DAY)).results[0]).not.toEqual(showcase.results[0]);
  });

  test('the decisions history holds checks of every outcome and a funnel of prompts, views and decisions', () => {
    const histories = demos.map((d) => demoHistory(rules, d, { seed: 1, now: NOW, secret: SECRET }));
    const checks = histories.flatMap((h) => h.checks);
    const entries = histories.flatMap((h) => h.entries);
    const decisions = new Set(checks.flatMap((c) => c.outcomes.map((o) => o.decision)));
    expect([...decisions].sort()).toEqual(['expired', 'none', 'not-recognized', 'reference-only', 'reusable']);
    const events = new Set(entries.map((e) => e.event));
    expect([...events].sort()).toEqual(['accepted', 'declined', 'prompt', 'viewed']);
    expect(new Set(entries.map((e) => e._id)).size).toBe(entries.length);
    expect(new Set(checks.map((c) => c._id)).size).toBe(checks.length);
    expect(entries.every((e) => e.channel === 'seed' && e.recordedAt.getTime() < NOW.getTime())).toBe(true);
    const declines = entries.filter((e) => e.event === 'declined');
    expect(declines.every((e) => e.reason)).toBe(true);
    expect(new Set(declines.map((e) => e.reason)).size).toBeGreaterThanOrEqual(5);
    expect(declines.filter((e) => e.reason === 'other').every((e) => e.reasonText)).toBe(true);
    expect(entries.filter((e) => e.event === 'accepted').every((e) => e.saving > 0 || e.offered === 0)).toBe(true);
    const months = new Set(entries.map((e) => e.month));
    expect(months.size).toBeGreaterThanOrEqual(10);
    // No identifier in what is stored: keys only.
    const ids = demos.map((d) => d.patient.identifier![0]!.value!);
    const stored = JSON.stringify([checks, entries]);
    expect(ids.some((id) => stored.includes(id))).toBe(false);
    // Deterministic.
    expect(demoHistory(rules, demos[0]!, { seed: 1, now: NOW, secret: SECRET })).toEqual(histories[0]);
  });
});
