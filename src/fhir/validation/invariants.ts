import fhirpath from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4';
import type { ElementDefinitionConstraint } from 'fhir/r4';

/** A FHIRPath constraint (ElementDefinition.constraint), compiled once. */
export interface Invariant {
  key: string;
  severity: 'error' | 'warning';
  human: string;
  expression: string;
  /** 'fail' only when the expression evaluates to false; see evaluate(). */
  check(node: unknown, env: InvariantEnv): 'pass' | 'fail' | 'error';
}

/** %resource and %rootResource of FHIR R4 fhirpath.html#variables: the containing resource and its container. */
export interface InvariantEnv {
  resource: unknown;
  rootResource: unknown;
}

type Compiled = (node: unknown, env: Record<string, unknown>) => unknown[];

export type InvariantCompiler = (base: string, constraint: ElementDefinitionConstraint) => Invariant | undefined;

/**
 * Returns a compiler of constraints for nodes found at `base` (an element path such as `Observation`, `Period` or
 * `Observation.referenceRange`, which gives fhirpath the types it needs for choice elements and comparisons).
 * Each (base, expression) pair is compiled once, however many elements carry it. The compiler gives undefined
 * when fhirpath.js cannot compile the expression: such a constraint is skipped rather than failing every resource.
 */
export function createInvariantCompiler(): InvariantCompiler {
  const cache = new Map<string, Compiled | null>();
  return (base, constraint) => {
    const { expression } = constraint;
    if (!expression) return undefined;
    const cacheKey = `${base}\u0000${expression}`;
    let compiled = cache.get(cacheKey);
    if (compiled === undefined) {
      try {
        compiled = fhirpath.compile({ base, expression }, r4, { traceFn: ignoreTrace }) as Compiled;
      } catch {
        compiled = null;
      }
      cache.set(cacheKey, compiled);
    }
    if (compiled === null) return undefined;
    return toInvariant(constraint, expression, compiled);
  };
}

function toInvariant(constraint: ElementDefinitionConstraint, expression: string, run: Compiled): Invariant {
  return {
    key: constraint.key,
    severity: constraint.severity === 'warning' ? 'warning' : 'error',
    human: constraint.human,
    expression,
    check(node, env) {
      try {
        return evaluate(run(node, { resource: env.resource, rootResource: env.rootResource }));
      } catch {
        // A few R4 expressions use functions on collections that fhirpath.js evaluates strictly; an expression
        // that cannot be evaluated says nothing about the resource.
        return 'error';
      }
    },
  };
}

/** A few R4 expressions call trace(); fhirpath.js would print to the console. */
function ignoreTrace(): void {}

/**
 * A constraint fails only when it evaluates to false. An empty result cannot be decided and is not reported: for
 * example per-1 comparing "2024" with "2024-05-01T10:00:00Z", whose precisions differ (FHIRPath then gives empty).
 */
function evaluate(result: unknown[]): 'pass' | 'fail' {
  return result.length === 1 && result[0] === false ? 'fail' : 'pass';
}
