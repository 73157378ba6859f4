import type {
  Bundle,
  CapabilityStatement,
  DiagnosticReport,
  OperationOutcome,
  Patient,
  SearchParameter,
} from 'fhir/r4';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { IDENTIFIER_SYSTEMS, residentIdCheckChar } from '../../src/recognition/identity.js';
import { createTestApp, type TestApp } from '../support/app.js';

const FHIR_JSON = 'application/fhir+json';
const ID_CARD = IDENTIFIER_SYSTEMS.residentIdCard;

let seq = 0;
/** A valid 18-digit resident ID number no other test uses (Qingdao, Shinan district; born on a day of 1980-1999). */
function residentId(): string {
  seq += 1;
  const day = String(((Date.now() + seq) % 28) + 1).padStart(2, '0');
  const year = 1980 + (((Date.now() / 1000 + seq) % 20) | 0);
  const first17 = `370202${year}03${day}${String((Date.now() + seq * 7) % 1000).padStart(3, '0')}`;
  return first17 + residentIdCheckChar(first17);
}

/** The 15-digit first-generation form of an 18-digit number of someone born in the 1900s. */
const firstGeneration = (id18: string) => id18.slice(0, 6) + id18.slice(8, 17);

/** Full-width digits and Ｘ, as a Chinese input method in full-width mode types them. */
const fullWidth = (text: string) => text.replace(/[0-9X]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 0xfee0));

const patient = (id: string, name = '张　三'): Patient => ({
  resourceType: 'Patient',
  identifier: [{ system: ID_CARD, value: id }],
  name: [{ text: name, family: '张', given: ['三'] }],
  gender: 'male',
});

