import type { ElementDefinition, OperationOutcomeIssue, StructureDefinition } from 'fhir/r4';
import { issue } from '../outcomes.js';
import type { FoundExtension } from './base-rules.js';
import type { Invariant, InvariantCompiler, InvariantEnv } from './invariants.js';
import { isObject, quote, type JsonObject } from './json.js';
import {
  describeNotInValueSet,
  isInValueSet,
  stripVersion,
  type Terminology,
  type ValueSetContents,
} from './terminology.js';

/**
 * Layer 3: the Huren profiles of profiles/ (StructureDefinitions with derivation = constraint), checked from their
 * differential: cardinality, allowed types of choice elements, Reference targets, fixed[x] and pattern[x] values,
 * required bindings and invariants. Slicing is supported only where our profiles use it: extensions sliced by url
 * (FHIR R4 profiling.html#slicing, the usual "extension:name" slice with a type profile). Constraints inside a
 * slice are not read from the slicing profile; they come from the extension's own StructureDefinition, which is
 * checked on every extension that carries its url, whatever profile the resource claims.
 */

interface ElementRule {
  path: string;
  /** Steps below the profile's root: `['performer']`; empty for the root element. */
  steps: string[];
  /** For an extension slice: the url of the extensions it counts. */
  sliceUrl?: string;
  min?: number;
  max?: string;
  /** Allowed JSON properties of a choice element restricted by `type` (effectiveDateTime, effectivePeriod). */
  choiceKeys?: string[];
  /** Resource types a Reference may point to (from type.targetProfile). */
  targetTypes?: string[];
  fixed?: { name: string; value: unknown };
  pattern?: { name: string; value: unknown };
  binding?: { valueSet: string; contents: ValueSetContents };
  invariants: Invariant[];
}

export interface CompiledProfile {
  url: string;
  id: string;
  /** Resource type constrained, or `Extension`. */
  type: string;
  /** For extensions: the element paths it may be used on (context of type element). */
  contexts: string[];
  /** Rules of this profile and of the Huren profiles it derives from. */
  rules: ElementRule[];
}

export interface ProfileSet {
  /** A loaded profile by canonical url (version suffix ignored). */
  get(url: string): CompiledProfile | undefined;
  checkResource(
    profile: CompiledProfile,
    resource: JsonObject,
    expression: string,
    env: InvariantEnv,
  ): OperationOutcomeIssue[];
  checkExtension(found: FoundExtension): OperationOutcomeIssue[];
}

