/**
 * What the fuzzing suite sends: fast-check arbitraries of requests to every endpoint of the broker, as every role.
 * Resources come from the R4 JSON schema (schema-arbitrary.ts) and from realistic builders (valid results of the
 * demo hospitals), then are mutated: wrong types, huge and tiny numbers, deep and wide structures, control and non-BMP
 * characters, operator-looking keys, duplicate keys and odd encodings. Searches are built from the R4
 * search-parameter definitions the broker uses, with random modifiers, prefixes and combinations.
 */
import fc from 'fast-check';
import type { SearchRegistry } from '../../src/fhir/search/registry.js';
import { schemaResource } from './schema-arbitrary.js';

export type Role = 'anonymous' | 'his' | 'demo-his-hospital-b' | 'clinician' | 'bureau' | 'admin' | 'forged';
export const ROLES: Role[] = ['anonymous', 'his', 'demo-his-hospital-b', 'clinician', 'bureau', 'admin', 'forged'];

/** How the body goes on the wire: as JSON text, or bent (encodings, duplicate keys, literals JSON.stringify can't write). */
export type Wire =
  | 'json'
  | 'bom'
  | 'utf16'
  | 'utf16-unlabelled'
  | 'latin1'
  | 'gb18030-label'
  | 'duplicate-keys'
  | 'truncated'
  | 'trailing-garbage'
  | 'gzip-label'
  | 'form'
  | 'text-plain';

export interface FuzzRequest {
  /** What kind of request this is, for the counts the suite prints. */
  kind: string;
  role: Role;
  method: string;
  /** Path and query, as sent. */
  path: string;
  headers: Record<string, string | undefined>;
  /** A JSON value (rendered with `wire`), a raw string (sent as is) or nothing. */
  body?: { json: unknown; wire: Wire } | { raw: string; contentType: string };
  /** The error body the endpoint answers with. */
  errors: 'fhir' | 'oauth';
  /** CDS Hooks calls are authenticated by an EHR's JWT for this path (instead of a bearer access token). */
  cds?: boolean;
}

/** Replaced in the body text at send time by a value unique to the request (read back when a write is refused). */
export const MARK = '__FUZZ_MARK__';
export const MARK_SYSTEM = 'urn:huren:fuzz';
/** A string that the renderer turns into a bare JSON literal (a number JSON.stringify cannot write, a raw key). */
export const LITERAL = '__LITERAL__';

const HOSPITALS = ['Organization/demo-hospital-a', 'Organization/demo-hospital-b', 'Organization/demo-hospital-c'];
const WRITABLE_TYPES = ['Observation', 'DiagnosticReport', 'Patient', 'ServiceRequest', 'Organization'];
const ID_CARD = 'urn:oid:2.16.156.10011.1.1';
const LOINC_CODES = ['57021-8', '718-7', '4548-4', '2345-7', '1988-5', '24356-8', '36643-5', '29252-4', '11524-6'];

const role = fc.constantFrom<Role>(...ROLES);
const writerRole = fc.constantFrom<Role>('his', 'his', 'his', 'demo-his-hospital-b', 'admin', 'clinician', 'bureau');

/** A URL component: lone surrogates cannot be percent-encoded (URIError), so they become U+FFFD as in a browser. */
const wellFormed = (s: string) =>
  s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');

// ---- values ---------------------------------------------------------------------------------------------------

/** Strings a hostile or careless client sends: control, non-BMP and full-width characters, lone surrogates. */
export const nastyString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.constantFrom(
    '\u0000',
    '\u0007\u001b[31m',
    '\uD800',
    '\uDFFF\uD800',
    '𠀀𠀁𝕏😀',
    '王　小明',
    '阿卜杜·热合曼',
    ' leading',
    'trailing ',
    'a\r\nb',
    '\u202Eevil',
    '%00',
    '../../etc/passwd',
    '{"$gt":""}',
    "'; DROP TABLE resources; --",
    'Organization/demo-hospital-b',
    'x'.repeat(5000),
  ),
);

/** A resident ID number with its ISO 7064 MOD 11-2 check character (18 digits), sometimes a 15-digit old one. */
export const residentId: fc.Arbitrary<string> = fc
  .tuple(
    fc.constantFrom('370202', '370203', '110105'),
    fc.date({ min: new Date('1930-01-01'), max: new Date('2020-12-31'), noInvalidDate: true }),
    fc.integer({ min: 0, max: 999 }),
    fc.boolean(),
  )
  .map(([area, birth, seq, old]) => {
    const ymd = birth.toISOString().slice(0, 10).replace(/-/g, '');
    const s = String(seq).padStart(3, '0');
    if (old) return `${area}${ymd.slice(2)}${s}`;
    const body = `${area}${ymd}${s}`;
    const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const sum = [...body].reduce((acc, d, i) => acc + Number(d) * weights[i]!, 0);
    return body + '10X98765432'[sum % 11];
  });

const dateTime = fc
  .date({ min: new Date('2020-01-01'), max: new Date('2027-01-01'), noInvalidDate: true })
  .map((d) => `${new Date(d.getTime() + 8 * 3600_000).toISOString().slice(0, 19)}+08:00`);

const quantity = fc.record({
  value: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.double({ min: 0, max: 1000, noNaN: true })),
  unit: fc.constantFrom('g/L', 'mmol/L', '10*9/L', '%'),
  system: fc.constant('http://unitsofmeasure.org'),
  code: fc.constantFrom('g/L', 'mmol/L', '10*9/L', '%'),
});

