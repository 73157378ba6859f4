import type { Observation, Patient } from 'fhir/r4';
import { describe, expect, test } from 'vitest';
import { OperationOutcomeError } from '../../src/fhir/outcomes.js';
import {
  buildMongoFilter,
  buildSort,
  createSearchRegistry,
  cursorFilter,
  encodeCursor,
  extractSearchValues,
  parseSearchRequest,
  type SearchQuery,
  type SearchRequest,
} from '../../src/fhir/search/index.js';

const registry = createSearchRegistry();
const strict = { lenient: false, defaultCount: 20, maxCount: 100, now: new Date('2024-03-15T00:00:00+08:00') };
const noChain = async (): Promise<string[]> => {
  throw new Error('no chain expected');
};

function parse(resourceType: string, query: SearchQuery, options = strict): SearchRequest {
  return parseSearchRequest(registry, resourceType, query, options);
}

async function filterOf(resourceType: string, query: SearchQuery) {
  return buildMongoFilter(registry, parse(resourceType, query), noChain);
}

/** The OperationOutcomeError a function throws (fails the test if it does not). */
function errorOf(fn: () => unknown): OperationOutcomeError {
  try {
    fn();
  } catch (err) {
    if (err instanceof OperationOutcomeError) return err;
    throw err;
  }
  throw new Error('expected an OperationOutcomeError');
}

// ---------------------------------------------------------------------------------------------------------------
// A small evaluator of the MongoDB operators the filter builder emits, with MongoDB's array semantics (a condition on
// an array field holds when some element satisfies it). It lets the tests check what a filter selects, not only its
// shape; the store's integration tests run the same filters against the real database.

type Doc = Record<string, unknown>;

function getPath(doc: unknown, path: string): unknown {
  let value = doc;
  for (const part of path.split('.')) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Doc)[part];
  }
  return value;
}

const elements = (v: unknown): unknown[] => (Array.isArray(v) ? v : [v]);
const same = (a: unknown, b: unknown) =>
  a instanceof Date && b instanceof Date ? a.getTime() === b.getTime() : a === b;
function compare(a: unknown, b: unknown): number | undefined {
  if (a instanceof Date && b instanceof Date) return a.getTime() - b.getTime();
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  return undefined;
}
const isOperators = (c: unknown): c is Doc =>
  typeof c === 'object' &&
  c !== null &&
  !(c instanceof Date) &&
  !Array.isArray(c) &&
  Object.keys(c).every((k) => k.startsWith('$'));

function matchOperator(value: unknown, op: string, arg: unknown): boolean {
  const some = (test: (e: unknown) => boolean) => value !== undefined && elements(value).some(test);
  const ordered = (test: (n: number) => boolean) => some((e) => ((c) => c !== undefined && test(c))(compare(e, arg)));
  switch (op) {
    case '$exists':
      return (value !== undefined) === arg;
    case '$in':
      return some((e) => (arg as unknown[]).some((a) => same(e, a)));
    case '$nin':
      return !matchOperator(value, '$in', arg);
    case '$ne':
      return !some((e) => same(e, arg));
    case '$not':
      return !matchField(value, arg);
    case '$regex':
      return some((e) => typeof e === 'string' && new RegExp(arg as string).test(e));
    case '$gt':
      return ordered((c) => c > 0);
    case '$gte':
      return ordered((c) => c >= 0);
    case '$lt':
      return ordered((c) => c < 0);
    case '$lte':
      return ordered((c) => c <= 0);
    default:
      throw new Error(`operator ${op} not expected in filters`);
  }
}

function matchField(value: unknown, condition: unknown): boolean {
  if (isOperators(condition)) return Object.entries(condition).every(([op, arg]) => matchOperator(value, op, arg));
  return value !== undefined && elements(value).some((e) => same(e, condition));
}

function matches(doc: Doc, filter: Doc): boolean {
  return Object.entries(filter).every(([key, condition]) => {
    if (key === '$and') return (condition as Doc[]).every((c) => matches(doc, c));
    if (key === '$or') return (condition as Doc[]).some((c) => matches(doc, c));
    if (key.startsWith('$')) throw new Error(`operator ${key} not expected at top level`);
    return matchField(getPath(doc, key), condition);
  });
}

function stored<R extends { resourceType: string; id?: string }>(
  resource: R,
  lastUpdated = '2024-03-20T00:00:00Z',
): Doc {
  return {
    _id: `${resource.resourceType}/${resource.id}`,
    type: resource.resourceType,
    id: resource.id,
    vid: 1,
    lastUpdated: new Date(lastUpdated),
    deleted: false,
    resource,
    ...extractSearchValues(registry, resource),
  };
}

function observation(id: string, fields: Partial<Observation>): Observation {
  return {
    resourceType: 'Observation',
    id,
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '718-7' }] },
    subject: { reference: 'Patient/p-1' },
    ...fields,
  };
}

