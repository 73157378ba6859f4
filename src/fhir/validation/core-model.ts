import type { ElementDefinition, StructureDefinition } from 'fhir/r4';
import type { Invariant, InvariantCompiler } from './invariants.js';
import { stripVersion, type Terminology, type ValueSetContents } from './terminology.js';

/**
 * The R4 base definitions (StructureDefinition snapshots of every resource and data type) turned into lookup
 * tables for walking a resource: for each node (a resource, a data type, a backbone element) which JSON properties
 * it may have, of which type, which are required, and which invariants apply.
 */

export type SlotKind = 'primitive' | 'complex' | 'resource';

/** One JSON property of a node: `status`, or for a choice element one of its types (`valueQuantity`). */
export interface Slot {
  /** Element path in its StructureDefinition: `Observation.value[x]`. */
  path: string;
  /** The type this property carries: `Quantity` for valueQuantity. */
  type: string;
  kind: SlotKind;
  /** Node that defines a complex value's children: the element itself for backbone elements, else the type. */
  childrenPath: string;
  isDate: boolean;
  /** Max cardinality above 1: the JSON value is an array. */
  repeats: boolean;
  /** A required binding the JSON schema does not already enforce with an enum. */
  binding?: { valueSet: string; contents: ValueSetContents };
  /** Constraints of this element that its type does not already carry (org-3 on Organization.telecom, txt-1…). */
  invariants: Invariant[];
}

export interface RequiredElement {
  /** FHIRPath name: `status`, `value` for value[x]. */
  name: string;
  path: string;
  min: number;
  max: string;
  /** JSON properties any of which satisfies the requirement (`status`, `_status`; every valueXxx). */
  keys: string[];
}

export interface NodeDefinition {
  /** `Observation`, `Period`, `Observation.referenceRange`. */
  path: string;
  slots: Map<string, Slot>;
  required: RequiredElement[];
  /** Choice elements with more than one type: at most one of `keys` may be present. */
  choices: Array<{ name: string; path: string; keys: string[] }>;
  /** Constraints of the node itself (dom-2, obs-6 on Observation; per-1 on Period; obs-3 on referenceRange). */
  invariants: Invariant[];
}

export interface CoreModel {
  node(path: string): NodeDefinition | undefined;
  isResourceType(type: string): boolean;
}

/**
 * Constraints checked natively while walking (base-rules.ts) rather than through FHIRPath:
 * - ele-1 "All FHIR elements must have a @value or children" sits on every element: checked as empty
 *   objects/arrays/strings/null;
 * - dom-2..dom-5 (contained resources): dom-3 uses as(canonical) on collections, which fhirpath.js rejects, and
 *   the others cost ~20 µs per resource in FHIRPath for a test that is trivial in code;
 * - ref-1 (local references resolve): ~50 µs per Reference in FHIRPath once a resource has contained resources,
 *   and its R4 expression wrongly rejects '#', the reference of a contained resource to its container.
 */
const NATIVE_CONSTRAINTS = new Set(['ele-1', 'dom-2', 'dom-3', 'dom-4', 'dom-5', 'ref-1']);

const DATE_TYPES = new Set(['date', 'dateTime', 'instant']);
const CODED_TYPES = new Set(['code', 'Coding', 'CodeableConcept']);
const FHIR_TYPE_EXTENSION = 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type';