const markIdentifier = fc.constantFrom(
  { system: MARK_SYSTEM, value: MARK },
  { system: 'https://hospital.example.org/result', value: MARK },
);

/** Text as Chinese reports and names really are: full-width spaces, the middle dot, characters outside the BMP. */
const cleanText = fc.constantFrom(
  '王小明',
  '阿卜杜·热合曼',
  '李　娜',
  'Zhang Wei',
  '血常规：白细胞计数正常。　建议复查。',
  '𠀀𠀁',
  '胸部CT平扫未见明显异常',
);

// ---- resources ------------------------------------------------------------------------------------------------

/** Realistic results, orders, patients and organizations, as the demo hospitals push them. */
function realistic(type: string, owner: string): fc.Arbitrary<Record<string, unknown>> {
  const subject = fc.constantFrom('Patient/fuzz-p1', 'Patient/fuzz-p2', 'Patient/unknown');
  const code = fc.constantFrom(...LOINC_CODES).map((c) => ({ coding: [{ system: 'http://loinc.org', code: c }] }));
  switch (type) {
    case 'Observation':
      return fc.record({
        resourceType: fc.constant('Observation'),
        identifier: markIdentifier.map((i) => [i]),
        status: fc.constantFrom('final', 'amended', 'preliminary', 'entered-in-error'),
        code,
        subject: subject.map((reference) => ({ reference })),
        effectiveDateTime: dateTime,
        performer: fc.constant([{ reference: owner }]),
        valueQuantity: quantity,
      });
    case 'DiagnosticReport':
      return fc.record({
        resourceType: fc.constant('DiagnosticReport'),
        identifier: markIdentifier.map((i) => [i]),
        status: fc.constantFrom('final', 'amended', 'partial'),
        code,
        subject: subject.map((reference) => ({ reference })),
        effectiveDateTime: dateTime,
        issued: dateTime.map((d) => d),
        performer: fc.constant([{ reference: owner }]),
        result: fc.array(
          fc.constantFrom('Observation/fuzz-o1', 'Observation/none').map((reference) => ({ reference })),
          { maxLength: 3 },
        ),
        conclusion: cleanText,
      });
    case 'Patient':
      return fc.record({
        resourceType: fc.constant('Patient'),
        identifier: fc.tuple(markIdentifier, residentId).map(([m, id]) => [m, { system: ID_CARD, value: id }]),
        name: fc.array(fc.record({ text: cleanText }), { maxLength: 2 }),
        gender: fc.constantFrom('male', 'female', 'unknown'),
        birthDate: fc
          .date({ min: new Date('1930-01-01'), max: new Date('2020-01-01'), noInvalidDate: true })
          .map((d) => d.toISOString().slice(0, 10)),
        managingOrganization: fc.constant({ reference: owner }),
      });
    case 'ServiceRequest':
      return fc.record({
        resourceType: fc.constant('ServiceRequest'),
        identifier: markIdentifier.map((i) => [i]),
        status: fc.constantFrom('active', 'draft', 'completed'),
        intent: fc.constant('order'),
        code,
        subject: subject.map((reference) => ({ reference })),
        requester: fc.constant({ reference: owner }),
      });
    default:
      return fc.record({
        resourceType: fc.constant('Organization'),
        id: fc.constant(owner.split('/')[1]!),
        identifier: markIdentifier.map((i) => [i]),
        name: cleanText,
      });
  }
}

/** The institution each role writes for (the demo clients). */
const OWN: Partial<Record<Role, string>> = {
  his: 'Organization/demo-hospital-a',
  'demo-his-hospital-b': 'Organization/demo-hospital-b',
};

/**
 * A resource of `type` as `who` would write it: realistic (its own institution's, mostly) or from the schema, then
 * (often) mutated.
 */
export function resourceOf(type: string, who: Role = 'his'): fc.Arbitrary<unknown> {
  const owner = fc.oneof(
    { weight: 4, arbitrary: fc.constant(OWN[who] ?? HOSPITALS[0]!) },
    { weight: 1, arbitrary: fc.constantFrom(...HOSPITALS) },
  );
  const base = fc.oneof(
    { weight: 3, arbitrary: owner.chain((o) => realistic(type, o)) },
    {
      weight: 2,
      arbitrary: schemaResource(type).map((r) => ({ ...r, identifier: [{ system: MARK_SYSTEM, value: MARK }] })),
    },
  );
  return fc.oneof(
    { weight: 1, arbitrary: base },
    { weight: 1, arbitrary: fc.tuple(base, mutations).map(([r, m]) => applyMutations(r, m)) },
  );
}

// ---- mutations ------------------------------------------------------------------------------------------------

const nested = (n: number): unknown => {
  let v: unknown = 'bottom';
  for (let i = 0; i < n; i++) v = i % 2 ? [v] : { n: v };
  return v;
};