const observations: Doc[] = [
  stored(observation('day', { effectiveDateTime: '2024-03-05' })),
  stored(observation('second', { effectiveDateTime: '2024-03-05T10:00:00+08:00' })),
  stored(observation('utc-evening', { effectiveDateTime: '2024-03-04T20:00:00Z' })),
  stored(observation('period', { effectivePeriod: { start: '2024-03-01', end: '2024-03-10' } })),
  stored(observation('april', { effectiveDateTime: '2024-04-01' })),
  stored(observation('new-year-eve', { effectiveDateTime: '2023-12-31' })),
  stored(observation('undated', { status: 'preliminary' })),
  stored(
    observation('hb-mg', {
      effectiveDateTime: '2024-03-05',
      valueQuantity: { value: 5.4, unit: 'mg', system: 'http://unitsofmeasure.org', code: 'mg' },
    }),
  ),
  stored(
    observation('hb-g', {
      subject: { reference: 'Group/g-1' },
      code: { coding: [{ system: 'urn:huren:item', code: 'HB' }], text: 'Hämoglobin' },
      valueQuantity: { value: 5.44, unit: 'g' },
    }),
  ),
  stored(
    observation('five', { valueQuantity: { value: 5, unit: 'mg', system: 'http://unitsofmeasure.org', code: 'mg' } }),
  ),
];

async function search(query: SearchQuery, docs = observations, resolveChain = noChain): Promise<string[]> {
  const req = parse('Observation', query);
  const filter = await buildMongoFilter(registry, req, resolveChain);
  return docs.filter((d) => matches(d, filter)).map((d) => d.id as string);
}

// ---------------------------------------------------------------------------------------------------------------

describe('buildMongoFilter: scope', () => {
  test('always restricts to the type and to current (not deleted) resources', async () => {
    expect(await filterOf('Observation', {})).toEqual({ type: 'Observation', deleted: false });
  });
});

describe('token parameters', () => {
  test.each([
    ['718-7', '718-7'],
    ['http://loinc.org|718-7', 'http://loinc.org|718-7'],
    ['|final', '|final'],
  ])('code=%s is an exact match on the stored token', async (value, stored) => {
    const param = value === '|final' ? 'status' : 'code';
    expect(await filterOf('Observation', { [param]: value })).toMatchObject({ [`sp.${param}`]: stored });
  });

  test('system| is an anchored, escaped prefix match on system|code entries', async () => {
    expect(await filterOf('Observation', { code: 'http://loinc.org|' })).toMatchObject({
      'sp.code': { $regex: '^http://loinc\\.org\\|' },
    });
    expect(await search({ code: 'urn:huren:item|' })).toEqual(['hb-g']);
  });

  test('comma-separated values are ORed, repeated parameters ANDed', async () => {
    expect(await filterOf('Observation', { code: '718-7,urn:huren:item|HB' })).toMatchObject({
      'sp.code': { $in: ['718-7', 'urn:huren:item|HB'] },
    });
    expect(await search({ code: '718-7,urn:huren:item|HB' })).toHaveLength(observations.length);
    expect(await search({ code: ['718-7', 'http://loinc.org|718-7'] })).not.toContain('hb-g');
    expect(await search({ code: ['718-7', 'urn:huren:item|HB'] })).toEqual([]);
  });

  test('an escaped comma is part of the value', async () => {
    expect(await filterOf('Observation', { code: 'a\\,b' })).toMatchObject({ 'sp.code': 'a,b' });
  });

  test(':not excludes the codes and keeps resources without a value', async () => {
    expect(await filterOf('Observation', { 'status:not': 'final' })).toMatchObject({
      'sp.status': { $nin: ['final'] },
    });
    expect(await search({ 'status:not': 'final' })).toEqual(['undated']);
    expect(await search({ 'value-concept:not': 'x' })).toHaveLength(observations.length);
  });

  test(':of-type matches identifier type and value', async () => {
    const withId = stored(
      observation('ided', {
        identifier: [{ system: 'urn:lab', value: '42', type: { coding: [{ system: 'urn:types', code: 'FILL' }] } }],
      }),
    );
    expect(await search({ 'identifier:of-type': 'urn:types|FILL|42' }, [withId, ...observations])).toEqual(['ided']);
    expect(await search({ 'identifier:of-type': 'urn:types|PLAC|42' }, [withId])).toEqual([]);
  });

  test('_id searches the stored document id', async () => {
    expect(await filterOf('Observation', { _id: 'day,second' })).toMatchObject({
      _id: { $in: ['Observation/day', 'Observation/second'] },
    });
    expect(await search({ _id: 'day' })).toEqual(['day']);
    expect(await search({ _id: 'sys|day' })).toEqual([]);
  });

  test('unsupported token modifiers are rejected with the parameter named', () => {
    const err = errorOf(() => parse('Observation', { 'code:text': 'hemoglobin' }));
    expect(err.status).toBe(400);
    expect(err.outcome.issue[0]).toMatchObject({ code: 'not-supported', expression: ['code:text'] });
    expect(err.outcome.issue[0]!.diagnostics).toMatch(/:not/);
    expect(errorOf(() => parse('Observation', { 'code:in': 'http://vs' })).status).toBe(400);
    expect(errorOf(() => parse('Observation', { 'status:of-type': 'a|b|c' })).status).toBe(400);
  });

  test('a malformed token is rejected', () => {
    expect(errorOf(() => parse('Observation', { code: 'a|b|c' })).outcome.issue[0]!.expression).toEqual(['code']);
    expect(errorOf(() => parse('Observation', { code: '|' })).status).toBe(400);
    expect(errorOf(() => parse('Observation', { code: 'a,,b' })).status).toBe(400);
  });
});

