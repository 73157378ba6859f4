import { expect, it } from 'vitest';
import { createTestApp } from '../support/app.js';

it('probe: database commands of one 100-entry PUT transaction', async () => {
  const t = await createTestApp('probe');
  const counts = new Map<string, number>();
  let on = false;
  const proto = Object.getPrototypeOf(t.deps.connection.db!.collection('x')) as Record<string, Function>;
  for (const m of ['find','findOne','countDocuments','insertOne','insertMany','updateOne','updateMany','replaceOne','bulkWrite','deleteOne','deleteMany','findOneAndUpdate','findOneAndReplace','aggregate','distinct']) {
    const orig = proto[m]!;
    proto[m] = function (this: { collectionName: string }, ...args: unknown[]) {
      if (on) {
        const key = `${m} ${this.collectionName}`;
        if (false) process.stdout.write(`${key} ${JSON.stringify(args[0]).slice(0, 200)}\n${new Error().stack!.split('\n').filter((l) => l.includes('/src/')).slice(0, 6).join('\n')}\n`);
        counts.set(key, (counts.get(key) ?? 0) + 1);
        if (m === 'insertMany' || m === 'bulkWrite') counts.set(key + ' docs', (counts.get(key + ' docs') ?? 0) + (args[0] as unknown[]).length);
      }
      return orig.apply(this, args);
    };
  }
  const entry = [];
  for (let i = 0; i < 100; i++) {
    entry.push({
      resource: {
        resourceType: 'Observation', id: `probe-${i}`, status: 'final',
        identifier: [{ system: 'https://demo-hospital-a.example.org/fhir/sid/bench', value: `probe-${i}` }],
        code: { coding: [{ system: 'http://loinc.org', code: '718-7' }] },
        subject: { reference: 'Patient/p-1001' }, effectiveDateTime: '2026-12-01T08:00:00+08:00',
        performer: [{ reference: 'Organization/demo-hospital-a' }],
        valueQuantity: { value: 130, unit: 'g/L', system: 'http://unitsofmeasure.org', code: 'g/L' },
      },
      request: { method: 'PUT', url: `Observation/probe-${i}` },
    });
  }
  let res: any; let ms = 0;
  for (let round = 0; round < 6; round++) {
    const e2 = entry.map((x) => ({ resource: { ...x.resource, id: `${x.resource.id}-${round}`, identifier: [{ ...x.resource.identifier[0], value: `${x.resource.id}-${round}` }] }, request: { method: 'PUT', url: `${x.request.url}-${round}` } }));
    on = round === 5;
    const t0 = performance.now();
    res = await t.as('his').post('/fhir').set('Content-Type', 'application/fhir+json').send({ resourceType: 'Bundle', type: 'transaction', entry: e2 });
    ms = performance.now() - t0;
    process.stdout.write(`round ${round}: ${res.status} ${ms.toFixed(0)} ms\n`);
  }
  await new Promise((r) => setTimeout(r, 500));
  on = false;
  process.stdout.write(`status ${res.status} ${ms.toFixed(0)} ms\n${[...counts].sort().map(([k, v]) => `${k}: ${v}`).join('\n')}\n`);
  expect(res.status).toBeLessThan(300);
  await t.close();
}, 120_000);
