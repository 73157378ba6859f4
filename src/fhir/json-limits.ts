import type { Config } from '../config.js';
import { error, tooLarge } from './outcomes.js';

/** What a parsed request body may hold, beyond its size in bytes. */
export interface JsonLimits {
  /** Deepest nesting of objects and arrays (the root is level 1). */
  maxDepth: number;
  /** Most items in any array but a Bundle's `entry`. */
  maxArrayItems: number;
  /** Most items in `entry` of an object whose resourceType is Bundle. */
  maxBundleEntries: number;
}

export function jsonLimitsOf(config: Pick<Config, 'maxJsonDepth' | 'maxArrayItems' | 'maxBundleEntries'>): JsonLimits {
  return {
    maxDepth: config.maxJsonDepth,
    maxArrayItems: config.maxArrayItems,
    maxBundleEntries: config.maxBundleEntries,
  };
}

/** An object or array met on the walk, with the way back to the root (for the expression of an error). */
interface Node {
  value: object;
  depth: number;
  parent: Node | undefined;
  key: string | number;
}

/**
 * Refuses a parsed body that is nested too deeply (400) or holds an array with too many items (413), naming the
 * element as a FHIRPath expression (`Patient.identifier`, `Bundle.entry[3].resource.identifier`). One walk without
 * recursion, so a hostile body cannot exhaust the stack; an array over the limit is refused before its items are
 * looked at, so 100 000 identifiers cost one length check.
 */
export function assertJsonLimits(body: unknown, limits: JsonLimits): void {
  if (body === null || typeof body !== 'object') return;
  const stack: Node[] = [{ value: body, depth: 1, parent: undefined, key: '' }];
  while (stack.length) {
    const node = stack.pop()!;
    if (node.depth > limits.maxDepth) {
      throw error(400, 'too-costly', `The JSON body is nested deeper than ${limits.maxDepth} levels`, pathOf(node));
    }
    const value = node.value;
    if (Array.isArray(value)) {
      const isEntry = isBundleEntry(node);
      const max = isEntry ? limits.maxBundleEntries : limits.maxArrayItems;
      if (value.length > max) {
        const where = pathOf(node);
        throw tooLarge(
          `${where ?? 'The body'} has ${value.length} ${isEntry ? 'entries' : 'items'}; at most ${max} are accepted per request`,
          where,
        );
      }
      for (let i = 0; i < value.length; i++) push(stack, node, i, value[i]);
    } else {
      for (const key in value) push(stack, node, key, (value as Record<string, unknown>)[key]);
    }
  }
}

function push(stack: Node[], parent: Node, key: string | number, child: unknown): void {
  if (child !== null && typeof child === 'object') stack.push({ value: child, depth: parent.depth + 1, parent, key });
}

/** `entry` of any Bundle, nested ones included (a Bundle in a Parameters, a CDS Hooks prefetch). */
function isBundleEntry(node: Node): boolean {
  return node.key === 'entry' && (node.parent?.value as { resourceType?: unknown }).resourceType === 'Bundle';
}

/** FHIRPath of a node: the root resource's type, then `.element` and `[index]`; undefined for the root itself. */
function pathOf(node: Node): string | undefined {
  const parts: string[] = [];
  for (let n: Node | undefined = node; n?.parent; n = n.parent) {
    parts.push(typeof n.key === 'number' ? `[${n.key}]` : `.${n.key}`);
  }
  const rootType = (rootOf(node).value as { resourceType?: unknown }).resourceType;
  const root = typeof rootType === 'string' && /^[A-Z][A-Za-z]{0,63}$/.test(rootType) ? rootType : '';
  const path = root + parts.reverse().join('');
  return (path.startsWith('.') ? path.slice(1) : path) || undefined;
}

function rootOf(node: Node): Node {
  let n = node;
  while (n.parent) n = n.parent;
  return n;
}