describe('reference parameters', () => {
  test('patient=id means Patient/id', async () => {
    expect(await filterOf('Observation', { patient: '123' })).toMatchObject({ 'sp.patient': 'Patient/123' });
  });

  test('subject=id matches the id in any target type; Type/id and :Type narrow it', async () => {
    expect(await filterOf('Observation', { subject: '123' })).toMatchObject({
      'sp.subject': { $in: ['Group/123', 'Device/123', 'Patient/123', 'Location/123'] },
    });
    expect(await filterOf('Observation', { subject: 'Patient/123' })).toMatchObject({ 'sp.subject': 'Patient/123' });
    expect(await filterOf('Observation', { 'subject:Patient': '123' })).toMatchObject({ 'sp.subject': 'Patient/123' });
    expect(await filterOf('Observation', { subject: 'Patient/123/_history/2' })).toMatchObject({
      'sp.subject': 'Patient/123',
    });
  });

  test('absolute references are matched as given', async () => {
    expect(await filterOf('Observation', { subject: 'http://other.example/fhir/Patient/9' })).toMatchObject({
      'sp.subject': 'http://other.example/fhir/Patient/9',
    });
  });

  test('end to end: patient only matches Patient subjects', async () => {
    expect(await search({ patient: 'p-1' })).not.toContain('hb-g');
    expect(await search({ subject: 'g-1' })).toEqual(['hb-g']);
    expect(await search({ patient: 'g-1' })).toEqual([]);
  });

  test('a reference to a type the parameter cannot target is rejected', () => {
    expect(errorOf(() => parse('Observation', { subject: 'Organization/1' })).outcome.issue[0]!.expression).toEqual([
      'subject',
    ]);
    expect(errorOf(() => parse('Observation', { 'subject:Organization': '1' })).status).toBe(400);
    expect(errorOf(() => parse('Observation', { 'subject:identifier': 'a|b' })).outcome.issue[0]!.code).toBe(
      'not-supported',
    );
  });

  test('DiagnosticReport result and based-on', async () => {
    expect(await filterOf('DiagnosticReport', { result: 'hb-1', 'based-on': 'ServiceRequest/o-1' })).toEqual({
      type: 'DiagnosticReport',
      deleted: false,
      'sp.result': 'Observation/hb-1',
      'sp.based-on': 'ServiceRequest/o-1',
      tk: 'DiagnosticReport|result|Observation/hb-1',
    });
  });

  test('a search narrows on its most selective equality: an identifier before a reference before a code or status', async () => {
    const filter = await filterOf('Observation', {
      status: 'final',
      code: 'http://loinc.org|718-7',
      subject: 'Patient/p-1',
      identifier: 'urn:lab|A-1',
    });
    expect(filter.tk).toBe('Observation|identifier|urn:lab|A-1');
    expect(
      (await filterOf('Observation', { status: 'final', code: 'http://loinc.org|718-7', subject: 'Patient/p-1' })).tk,
    ).toBe('Observation|subject|Patient/p-1');
    expect((await filterOf('Observation', { status: 'final', code: 'http://loinc.org|718-7' })).tk).toBe(
      'Observation|code|http://loinc.org|718-7',
    );
    // Alternatives (comma) narrow on any of their tokens, one index lookup each; a single-valued equality of the same
    // rank is preferred. A prefix (system|) is no stored value: nothing to narrow on, the search scans.
    expect((await filterOf('Observation', { code: 'http://loinc.org|718-7,http://loinc.org|4548-4' })).tk).toEqual({
      $in: ['Observation|code|http://loinc.org|718-7', 'Observation|code|http://loinc.org|4548-4'],
    });
    expect(
      (
        await filterOf('Observation', {
          code: 'http://loinc.org|718-7,http://loinc.org|4548-4',
          subject: 'Patient/p-1',
        })
      ).tk,
    ).toBe('Observation|subject|Patient/p-1');
    expect((await filterOf('Observation', { subject: 'Patient/p-1,Patient/p-2', patient: 'Patient/p-3' })).tk).toBe(
      'Observation|patient|Patient/p-3',
    );
    expect((await filterOf('Observation', { code: 'http://loinc.org|' })).tk).toBeUndefined();
    // By id the primary key serves it.
    expect((await filterOf('Observation', { _id: 'o-1', status: 'final' })).tk).toBeUndefined();
  });

  test('chained parameters resolve the target search and match its references', async () => {
    const calls: [string, SearchRequest][] = [];
    const resolve = async (type: string, inner: SearchRequest) => {
      calls.push([type, inner]);
      return ['Patient/p-1', 'Patient/p-2'];
    };
    const req = parse('Observation', { 'subject:Patient.identifier': 'urn:id|110101' });
    expect(await buildMongoFilter(registry, req, resolve)).toMatchObject({
      'sp.subject': { $in: ['Patient/p-1', 'Patient/p-2'] },
    });
    expect(calls).toHaveLength(1);
    expect(calls[0]![0]).toBe('Patient');
    expect(calls[0]![1].filters).toEqual([
      {
        name: 'subject:Patient.identifier',
        param: 'identifier',
        kind: 'token',
        values: [{ system: 'urn:id', code: '110101' }],
      },
    ]);
    // Without a type modifier the searchable target types that have the parameter are used: only Patient here.
    calls.length = 0;
    await buildMongoFilter(registry, parse('Observation', { 'patient.identifier': 'urn:id|1' }), resolve);
    await buildMongoFilter(registry, parse('Observation', { 'subject.name': 'zhang' }), resolve);
    expect(calls.map(([t]) => t)).toEqual(['Patient', 'Patient']);
  });

  test('chains are one level, on reference parameters, with known target parameters', () => {
    expect(errorOf(() => parse('Observation', { 'subject:Patient.organization.name': 'x' })).status).toBe(400);
    expect(errorOf(() => parse('Observation', { 'code.system': 'x' })).outcome.issue[0]!.expression).toEqual([
      'code.system',
    ]);
    const err = errorOf(() => parse('Observation', { 'patient.shoe-size': '42' }));
    expect(err.outcome.issue[0]!.expression).toEqual(['patient.shoe-size']);
    expect(
      errorOf(() => parse('Observation', { 'patient.birthdate': '2024-02-30' })).outcome.issue[0]!.expression,
    ).toEqual(['patient.birthdate']);
  });
});