describe('Chinese data as it really is', () => {
  let t: TestApp;
  const api = () => t.as('admin');

  beforeAll(async () => {
    t = await createTestApp('chinese-data');
  });
  afterAll(async () => {
    await t.close();
  });

  async function post(path: string, body: unknown) {
    return api().post(path).set('Content-Type', FHIR_JSON).send(JSON.stringify(body));
  }

  async function findPatients(id: string): Promise<Patient[]> {
    const res = await api()
      .get('/fhir/Patient')
      .query({ identifier: `${ID_CARD}|${id}` });
    expect(res.status).toBe(200);
    return ((res.body as Bundle).entry ?? []).map((e) => e.resource as Patient);
  }

  test('a report whose conclusion is indented with ideographic spaces (U+3000) is accepted, stored as sent and found', async () => {
    const id = residentId();
    const p = await post('/fhir/Patient', patient(id));
    expect(p.status, p.text).toBe(201);
    const conclusion = '　　双肺纹理清晰，未见明显实质性病变。\n　　心影不大，膈面光滑。';
    const report: DiagnosticReport = {
      resourceType: 'DiagnosticReport',
      status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '24627-2' }], text: '胸部CT' },
      subject: { reference: `Patient/${(p.body as Patient).id}` },
      conclusion,
      presentedForm: [{ contentType: 'text/plain; charset=utf-8', data: Buffer.from(conclusion).toString('base64') }],
    };
    const created = await post('/fhir/DiagnosticReport', report);
    expect(created.status, created.text).toBe(201);
    const found = await api()
      .get('/fhir/DiagnosticReport')
      .query({ subject: `Patient/${(p.body as Patient).id}` });
    expect(found.status).toBe(200);
    const entries = (found.body as Bundle).entry ?? [];
    expect(entries).toHaveLength(1);
    expect((entries[0]!.resource as DiagnosticReport).conclusion).toBe(conclusion);
  });

  test('a name written with a full-width space is accepted and found by its family name', async () => {
    const id = residentId();
    const res = await post('/fhir/Patient', patient(id, '欧阳\u3000娜娜'));
    expect(res.status, res.text).toBe(201);
    const byName = await api()
      .get('/fhir/Patient')
      .query({ name: '欧阳', identifier: `${ID_CARD}|${id}` });
    expect(((byName.body as Bundle).entry ?? []).map((e) => (e.resource as Patient).name?.[0]?.text)).toEqual([
      '欧阳\u3000娜娜',
    ]);
  });

  test('an 18-digit resident ID with a wrong check digit is refused, the outcome pointing at the identifier', async () => {
    const id = residentId();
    const wrong = id.slice(0, 17) + (id[17] === '0' ? '1' : '0');
    const res = await post('/fhir/Patient', patient(wrong));
    expect(res.status).toBe(400);
    const oo = res.body as OperationOutcome;
    expect(oo.issue[0]?.expression).toEqual(['Patient.identifier[0].value']);
    expect(oo.issue[0]?.diagnostics).toMatch(/check character/);
    expect(res.text, 'the number itself is not repeated').not.toContain(wrong);
    expect(await findPatients(wrong)).toEqual([]);
  });

  test('a wrong resident ID inside a transaction is refused with the entry named', async () => {
    const id = residentId();
    const wrong = id.slice(0, 17) + (id[17] === '0' ? '1' : '0');
    const res = await post('/fhir', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ resource: patient(wrong), request: { method: 'POST', url: 'Patient' } }],
    });
    expect(res.status).toBe(400);
    expect((res.body as OperationOutcome).issue[0]?.expression).toEqual([
      'Bundle.entry[0].resource.identifier[0].value',
    ]);
  });

  test('a 15-digit first-generation ID is accepted, kept as written and found by its 18-digit form', async () => {
    const id18 = residentId();
    const id15 = firstGeneration(id18);
    const res = await post('/fhir/Patient', patient(id15));
    expect(res.status, res.text).toBe(201);
    expect((res.body as Patient).identifier?.[0]?.value).toBe(id15);
    expect((await findPatients(id18)).map((p) => p.id)).toEqual([(res.body as Patient).id]);
    expect((await findPatients(id15)).map((p) => p.id)).toEqual([(res.body as Patient).id]);
  });

  test('an 18-digit patient is found by the 15-digit form of the number and by full-width digits', async () => {
    const id18 = residentId();
    const res = await post('/fhir/Patient', patient(id18));
    expect(res.status, res.text).toBe(201);
    expect((await findPatients(firstGeneration(id18))).map((p) => p.id)).toEqual([(res.body as Patient).id]);
    expect((await findPatients(fullWidth(id18))).map((p) => p.id)).toEqual([(res.body as Patient).id]);
  });

  test('full-width digits and a lower-case x are stored in the form the ID is matched on', async () => {
    let id = residentId();
    while (!id.endsWith('X')) id = residentId();
    const typed = fullWidth(id.slice(0, 17)) + 'x';
    const res = await post('/fhir/Patient', patient(typed));
    expect(res.status, res.text).toBe(201);
    const read = await api().get(`/fhir/Patient/${(res.body as Patient).id}`);
    expect((read.body as Patient).identifier?.[0]?.value).toBe(id);
    expect((await findPatients(id)).map((p) => p.id)).toEqual([(res.body as Patient).id]);
  });

  test('a string holding a lone surrogate is refused rather than stored altered', async () => {
    const res = await api()
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .send('{"resourceType":"Patient","name":[{"text":"张\\ud800三"}]}');
    expect(res.status).toBe(400);
    expect((res.body as OperationOutcome).issue[0]?.expression).toEqual(['Patient.name[0].text']);
    expect((res.body as OperationOutcome).issue[0]?.diagnostics).toMatch(/surrogate/);
  });

  test('an attachment whose data is not base64 is refused', async () => {
    const res = await post('/fhir/DiagnosticReport', {
      resourceType: 'DiagnosticReport',
      status: 'final',
      code: { text: '胸部CT' },
      presentedForm: [{ contentType: 'text/plain', data: 'AAA=AAAA' }],
    });
    expect(res.status).toBe(400);
    expect((res.body as OperationOutcome).issue.map((i) => i.expression?.[0])).toContain(
      'DiagnosticReport.presentedForm[0].data',
    );
  });
});