export function createProfileSet(
  definitions: StructureDefinition[],
  terminology: Terminology,
  compileInvariant: InvariantCompiler,
): ProfileSet {
  const byUrl = new Map(definitions.map((sd) => [sd.url, sd]));
  const compiled = new Map<string, CompiledProfile>();

  function compile(sd: StructureDefinition, seen = new Set<string>()): CompiledProfile {
    const done = compiled.get(sd.url);
    if (done) return done;
    seen.add(sd.url);
    // A Huren profile may derive from another one: its rules apply too (a cycle is ignored).
    const base = byUrl.get(sd.baseDefinition ?? '');
    const rules = [
      ...(base && !seen.has(base.url) ? compile(base, seen).rules : []),
      ...(sd.differential?.element ?? []).flatMap((el) => compileElement(sd, el)),
    ];
    const profile: CompiledProfile = {
      url: sd.url,
      id: sd.id ?? sd.name,
      type: sd.type,
      contexts: (sd.context ?? []).filter((c) => c.type === 'element').map((c) => c.expression),
      rules,
    };
    compiled.set(sd.url, profile);
    return profile;
  }

  function compileElement(sd: StructureDefinition, el: ElementDefinition): ElementRule[] {
    const idSteps = (el.id ?? el.path).split('.');
    // Constraints on the children of a slice (id "X.extension:a.value[x]") are not supported: see the file comment.
    if (idSteps.slice(0, -1).some((step) => step.includes(':'))) return [];
    const slice = idSteps[idSteps.length - 1]?.split(':')[1];
    const steps = el.path.split('.').slice(1);
    const last = steps[steps.length - 1] ?? '';
    const rule: ElementRule = { path: el.path, steps, invariants: [] };
    if (slice !== undefined) {
      const url = el.type?.[0]?.profile?.[0];
      if (!(last === 'extension' || last === 'modifierExtension') || !url) return [];
      rule.sliceUrl = url;
    }
    if (el.min !== undefined) rule.min = el.min;
    if (el.max !== undefined) rule.max = el.max;
    if (last.endsWith('[x]') && el.type?.length) {
      const name = last.slice(0, -3);
      rule.choiceKeys = el.type.map((t) => name + t.code.charAt(0).toUpperCase() + t.code.slice(1));
    }
    const targets = el.type?.filter((t) => t.code === 'Reference').flatMap((t) => t.targetProfile ?? []) ?? [];
    if (targets.length) rule.targetTypes = targets.map((t) => byUrl.get(t)?.type ?? t.slice(t.lastIndexOf('/') + 1));
    for (const [name, value] of Object.entries(el)) {
      if (name.startsWith('fixed')) rule.fixed = { name, value };
      if (name.startsWith('pattern')) rule.pattern = { name, value };
    }
    if (el.binding?.strength === 'required' && el.binding.valueSet) {
      const contents = terminology.expand(el.binding.valueSet);
      if (contents) rule.binding = { valueSet: stripVersion(el.binding.valueSet), contents };
    }
    const base = [sd.type, ...steps].join('.').replace(/\[x]$/, '');
    for (const constraint of el.constraint ?? []) {
      const invariant = compileInvariant(base, constraint);
      if (invariant) rule.invariants.push(invariant);
    }
    return [rule];
  }

  const profiles = new Map<string, CompiledProfile>();
  for (const sd of definitions) profiles.set(sd.url, compile(sd));

  function checkResource(profile: CompiledProfile, root: JsonObject, expression: string, env: InvariantEnv) {
    const issues: OperationOutcomeIssue[] = [];
    for (const rule of profile.rules) checkRule(profile, rule, root, expression, env, issues);
    return issues;
  }

  function checkExtension(found: FoundExtension): OperationOutcomeIssue[] {
    const profile = profiles.get(String(found.extension.url));
    if (!profile) return [];
    const issues = checkResource(profile, found.extension, found.expression, found.env);
    const fits = (c: string) => c === 'Element' || found.context.includes(c);
    if (profile.contexts.length && !profile.contexts.some(fits)) {
      issues.push(
        issue(
          'error',
          'structure',
          `Extension ${profile.url} is not allowed on ${found.context[0] ?? 'this element'}: it may be used on ${profile.contexts.join(', ')}`,
          found.expression,
        ),
      );
    }
    return issues;
  }

  return { get: (url) => profiles.get(stripVersion(url)), checkResource, checkExtension };
}

interface Located {
  value: unknown;
  expression: string;
}

function checkRule(
  profile: CompiledProfile,
  rule: ElementRule,
  root: JsonObject,
  rootExpression: string,
  env: InvariantEnv,
  issues: OperationOutcomeIssue[],
): void {
  const by = `(profile ${profile.id})`;
  if (rule.steps.length === 0) {
    for (const v of checkValues(rule, [{ value: root, expression: rootExpression }], env, by)) issues.push(v);
    return;
  }
  const last = rule.steps[rule.steps.length - 1] ?? '';
  const name = last.replace('[x]', '');
  for (const parent of locate(root, rootExpression, rule.steps.slice(0, -1))) {
    if (!isObject(parent.value)) continue;
    const at = `${parent.expression}.${name}`;
    let values = childValues(parent.value, parent.expression, last);
    if (rule.sliceUrl) values = values.filter((v) => isObject(v.value) && v.value.url === rule.sliceUrl);
    const what = rule.sliceUrl ? `extension ${rule.sliceUrl}` : rule.path;
    // A primitive present only through its extensions (`_status`) still counts (FHIR R4 json.html#primitive).
    const count = values.length || (parent.value[`_${name}`] !== undefined ? 1 : 0);
    if (rule.min !== undefined && count < rule.min) {
      issues.push(
        issue('error', 'required', `Missing ${what} in ${parent.expression}: at least ${rule.min} required ${by}`, at),
      );
    }
    if (rule.max !== undefined && rule.max !== '*' && count > Number(rule.max)) {
      issues.push(
        issue(
          'error',
          'structure',
          `Too many ${what} in ${parent.expression}: at most ${rule.max} allowed, found ${count} ${by}`,
          at,
        ),
      );
    }
    if (rule.choiceKeys) {
      for (const v of values) {
        const key = v.expression.slice(parent.expression.length + 1).replace(/\[\d+]$/, '');
        if (rule.choiceKeys.includes(key)) continue;
        issues.push(
          issue(
            'error',
            'structure',
            `${key} is not allowed in ${parent.expression}: use ${rule.choiceKeys.join(' or ')} ${by}`,
            v.expression,
          ),
        );
      }
    }
    for (const v of checkValues(rule, values, env, by)) issues.push(v);
  }
}