describe('date parameters', () => {
  // Search ranges: 2024-03-05 is [03-05 00:00, 23:59:59.999] in +08:00; stored values as in `observations`.
  test.each([
    ['2024-03-05', ['day', 'second', 'utc-evening', 'hb-mg']],
    ['eq2024-03-05', ['day', 'second', 'utc-evening', 'hb-mg']],
    ['2024-03', ['day', 'second', 'utc-evening', 'period', 'hb-mg']],
    ['ne2024-03', ['april', 'new-year-eve']],
    ['gt2024-03-05', ['period', 'april']],
    ['lt2024-03-05', ['period', 'new-year-eve']],
    ['ge2024-03-05', ['day', 'second', 'utc-evening', 'period', 'april', 'hb-mg']],
    ['le2024-03-05', ['day', 'second', 'utc-evening', 'period', 'new-year-eve', 'hb-mg']],
    ['sa2024-03-05', ['april']],
    ['eb2024-03-05', ['new-year-eve']],
    // now = 2024-03-15: 10% of the 10-day gap widens the day by one day on each side.
    ['ap2024-03-05', ['day', 'second', 'utc-evening', 'period', 'hb-mg']],
    ['ap2024-02-01', []],
    ['2024-03-05T10:00:00+08:00', ['second']],
    ['2024-03-05T10:00', ['second']],
    ['2024-03-05T02:00:00Z', ['second']],
    // An unencoded '+' arrives as a space.
    ['2024-03-05T10:00:00 08:00', ['second']],
  ])('date=%s', async (value, expected) => {
    expect(await search({ date: value })).toEqual(expected);
  });

  test('eq compares the stored envelope with the whole search range', async () => {
    expect(await filterOf('Observation', { date: '2024-03' })).toMatchObject({
      'sp.date.lo': { $gte: new Date('2024-02-29T16:00:00.000Z') },
      'sp.date.hi': { $lte: new Date('2024-03-31T15:59:59.999Z') },
    });
  });

  test('a range is two repeated parameters; alternatives are comma-separated', async () => {
    expect(await search({ date: ['ge2024-03-01', 'lt2024-04'] })).toEqual([
      'day',
      'second',
      'utc-evening',
      'period',
      'hb-mg',
    ]);
    expect(await search({ date: '2024-04,2023' })).toEqual(['april', 'new-year-eve']);
  });

  test('_lastUpdated compares the store’s lastUpdated', async () => {
    expect(await filterOf('Observation', { _lastUpdated: 'gt2024-03-01' })).toMatchObject({
      lastUpdated: { $gt: new Date('2024-03-01T15:59:59.999Z') },
    });
    const docs = [stored(observation('old', {}), '2024-01-01T00:00:00Z'), stored(observation('new', {}))];
    expect(await search({ _lastUpdated: 'ge2024-03' }, docs)).toEqual(['new']);
    expect(await search({ _lastUpdated: '2024-01-01T08:00:00+08:00' }, docs)).toEqual(['old']);
  });

  test.each(['2024-02-30', '2024-13', 'yesterday', '2024-03-05T25:00', '05/03/2024', '2024-03-05T10:00:00+15:00'])(
    'date=%s is rejected naming the parameter',
    (value) => {
      const err = errorOf(() => parse('Observation', { date: value }));
      expect(err.status).toBe(400);
      expect(err.outcome.issue[0]!.expression).toEqual(['date']);
    },
  );

  test('an unknown prefix is reported as such', () => {
    const err = errorOf(() => parse('Observation', { date: 'xx2024-03-05' }));
    expect(err.outcome.issue[0]).toMatchObject({
      expression: ['date'],
      diagnostics: expect.stringMatching(/prefix 'xx'/),
    });
  });
});

