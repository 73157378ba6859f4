import type { Document, Filter } from 'mongodb';

/**
 * The same filter with the conditions of `$and` lifted to the top level where their fields do not collide.
 *
 * FerretDB 1.24 pushes down to PostgreSQL only top-level field conditions (an equality: `_jsonb->'f' @> v`), never
 * anything inside `$and`/`$or`; a filter built as `{ $and: [search, tenancy, page cursor] }` would therefore scan the
 * collection although its search part names an indexed token. MongoDB matches the two shapes identically.
 */
export function hoistAnd(filter: Filter<Document>): Filter<Document> {
  const and = (filter as { $and?: unknown }).$and;
  if (!Array.isArray(and)) return filter;
  const out: Record<string, unknown> = {};
  const rest: unknown[] = [];
  for (const [key, value] of Object.entries(filter)) if (key !== '$and') out[key] = value;
  const lift = (condition: Record<string, unknown>) => {
    const inner = hoistAnd(condition as Filter<Document>) as Record<string, unknown>;
    for (const [key, value] of Object.entries(inner)) {
      if (key === '$and') rest.push(...(value as unknown[]));
      else if (key.startsWith('$') || key in out) rest.push({ [key]: value });
      else out[key] = value;
    }
  };
  for (const condition of and) lift(condition as Record<string, unknown>);
  if (rest.length > 0) out.$and = rest;
  return out as Filter<Document>;
}