function checkValues(rule: ElementRule, values: Located[], env: InvariantEnv, by: string): OperationOutcomeIssue[] {
  const issues: OperationOutcomeIssue[] = [];
  for (const { value, expression } of values) {
    if (rule.fixed && !deepEqual(rule.fixed.value, value)) {
      issues.push(
        issue('error', 'value', `${expression} must be exactly ${quote(rule.fixed.value)} ${by}`, expression),
      );
    }
    if (rule.pattern && !matchesPattern(rule.pattern.value, value)) {
      issues.push(issue('error', 'value', `${expression} must match ${quote(rule.pattern.value)} ${by}`, expression));
    }
    if (rule.binding && isInValueSet(value, rule.binding.contents) === false) {
      const { valueSet, contents } = rule.binding;
      const diagnostics = describeNotInValueSet(value, expression, valueSet, contents);
      issues.push(issue('error', 'code-invalid', `${diagnostics} ${by}`, expression));
    }
    if (rule.targetTypes) {
      const target = referencedType(value, env);
      if (target && !rule.targetTypes.includes(target)) {
        issues.push(
          issue(
            'error',
            'value',
            `${expression} refers to a ${target}: it must refer to ${rule.targetTypes.join(' or ')} ${by}`,
            expression,
          ),
        );
      }
    }
    for (const invariant of rule.invariants) {
      if (invariant.check(value, env) !== 'fail') continue;
      issues.push(
        issue(
          invariant.severity,
          'invariant',
          `Constraint ${invariant.key} failed at ${expression}: ${invariant.human} ${by}`,
          expression,
        ),
      );
    }
  }
  return issues;
}

/** The values found by following element names from the root, arrays flattened, with their expressions. */
function locate(root: unknown, rootExpression: string, steps: string[]): Located[] {
  let current: Located[] = [{ value: root, expression: rootExpression }];
  for (const step of steps) {
    current = current.flatMap((c) => (isObject(c.value) ? childValues(c.value, c.expression, step) : []));
  }
  return current;
}

function childValues(parent: JsonObject, expression: string, step: string): Located[] {
  const keys = step.endsWith('[x]') ? choiceKeysIn(parent, step.slice(0, -3)) : [step];
  const out: Located[] = [];
  for (const key of keys) {
    const value = parent[key];
    if (value === undefined || value === null) continue;
    if (Array.isArray(value)) value.forEach((v, i) => out.push({ value: v, expression: `${expression}.${key}[${i}]` }));
    else out.push({ value, expression: `${expression}.${key}` });
  }
  return out;
}

/** JSON properties of a choice element present in an object: `effectiveDateTime` for `effective[x]`. */
function choiceKeysIn(parent: JsonObject, name: string): string[] {
  return Object.keys(parent).filter(
    (k) => k.length > name.length && k.startsWith(name) && /[A-Z]/.test(k.charAt(name.length)),
  );
}

/** The resource type a Reference points to, when its form tells (relative, absolute or contained reference). */
function referencedType(value: unknown, env: InvariantEnv): string | undefined {
  if (!isObject(value)) return undefined;
  if (typeof value.type === 'string') return value.type;
  const ref = value.reference;
  if (typeof ref !== 'string') return undefined;
  if (ref.startsWith('#')) {
    const container = env.resource as JsonObject;
    const contained = Array.isArray(container.contained) ? container.contained : [];
    const target = contained.find((c) => isObject(c) && `#${String(c.id)}` === ref);
    return isObject(target) && typeof target.resourceType === 'string' ? target.resourceType : undefined;
  }
  // A conditional reference in a transaction, `Type?query`, names its type (FHIR R4 §3.1.0.11.2).
  const conditional = /^([A-Z][A-Za-z]+)\?/.exec(ref);
  if (conditional) return conditional[1];
  // FHIR R4 references.html#literal: [base/]Type/id[/_history/vid]; urn:uuid: and urn:oid: tell nothing.
  return /(?:^|\/)([A-Z][A-Za-z]+)\/[A-Za-z0-9\-.]{1,64}(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/.exec(ref)?.[1];
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => deepEqual(a[k], b[k]));
  }
  return false;
}

/**
 * FHIR R4 ElementDefinition.pattern[x]: the value must contain everything the pattern has; for arrays, each
 * pattern item must be matched by some item of the value.
 */
function matchesPattern(pattern: unknown, value: unknown): boolean {
  if (Array.isArray(pattern)) {
    return Array.isArray(value) && pattern.every((p) => value.some((v) => matchesPattern(p, v)));
  }
  if (isObject(pattern)) {
    return isObject(value) && Object.entries(pattern).every(([k, p]) => matchesPattern(p, value[k]));
  }
  return pattern === value;
}