describe('quantity and number parameters', () => {
  test('eq uses the implicit precision of the value', async () => {
    expect(await filterOf('Observation', { 'value-quantity': '5.4' })).toMatchObject({
      'sp.value-quantity.v': { $gte: 5.35, $lt: 5.45 },
    });
    expect(await search({ 'value-quantity': '5.4' })).toEqual(['hb-mg', 'hb-g']);
    expect(await search({ 'value-quantity': '5.40' })).toEqual(['hb-mg']);
    // 5 means [4.5, 5.5); 5.0 means [4.95, 5.05).
    expect(await search({ 'value-quantity': '5' })).toEqual(['hb-mg', 'hb-g', 'five']);
    expect(await search({ 'value-quantity': '5.0' })).toEqual(['five']);
  });

  test('system|code and ||unit narrow by unit', async () => {
    expect(await filterOf('Observation', { 'value-quantity': '5.4|http://unitsofmeasure.org|mg' })).toMatchObject({
      'sp.value-quantity.v': { $gte: 5.35, $lt: 5.45 },
      'sp.value-quantity.u': 'http://unitsofmeasure.org|mg',
    });
    expect(await search({ 'value-quantity': '5.4|http://unitsofmeasure.org|mg' })).toEqual(['hb-mg']);
    expect(await search({ 'value-quantity': '5.4||g' })).toEqual(['hb-g']);
    expect(await search({ 'value-quantity': '5.4|http://unitsofmeasure.org|' })).toEqual(['hb-mg']);
  });

  test.each([
    ['gt5.4', ['hb-g']],
    ['ge5.4', ['hb-mg', 'hb-g']],
    ['lt5.4', ['five']],
    ['le5.4', ['hb-mg', 'five']],
    ['ne5.4', ['five']],
    ['sa5.4', ['hb-g']],
    ['eb5.4', ['five']],
    ['ap5', ['hb-mg', 'hb-g', 'five']],
    ['ap5.4|http://unitsofmeasure.org|mg', ['hb-mg', 'five']],
    ['ne5.4|http://unitsofmeasure.org|mg', ['five']],
  ])('value-quantity=%s', async (value, expected) => {
    expect(await search({ 'value-quantity': value })).toEqual(expected);
  });

  test('malformed quantities and prefixes are rejected', () => {
    for (const value of ['abc', '5.4|mg', 'zz5', '5,4x', '1..2']) {
      const err = errorOf(() => parse('Observation', { 'value-quantity': value }));
      expect(err.outcome.issue[0]!.expression).toEqual(['value-quantity']);
    }
  });
});