/** What a mutation puts somewhere in a body. */
const replacement: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, '', [], {}, 'x', [null], { resourceType: 'Patient' }),
  fc.constantFrom(1e308, -1e308, 5e-324, -0, 2 ** 53 + 2, 0.1 + 0.2, 1e21),
  fc.double(),
  fc.constantFrom(
    `${LITERAL}1e400`,
    `${LITERAL}-1e400`,
    `${LITERAL}1e-400`,
    `${LITERAL}123456789012345678901234567890`,
  ),
  fc.integer({ min: 10, max: 120 }).map(nested),
  fc.integer({ min: 100, max: 2500 }).map((n) => Array.from({ length: n }, (_, i) => ({ value: `w${i}` }))),
  fc.integer({ min: 100, max: 3000 }).map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]))),
  nastyString,
  fc.constantFrom(1_100_000, 300_000).map((n) => 'x'.repeat(n)),
  fc.constantFrom(
    { $where: 'sleep(1000)' },
    { $gt: '' },
    { $ne: null },
    { $regex: '.*' },
    { constructor: { prototype: { polluted: true } } },
    { [`${LITERAL}"__proto__"`]: { polluted: true } },
    { reference: 'Organization/demo-hospital-b' },
    { reference: 'Patient/../../admin' },
  ),
);

interface Mutation {
  at: number;
  op: 'replace' | 'add-key';
  key: string;
  value: unknown;
}

const mutations: fc.Arbitrary<Mutation[]> = fc.array(
  fc.record({
    at: fc.nat(),
    op: fc.constantFrom<Mutation['op']>('replace', 'replace', 'add-key'),
    key: fc.oneof(
      fc.constantFrom(
        '$where',
        '$set',
        '__proto__',
        'constructor',
        'resourceType',
        'id',
        'meta',
        'performer',
        'owner',
        'tk',
        '_id',
      ),
      fc.string({ maxLength: 8 }),
    ),
    value: replacement,
  }),
  { minLength: 1, maxLength: 3 },
);

/** Applies mutations at positions of the value (containers and leaves, in walk order). */
export function applyMutations(value: unknown, ms: Mutation[]): unknown {
  let root = structuredClone(value);
  for (const m of ms) {
    const slots: { parent: Record<string, unknown> | unknown[] | undefined; key: string | number; node: unknown }[] =
      [];
    const walk = (node: unknown, parent: Record<string, unknown> | unknown[] | undefined, key: string | number) => {
      if (slots.length > 400) return;
      slots.push({ parent, key, node });
      if (Array.isArray(node)) node.forEach((c, i) => walk(c, node, i));
      else if (node && typeof node === 'object')
        for (const [k, c] of Object.entries(node)) walk(c, node as Record<string, unknown>, k);
    };
    walk(root, undefined, '');
    const slot = slots[m.at % slots.length]!;
    if (m.op === 'add-key') {
      const target = slot.node && typeof slot.node === 'object' && !Array.isArray(slot.node) ? slot.node : slot.parent;
      if (target && !Array.isArray(target)) (target as Record<string, unknown>)[m.key] = m.value;
      else if (slot.parent === undefined) root = m.value;
    } else if (slot.parent === undefined) root = m.value;
    else (slot.parent as Record<string | number, unknown>)[slot.key] = m.value;
  }
  return root;
}

export const wire: fc.Arbitrary<Wire> = fc.oneof(
  { weight: 12, arbitrary: fc.constant<Wire>('json') },
  {
    weight: 4,
    arbitrary: fc.constantFrom<Wire>(
      'bom',
      'utf16',
      'utf16-unlabelled',
      'latin1',
      'gb18030-label',
      'duplicate-keys',
      'truncated',
      'trailing-garbage',
      'gzip-label',
      'form',
      'text-plain',
    ),
  },
);

const jsonBody = (json: fc.Arbitrary<unknown>) => fc.record({ json, wire });

// ---- FHIR REST ------------------------------------------------------------------------------------------------

const idLike = fc.oneof(
  fc.constantFrom('fuzz-p1', 'fuzz-o1', 'demo-hospital-a', 'demo-hospital-b', 'unknown', '1'),
  fc.stringMatching(/^[A-Za-z0-9\-.]{1,64}$/),
  nastyString.map((v) => encodeURIComponent(wellFormed(v))),
  fc.constant('x'.repeat(65)),
);

const type = fc.constantFrom(...WRITABLE_TYPES);
const anyType = fc.oneof(
  { weight: 5, arbitrary: type },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'AuditEvent',
      'StructureDefinition',
      'CodeSystem',
      'Measure',
      'Basic',
      'patient',
      '$meta',
      '_history',
      'metadata',
    ),
  },
);

export const fhirCreate: fc.Arbitrary<FuzzRequest> = fc.tuple(type, writerRole).chain(([t, who]) =>
  fc.record({
    kind: fc.constant('fhir create'),
    role: fc.constant(who),
    method: fc.constant('POST'),
    path: fc.constant(`/fhir/${t}`),
    headers: fc.oneof(
      fc.constant({}),
      fc.constantFrom(
        { Prefer: 'return=minimal' },
        { 'If-None-Exist': `identifier=${MARK_SYSTEM}|${MARK}` },
        { 'If-None-Exist': '$where=1' },
      ),
    ),
    body: jsonBody(resourceOf(t, who)),
    errors: fc.constant<'fhir'>('fhir'),
  }),
);

