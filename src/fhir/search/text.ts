/**
 * String helpers shared by extraction and filter building, so stored and searched values are normalised the same way.
 */

/**
 * FHIR R4 §3.1.1.4.7 (string): "By default, a field matches a string query if the value of the field equals or
 * starts with the supplied parameter value, after both have been normalized by case and accent" — NFD decomposition,
 * combining marks removed, lower case. CJK text passes through unchanged.
 */
export function normalizeText(value: string): string {
  return value.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
}

/** Escapes every regular-expression metacharacter so a search value is always matched literally. */
export function escapeRegex(value: string): string {
  return value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Splits a search value on an unescaped separator, keeping escapes in the parts (so a later split on another
 * separator still sees them). FHIR R4 §3.1.1.5 (escaping search parameters): `\,` `\$` `\|` and `\\` are literal.
 */
export function splitUnescaped(value: string, separator: ',' | '|' | '$'): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\' && i + 1 < value.length) {
      current += c + value[i + 1]!;
      i++;
    } else if (c === separator) {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts;
}

/** Removes search-value escapes (`\,` → `,`, `\\` → `\`). */
export function unescapeValue(value: string): string {
  return value.replace(/\\([,|$\\])/g, '$1');
}