describe('what the broker emits keeps FHIR JSON rules', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp('conformance-output');
  });
  afterAll(async () => {
    await t.close();
  });

  test('a search that finds nothing has no entry array at all (FHIR JSON has no empty arrays)', async () => {
    const res = await t.as('admin').get('/fhir/Patient').query({ identifier: 'urn:example|nobody' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ resourceType: 'Bundle', type: 'searchset' });
    expect(res.text).not.toMatch(/\[\s*\]/);
    expect(res.body).not.toHaveProperty('entry');
  });

  test('the CapabilityStatement names both SMART endpoints the broker serves', async () => {
    const res = await t.as('admin').get('/fhir/metadata');
    const cs = res.body as CapabilityStatement;
    const uris = cs.rest?.[0]?.security?.extension?.[0]?.extension ?? [];
    expect(Object.fromEntries(uris.map((e) => [e.url, e.valueUri]))).toEqual({
      token: 'http://huren.test/auth/token',
      authorize: 'http://huren.test/auth/authorize',
    });
  });

  test('every search parameter of the CapabilityStatement is published as a SearchParameter', async () => {
    const cs = (await t.as('admin').get('/fhir/metadata')).body as CapabilityStatement;
    const definitions = new Set(
      (cs.rest?.[0]?.resource ?? []).flatMap((r) => (r.searchParam ?? []).map((p) => p.definition!)),
    );
    expect(definitions.size).toBeGreaterThan(50);
    const published = new Set<string>();
    let next: string | undefined = '/fhir/SearchParameter?_count=500';
    while (next) {
      const res = await t.as('admin').get(next.replace('http://huren.test', ''));
      expect(res.status).toBe(200);
      const bundle = res.body as Bundle;
      for (const e of bundle.entry ?? []) published.add((e.resource as SearchParameter).url);
      next = bundle.link?.find((l) => l.relation === 'next')?.url;
    }
    expect([...definitions].filter((d) => !published.has(d))).toEqual([]);
  });

  test('a restart on the same data publishes nothing again: every conformance resource keeps its version', async () => {
    const versions = async (app: TestApp) => {
      const res = await app.as('admin').get('/fhir/SearchParameter?_count=500');
      expect(res.status).toBe(200);
      return new Map(((res.body as Bundle).entry ?? []).map((e) => [e.resource!.id, e.resource!.meta?.versionId]));
    };
    const before = await versions(t);
    expect(before.size).toBeGreaterThan(50);
    const restarted = await createTestApp('chinese-data-restart', {}, { dbName: t.dbName, keepDatabase: true });
    try {
      expect(await versions(restarted)).toEqual(before);
    } finally {
      await restarted.close();
    }
  });
});

describe('$validate', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp('validate-bundles');
  });
  afterAll(async () => {
    await t.close();
  });

  const validate = async (path: string, body: unknown) => {
    const res = await t.as('admin').post(path).set('Content-Type', FHIR_JSON).send(JSON.stringify(body));
    expect(res.status, res.text).toBe(200);
    return (res.body as OperationOutcome).issue.filter((i) => i.severity === 'error');
  };

  test('checks a Bundle entry by entry, each problem located at Bundle.entry[n]', async () => {
    const errors = await validate('/fhir/Bundle/$validate', {
      resourceType: 'Bundle',
      type: 'collection',
      entry: [
        { fullUrl: 'urn:uuid:8b4c5bb6-4b38-4c4f-8d0b-3b0f0c9d6f01', resource: patient(residentId()) },
        {
          fullUrl: 'urn:uuid:8b4c5bb6-4b38-4c4f-8d0b-3b0f0c9d6f02',
          resource: { resourceType: 'Observation', status: 'done', code: { text: '血红蛋白' } },
        },
      ],
    });
    expect(errors.map((i) => i.expression?.[0])).toEqual(['Bundle.entry[1].resource.status']);
  });

  test('accepts a valid Bundle', async () => {
    const errors = await validate('/fhir/Bundle/$validate', {
      resourceType: 'Bundle',
      type: 'collection',
      entry: [{ fullUrl: 'urn:uuid:8b4c5bb6-4b38-4c4f-8d0b-3b0f0c9d6f03', resource: patient(residentId()) }],
    });
    expect(errors).toEqual([]);
  });

  test('refuses an HL7 extension used outside its declared context', async () => {
    const errors = await validate('/fhir/Patient/$validate', {
      resourceType: 'Patient',
      gender: 'male',
      _gender: {
        extension: [
          {
            url: 'http://hl7.org/fhir/StructureDefinition/patient-birthTime',
            valueDateTime: '1990-01-01T08:00:00+08:00',
          },
        ],
      },
    });
    expect(errors.map((i) => i.expression?.[0])).toEqual(['Patient.gender.extension[0]']);
    expect(errors[0]?.diagnostics).toMatch(/Patient\.birthDate/);
  });

  test('applies a core profile the resource claims', async () => {
    const errors = await validate('/fhir/Observation/$validate', {
      resourceType: 'Observation',
      meta: { profile: ['http://hl7.org/fhir/StructureDefinition/vitalsigns'] },
      status: 'final',
      code: { text: '体温' },
      valueString: '正常',
    });
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.map((i) => i.diagnostics).join('\n')).toMatch(/vitalsigns/);
  });
});