export const fhirUpdate: fc.Arbitrary<FuzzRequest> = fc
  .tuple(
    type,
    fc.oneof({ weight: 3, arbitrary: fc.stringMatching(/^fuzz-[a-z0-9]{1,8}$/) }, { weight: 1, arbitrary: idLike }),
    writerRole,
    fc.boolean(),
  )
  .chain(([t, id, who, conditional]) =>
    fc.record({
      kind: fc.constant(conditional ? 'fhir conditional update' : 'fhir update'),
      role: fc.constant(who),
      method: fc.constant('PUT'),
      path: fc.constant(conditional ? `/fhir/${t}?identifier=${MARK_SYSTEM}|${MARK}` : `/fhir/${t}/${id}`),
      headers: fc.oneof(
        { weight: 3, arbitrary: fc.constant({}) },
        { weight: 1, arbitrary: fc.constantFrom({ 'If-Match': 'W/"1"' }, { 'If-Match': 'garbage' }) },
      ),
      body: jsonBody(
        resourceOf(t, who).map((r) =>
          r && typeof r === 'object' && !Array.isArray(r) && !conditional && t !== 'Organization' ? { ...r, id } : r,
        ),
      ),
      errors: fc.constant<'fhir'>('fhir'),
    }),
  );

export const fhirRead: fc.Arbitrary<FuzzRequest> = fc
  .tuple(
    anyType,
    idLike,
    fc.constantFrom('', '/_history', '/_history/1', '/_history/x', '/$validate', '/_history/1/extra'),
  )
  .chain(([t, id, suffix]) =>
    fc.record({
      kind: fc.constant('fhir read'),
      role,
      method: fc.constantFrom('GET', 'GET', 'GET', 'DELETE', 'HEAD', 'PATCH', 'OPTIONS'),
      path: fc.constantFrom(`/fhir/${t}/${id}${suffix}`, `/fhir/${t}/_history`, '/fhir/_history', '/fhir/metadata'),
      headers: fc.oneof(
        fc.constant({}),
        fc.constantFrom({ Accept: 'application/xml' }, { Accept: '*/*' }, { Prefer: 'handling=lenient' }),
      ),
      errors: fc.constant<'fhir'>('fhir'),
    }),
  );

const PREFIXES = ['', 'eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap', 'xx'];
const MODIFIERS = [
  '',
  '',
  '',
  ':missing',
  ':not',
  ':exact',
  ':contains',
  ':text',
  ':above',
  ':below',
  ':in',
  ':identifier',
  ':Patient',
  ':bogus',
];
const numberText = fc.oneof(
  fc.double({ noNaN: true }).map(String),
  fc.integer().map(String),
  fc.constantFrom(
    '1e400',
    '-1e400',
    '1e-400',
    '1e308',
    '0',
    '-0',
    '1.0000000000000000000001',
    'NaN',
    'Infinity',
    '0x10',
    '1e',
    '.5',
    '5.',
    '1e+5',
    '9'.repeat(400),
  ),
);
const dateText = fc.oneof(
  dateTime,
  fc.constantFrom(
    '2024',
    '2024-02',
    '2024-02-29',
    '2023-02-29',
    '2024-13-01',
    '99999-01-01',
    '0000-01-01',
    '2024-01-01T25:00:00Z',
    '2024-01-01T10:00',
    'today',
    '2024-01-01T10:00:00+15:00',
  ),
);

/** A value for a search parameter of `kind`, sometimes a wrong one. */
function valueFor(kind: string): fc.Arbitrary<string> {
  const prefixed = (v: fc.Arbitrary<string>) => fc.tuple(fc.constantFrom(...PREFIXES), v).map(([p, x]) => p + x);
  const specific: Record<string, fc.Arbitrary<string>> = {
    token: fc.oneof(
      fc.constantFrom(...LOINC_CODES).map((c) => `http://loinc.org|${c}`),
      residentId.map((id) => `${ID_CARD}|${id}`),
      fc.constantFrom('final', '|x', 'x|', '|', `${MARK_SYSTEM}|x`, 'a,b,c', 'a\\,b', 'male'),
    ),
    date: prefixed(dateText),
    number: prefixed(numberText),
    quantity: fc
      .tuple(prefixed(numberText), fc.constantFrom('', '|http://unitsofmeasure.org|g/L', '||mmol/L', '|a|b|c'))
      .map(([n, u]) => n + u),
    reference: fc.constantFrom(
      'Patient/fuzz-p1',
      'fuzz-p1',
      'Organization/demo-hospital-b',
      'http://x/fhir/Patient/1',
      'Patient/',
      '/',
      'Patient/1/_history/2',
    ),
    string: nastyString,
    uri: fc.constantFrom('http://loinc.org', 'urn:oid:1.2', 'not a uri', ''),
  };
  return fc.oneof({ weight: 4, arbitrary: specific[kind] ?? nastyString }, { weight: 1, arbitrary: nastyString });
}

