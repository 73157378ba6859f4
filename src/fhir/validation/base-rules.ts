import type { OperationOutcomeIssue } from 'fhir/r4';
import { issue } from '../outcomes.js';
import type { CoreModel, NodeDefinition, Slot } from './core-model.js';
import { explainImpossibleDate } from './dates.js';
import type { Invariant, InvariantEnv } from './invariants.js';
import { describeJsonType, isObject, quote, type JsonObject } from './json.js';
import { describeNotInValueSet, isInValueSet } from './terminology.js';

/**
 * Layer 2: the rules of the R4 base definitions that the JSON schema cannot express, checked in one walk over the
 * resource guided by the StructureDefinition snapshots: real calendar dates, minimum cardinalities, one type per
 * choice element, required bindings without a schema enum, invariants (FHIRPath) and the JSON rule that values
 * are never empty (FHIR R4 json.html: no empty objects, arrays or strings, and no null; FHIR
 * allows null inside an array of primitives to line it up with its `_` array, but the R4 schema rejects that too).
 *
 * Elements unknown to the definitions are skipped: the schema has already reported them.
 */

/** A resource met during the walk (the validated one, contained ones, Bundle entries). */
export interface FoundResource {
  resource: JsonObject;
  expression: string;
  env: InvariantEnv;
}

/**
 * An extension met during the walk, with the names of the element it extends (FHIR R4 defining-extensions.html#context):
 * its path (`Patient.birthDate`, `Observation.component`) first, then its type and the types that type specialises
 * (`date`; `Age`, `Quantity`; `Observation`, `DomainResource`, `Resource`).
 */
export interface FoundExtension {
  extension: JsonObject;
  expression: string;
  context: string[];
  env: InvariantEnv;
}

/** The R4 data types that are constrained Quantities (FHIR R4 datatypes.html#quantity): an extension of Quantity fits. */
const QUANTITY_TYPES = new Set(['Age', 'Count', 'Distance', 'Duration', 'MoneyQuantity', 'SimpleQuantity']);

function contextsOf(slot: Slot): string[] {
  const names = [slot.path, slot.childrenPath, slot.type];
  if (QUANTITY_TYPES.has(slot.type)) names.push('Quantity');
  return [...new Set(names)];
}

/** FHIR R4 json.html and the string rules: text that no FHIR string may hold, or undefined. */
export function describeBadCharacters(text: string): string | undefined {
  if (CONTROL.test(text)) return 'a control character (below U+0020 other than tab, CR, LF)';
  if (LONE_SURROGATE.test(text)) return 'a lone UTF-16 surrogate (half of a character, not Unicode text)';
  return undefined;
}
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/;
/** With the `u` flag a surrogate pair is one code point, so only an unpaired half matches. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * base64Binary (FHIR R4 datatypes.html#base64Binary, RFC 4648 §4): whole groups of four, `=` padding only at the
 * end. The schema's pattern also lets `=` stand inside the text ('AAA=AAAA'), which decodes to nothing sensible.
 * Whitespace between groups is tolerated as the schema does.
 */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export interface BaseRulesResult {
  issues: OperationOutcomeIssue[];
  resources: FoundResource[];
  extensions: FoundExtension[];
}

