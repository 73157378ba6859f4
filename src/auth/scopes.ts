/**
 * SMART App Launch 2.0 scopes (§3.0.2 Scopes for requesting clinical data): `system/Observation.cruds`, with the
 * v1 forms `.read` (= rs), `.write` (= cud) and `.*` (= cruds), and `*` for every resource type.
 */
export type Permission = 'c' | 'r' | 'u' | 'd' | 's';

export interface Scope {
  context: 'system' | 'user' | 'patient';
  resourceType: string; // a type or '*'
  permissions: Set<Permission>;
}

const V1: Record<string, Permission[]> = { read: ['r', 's'], write: ['c', 'u', 'd'], '*': ['c', 'r', 'u', 'd', 's'] };

export function parseScope(text: string): Scope | undefined {
  const m = /^(system|user|patient)\/([A-Za-z]+|\*)\.(\*|read|write|c?r?u?d?s?)$/.exec(text);
  if (!m || m[3] === '') return undefined;
  const perms = V1[m[3]] ?? ([...m[3]] as Permission[]);
  return { context: m[1] as Scope['context'], resourceType: m[2], permissions: new Set(perms) };
}

/** Scopes of a space-separated list; words that are not resource scopes (e.g. `launch`) are ignored here. */
export function parseScopes(text: string): Scope[] {
  return text
    .split(/\s+/)
    .filter(Boolean)
    .map(parseScope)
    .filter((s): s is Scope => s !== undefined);
}

export function allows(scopes: Scope[], resourceType: string, permission: Permission): boolean {
  return scopes.some(
    (s) => (s.resourceType === '*' || s.resourceType === resourceType) && s.permissions.has(permission),
  );
}

/** A requested scope is granted when the client's registered scopes cover every permission it asks for. */
export function isCoveredBy(requested: Scope, allowed: Scope[]): boolean {
  return [...requested.permissions].every((p) =>
    allowed.some(
      (a) =>
        a.context === requested.context &&
        (a.resourceType === '*' || a.resourceType === requested.resourceType) &&
        a.permissions.has(p),
    ),
  );
}
