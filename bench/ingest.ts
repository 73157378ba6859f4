/**
 * New results for the ingest benchmark, as Hospital B's LIS would send them: generated DiagnosticReports and their
 * Observations (each Observation before the report listing it), re-issued by demo-hospital-b under fresh ids, about
 * patients already in the store. Two streams with the same tag yield the same resources in the same order.
 */
import type { Bundle, DiagnosticReport, Observation } from 'fhir/r4';
import { generateDemoPatients } from '../src/demo/generator.js';
import type { RecognitionRules } from '../src/recognition/load.js';
import type { SamplePatient } from './load.js';

const HOSPITAL = 'demo-hospital-b';
type Result = (DiagnosticReport | Observation) & { id: string };

export function* ingestStream(
  rules: RecognitionRules,
  patients: SamplePatient[],
  now: Date,
  tag: string,
): Generator<Result> {
  let n = 0;
  let p = 0;
  // Seed 2: other results than the loaded city's (seed 1).
  for (const demo of generateDemoPatients(rules, { seed: 2, count: Number.MAX_SAFE_INTEGER, now })) {
    const subject = { reference: `Patient/${patients[p++ % patients.length]!.id}` };
    const ids = new Map<string, string>();
    for (const r of demo.results) {
      const id = `bench-${tag}-${++n}`;
      ids.set(`${r.resourceType}/${r.id}`, `${r.resourceType}/${id}`);
      const copy = structuredClone(r) as Result;
      delete copy.meta;
      copy.id = id;
      copy.subject = subject;
      copy.performer = [{ reference: `Organization/${HOSPITAL}` }];
      copy.identifier = [{ system: `https://${HOSPITAL}.example.org/fhir/sid/bench`, value: id }];
      if (copy.resourceType === 'DiagnosticReport') {
        copy.result = copy.result?.map((ref) => ({ ...ref, reference: ids.get(ref.reference ?? '') ?? ref.reference }));
      }
      yield copy;
    }
  }
}

/** A transaction of the next `size` resources, each a PUT to its new id (a create). */
export function bundleOf(stream: Iterator<Result>, size: number): Bundle {
  const entry: Bundle['entry'] = [];
  for (let i = 0; i < size; i++) {
    const r = stream.next().value as Result;
    entry.push({ resource: r, request: { method: 'PUT', url: `${r.resourceType}/${r.id}` } });
  }
  return { resourceType: 'Bundle', type: 'transaction', entry };
}