export function checkBaseRules(resource: JsonObject, expression: string, model: CoreModel): BaseRulesResult {
  const result: BaseRulesResult = { issues: [], resources: [], extensions: [] };
  const { issues } = result;

  function visitResource(res: JsonObject, at: string, rootResource: JsonObject): void {
    const type = res.resourceType;
    const node = typeof type === 'string' && model.isResourceType(type) ? model.node(type) : undefined;
    if (!node) return;
    const env: InvariantEnv = { resource: res, rootResource };
    result.resources.push({ resource: res, expression: at, env });
    visitObject(res, at, node, env, [node.path, 'DomainResource', 'Resource'], true);
    checkInvariants(node.invariants, res, at, env);
    if (Array.isArray(res.contained) && res.contained.length > 0) checkContained(res.contained, res, at);
  }

  function visitObject(
    obj: JsonObject,
    at: string,
    node: NodeDefinition,
    env: InvariantEnv,
    context: string[],
    isResource = false,
  ): void {
    const keys = Object.keys(obj);
    if (keys.length === 0 || (!isResource && keys.every((k) => k === 'id'))) {
      issues.push(
        issue('error', 'structure', `Empty object at ${at}: an element needs a value or children (ele-1)`, at),
      );
      return;
    }
    for (const key of keys) {
      const value = obj[key];
      if (key.startsWith('_')) {
        // id and extensions of a primitive (`_status`); the extensions' context is the primitive element.
        const slot = node.slots.get(key.slice(1));
        const elementNode = model.node('Element');
        if (slot && elementNode)
          visitValues(value, `${at}.${key.slice(1)}`, (v, a) => {
            if (isObject(v)) visitObject(v, a, elementNode, env, contextsOf(slot));
          });
        continue;
      }
      const slot = node.slots.get(key);
      // Unknown elements, and single values of repeating ones, are the schema's to report.
      if (!slot || (slot.repeats && !Array.isArray(value))) continue;
      if (!slot.repeats && Array.isArray(value)) {
        // The schema gives complex types no JSON type, so it lets an array through where one value is expected.
        if (slot.kind !== 'primitive') {
          issues.push(
            issue('error', 'structure', `${at}.${key} must be a single ${slot.type}, not an array`, `${at}.${key}`),
          );
        }
        continue;
      }
      visitValues(value, `${at}.${key}`, (v, a) => visitValue(v, a, slot, env, context));
    }
    for (const required of node.required) {
      if (required.keys.some((k) => obj[k] !== undefined)) continue;
      issues.push(
        issue(
          'error',
          'required',
          `Missing required element '${required.name}' in ${at} (cardinality ${required.min}..${required.max} in FHIR R4 ${required.path})`,
          `${at}.${required.name}`,
        ),
      );
    }
    for (const choice of node.choices) {
      const present = choice.keys.filter((k) => obj[k] !== undefined);
      if (present.length > 1) {
        issues.push(
          issue(
            'error',
            'structure',
            `Only one of ${present.join(', ')} may be present in ${at}: ${choice.path} has a single type`,
            `${at}.${choice.name}`,
          ),
        );
      }
    }
  }

  /** Calls `visit` for a value or for each item of an array, flagging the empty array and null items. */
  function visitValues(value: unknown, at: string, visit: (v: unknown, at: string) => void): void {
    if (!Array.isArray(value)) return visit(value, at);
    if (value.length === 0) {
      issues.push(issue('error', 'structure', `Empty array at ${at}: leave the element out instead`, at));
    }
    value.forEach((item, i) => visit(item, `${at}[${i}]`));
  }

  function visitValue(value: unknown, at: string, slot: Slot, env: InvariantEnv, context: string[]): void {
    if (value === null) {
      issues.push(issue('error', 'structure', `null at ${at}: FHIR JSON leaves absent elements out instead`, at));
      return;
    }
    if (slot.kind === 'primitive') {
      if (value === '') {
        issues.push(
          issue(
            'error',
            'value',
            `Empty string at ${at}: FHIR JSON does not allow empty values, leave the element out instead`,
            at,
          ),
        );
        return;
      }
      if (typeof value === 'string') {
        const bad = describeBadCharacters(value);
        if (bad) issues.push(issue('error', 'value', `${at} holds ${bad}, which FHIR strings may not contain`, at));
        if (slot.type === 'base64Binary' && !BASE64.test(value.replace(/[\t-\r ]/g, ''))) {
          issues.push(
            issue(
              'error',
              'value',
              `Invalid base64Binary at ${at}: expected base64 text (RFC 4648) in groups of 4`,
              at,
            ),
          );
        }
      }
      if (slot.isDate && typeof value === 'string') {
        const why = explainImpossibleDate(value);
        if (why) issues.push(issue('error', 'value', `Impossible ${slot.type} ${quote(value)} at ${at}: ${why}`, at));
      }
      checkBinding(value, at, slot);
      checkInvariants(slot.invariants, value, at, env);
      return;
    }
    if (slot.kind === 'resource' && !isObject(value)) {
      // The schema's discriminator only looks at objects.
      issues.push(issue('error', 'structure', `${at} must be a resource (a JSON object with resourceType)`, at));
      return;
    }
    if (!isObject(value)) {
      // The schema gives complex types no JSON type, so `"subject": true` would pass it.
      issues.push(
        issue('error', 'structure', `${at} must be a JSON object (${slot.type}), not ${describeJsonType(value)}`, at),
      );
      return;
    }
    if (slot.kind === 'resource') {
      // FHIR R4 fhirpath.html#variables: %rootResource of a contained resource is its container; a Bundle entry
      // stands alone.
      visitResource(value, at, slot.path.endsWith('.contained') ? (env.rootResource as JsonObject) : value);
      return;
    }
    const node = model.node(slot.childrenPath);
    if (!node) return;
    if (slot.type === 'Extension') result.extensions.push({ extension: value, expression: at, context, env });
    if (slot.type === 'Reference') checkLocalReference(value, at, env);
    visitObject(value, at, node, env, contextsOf(slot));
    checkBinding(value, at, slot);
    checkInvariants(node.invariants, value, at, env);
    checkInvariants(slot.invariants, value, at, env);
  }

  function checkBinding(value: unknown, at: string, slot: Slot): void {
    if (!slot.binding) return;
    if (isInValueSet(value, slot.binding.contents) !== false) return;
    const { valueSet, contents } = slot.binding;
    issues.push(issue('error', 'code-invalid', describeNotInValueSet(value, at, valueSet, contents), at));
  }

  function checkInvariants(invariants: Invariant[], value: unknown, at: string, env: InvariantEnv): void {
    // txt-1 and txt-2 are both `htmlChecks()`, which parses the narrative: evaluate such twins once.
    const results = new Map<string, ReturnType<Invariant['check']>>();
    for (const invariant of invariants) {
      let result = results.get(invariant.expression);
      if (result === undefined) {
        result = invariant.check(value, env);
        results.set(invariant.expression, result);
      }
      if (result !== 'fail') continue;
      issues.push(
        issue(invariant.severity, 'invariant', `Constraint ${invariant.key} failed at ${at}: ${invariant.human}`, at),
      );
    }
  }

  /** dom-2 to dom-5, the constraints of DomainResource on contained resources (FHIR R4 domainresource.html#invs). */
  function checkContained(contained: unknown[], res: JsonObject, at: string): void {
    const references = collectLocalReferences(res, new Set());
    contained.forEach((c, i) => {
      if (!isObject(c)) return;
      const where = `${at}.contained[${i}]`;
      const fail = (key: string, human: string) =>
        issues.push(issue('error', 'invariant', `Constraint ${key} failed at ${where}: ${human}`, where));
      if (c.contained !== undefined) {
        fail('dom-2', 'If the resource is contained in another resource, it SHALL NOT contain nested Resources');
      }
      const meta = isObject(c.meta) ? c.meta : {};
      if (meta.versionId !== undefined || meta.lastUpdated !== undefined) {
        fail(
          'dom-4',
          'If a resource is contained in another resource, it SHALL NOT have a meta.versionId or a meta.lastUpdated',
        );
      }
      if (meta.security !== undefined) {
        fail('dom-5', 'If a resource is contained in another resource, it SHALL NOT have a security label');
      }
      // dom-3: referred to from elsewhere in the resource, or referring to the container ('#').
      if (typeof c.id === 'string' && !references.has(`#${c.id}`) && !collectLocalReferences(c, new Set()).has('#')) {
        fail('dom-3', `contained resource '${c.id}' is not referenced from the resource (use '#${c.id}')`);
      }
    });
  }

  /** ref-1: a local reference ('#id') resolves to a contained resource (FHIR R4 references.html#contained). */
  function checkLocalReference(reference: JsonObject, at: string, env: InvariantEnv): void {
    const ref = reference.reference;
    if (typeof ref !== 'string' || !ref.startsWith('#')) return;
    // '#' alone is how a contained resource refers to its container (FHIR R4 references.html#contained).
    if (ref === '#' && env.resource !== env.rootResource) return;
    const container = env.rootResource as JsonObject;
    const contained = Array.isArray(container.contained) ? container.contained : [];
    if (contained.some((c) => isObject(c) && `#${String(c.id)}` === ref)) return;
    issues.push(
      issue(
        'error',
        'invariant',
        `Constraint ref-1 failed at ${at}: local reference ${quote(ref)} does not match the id of a contained resource`,
        at,
      ),
    );
  }

  visitResource(resource, expression, resource);
  return result;
}

/** Every local reference ('#id' or '#') found in Reference.reference or a canonical/uri value. */
function collectLocalReferences(value: unknown, out: Set<string>): Set<string> {
  if (typeof value === 'string') {
    if (value.startsWith('#')) out.add(value);
  } else if (Array.isArray(value)) {
    for (const v of value) collectLocalReferences(v, out);
  } else if (isObject(value)) {
    for (const v of Object.values(value)) collectLocalReferences(v, out);
  }
  return out;
}
