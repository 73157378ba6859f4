import { it } from 'vitest';
import { createTestApp } from '../support/app.js';

it('probe: ingest log as document vs string', async () => {
  const t = await createTestApp('probe2');
  const db = t.deps.connection.db!;
  const a = db.collection<any>('probe_a');
  const b = db.collection<any>('probe_b');
  const ops = Array.from({ length: 100 }, (_, i) => ({
    type: 'Observation', id: `o-${i}`, prevVid: 0, method: 'PUT',
    resource: {
      resourceType: 'Observation', id: `o-${i}`, status: 'final',
      identifier: [{ system: 'https://demo-hospital-a.example.org/fhir/sid/bench', value: `probe-${i}` }],
      code: { coding: [{ system: 'http://loinc.org', code: '718-7', display: 'Hemoglobin [Mass/volume] in Blood' }], text: '血红蛋白' },
      subject: { reference: 'Patient/p-1001' }, effectiveDateTime: '2026-12-01T08:00:00+08:00',
      performer: [{ reference: 'Organization/demo-hospital-a' }],
      valueQuantity: { value: 130, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' },
      referenceRange: [{ low: { value: 115, unit: 'g/L' }, high: { value: 150, unit: 'g/L' }, text: '115–150 g/L' }],
      interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'N' }] }],
    },
  }));
  const refs = ops.map((o) => `Observation/${o.id}`);
  for (const [name, col, make] of [
    ['document', a, (i: number) => ({ _id: `e${i}`, state: 'pending', createdAt: new Date(), ops, refs })],
    ['string', b, (i: number) => ({ _id: `e${i}`, state: 'pending', createdAt: new Date(), opsJson: JSON.stringify(ops), refs })],
    ['document', a, (i: number) => ({ _id: `f${i}`, state: 'pending', createdAt: new Date(), ops, refs })],
    ['string', b, (i: number) => ({ _id: `f${i}`, state: 'pending', createdAt: new Date(), opsJson: JSON.stringify(ops), refs })],
  ] as const) {
    const t0 = performance.now();
    for (let i = 0; i < 40; i++) {
      await col.insertOne(make(i));
      await col.deleteOne({ _id: make(i)._id });
    }
    process.stdout.write(`${name}: ${((performance.now() - t0) / 40).toFixed(1)} ms per insert+delete\n`);
  }
  await t.close();
}, 300_000);
