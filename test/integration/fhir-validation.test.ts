import type {
  Bundle,
  CapabilityStatement,
  Observation,
  OperationOutcome,
  Resource,
  StructureDefinition,
} from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  HUREN_OBSERVATION,
  hemoglobin,
  hurenObservation,
  hurenReport,
  labReport,
  organization,
  patient,
  serviceRequest,
} from '../fixtures/validation/resources.js';
import { createTestApp, type TestApp } from '../support/app.js';

const FHIR_JSON = 'application/fhir+json';
const RESULT_ID = 'https://huren.example.org/fhir/sid/qd-municipal/result';

let seq = 0;
const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${++seq}`;

/** A hemoglobin result with an identifier no other test uses, so a test can tell whether it was stored. */
function result(overrides: Record<string, unknown> = {}): Observation & { identifier: { value: string }[] } {
  const o = hemoglobin();
  delete o.id;
  return { ...o, identifier: [{ system: RESULT_ID, value: unique('hgb') }], ...overrides } as Observation & {
    identifier: { value: string }[];
  };
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  text: string;
  body: unknown;
}

/**
 * The error contract every refusal keeps: an OperationOutcome in application/fhir+json, with something that says
 * what to fix, and nothing about the server's insides (no stack frames, no source paths).
 */
function expectRefusal(res: Answer, status: number): OperationOutcome {
  expect(res.status, res.text).toBe(status);
  expect(res.headers['content-type']).toContain(FHIR_JSON);
  const oo = JSON.parse(res.text) as OperationOutcome;
  expect(oo.resourceType).toBe('OperationOutcome');
  expect(oo.issue.length).toBeGreaterThan(0);
  for (const i of oo.issue) {
    expect(i.diagnostics ?? '', 'every issue explains itself').not.toBe('');
  }
  expect(res.text).not.toMatch(/\bat [\w.<>]+ \(|\bat (file|node):|\n\s+at /);
  expect(res.text).not.toMatch(/\/src\/|\/node_modules\/|\.ts:\d+/);
  return oo;
}

const errorsOf = (oo: OperationOutcome) => oo.issue.filter((i) => i.severity === 'error' || i.severity === 'fatal');

describe('validation through the REST API', () => {
  let t: TestApp;
  const api = () => t.as('admin');

  async function storedWith(identifierValue: string): Promise<number> {
    const res = await api()
      .get('/fhir/Observation')
      .query({ identifier: `${RESULT_ID}|${identifierValue}` });
    expect(res.status).toBe(200);
    return ((res.body as Bundle).entry ?? []).length;
  }

  async function versionCount(): Promise<number> {
    const res = await api().get('/fhir/_history').query({ _count: '1000' });
    expect(res.status).toBe(200);
    return ((res.body as Bundle).entry ?? []).length;
  }

  /** POSTs an Observation; asserts that whatever the answer, nothing new was stored unless it was accepted. */
  async function postObservation(body: string | object, contentType = FHIR_JSON): Promise<Answer> {
    const before = await versionCount();
    const res = await api()
      .post('/fhir/Observation')
      .set('Content-Type', contentType)
      .send(typeof body === 'string' ? body : JSON.stringify(body));
    if (res.status >= 400) expect(await versionCount(), 'a refused request writes nothing').toBe(before);
    return res;
  }

  beforeAll(async () => {
    t = await createTestApp('fhir-validation');
  });
  afterAll(async () => {
    await t.close();
  });

  describe('refuses corrupt resources with 400 and says what to fix', () => {
    test('malformed JSON', async () => {
      const res = await postObservation('{"resourceType": "Observation", "status": "final",');
      const oo = expectRefusal(res, 400);
      expect(oo.issue[0].diagnostics).toMatch(/not valid JSON/);
    });

    test('a resource of another type than the URL names', async () => {
      const p = patient();
      delete p.id;
      const res = await postObservation(p);
      const oo = expectRefusal(res, 400);
      expect(errorsOf(oo)[0].expression).toEqual(['resourceType']);
      expect(errorsOf(oo)[0].diagnostics).toMatch(/Observation.*Patient/);
    });

    test('an unknown element', async () => {
      const body = result({ colour: 'red' });
      const res = await postObservation(body);
      const oo = expectRefusal(res, 400);
      expect(errorsOf(oo).map((i) => i.expression?.[0])).toContain('Observation.colour');
      expect(errorsOf(oo)[0].diagnostics).toContain("'colour'");
      expect(await storedWith(body.identifier[0].value)).toBe(0);
    });

    test('a status outside the R4 codes, listing the allowed ones', async () => {
      const body = result({ status: 'done' });
      const res = await postObservation(body);
      const oo = expectRefusal(res, 400);
      const problem = errorsOf(oo).find((i) => i.expression?.[0] === 'Observation.status');
      expect(problem?.diagnostics).toMatch(/'done'.*final/);
      expect(await storedWith(body.identifier[0].value)).toBe(0);
    });

    test('an impossible date (2024-02-30)', async () => {
      const body = result({ effectiveDateTime: '2024-02-30' });
      const res = await postObservation(body);
      const oo = expectRefusal(res, 400);
      const problem = errorsOf(oo).find((i) => i.expression?.[0] === 'Observation.effectiveDateTime');
      expect(problem?.diagnostics).toMatch(/2024-02-30.*29 days/);
      expect(await storedWith(body.identifier[0].value)).toBe(0);
    });

    test('a missing required element (Observation.status)', async () => {
      const body = result();
      delete (body as Partial<Observation>).status;
      const res = await postObservation(body);
      const oo = expectRefusal(res, 400);
      const problem = errorsOf(oo).find((i) => i.expression?.[0] === 'Observation.status');
      expect(problem?.diagnostics).toMatch(/status/);
      expect(await storedWith(body.identifier[0].value)).toBe(0);
    });

    test('an update whose resource id differs from the URL', async () => {
      const id = unique('obs');
      const res = await api()
        .put(`/fhir/Observation/${id}`)
        .set('Content-Type', FHIR_JSON)
        .send({ ...result(), id: 'someone-else' });
      const oo = expectRefusal(res, 400);
      expect(oo.issue[0].expression).toEqual(['Observation.id']);
      expect(oo.issue[0].diagnostics).toContain('someone-else');
      expect((await api().get(`/fhir/Observation/${id}`)).status).toBe(404);
      expect((await api().get('/fhir/Observation/someone-else')).status).toBe(404);
    });

    test('an unknown search parameter, unless the client asks for lenient handling', async () => {
      const strict = await api().get('/fhir/Observation').query({ colour: 'red' });
      const oo = expectRefusal(strict, 400);
      expect(oo.issue[0].diagnostics).toContain('colour');
      const lenient = await api().get('/fhir/Observation').query({ colour: 'red' }).set('Prefer', 'handling=lenient');
      expect(lenient.status).toBe(200);
      expect((lenient.body as Bundle).type).toBe('searchset');
    });

    test('a malformed percent-encoding in the path', async () => {
      const res = await api().get('/fhir/Observation/%E0%A4%A');
      expect(expectRefusal(res, 400).issue[0].diagnostics).toContain('%E0%A4%A');
    });
  });

  describe('refuses what it cannot take with the right status', () => {
    test('a body over HUREN_MAX_BODY is refused with 413', async () => {
      const small = await createTestApp('fhir-validation-body', { HUREN_MAX_BODY: '2kb' });
      try {
        const body = result({ note: [{ text: '血常规复查建议。'.repeat(300) }] });
        const res = await small.as('admin').post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(body);
        const oo = expectRefusal(res, 413);
        expect(oo.issue[0].diagnostics).toMatch(/exceeds the limit of 2 KiB/);
        const search = await small
          .as('admin')
          .get('/fhir/Observation')
          .query({ identifier: `${RESULT_ID}|${body.identifier[0].value}` });
        expect((search.body as Bundle).entry ?? []).toHaveLength(0);
        // Under the limit, the same server accepts a result.
        const fits = await small.as('admin').post('/fhir/Observation').set('Content-Type', FHIR_JSON).send(result());
        expect(fits.status).toBe(201);
      } finally {
        await small.close();
      }
    });

    test('a result with 100 000 identifiers is refused at once with 413 naming the element, and nothing is stored', async () => {
      const body = result();
      const many = Array.from({ length: 99_999 }, (_, i) => ({ value: String(i) }));
      body.identifier.push(...(many as typeof body.identifier));
      const started = Date.now();
      const res = await postObservation(body);
      expect(Date.now() - started, 'answered without looking at every identifier').toBeLessThan(10_000);
      const oo = expectRefusal(res, 413);
      expect(oo.issue[0].code).toBe('too-costly');
      expect(oo.issue[0].expression).toEqual(['Observation.identifier']);
      expect(oo.issue[0].diagnostics).toMatch(/100000 items; at most 1000/);
      expect(await storedWith(body.identifier[0].value)).toBe(0);
    });

    test('an over-long array inside a transaction entry is named by its path in the Bundle', async () => {
      const body = result();
      body.identifier.push(...(Array.from({ length: 1000 }, (_, i) => ({ value: `x${i}` })) as typeof body.identifier));
      const bundle = {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [{ resource: body, request: { method: 'POST', url: 'Observation' } }],
      };
      const res = await api().post('/fhir').set('Content-Type', FHIR_JSON).send(JSON.stringify(bundle));
      const oo = expectRefusal(res, 413);
      expect(oo.issue[0].expression).toEqual(['Bundle.entry[0].resource.identifier']);
      expect(await storedWith(body.identifier[0].value)).toBe(0);
    });

    test('XML (Content-Type text/xml) is refused with 415', async () => {
      const res = await postObservation(
        '<Observation xmlns="http://hl7.org/fhir"><status value="final"/></Observation>',
        'text/xml',
      );
      const oo = expectRefusal(res, 415);
      expect(oo.issue[0].diagnostics).toContain('application/fhir+json');
    });

    test('a body in an unsupported Content-Encoding is refused with 415', async () => {
      const body = result();
      const res = await api()
        .post('/fhir/Observation')
        .set('Content-Type', FHIR_JSON)
        .set('Content-Encoding', 'compress')
        .send(JSON.stringify(body));
      expect(expectRefusal(res, 415).issue[0].diagnostics).toMatch(/Content-Encoding 'compress' is not supported/);
      expect(await storedWith(body.identifier[0].value)).toBe(0);
    });

    test('_format=xml is refused with 406, for reads and writes', async () => {
      const read = await api().get('/fhir/metadata').query({ _format: 'xml' });
      expect(expectRefusal(read, 406).issue[0].expression).toEqual(['_format']);
      const body = result();
      const write = await api()
        .post('/fhir/Observation')
        .query({ _format: 'xml' })
        .set('Content-Type', FHIR_JSON)
        .send(body);
      expectRefusal(write, 406);
      expect(await storedWith(body.identifier[0].value)).toBe(0);
    });

    test('writes to the conformance resources the broker defines are refused with 405', async () => {
      const url = '/fhir/StructureDefinition/huren-observation';
      const original = await api().get(url);
      expect(original.status).toBe(200);

      const del = await api().delete(url);
      expect(expectRefusal(del, 405).issue[0].diagnostics).toMatch(/read-only/);
      expect(del.headers.allow).toBe('GET');
      const put = await api()
        .put(url)
        .set('Content-Type', FHIR_JSON)
        .send({ ...original.body, status: 'retired' });
      expectRefusal(put, 405);
      const post = await api().post('/fhir/StructureDefinition').set('Content-Type', FHIR_JSON).send(original.body);
      expectRefusal(post, 405);

      const after = await api().get(url);
      expect(after.status).toBe(200);
      expect((after.body as StructureDefinition).status).toBe((original.body as StructureDefinition).status);
      expect(after.headers.etag).toBe(original.headers.etag);
    });

    test('an unknown resource type is answered 404', async () => {
      expectRefusal(await api().get('/fhir/Foo'), 404);
      expectRefusal(await api().get('/fhir/Foo/1'), 404);
      const write = await api().post('/fhir/Foo').set('Content-Type', FHIR_JSON).send({ resourceType: 'Foo' });
      expect(expectRefusal(write, 404).issue[0].diagnostics).toMatch(/metadata/);
    });
  });

  describe('accepts valid HL7-style resources', () => {
    const examples: [string, () => Resource][] = [
      ['Patient', patient],
      ['Organization', organization],
      ['ServiceRequest', serviceRequest],
      ['Observation', hemoglobin],
      ['DiagnosticReport', labReport],
      ['DiagnosticReport claiming huren-diagnostic-report', hurenReport],
      ['Observation claiming huren-observation', hurenObservation],
    ];
    test.each(examples)('%s is created (201) and reads back as sent', async (_name, example) => {
      const resource = example();
      const res = await api().post(`/fhir/${resource.resourceType}`).set('Content-Type', FHIR_JSON).send(resource);
      expect(res.status, res.text).toBe(201);
      expect(res.headers.location).toMatch(new RegExp(`/fhir/${resource.resourceType}/[\\w.-]+/_history/1$`));
      const read = await api().get(`/fhir/${resource.resourceType}/${res.body.id}`);
      expect(read.status).toBe(200);
      const { id: _a, meta: _b, ...sent } = resource;
      const { id: _c, meta: _d, ...stored } = read.body as Resource;
      expect(stored).toEqual(sent);
      expect((read.body as Resource).meta?.profile).toEqual(resource.meta?.profile);
    });
  });

  describe('Huren profiles', () => {
    test('a result claiming huren-observation without performer is refused with 422', async () => {
      const body = { ...hurenObservation(), identifier: [{ system: RESULT_ID, value: unique('hgb') }] };
      delete body.id;
      delete body.performer;
      const res = await postObservation(body);
      const oo = expectRefusal(res, 422);
      const problem = errorsOf(oo).find((i) => i.expression?.[0] === 'Observation.performer');
      expect(problem?.diagnostics).toMatch(/huren-observation/);
      expect(await storedWith(body.identifier![0].value!)).toBe(0);
    });

    test('the same result without the profile claim is accepted: the profile applies only when claimed', async () => {
      const body = hurenObservation();
      delete body.id;
      delete body.performer;
      delete body.meta;
      const res = await postObservation(body);
      expect(res.status, res.text).toBe(201);
    });
  });

  describe('$validate', () => {
    test('reports the problems of an invalid result with 200 and writes nothing', async () => {
      const before = await versionCount();
      const body = result({ status: 'done', effectiveDateTime: '2024-02-30' });
      const res = await api().post('/fhir/Observation/$validate').set('Content-Type', FHIR_JSON).send(body);
      expect(res.status).toBe(200);
      const oo = res.body as OperationOutcome;
      expect(oo.resourceType).toBe('OperationOutcome');
      expect(
        errorsOf(oo)
          .map((i) => i.expression?.[0])
          .sort(),
      ).toEqual(['Observation.effectiveDateTime', 'Observation.status']);
      expect(await storedWith(body.identifier[0].value)).toBe(0);
      expect(await versionCount()).toBe(before);
    });

    test('says "no issues" for a valid result and writes nothing', async () => {
      const before = await versionCount();
      const body = result();
      const res = await api().post('/fhir/Observation/$validate').set('Content-Type', FHIR_JSON).send(body);
      expect(res.status).toBe(200);
      const oo = res.body as OperationOutcome;
      expect(oo.issue).toHaveLength(1);
      expect(oo.issue[0].severity).toBe('information');
      expect(oo.issue[0].diagnostics).toMatch(/no issues/i);
      expect(await storedWith(body.identifier[0].value)).toBe(0);
      expect(await versionCount()).toBe(before);
    });

    test('checks the type a conditional reference names against the profile', async () => {
      const body = { ...hurenObservation(), performer: [{ reference: 'Patient?identifier=urn:oid:2.16.156|1' }] };
      const res = await api().post('/fhir/Observation/$validate').set('Content-Type', FHIR_JSON).send(body);
      expect(res.status).toBe(200);
      const problem = errorsOf(res.body as OperationOutcome).find(
        (i) => i.expression?.[0] === 'Observation.performer[0]',
      );
      expect(problem?.diagnostics).toMatch(/refers to a Patient: it must refer to Organization/);
    });

    test('checks a profile asked for in Parameters', async () => {
      const body = result();
      delete body.performer;
      const res = await api()
        .post('/fhir/Observation/$validate')
        .set('Content-Type', FHIR_JSON)
        .send({
          resourceType: 'Parameters',
          parameter: [
            { name: 'resource', resource: body },
            { name: 'profile', valueUri: HUREN_OBSERVATION },
          ],
        });
      expect(res.status).toBe(200);
      const issues = errorsOf(res.body as OperationOutcome);
      expect(issues.map((i) => i.expression?.[0])).toContain('Observation.performer');
    });
  });

  describe('conformance resources from profiles/', () => {
    test('the Huren observation profile is served by id', async () => {
      const res = await api().get('/fhir/StructureDefinition/huren-observation');
      expect(res.status).toBe(200);
      const sd = res.body as StructureDefinition;
      expect(sd.url).toBe(HUREN_OBSERVATION);
      expect(sd.type).toBe('Observation');
      expect(res.headers.etag).toMatch(/^W\/"\d+"$/);
    });

    test('the profile is found by its canonical url', async () => {
      const res = await api().get('/fhir/StructureDefinition').query({ url: HUREN_OBSERVATION });
      expect(res.status).toBe(200);
      const entries = (res.body as Bundle).entry ?? [];
      expect(entries.map((e) => e.resource?.id)).toEqual(['huren-observation']);
    });

    test('the CapabilityStatement lists the profile under supportedProfile of Observation', async () => {
      const res = await api().get('/fhir/metadata');
      expect(res.status).toBe(200);
      const cs = res.body as CapabilityStatement;
      expect(cs.fhirVersion).toBe('4.0.1');
      const observation = cs.rest?.[0].resource?.find((r) => r.type === 'Observation');
      expect(observation?.supportedProfile).toContain(HUREN_OBSERVATION);
    });
  });
});