describe('string parameters', () => {
  const patients = [
    stored({ resourceType: 'Patient', id: 'zhang', name: [{ family: 'Zhāng', given: ['Wěi'] }] } satisfies Patient),
    stored({
      resourceType: 'Patient',
      id: 'li',
      name: [{ family: 'Li', given: ['Na'], text: '李娜' }],
    } satisfies Patient),
    stored({ resourceType: 'Patient', id: 'dot', name: [{ family: 'a.b*c' }] } satisfies Patient),
    stored({ resourceType: 'Patient', id: 'nameless' } satisfies Patient),
  ];
  async function patientSearch(query: SearchQuery): Promise<string[]> {
    const filter = await buildMongoFilter(registry, parse('Patient', query), noChain);
    return patients.filter((d) => matches(d, filter)).map((d) => d.id as string);
  }

  test('default is starts-with, ignoring case and accents, on the normalised values', async () => {
    expect(await filterOf('Patient', { name: 'ZHĀ' })).toMatchObject({ 'sp.name': { $regex: '^zha' } });
    expect(await patientSearch({ name: 'zha' })).toEqual(['zhang']);
    expect(await patientSearch({ family: 'ZHANG' })).toEqual(['zhang']);
    expect(await patientSearch({ name: '李' })).toEqual(['li']);
    expect(await patientSearch({ name: 'ang' })).toEqual([]);
  });

  test(':contains matches anywhere and :exact only the original string', async () => {
    expect(await patientSearch({ 'name:contains': 'ANG' })).toEqual(['zhang']);
    expect(await patientSearch({ 'family:exact': 'Zhāng' })).toEqual(['zhang']);
    expect(await patientSearch({ 'family:exact': 'Zhang' })).toEqual([]);
    expect(await filterOf('Patient', { 'family:exact': 'Zhāng,Li' })).toMatchObject({
      'sp.family:exact': { $in: ['Zhāng', 'Li'] },
    });
  });

  test('regular-expression characters in values are matched literally', async () => {
    expect(await filterOf('Patient', { family: 'a.b*' })).toMatchObject({ 'sp.family': { $regex: '^a\\.b\\*' } });
    expect(await patientSearch({ family: 'a.b*' })).toEqual(['dot']);
    expect(await patientSearch({ family: 'a.c' })).toEqual([]);
  });

  test(':missing works on every parameter type', async () => {
    expect(await patientSearch({ 'name:missing': 'true' })).toEqual(['nameless']);
    expect(await filterOf('Patient', { 'name:missing': 'false' })).toMatchObject({ 'sp.name': { $exists: true } });
    expect(await search({ 'date:missing': 'true' })).toEqual(
      ['hb-g', 'five', 'undated'].sort((a, b) => ids.indexOf(a) - ids.indexOf(b)),
    );
    expect(await search({ 'value-quantity:missing': 'false' })).toEqual(['hb-mg', 'hb-g', 'five']);
    expect(await search({ 'subject:missing': 'false' })).toHaveLength(observations.length);
    expect(await search({ 'code:missing': 'true' })).toEqual([]);
    expect(await filterOf('Observation', { '_profile:missing': 'true' })).toMatchObject({
      'sp._profile': { $exists: false },
    });
    expect(errorOf(() => parse('Patient', { 'name:missing': 'yes' })).outcome.issue[0]!.expression).toEqual([
      'name:missing',
    ]);
  });
});

const ids = observations.map((d) => d.id as string);

describe('uri parameters', () => {
  test('exact, :below and :above', async () => {
    expect(await filterOf('Observation', { _profile: 'http://h.cn/sd/lab' })).toMatchObject({
      'sp._profile': 'http://h.cn/sd/lab',
    });
    expect(await filterOf('Observation', { '_profile:below': 'http://h.cn/sd' })).toMatchObject({
      'sp._profile': { $regex: '^http://h\\.cn/sd' },
    });
    expect(await filterOf('Observation', { '_profile:above': 'http://h.cn/sd/lab' })).toMatchObject({
      'sp._profile': { $in: ['http://h.cn/sd/lab', 'http://h.cn/sd', 'http://h.cn'] },
    });
  });
});

describe('unknown and unsupported parameters', () => {
  test.each([
    ['shoe-size', 'shoe-size'],
    ['code-value-quantity', 'code-value-quantity'],
    ['_has:Observation:patient:code', '_has:Observation:patient:code'],
    ['_text', '_text'],
    ['_content', '_content'],
    ['_query', '_query'],
    ['_filter', '_filter'],
    ['_list', '_list'],
    ['_type', '_type'],
    ['date:exact', 'date:exact'],
  ])('%s is a 400 naming the parameter', (key, expression) => {
    const err = errorOf(() => parse('Observation', { [key]: 'x' }));
    expect(err.status).toBe(400);
    expect(err.outcome.issue[0]).toMatchObject({ severity: 'error', code: 'not-supported', expression: [expression] });
  });

  test('the message lists supported parameters and suggests near misses', () => {
    const message = errorOf(() => parse('Observation', { cod: '1' })).outcome.issue[0]!.diagnostics!;
    expect(message).toMatch(/Did you mean .*'code'/);
    expect(message).toMatch(/subject/);
  });

  test('composite parameters say why they are unsupported', () => {
    const message = errorOf(() => parse('Observation', { 'code-value-quantity': 'x' })).outcome.issue[0]!.diagnostics;
    expect(message).toMatch(/composite/);
  });

  test('lenient handling ignores them with a warning and keeps the rest', () => {
    const req = parse(
      'Observation',
      { 'shoe-size': '42', 'code:text': 'hb', code: '718-7', _sort: 'colour', 'code-value-quantity': 'x' },
      { ...strict, lenient: true },
    );
    expect(req.filters.map((f) => f.name)).toEqual(['code']);
    expect(req.sort).toEqual([]);
    expect(req.ignored.map((i) => i.expression)).toEqual([
      ['shoe-size'],
      ['code:text'],
      ['_sort'],
      ['code-value-quantity'],
    ]);
    expect(req.ignored.every((i) => i.severity === 'warning' && i.code === 'not-supported')).toBe(true);
  });

  test('lenient handling still rejects invalid values of known parameters', () => {
    expect(errorOf(() => parse('Observation', { date: '2024-02-30' }, { ...strict, lenient: true })).status).toBe(400);
  });

  test('an empty value is ignored with a warning', () => {
    const req = parse('Observation', { code: '', status: 'final' });
    expect(req.filters.map((f) => f.param)).toEqual(['status']);
    expect(req.ignored[0]).toMatchObject({ severity: 'warning', expression: ['code'] });
  });

  test('_format and _pretty are left to the HTTP layer', () => {
    const req = parse('Observation', { _format: 'json', _pretty: 'true' });
    expect(req.filters).toEqual([]);
    expect(req.ignored).toEqual([]);
  });

  test('searching an unsupported resource type is rejected', () => {
    expect(errorOf(() => parse('Encounter', {})).status).toBe(400);
  });
});