/** A search on `type` built from its R4 search parameters, with random modifiers, combinations and result parameters. */
export function searchQuery(registry: SearchRegistry, searchType: string): fc.Arbitrary<string> {
  const params = [...(registry.params.get(searchType)?.values() ?? [])];
  const param = params.length
    ? fc
        .constantFrom(...params)
        .chain((p) =>
          fc.tuple(fc.constantFrom(...MODIFIERS), valueFor(p.type)).map(([mod, v]) => [`${p.code}${mod}`, v] as const),
        )
    : fc.constant(['_id', 'x'] as const);
  const result = fc.oneof(
    fc
      .tuple(
        fc.constantFrom(
          '_count',
          '_total',
          '_summary',
          '_sort',
          '_include',
          '_revinclude',
          '_elements',
          '_format',
          '_cursor',
          '_pretty',
          '_since',
        ),
        nastyString,
      )
      .map(([k, v]) => [k, v] as const),
    fc.constantFrom(
      ['_count', '0'],
      ['_count', '1000000'],
      ['_count', '-1'],
      ['_total', 'accurate'],
      ['_summary', 'count'],
      ['_sort', '-date'],
      ['_sort', '_lastUpdated,-_id'],
      ['_include', `${searchType}:subject`],
      ['_include', '*'],
      ['_revinclude', 'Observation:subject'],
      ['_format', 'xml'],
      ['patient.identifier', `${ID_CARD}|370202196803151238`],
      ['subject:Patient.name', '王'],
      ['$where', 'sleep(1000)'],
      ['unknown-param', 'x'],
      ['_id[$ne]', '1'],
    ) as fc.Arbitrary<readonly [string, string]>,
  );
  return fc
    .array(fc.oneof({ weight: 3, arbitrary: param }, { weight: 1, arbitrary: result }), { maxLength: 6 })
    .map((pairs) =>
      pairs
        .map(([k, v]) => `${encodeURIComponent(k).replace(/%3A/g, ':')}=${encodeURIComponent(wellFormed(v))}`)
        .join('&'),
    );
}

export function fhirSearch(registry: SearchRegistry): fc.Arbitrary<FuzzRequest> {
  return fc
    .constantFrom(...WRITABLE_TYPES, 'AuditEvent', 'CodeSystem', 'StructureDefinition')
    .chain((t) => fc.tuple(fc.constant(t), searchQuery(registry, t), fc.boolean(), role, fc.boolean()))
    .map(([t, query, post, who, lenient]) => ({
      kind: post ? 'fhir search (POST _search)' : 'fhir search',
      role: who,
      method: post ? 'POST' : 'GET',
      path: post ? `/fhir/${t}/_search` : `/fhir/${t}?${query}`,
      headers: lenient ? { Prefer: 'handling=lenient' } : {},
      ...(post ? { body: { raw: query, contentType: 'application/x-www-form-urlencoded' } } : {}),
      errors: 'fhir' as const,
    }));
}

// ---- bundles --------------------------------------------------------------------------------------------------

/** Transaction and batch Bundles whose entries reference each other through urn:uuid fullUrls. */
export const fhirBundle: fc.Arbitrary<FuzzRequest> = writerRole.chain((who) =>
  fc
    .record({
      bundleType: fc.constantFrom('transaction', 'transaction', 'transaction', 'batch', 'batch', 'collection', 'bogus'),
      entries: fc.array(
        fc.record({
          method: fc.constantFrom('POST', 'POST', 'POST', 'POST', 'PUT', 'PUT', 'GET', 'DELETE', 'PATCH'),
          uuid: fc.uuid(),
          ifNoneExist: fc.boolean(),
        }),
        { minLength: 1, maxLength: 8 },
      ),
      resources: fc.array(
        fc
          .oneof(
            { weight: 4, arbitrary: fc.constant(OWN[who] ?? HOSPITALS[0]!) },
            { weight: 1, arbitrary: fc.constantFrom(...HOSPITALS) },
          )
          .chain((o) => fc.constantFrom(...WRITABLE_TYPES.slice(0, 4)).chain((t) => realistic(t, o))),
        { minLength: 8, maxLength: 8 },
      ),
      mutated: fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: mutations }),
      w: wire,
    })
    .map(({ bundleType, entries, resources, mutated, w }) => {
      const bodies = entries.map((_e, i) => ({ ...resources[i]! }) as Record<string, unknown>);
      const fullUrlOf = (type: string) => {
        const i = bodies.findIndex((r, j) => r.resourceType === type && entries[j]!.method === 'POST');
        return i < 0 ? undefined : `urn:uuid:${entries[i]!.uuid}`;
      };
      const entry = entries.map((e, i) => {
        const resource = bodies[i]!;
        // References to other entries of the bundle, resolved by the broker (R4 §3.1.0.11.2): a result's subject
        // to the Patient created with it, a report's results to the Observation created with it.
        const patient = fullUrlOf('Patient');
        const observation = fullUrlOf('Observation');
        if ('subject' in resource && patient) resource.subject = { reference: patient };
        if (resource.resourceType === 'DiagnosticReport' && observation) resource.result = [{ reference: observation }];
        const url =
          e.method === 'POST'
            ? String(resource.resourceType)
            : e.method === 'GET'
              ? `${String(resource.resourceType)}?identifier=${MARK_SYSTEM}|x`
              : `${String(resource.resourceType)}/fuzz-${i}`;
        if (e.method === 'PUT') resource.id = `fuzz-${i}`;
        return {
          fullUrl: `urn:uuid:${e.uuid}`,
          ...(e.method === 'GET' || e.method === 'DELETE' ? {} : { resource }),
          request: {
            method: e.method,
            url,
            ...(e.ifNoneExist && e.method === 'POST' ? { ifNoneExist: `identifier=${MARK_SYSTEM}|${MARK}` } : {}),
          },
        };
      });
      const bundle: unknown = { resourceType: 'Bundle', type: bundleType, entry };
      return {
        kind: `fhir ${bundleType === 'batch' ? 'batch' : 'transaction'}`,
        role: who,
        method: 'POST',
        path: '/fhir',
        headers: {},
        body: { json: mutated ? applyMutations(bundle, mutated) : bundle, wire: w },
        errors: 'fhir' as const,
      };
    }),
);

