import type { OperationOutcome } from 'fhir/r4';
import { describe, expect, test } from 'vitest';
import { assertJsonLimits, charsetOf, parseJsonBody, type JsonLimits } from '../../src/fhir/json-limits.js';
import { OperationOutcomeError } from '../../src/fhir/outcomes.js';

const LIMITS: JsonLimits = { maxDepth: 8, maxArrayItems: 10, maxBundleEntries: 20, maxStringLength: 1000 };

/** The refusal a body gets, or undefined when it is accepted. */
function refusalOf(body: unknown, limits = LIMITS): { status: number; outcome: OperationOutcome } | undefined {
  try {
    assertJsonLimits(body, limits);
    return undefined;
  } catch (err) {
    if (!(err instanceof OperationOutcomeError)) throw err;
    return { status: err.status, outcome: err.outcome };
  }
}

const identifiers = (n: number) => Array.from({ length: n }, (_, i) => ({ value: `id-${i}` }));
const entries = (n: number, resource: object = { resourceType: 'Patient' }) =>
  Array.from({ length: n }, () => ({ resource, request: { method: 'POST', url: 'Patient' } }));

describe('request body limits', () => {
  test('a resource with 100 000 identifiers is refused with 413 naming Patient.identifier', () => {
    const refused = refusalOf({ resourceType: 'Patient', identifier: identifiers(100_000) });
    expect(refused?.status).toBe(413);
    const issue = refused!.outcome.issue[0];
    expect(issue.code).toBe('too-costly');
    expect(issue.expression).toEqual(['Patient.identifier']);
    expect(issue.diagnostics).toMatch(/Patient\.identifier has 100000 items; at most 10/);
  });

  test('arrays up to the limit are accepted', () => {
    expect(refusalOf({ resourceType: 'Patient', identifier: identifiers(10), name: [{ given: ['a', 'b'] }] })).toBe(
      undefined,
    );
  });

  test('Bundle.entry may be as long as the bundle limit, every other array only as long as the array limit', () => {
    expect(refusalOf({ resourceType: 'Bundle', type: 'transaction', entry: entries(20) })).toBe(undefined);
    const over = refusalOf({ resourceType: 'Bundle', type: 'transaction', entry: entries(21) });
    expect(over?.status).toBe(413);
    expect(over?.outcome.issue[0].expression).toEqual(['Bundle.entry']);
    expect(over?.outcome.issue[0].diagnostics).toMatch(/21 entries; at most 20/);
    // `entry` of anything but a Bundle is an ordinary array.
    expect(refusalOf({ resourceType: 'Parameters', entry: entries(11) })?.outcome.issue[0].expression).toEqual([
      'Parameters.entry',
    ]);
  });

  test('an array inside a bundle entry is named by its path from the Bundle', () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [...entries(2), ...entries(1, { resourceType: 'Observation', identifier: identifiers(11) })],
    };
    expect(refusalOf(bundle)?.outcome.issue[0].expression).toEqual(['Bundle.entry[2].resource.identifier']);
  });

  test('a Bundle nested in another body gets the bundle limit for its entries too', () => {
    const hook = { hook: 'order-sign', context: { draftOrders: { resourceType: 'Bundle', entry: entries(15) } } };
    expect(refusalOf(hook)).toBe(undefined);
    const many = { ...hook, context: { ...hook.context, codes: identifiers(11) } };
    expect(refusalOf(many)?.outcome.issue[0].expression).toEqual(['context.codes']);
  });

  test('nesting deeper than the limit is refused with 400 naming where it goes too deep', () => {
    let deep: Record<string, unknown> = { value: 'x' };
    for (let i = 0; i < 8; i++) deep = { nested: deep };
    const refused = refusalOf({ resourceType: 'Observation', extension: [{ deep }] });
    expect(refusalOf({ resourceType: 'Observation', extension: [{ url: 'x' }] })).toBe(undefined);
    expect(refused?.status).toBe(400);
    expect(refused?.outcome.issue[0].diagnostics).toMatch(/nested deeper than 8 levels/);
    expect(refused?.outcome.issue[0].expression?.[0]).toMatch(/^Observation\.extension\[0\]\.deep\.nested\.nested/);
  });

  test('a body nested 100 000 levels deep is refused without exhausting the stack', () => {
    const text = '['.repeat(100_000) + ']'.repeat(100_000);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return; // this engine refuses it at parse time already
    }
    expect(refusalOf(parsed, { ...LIMITS, maxDepth: 64 })?.status).toBe(400);
  });

  test('a top-level array over the limit is refused without an expression', () => {
    const refused = refusalOf(identifiers(11));
    expect(refused?.status).toBe(413);
    expect(refused?.outcome.issue[0].expression).toBeUndefined();
    expect(refused?.outcome.issue[0].diagnostics).toMatch(/^The body has 11 items/);
  });

  test('scalars and null are accepted as they are', () => {
    for (const body of [null, 3, 'text', true]) expect(refusalOf(body)).toBe(undefined);
  });

  test('a number that JSON.parse turns into Infinity is refused with 400 naming the element', () => {
    const parsed = JSON.parse('{"resourceType":"Observation","valueQuantity":{"value":1e400}}') as unknown;
    const refused = refusalOf(parsed);
    expect(refused?.status).toBe(400);
    expect(refused?.outcome.issue[0].expression).toEqual(['Observation.valueQuantity.value']);
    expect(refused?.outcome.issue[0].diagnostics).toMatch(/numbers must be finite/);
    expect(refusalOf(JSON.parse('[-1e400]'))?.outcome.issue[0].diagnostics).toMatch(/out of range/);
    expect(refusalOf(JSON.parse('1e400'))?.status).toBe(400);
    expect(refusalOf({ resourceType: 'Observation', valueQuantity: { value: 1.7e308 } })).toBe(undefined);
  });

  test('strings and keys longer than the limit are refused with 413 naming the element', () => {
    const refused = refusalOf({ resourceType: 'Patient', name: [{ text: 'x'.repeat(1001) }] });
    expect(refused?.status).toBe(413);
    expect(refused?.outcome.issue[0].expression).toEqual(['Patient.name[0].text']);
    expect(refused?.outcome.issue[0].diagnostics).toMatch(/1001 characters; at most 1000/);
    expect(refusalOf({ resourceType: 'Patient', ['k'.repeat(1001)]: 1 })?.status).toBe(413);
    expect(refusalOf({ resourceType: 'Patient', name: [{ text: 'x'.repeat(1000) }] })).toBe(undefined);
  });
});

