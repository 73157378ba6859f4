import type { Config } from '../config.js';
import { error, tooLarge, unsupportedMediaType } from './outcomes.js';

/** What a parsed request body may hold, beyond its size in bytes. */
export interface JsonLimits {
  /** Deepest nesting of objects and arrays (the root is level 1). */
  maxDepth: number;
  /** Most items in any array but a Bundle's `entry`. */
  maxArrayItems: number;
  /** Most items in `entry` of an object whose resourceType is Bundle. */
  maxBundleEntries: number;
  /** Longest string value or object key, in UTF-16 code units. */
  maxStringLength: number;
}

export function jsonLimitsOf(
  config: Pick<Config, 'maxJsonDepth' | 'maxArrayItems' | 'maxBundleEntries' | 'maxStringLength'>,
): JsonLimits {
  return {
    maxDepth: config.maxJsonDepth,
    maxArrayItems: config.maxArrayItems,
    maxBundleEntries: config.maxBundleEntries,
    maxStringLength: config.maxStringLength,
  };
}

/**
 * The JSON of a request body, refused the FHIR way when it cannot be read as sent: a charset other than UTF-8 is a
 * 415 (FHIR R4 §2.6.0: JSON is UTF-8; reading UTF-16 bytes as UTF-8 would store garbage), bytes that are not UTF-8
 * or text that is not JSON a 400, and the parsed value must keep within `limits` (assertJsonLimits).
 */
export function parseJsonBody(raw: Buffer, contentType: string | undefined, limits: JsonLimits): unknown {
  const charset = charsetOf(contentType);
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    throw unsupportedMediaType(
      `charset=${charset.slice(0, 40)} is not supported; send the JSON body in UTF-8 (charset=utf-8)`,
    );
  }
  let text: string;
  try {
    text = UTF8.decode(raw);
  } catch {
    throw error(400, 'structure', 'The body is not valid UTF-8 text');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text) as unknown;
  } catch (err) {
    const detail = err instanceof SyntaxError ? err.message : 'invalid JSON';
    throw error(400, 'structure', `The body is not valid JSON: ${detail}`);
  }
  assertJsonLimits(parsed, limits);
  return parsed;
}

/** Fatal: a byte sequence that is not UTF-8 is refused rather than turned into U+FFFD. Strips a leading BOM. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The `charset` parameter of a Content-Type, lower-cased and unquoted; undefined when there is none. */
export function charsetOf(contentType: string | undefined): string | undefined {
  const m = /;\s*charset\s*=\s*("?)([^";\s]*)\1/i.exec(contentType ?? '');
  return m ? m[2]!.toLowerCase() : undefined;
}

/** An object or array met on the walk, with the way back to the root (for the expression of an error). */
interface Node {
  value: object;
  depth: number;
  parent: Node | undefined;
  key: string | number;
}

/**
 * Refuses a parsed body that is nested too deeply (400), holds an array with too many items (413), a string or key
 * longer than the limit (413) or a number that is not finite (400: `1e400` parses as Infinity, which no database
 * stores and JSON cannot write back), naming the element as a FHIRPath expression (`Patient.identifier`,
 * `Bundle.entry[3].resource.identifier`). One walk without recursion, so a hostile body cannot exhaust the stack; an
 * array over the limit is refused before its items are looked at, so 100 000 identifiers cost one length check.
 */
export function assertJsonLimits(body: unknown, limits: JsonLimits): void {
  if (body === null || typeof body !== 'object') {
    assertScalar(body, limits, undefined);
    return;
  }
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
      for (let i = 0; i < value.length; i++) push(stack, node, i, value[i], limits);
    } else {
      for (const key in value) {
        if (CONTROL.test(key)) {
          throw error(400, 'value', controlMessage(`A key of ${pathOf(node) ?? 'the body'}`), pathOf(node));
        }
        if (LONE_SURROGATE.test(key)) {
          throw error(400, 'value', surrogateMessage(`A key of ${pathOf(node) ?? 'the body'}`), pathOf(node));
        }
        if (key.length > limits.maxStringLength) {
          throw tooLarge(
            `A key of ${pathOf(node) ?? 'the body'} has ${key.length} characters; at most ${limits.maxStringLength} are accepted`,
            pathOf(node),
          );
        }
        push(stack, node, key, (value as Record<string, unknown>)[key], limits);
      }
    }
  }
}

function push(stack: Node[], parent: Node, key: string | number, child: unknown, limits: JsonLimits): void {
  if (child !== null && typeof child === 'object') stack.push({ value: child, depth: parent.depth + 1, parent, key });
  else if (typeof child === 'string' || typeof child === 'number') {
    assertScalar(child, limits, { value: {}, depth: parent.depth + 1, parent, key });
  }
}

/**
 * FHIR R4 §2.24.0.1 (string): no characters below U+0020 but tab, CR and LF. NUL in particular cannot be stored by
 * the embedded database (PostgreSQL's jsonb has no \u0000).
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/;
export const hasControlCharacter = (text: string): boolean => CONTROL.test(text);
export const controlMessage = (what: string) =>
  `${what} holds a control character (below U+0020 other than tab, CR, LF), which FHIR strings may not contain`;

/**
 * `"\ud800"` is valid JSON but not Unicode text: a lone half of a surrogate pair. Stored, it would come back as
 * U+FFFD (the database writes UTF-8), so it is refused rather than silently altered. With the `u` flag a proper
 * pair is one code point and does not match.
 */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;
const surrogateMessage = (what: string) =>
  `${what} holds a lone UTF-16 surrogate (\\uD800-\\uDFFF without its pair), which is not Unicode text`;

function assertScalar(value: unknown, limits: JsonLimits, node: Node | undefined): void {
  if (typeof value === 'string' && CONTROL.test(value)) {
    const where = node && pathOf(node);
    throw error(400, 'value', controlMessage(where ?? 'The body'), where);
  }
  if (typeof value === 'string' && LONE_SURROGATE.test(value)) {
    const where = node && pathOf(node);
    throw error(400, 'value', surrogateMessage(where ?? 'The body'), where);
  }
  if (typeof value === 'string' && value.length > limits.maxStringLength) {
    const where = node && pathOf(node);
    throw tooLarge(
      `${where ?? 'The body'} is a string of ${value.length} characters; at most ${limits.maxStringLength} are accepted`,
      where,
    );
  }
  if (typeof value === 'number' && !Number.isFinite(value)) {
    const where = node && pathOf(node);
    throw error(
      400,
      'value',
      `${where ?? 'The body'} is a number out of range: numbers must be finite (at most ±1.7976931348623157e308)`,
      where,
    );
  }
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