describe('result parameters', () => {
  test('_count defaults, is capped at the maximum, and may be 0', () => {
    expect(parse('Observation', {}).count).toBe(20);
    expect(parse('Observation', { _count: '500' }).count).toBe(100);
    expect(parse('Observation', { _count: '0' }).count).toBe(0);
    expect(errorOf(() => parse('Observation', { _count: '-1' })).outcome.issue[0]!.expression).toEqual(['_count']);
    expect(errorOf(() => parse('Observation', { _count: 'ten' })).status).toBe(400);
  });

  test('_sort takes sortable parameters, - for descending, and always ends with _id', () => {
    const req = parse('Observation', { _sort: '-date,code' });
    expect(req.sort.map(({ param, dir }) => ({ param, dir }))).toEqual([
      { param: 'date', dir: -1 },
      { param: 'code', dir: 1 },
    ]);
    expect(buildSort(req)).toEqual({ 'so.date': -1, 'so.code': 1, _id: 1 });
    expect(buildSort(parse('Observation', {}))).toEqual({ _id: 1 });
    expect(buildSort(parse('Observation', { _sort: '-_lastUpdated' }))).toEqual({ lastUpdated: -1, _id: 1 });
    expect(buildSort(parse('Observation', { _sort: '-_id' }))).toEqual({ _id: -1 });
    expect(errorOf(() => parse('Observation', { _sort: 'colour' })).outcome.issue[0]!.expression).toEqual(['_sort']);
    expect(errorOf(() => parse('Observation', { _sort: 'code-value-quantity' })).status).toBe(400);
    expect(errorOf(() => parse('Observation', { '_sort:asc': 'date' })).outcome.issue[0]!.expression).toEqual([
      '_sort:asc',
    ]);
  });

  test('_include and _revinclude are returned ready to execute', () => {
    const report = parse('DiagnosticReport', {
      _include: ['DiagnosticReport:result', 'DiagnosticReport:subject:Patient'],
    });
    expect(report.include).toEqual([
      {
        sourceType: 'DiagnosticReport',
        param: 'result',
        field: 'sp.result',
        targetTypes: ['Observation'],
        iterate: false,
      },
      {
        sourceType: 'DiagnosticReport',
        param: 'subject',
        field: 'sp.subject',
        targetTypes: ['Patient'],
        iterate: false,
      },
    ]);
    expect(errorOf(() => parse('DiagnosticReport', { _revinclude: 'Observation:derived-from' })).status).toBe(400);
    const obs = parse('Observation', {
      _include: 'Observation:subject:Patient',
      _revinclude: 'DiagnosticReport:result',
      '_include:iterate': 'Patient:organization',
    });
    expect(obs.revinclude).toEqual([
      {
        sourceType: 'DiagnosticReport',
        param: 'result',
        field: 'sp.result',
        targetTypes: ['Observation'],
        iterate: false,
      },
    ]);
    expect(obs.include).toContainEqual({
      sourceType: 'Patient',
      param: 'organization',
      field: 'sp.organization',
      targetTypes: ['Organization'],
      iterate: true,
    });
  });

  test('_include=* expands to every reference parameter of the type', () => {
    const params = parse('DiagnosticReport', { _include: '*' }).include.map((i) => i.param);
    expect(params).toEqual(expect.arrayContaining(['subject', 'result', 'performer', 'based-on']));
  });

  test('invalid includes are rejected naming the parameter', () => {
    for (const value of [
      'Observation',
      'Observation:code',
      'Observation:subject:Organization',
      'Patient:organization',
    ]) {
      expect(errorOf(() => parse('Observation', { _include: value })).outcome.issue[0]!.expression).toEqual([
        '_include',
      ]);
    }
  });

  test('_total, _summary and _elements', () => {
    expect(parse('Observation', {}).total).toBe('none');
    expect(parse('Observation', { _total: 'accurate' }).total).toBe('accurate');
    expect(parse('Observation', { _total: 'estimate' }).total).toBe('none');
    expect(errorOf(() => parse('Observation', { _total: 'all' })).status).toBe(400);
    expect(parse('Observation', { _summary: 'count' }).summary).toBe('count');
    expect(errorOf(() => parse('Observation', { _summary: 'text' })).outcome.issue[0]!.code).toBe('not-supported');
    expect(parse('Observation', { _elements: 'code,valueQuantity' }).elements).toEqual(['code', 'valueQuantity']);
    expect(errorOf(() => parse('Observation', { _elements: 'code;drop' })).status).toBe(400);
  });
});