describe('reading a request body', () => {
  const body = Buffer.from('{"resourceType":"Patient","name":[{"text":"王　小明"}]}', 'utf8');

  test('UTF-8 with or without a charset and with a byte order mark is read as sent', () => {
    const expected = { resourceType: 'Patient', name: [{ text: '王　小明' }] };
    expect(parseJsonBody(body, 'application/fhir+json', LIMITS)).toEqual(expected);
    expect(parseJsonBody(body, 'application/fhir+json; charset="UTF-8"', LIMITS)).toEqual(expected);
    expect(parseJsonBody(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body]), undefined, LIMITS)).toEqual(expected);
  });

  test('a body declared in another charset is refused with 415 instead of being misread as UTF-8', () => {
    const utf16 = Buffer.from('{"resourceType":"Patient"}', 'utf16le');
    for (const type of ['application/fhir+json; charset=utf-16', 'application/json;charset=GB18030']) {
      const err = (() => {
        try {
          parseJsonBody(utf16, type, LIMITS);
        } catch (e) {
          return e as OperationOutcomeError;
        }
      })();
      expect(err?.status).toBe(415);
      expect(err?.outcome.issue[0].diagnostics).toMatch(/not supported; send the JSON body in UTF-8/);
    }
    expect(charsetOf('application/json; charset=UTF-16LE')).toBe('utf-16le');
  });

  test('bytes that are not UTF-8 are a 400, not text with replacement characters', () => {
    const gb18030 = Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xcd, 0xf5, 0x22, 0x7d]); // {"a":"王"} in GBK
    expect(() => parseJsonBody(gb18030, 'application/json', LIMITS)).toThrow(/not valid UTF-8/);
  });
});

describe('characters FHIR strings may not hold', () => {
  test('a NUL or another control character in a value or a key is a 400 naming the element (found by the fuzzing suite)', () => {
    const refused = refusalOf({ resourceType: 'DiagnosticReport', conclusion: '\u0000' });
    expect(refused?.status).toBe(400);
    expect(refused?.outcome.issue[0].expression).toEqual(['DiagnosticReport.conclusion']);
    expect(refused?.outcome.issue[0].diagnostics).toMatch(/control character/);
    expect(refusalOf({ resourceType: 'Patient', name: [{ text: 'a\u001bb' }] })?.status).toBe(400);
    expect(refusalOf({ resourceType: 'Patient', ['a\u0000']: 1 })?.status).toBe(400);
    // Tab, CR and LF are allowed, and so are full-width spaces and characters outside the BMP.
    expect(refusalOf({ resourceType: 'Patient', name: [{ text: '王\t小明\r\n　𠀀' }] })).toBe(undefined);
  });
});