// ---- operations -----------------------------------------------------------------------------------------------

const patientParam = residentId.map((value) => ({ name: 'patient', valueIdentifier: { system: ID_CARD, value } }));
const showcase = { name: 'patient', valueIdentifier: { system: ID_CARD, value: '370202196803151238' } };
const codeParam = fc.oneof(
  fc.constantFrom(...LOINC_CODES).map((code) => ({ name: 'code', valueCoding: { system: 'http://loinc.org', code } })),
  fc.constantFrom({
    name: 'code',
    valueCoding: { system: 'https://demo-hospital-b.example.org/fhir/CodeSystem/his-order', code: 'XCG' },
  }),
  fc.constantFrom(
    { name: 'code', valueCoding: { code: 'x' } },
    { name: 'code', valueCoding: { system: 'urn:x', code: '' } },
  ),
);
const requesterParam = fc
  .constantFrom(...HOSPITALS, 'Patient/x', 'Organization/none')
  .map((reference) => ({ name: 'requester', valueReference: { reference } }));

export const reuseCheck: fc.Arbitrary<FuzzRequest> = fc
  .record({
    patient: fc.oneof(fc.constant(showcase), patientParam),
    codes: fc.array(codeParam, { minLength: 1, maxLength: 4 }),
    requester: requesterParam,
    extra: fc.array(
      fc.constantFrom(
        { name: 'at', valueDateTime: '2026-12-01T10:00:00+08:00' },
        { name: 'context', valueCode: 'emergency' },
        { name: 'context', valueCode: 'whenever' },
        { name: 'bogus', valueString: 'x' },
        { name: 'at', valueDateTime: '99999' },
      ),
      { maxLength: 2 },
    ),
    mutated: fc.option(mutations, { nil: undefined, freq: 2 }),
    get: fc.boolean(),
    who: fc.constantFrom<Role>(
      'demo-his-hospital-b',
      'demo-his-hospital-b',
      'clinician',
      'his',
      'bureau',
      'anonymous',
      'admin',
    ),
    w: wire,
    q: fc.tuple(residentId, fc.constantFrom(...LOINC_CODES), nastyString),
  })
  .map(({ patient, codes, requester, extra, mutated, get, who, w, q }) => {
    if (get) {
      const [id, code, junk] = q;
      const query = new URLSearchParams({
        patient: `${ID_CARD}|${id}`,
        code: `http://loinc.org|${code}`,
        requester: 'Organization/demo-hospital-b',
      });
      if (junk.length % 3 === 0) query.append('at', junk);
      return {
        kind: 'fhir $reuse-check (GET)',
        role: who,
        method: 'GET',
        path: `/fhir/$reuse-check?${query}`,
        headers: {},
        errors: 'fhir' as const,
      };
    }
    const body: unknown = { resourceType: 'Parameters', parameter: [patient, ...codes, requester, ...extra] };
    return {
      kind: 'fhir $reuse-check',
      role: who,
      method: 'POST',
      path: '/fhir/$reuse-check',
      headers: {},
      body: { json: mutated ? applyMutations(body, mutated) : body, wire: w },
      errors: 'fhir' as const,
    };
  });

export const reuseDecision: fc.Arbitrary<FuzzRequest> = fc
  .record({
    check: fc.oneof(fc.uuid(), nastyString),
    item: fc.constantFrom('HR-LAB-CBC', 'HR-LAB-HBA1C', 'nope'),
    decision: fc.constantFrom('viewed', 'accepted', 'declined', 'maybe'),
    reason: fc.constantFrom('condition-changed', 'other', 'emergency', 'bogus'),
    mutated: fc.option(mutations, { nil: undefined }),
    who: fc.constantFrom<Role>('demo-his-hospital-b', 'clinician', 'his', 'bureau', 'admin', 'anonymous'),
  })
  .map(({ check, item, decision, reason, mutated, who }) => {
    const body: unknown = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'check', valueString: check },
        { name: 'item', valueCoding: { system: 'https://huren.example.org/fhir/CodeSystem/hr-catalogue', code: item } },
        { name: 'decision', valueCode: decision },
        {
          name: 'reason',
          valueCoding: { system: 'https://huren.example.org/fhir/CodeSystem/hr-decline-reason', code: reason },
        },
        { name: 'practitioner', valueReference: { reference: 'Practitioner/dr-b' } },
      ],
    };
    return {
      kind: 'fhir $reuse-decision',
      role: who,
      method: 'POST',
      path: '/fhir/$reuse-decision',
      headers: {},
      body: { json: mutated ? applyMutations(body, mutated) : body, wire: 'json' as Wire },
      errors: 'fhir' as const,
    };
  });

// ---- CDS Hooks ------------------------------------------------------------------------------------------------