describe('keyset paging', () => {
  const docs = [
    stored(observation('a', { effectiveDateTime: '2024-03-05' })),
    stored(observation('b', { effectiveDateTime: '2024-03-05' })),
    stored(observation('c', { effectiveDateTime: '2024-03-07' })),
    stored(observation('d', {})),
    stored(observation('e', { effectiveDateTime: '2024-03-01' })),
    stored(observation('f', { effectiveDateTime: '2024-03-07' })),
  ];

  function sortDocs(all: Doc[], sort: Record<string, 1 | -1>): Doc[] {
    return [...all].sort((x, y) => {
      for (const [field, dir] of Object.entries(sort)) {
        const c = compare(getPath(x, field), getPath(y, field)) ?? 0;
        if (c !== 0) return c * dir;
      }
      return 0;
    });
  }

  async function page(all: Doc[], query: SearchQuery): Promise<{ ids: string[]; next?: string }> {
    const req = parse('Observation', query);
    const filter = await buildMongoFilter(registry, req, noChain);
    const after = req.cursor ? (cursorFilter(req, req.cursor) as Doc) : {};
    const hits = sortDocs(
      all.filter((d) => matches(d, filter) && matches(d, after)),
      buildSort(req),
    ).slice(0, req.count);
    const last = hits[hits.length - 1];
    return { ids: hits.map((d) => d.id as string), ...(last ? { next: encodeCursor(req, last) } : {}) };
  }

  async function pageThrough(all: Doc[], query: SearchQuery): Promise<string[][]> {
    const pages: string[][] = [];
    let cursor: string | undefined;
    for (;;) {
      const result = await page(all, cursor ? { ...query, _cursor: cursor } : query);
      if (result.ids.length === 0) return pages;
      pages.push(result.ids);
      cursor = result.next;
    }
  }

  test('pages through descending dates with ties broken by _id, missing dates last', async () => {
    expect(await pageThrough(docs, { _sort: '-date', _count: '2' })).toEqual([
      ['c', 'f'],
      ['a', 'b'],
      ['e', 'd'],
    ]);
  });

  test('pages through by _id by default, and by several keys', async () => {
    expect(await pageThrough(docs, { _count: '4' })).toEqual([
      ['a', 'b', 'c', 'd'],
      ['e', 'f'],
    ]);
    expect((await pageThrough(docs, { _sort: 'date,-_id', _count: '5' })).flat()).toEqual([
      'd',
      'e',
      'b',
      'a',
      'f',
      'c',
    ]);
  });

  test('the cursor filter selects strictly after the last document in the sort order', () => {
    const req = parse('Observation', { _sort: '-date' });
    const cursor = encodeCursor(req, docs[0]!);
    expect(cursorFilter(req, cursor)).toEqual({
      $or: [
        { 'so.date': { $lt: new Date('2024-03-04T16:00:00.000Z') } },
        { 'so.date': new Date('2024-03-04T16:00:00.000Z'), _id: { $gt: 'Observation/a' } },
      ],
    });
  });

  test('pages stay stable when resources are added before the cursor position', async () => {
    const first = await page(docs, { _sort: '-date', _count: '2' });
    const grown = [...docs, stored(observation('0-new', { effectiveDateTime: '2024-03-09' }))];
    const second = await page(grown, { _sort: '-date', _count: '2', _cursor: first.next! });
    expect(second.ids).toEqual(['a', 'b']);
  });

  test('a tampered or foreign cursor is a 400', async () => {
    const { next } = await page(docs, { _sort: '-date', _count: '2' });
    const tampered = `${next!.slice(0, -3)}xyz`;
    expect(
      errorOf(() => parse('Observation', { _sort: '-date', _cursor: tampered })).outcome.issue[0]!.expression,
    ).toEqual(['_cursor']);
    expect(errorOf(() => parse('Observation', { _sort: '-date', _cursor: 'not a cursor!' })).status).toBe(400);
    const payload = JSON.parse(Buffer.from(next!, 'base64url').toString()) as { k: unknown[] };
    payload.k[0] = 'yesterday';
    const wrongType = Buffer.from(JSON.stringify(payload)).toString('base64url');
    expect(errorOf(() => parse('Observation', { _sort: '-date', _cursor: wrongType })).status).toBe(400);
    expect(errorOf(() => parse('Observation', { _sort: 'date', _cursor: next! })).status).toBe(400);
    expect(errorOf(() => parse('Observation', { _sort: '-date', status: 'final', _cursor: next! })).status).toBe(400);
    // _count does not change which resources match, so it may change between pages.
    expect(parse('Observation', { _sort: '-date', _count: '5', _cursor: next! }).cursor).toBe(next);
  });
});
