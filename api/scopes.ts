/**
 * Scope grammar and matching, shared by the CRD schema, the operator (is a key's scope covered by
 * its user's?) and the webhook (does a key grant the required scope?).
 *
 * A scope is `name(:name)*`, optionally ending in `:*`, or the lone `*`. `projects:*` grants
 * `projects:alpha` and `projects:alpha:read` but not `projects` itself; `*` grants everything.
 */
const NAME = '[A-Za-z0-9][A-Za-z0-9._-]*';
export const SCOPE_PATTERN = new RegExp(`^(\\*|${NAME}(:${NAME})*(:\\*)?)$`);
export const SCOPE_MAX_LENGTH = 128;

export function isValidScope(scope: string): boolean {
  return scope.length <= SCOPE_MAX_LENGTH && SCOPE_PATTERN.test(scope);
}

/** Whether `granted` covers `wanted`. A wildcard `wanted` is covered only by an equal or wider wildcard. */
export function scopeCovers(granted: string, wanted: string): boolean {
  if (granted === '*') return true;
  if (granted.endsWith(':*')) {
    const prefix = granted.slice(0, -1);
    return wanted.length > prefix.length && wanted.startsWith(prefix);
  }
  return granted === wanted;
}

/** Whether any of `granted` covers `wanted`. */
export function anyScopeCovers(granted: readonly string[], wanted: string): boolean {
  return granted.some((g) => scopeCovers(g, wanted));
}

/** The key's scopes that its user's scopes do not cover (empty when the key is within bounds). */
export function uncoveredScopes(userScopes: readonly string[], keyScopes: readonly string[]): string[] {
  return keyScopes.filter((k) => !anyScopeCovers(userScopes, k));
}

/**
 * Effective scopes of a key at verification time: the user's current scopes, narrowed by the key's
 * own list when it has one. A key scope no longer covered by the user drops out, so shrinking a
 * user's scopes shrinks all its keys at once.
 */
export function effectiveScopes(
  userScopes: readonly string[],
  keyScopes: readonly string[] | null,
): string[] {
  if (keyScopes === null) return [...userScopes];
  return keyScopes.filter((k) => anyScopeCovers(userScopes, k));
}