export const cdsHook: fc.Arbitrary<FuzzRequest> = fc
  .record({
    service: fc.constantFrom('huren-reuse-order-select', 'huren-reuse-order-sign', 'unknown-service'),
    feedback: fc.boolean(),
    codes: fc.array(fc.constantFrom('XCG', 'XBCT', 'BOGUS'), { minLength: 1, maxLength: 3 }),
    withPrefetch: fc.boolean(),
    mutated: fc.option(mutations, { nil: undefined }),
    authenticated: fc.constantFrom(true, true, true, false),
    discovery: fc.boolean(),
  })
  .map(({ service, feedback, codes, withPrefetch, mutated, authenticated, discovery }) => {
    if (discovery && !feedback) {
      return {
        kind: 'cds discovery',
        role: 'anonymous' as Role,
        method: 'GET',
        path: '/cds-services',
        headers: {},
        errors: 'fhir' as const,
      };
    }
    const orders = codes.map((code, i) => ({
      resourceType: 'ServiceRequest',
      id: `draft-${i}`,
      status: 'draft',
      intent: 'order',
      code: { coding: [{ system: 'https://demo-hospital-b.example.org/fhir/CodeSystem/his-order', code }] },
      subject: { reference: 'Patient/fuzz-p1' },
    }));
    const hook = service.endsWith('select') ? 'order-select' : 'order-sign';
    const body: unknown = feedback
      ? {
          feedback: [
            {
              card: 'card-id',
              outcome: 'overridden',
              overrideReason: { reason: { code: 'other' } },
              outcomeTimestamp: '2026-12-07T10:00:00Z',
            },
          ],
        }
      : {
          hook,
          hookInstance: '2f1c4a0e-1a7e-4b0c-9f0a-000000000000',
          context: {
            userId: 'Practitioner/dr-b',
            patientId: 'fuzz-p1',
            selections: orders.map((o) => `ServiceRequest/${o.id}`),
            draftOrders: {
              resourceType: 'Bundle',
              type: 'collection',
              entry: orders.map((resource) => ({ resource })),
            },
          },
          ...(withPrefetch
            ? {
                prefetch: {
                  patient: {
                    resourceType: 'Patient',
                    id: 'fuzz-p1',
                    identifier: [{ system: ID_CARD, value: '370202196803151238' }],
                  },
                },
              }
            : {}),
        };
    return {
      kind: feedback ? 'cds feedback' : 'cds hook',
      role: (authenticated ? 'anonymous' : 'forged') as Role,
      cds: authenticated,
      method: 'POST',
      path: `/cds-services/${service}${feedback ? '/feedback' : ''}`,
      headers: {},
      body: { json: mutated ? applyMutations(body, mutated) : body, wire: 'json' as Wire },
      errors: 'fhir' as const,
    };
  });

// ---- /auth/token, reports, administration ---------------------------------------------------------------------