export function createCoreModel(
  definitions: StructureDefinition[],
  compileInvariant: InvariantCompiler,
  terminology: Terminology,
  schemaHasEnum: (elementPath: string) => boolean,
): CoreModel {
  // Only the base definitions: the R4 constraint profiles (SimpleQuantity, MoneyQuantity) are not types of their own.
  const bases = definitions.filter(
    (sd) => sd.derivation !== 'constraint' && sd.kind !== 'logical' && sd.snapshot?.element.length,
  );
  const primitives = new Set(bases.filter((sd) => sd.kind === 'primitive-type').map((sd) => sd.type));
  const resourceTypes = new Set(bases.filter((sd) => sd.kind === 'resource' && !sd.abstract).map((sd) => sd.type));

  // Paths that have children of their own (backbone elements, Timing.repeat…), so their children are not looked up
  // in the type.
  const parents = new Set<string>();
  for (const sd of bases) for (const el of sd.snapshot?.element ?? []) parents.add(parentPath(el.path));

  const nodes = new Map<string, NodeDefinition>();
  const getNode = (path: string): NodeDefinition => {
    let node = nodes.get(path);
    if (!node) {
      node = { path, slots: new Map(), required: [], choices: [], invariants: [] };
      nodes.set(path, node);
    }
    return node;
  };
  const invariantsOf = (el: ElementDefinition, base: string): Invariant[] =>
    (el.constraint ?? [])
      .filter((c) => c.severity === 'error' && !NATIVE_CONSTRAINTS.has(c.key))
      .map((c) => compileInvariant(base, c))
      .filter((i): i is Invariant => i !== undefined);

  // First pass: node-level invariants, so that slots can leave out what their type already checks.
  for (const sd of bases) {
    for (const el of sd.snapshot?.element ?? []) {
      if (el.path === sd.type || parents.has(el.path)) getNode(el.path).invariants = invariantsOf(el, el.path);
    }
  }

  for (const sd of bases) {
    for (const el of (sd.snapshot?.element ?? []).slice(1)) {
      const node = getNode(parentPath(el.path));
      const isChoice = el.path.endsWith('[x]');
      const name = lastStep(el.path).replace('[x]', '');
      const keys: string[] = [];
      for (const type of elementTypes(el)) {
        const key = isChoice ? name + type.charAt(0).toUpperCase() + type.slice(1) : name;
        const kind: SlotKind = primitives.has(type) ? 'primitive' : type === 'Resource' ? 'resource' : 'complex';
        const childrenPath = el.contentReference
          ? el.contentReference.slice(el.contentReference.indexOf('#') + 1)
          : parents.has(el.path)
            ? el.path
            : type;
        const typeInvariants = new Set(nodes.get(childrenPath)?.invariants.map((i) => i.key));
        node.slots.set(key, {
          path: el.path,
          type,
          kind,
          childrenPath,
          isDate: DATE_TYPES.has(type),
          repeats: el.max !== '1' && el.max !== '0',
          binding: requiredBinding(el, type),
          // A backbone element's own constraints are its node's invariants, already checked.
          invariants: parents.has(el.path)
            ? []
            : invariantsOf(el, el.path.replace('[x]', '')).filter((i) => !typeInvariants.has(i.key)),
        });
        keys.push(key);
        if (kind === 'primitive') keys.push(`_${key}`);
      }
      if ((el.min ?? 0) > 0) node.required.push({ name, path: el.path, min: el.min ?? 0, max: el.max ?? '*', keys });
      if (isChoice && keys.length > 1)
        node.choices.push({ name, path: el.path, keys: keys.filter((k) => !k.startsWith('_')) });
    }
  }

  function requiredBinding(el: ElementDefinition, type: string): Slot['binding'] {
    const valueSet = el.binding?.valueSet;
    if (el.binding?.strength !== 'required' || !valueSet || !CODED_TYPES.has(type)) return undefined;
    if (type === 'code' && schemaHasEnum(el.path)) return undefined;
    const contents = terminology.expand(valueSet);
    return contents && { valueSet: stripVersion(valueSet), contents };
  }

  return {
    node: (path) => nodes.get(path),
    isResourceType: (type) => resourceTypes.has(type),
  };
}

/** FHIR type codes of an element; the System.String of `id` and `url` properties maps back to its FHIR type. */
function elementTypes(el: ElementDefinition): string[] {
  if (el.contentReference) return ['BackboneElement'];
  return (el.type ?? []).map((t) => {
    if (!t.code.startsWith('http://hl7.org/fhirpath/System.')) return t.code;
    return t.extension?.find((e) => e.url === FHIR_TYPE_EXTENSION)?.valueUrl ?? 'string';
  });
}

export function parentPath(path: string): string {
  const dot = path.lastIndexOf('.');
  return dot === -1 ? '' : path.slice(0, dot);
}

function lastStep(path: string): string {
  return path.slice(path.lastIndexOf('.') + 1);
}