export const authToken: fc.Arbitrary<FuzzRequest> = fc
  .record({
    fields: fc.dictionary(
      fc.constantFrom(
        'grant_type',
        'client_assertion_type',
        'client_assertion',
        'scope',
        'code',
        'code_verifier',
        'redirect_uri',
        'client_id',
        '$where',
      ),
      fc.oneof(
        fc.constantFrom(
          'client_credentials',
          'authorization_code',
          'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          'system/*.rs',
          'eyJhbGciOiJub25lIn0.eyJpc3MiOiJkZW1vLWFkbWluIn0.',
          'a.b.c',
        ),
        nastyString,
      ),
    ),
    contentType: fc.constantFrom(
      'application/x-www-form-urlencoded',
      'application/x-www-form-urlencoded; charset=utf-16',
      'application/json',
      'text/plain',
      '',
    ),
    big: fc.constantFrom(0, 0, 0, 70_000),
  })
  .map(({ fields, contentType, big }) => {
    const form =
      new URLSearchParams(fields as Record<string, string>).toString() + (big ? `&pad=${'a'.repeat(big)}` : '');
    return {
      kind: 'auth token',
      role: 'anonymous' as Role,
      method: 'POST',
      path: '/auth/token',
      headers: {},
      body: { raw: form, contentType },
      errors: 'oauth' as const,
    };
  });

export const reports: fc.Arbitrary<FuzzRequest> = fc
  .record({
    from: fc.oneof(fc.constantFrom('2025-01-01', '2025-01', '2025', '2024-02-30', '1900-01-01', '99999'), nastyString),
    to: fc.constantFrom('2026-12-31', '2026-12', '2030', '2025-01-01', ''),
    by: fc.constantFrom(
      'organization',
      'category,item',
      'month,organization,category,item',
      'organization,department,practitioner',
      'practitioner,practitioner',
      'bogus',
      '',
    ),
    format: fc.constantFrom('json', 'csv', 'xml'),
    lang: fc.constantFrom('zh', 'en', 'fr'),
    organization: fc.option(fc.constantFrom('demo-hospital-a', 'Organization/demo-hospital-b', 'nope'), {
      nil: undefined,
    }),
    who: role,
    what: fc.constantFrom('savings', 'measure', 'cases', 'case'),
    caseId: fc.oneof(fc.constantFrom('chk|HR-LAB-CBC|decision', 'x|y|correction'), nastyString),
  })
  .map(({ from, to, by, format, lang, organization, who, what, caseId }) => {
    const q = new URLSearchParams({ from, to, by, format, lang });
    if (organization) q.set('organization', organization);
    if (what === 'measure') {
      return {
        kind: 'fhir $evaluate-measure',
        role: who,
        method: 'GET',
        path: `/fhir/Measure/reuse-savings/$evaluate-measure?periodStart=${encodeURIComponent(wellFormed(from))}&periodEnd=${encodeURIComponent(to)}`,
        headers: {},
        errors: 'fhir' as const,
      };
    }
    if (what === 'cases' || what === 'case') {
      q.delete('by');
      return {
        kind: 'reports supervision',
        role: who,
        method: 'GET',
        path:
          what === 'cases'
            ? `/reports/supervision/cases?${q}`
            : `/reports/supervision/cases/${encodeURIComponent(wellFormed(caseId))}`,
        headers: {},
        errors: 'fhir' as const,
      };
    }
    return {
      kind: 'reports savings',
      role: who,
      method: 'GET',
      path: `/reports/savings?${q}`,
      headers: {},
      errors: 'fhir' as const,
    };
  });

export const admin: fc.Arbitrary<FuzzRequest> = fc
  .record({
    route: fc.constantFrom(
      ['GET', '/admin/rules'],
      ['GET', '/admin/rules/catalogue'],
      ['GET', '/admin/rules/_history'],
      ['PUT', '/admin/rules/acceptance-matrix'],
      ['PUT', '/admin/rules/decline-reasons'],
      ['PUT', '/admin/rules/bogus'],
      ['GET', '/admin/sync/endpoints'],
      ['GET', '/admin/sync/status'],
      ['PUT', '/admin/sync/endpoints/fuzz-endpoint'],
      ['DELETE', '/admin/sync/endpoints/fuzz-endpoint'],
      ['POST', '/admin/sync/endpoints/unknown/$sync'],
      ['POST', '/subscriptions/notify/unknown'],
      ['GET', '/admin/unknown'],
    ) as fc.Arbitrary<[string, string]>,
    body: schemaResource('Parameters').chain((p) =>
      fc.oneof(
        fc.constant<unknown>(p),
        fc.tuple(fc.constant<unknown>(p), mutations).map(([v, m]) => applyMutations(v, m)),
        fc.constant<unknown>({
          institution: 'Organization/demo-hospital-a',
          baseUrl: 'http://127.0.0.1:9/fhir',
          auth: { type: 'none' },
          scheduleMinutes: 0,
        }),
      ),
    ),
    who: fc.constantFrom<Role>('admin', 'admin', 'his', 'bureau', 'anonymous', 'forged'),
    ifMatch: fc.constantFrom(undefined, 'W/"1"', '*', 'garbage'),
    w: wire,
  })
  .map(({ route: [method, path], body, who, ifMatch, w }) => ({
    kind: `admin ${method}`,
    role: who,
    method,
    path,
    headers: ifMatch ? { 'If-Match': ifMatch } : {},
    ...(method === 'PUT' || method === 'POST'
      ? { body: { json: body, wire: path.startsWith('/admin/rules') && w === 'json' ? w : w } }
      : {}),
    errors: 'fhir' as const,
  }));

/** Requests that are odd at the HTTP level: methods, paths, content types, header sizes and URL lengths. */
export const oddHttp: fc.Arbitrary<FuzzRequest> = fc
  .record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE'),
    path: fc.oneof(
      fc.constantFrom(
        '/',
        '/fhir',
        '/fhir/',
        '//fhir//Patient',
        '/fhir/Patient/../../admin/rules',
        '/%2e%2e/admin',
        '/fhir/%00',
        '/.well-known/smart-configuration',
        '/auth/jwks',
        '/healthz',
        '/readyz',
        '/metrics',
        '/dashboard',
        '/app',
        '/ui/demo-session',
        '/auth/launch',
        '/auth/authorize?response_type=code',
      ),
      fc.integer({ min: 7000, max: 12_000 }).map((n) => `/fhir/Patient?name=${'a'.repeat(n)}`),
      fc
        .integer({ min: 150, max: 400 })
        .map((n) => `/fhir/Patient?${Array.from({ length: n }, () => '_id=a').join('&')}`),
    ),
    headers: fc.constantFrom<Record<string, string>>(
      {},
      { 'Content-Type': 'application/fhir+json; charset=utf-16' },
      { 'Content-Type': 'application/json; charset=iso-8859-1' },
      { 'Content-Type': 'application/x-www-form-urlencoded; charset=latin1' },
      { 'Content-Encoding': 'gzip', 'Content-Type': 'application/fhir+json' },
      { 'Content-Encoding': 'compress', 'Content-Type': 'application/fhir+json' },
      { 'X-Padding': 'x'.repeat(70_000) },
      { Authorization: 'Bearer ' + 'a'.repeat(4000) },
      { Authorization: 'Basic YWRtaW46YWRtaW4=' },
      { 'X-Request-Id': '../../etc' },
      { Accept: 'application/fhir+xml' },
    ),
    body: fc.option(fc.constantFrom('{', '[]', 'null', '"x"', '{"resourceType":"Patient"}', '\u0000\u0001'), {
      nil: undefined,
    }),
    who: role,
  })
  .map(({ method, path, headers, body, who }) => ({
    kind: 'odd http',
    role: who,
    method,
    path,
    headers,
    ...(body !== undefined && method !== 'GET' && method !== 'HEAD'
      ? { body: { raw: body, contentType: headers['Content-Type'] ?? 'application/fhir+json' } }
      : {}),
    errors: path.startsWith('/auth/token') ? ('oauth' as const) : ('fhir' as const),
  }));
