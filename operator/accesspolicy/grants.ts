import type { AccessPolicy, LabelSelector } from '../../api/accesspolicy.js';
import { globMatches } from '../../api/actas.js';
import type { ApiKeySpec } from '../../api/apikey.js';
import { formatDuration, parseDuration } from '../../api/duration.js';
import { anyScopeCovers } from '../../api/scopes.js';
import { RESERVED_GROUP_PREFIX } from '../../api/serviceuser.js';
import { type ActAsGrants, type ActAsPatterns, actAsBeyondGrants, actAsGrantsOf } from './act-as.js';

/** Ready=False reason for a ServiceUser or ApiKey asking for more than its namespace is granted. */
export const NOT_PERMITTED = 'NotPermitted';

/** A namespace as the grants need it. */
export interface NamespaceInfo {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

/**
 * What ServiceUsers and ApiKeys of one namespace may claim: the namespace's own space (see
 * `ownUsernamePattern`, `ownScopes`) plus the union of every AccessPolicy selecting it.
 */
export interface Grants {
  readonly namespace: string;
  /** Username globs (`*` matches any run of characters). */
  readonly usernames: readonly string[];
  /** Scope patterns, matched with the covering rules of api/scopes.ts. */
  readonly scopes: readonly string[];
  /** Exact group names. */
  readonly groups: readonly string[];
  /** Longest key lifetime in ms; null: no limit. */
  readonly maxKeyLifetimeMs: number | null;
  readonly kubernetesAuthentication: boolean;
  /** Subjects users may act on behalf of (see act-as.ts); none unless a policy grants some. */
  readonly actAs: ActAsGrants;
  /** Names of the selecting policies, sorted (for messages). */
  readonly policies: readonly string[];
}

export interface Violation {
  readonly reason: typeof NOT_PERMITTED;
  readonly message: string;
}

/**
 * The username space every namespace owns: `<namespace>_<anything>`. Namespace names are DNS
 * labels and cannot contain `_`, so the first `_` ends the prefix and no two namespaces' spaces
 * overlap; a `-` separator would (namespace `team` + `a-b` versus namespace `team-a` + `b`).
 */
function ownUsernamePattern(namespace: string): string {
  return `${namespace}_*`;
}

/**
 * The scopes every namespace owns: `<namespace>` and everything under `<namespace>:`. `:` cannot
 * occur in a namespace name, so `team:*` never covers `team-a:…`.
 */
function ownScopes(namespace: string): string[] {
  return [namespace, `${namespace}:*`];
}

function requirementHolds(
  labels: Readonly<Record<string, string>>,
  req: NonNullable<LabelSelector['matchExpressions']>[number],
): boolean {
  const has = Object.hasOwn(labels, req.key);
  const value = labels[req.key];
  switch (req.operator) {
    case 'In':
      return has && (req.values ?? []).includes(value ?? '');
    case 'NotIn':
      return !has || !(req.values ?? []).includes(value ?? '');
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
  }
}

/** Kubernetes LabelSelector semantics: every matchLabels entry and every expression must hold. */
export function selectorMatches(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  return (selector.matchExpressions ?? []).every((req) => requirementHolds(labels, req));
}

/** Whether `policy` selects `namespace` (by name or by label). */
export function policySelects(policy: AccessPolicy, namespace: NamespaceInfo): boolean {
  if (policy.spec.namespaces?.includes(namespace.name)) return true;
  const selector = policy.spec.namespaceSelector;
  return selector !== undefined && selectorMatches(selector, namespace.labels);
}

/**
 * The grants of `namespace`: its own space, plus every selecting policy's usernames, scopes and
 * groups; Kubernetes authentication if any policy allows it. The lifetime limit is the longest one
 * a selecting policy sets (a policy without one does not lift another's), none when none sets one.
 */
export function grantsFor(policies: readonly AccessPolicy[], namespace: NamespaceInfo): Grants {
  const selecting = policies.filter((p) => policySelects(p, namespace));
  const usernames = new Set([ownUsernamePattern(namespace.name)]);
  const scopes = new Set(ownScopes(namespace.name));
  const groups = new Set<string>();
  let maxKeyLifetimeMs: number | null = null;
  let kubernetesAuthentication = false;
  for (const { spec } of selecting) {
    for (const u of spec.usernames ?? []) usernames.add(u);
    for (const s of spec.scopes ?? []) scopes.add(s);
    // Admission refuses system: groups; a policy admitted before that rule still grants none.
    for (const g of spec.groups ?? []) if (!g.startsWith(RESERVED_GROUP_PREFIX)) groups.add(g);
    const lifetime = spec.maxKeyLifetime === undefined ? undefined : parseDuration(spec.maxKeyLifetime);
    if (lifetime !== undefined) maxKeyLifetimeMs = Math.max(maxKeyLifetimeMs ?? 0, lifetime);
    kubernetesAuthentication ||= spec.kubernetesAuthentication === true;
  }
  return {
    namespace: namespace.name,
    usernames: [...usernames],
    scopes: [...scopes],
    groups: [...groups],
    maxKeyLifetimeMs,
    kubernetesAuthentication,
    actAs: actAsGrantsOf(selecting),
    policies: selecting.map((p) => p.metadata.name).sort(),
  };
}

/** Username globs match as every glob of api/actas.ts does. */
export { globMatches as usernameGlobMatches } from '../../api/actas.js';

function usernamePermitted(grants: Grants, username: string): boolean {
  return grants.usernames.some((p) => globMatches(p, username));
}

function scopePermitted(grants: Grants, scope: string): boolean {
  return anyScopeCovers(grants.scopes, scope);
}

function groupPermitted(grants: Grants, group: string): boolean {
  return !group.startsWith(RESERVED_GROUP_PREFIX) && grants.groups.includes(group);
}

function notPermitted(field: string, value: string, grants: Grants): Violation {
  return {
    reason: NOT_PERMITTED,
    message: `${field} ${JSON.stringify(value)} is not permitted in namespace ${grants.namespace}${grantedBy(grants)}`,
  };
}

function grantedBy(grants: Grants): string {
  return grants.policies.length === 0
    ? ' (no AccessPolicy selects it)'
    : ` (AccessPolicies: ${grants.policies.join(', ')})`;
}

/** The ServiceUser fields the grants constrain. `username` is the effective one. */
export interface ServiceUserClaim {
  readonly username: string;
  /** True when the username comes from metadata.name (spec.username unset). */
  readonly usernameFromName: boolean;
  readonly groups: readonly string[];
  readonly scopes: readonly string[];
  /** spec.actAs; unset means no acting. */
  readonly actAs?: ActAsPatterns;
}

/** The first field of a ServiceUser beyond the grants, or undefined when it fits. */
export function checkServiceUser(claim: ServiceUserClaim, grants: Grants): Violation | undefined {
  if (!usernamePermitted(grants, claim.username)) {
    return notPermitted(claim.usernameFromName ? 'metadata.name' : 'spec.username', claim.username, grants);
  }
  const group = claim.groups.findIndex((g) => !groupPermitted(grants, g));
  if (group >= 0) return notPermitted(`spec.groups[${group}]`, claim.groups[group] ?? '', grants);
  const scope = claim.scopes.findIndex((s) => !scopePermitted(grants, s));
  if (scope >= 0) return notPermitted(`spec.scopes[${scope}]`, claim.scopes[scope] ?? '', grants);
  const actAs = claim.actAs && actAsBeyondGrants(claim.actAs, grants.actAs);
  if (actAs) return notPermitted(actAs[0], actAs[1], grants);
  return undefined;
}

/**
 * The first field of an ApiKey beyond the grants: a scope no policy grants, or a lifetime beyond
 * the longest granted one. `from` is when the current secret was (or will be) issued: the lifetime
 * counts from there, as ttl does.
 */
export function checkApiKey(spec: ApiKeySpec, grants: Grants, from: Date): Violation | undefined {
  const scopes = spec.scopes ?? [];
  const scope = scopes.findIndex((s) => !scopePermitted(grants, s));
  if (scope >= 0) return notPermitted(`spec.scopes[${scope}]`, scopes[scope] ?? '', grants);
  const max = grants.maxKeyLifetimeMs;
  if (max === null) return undefined;
  const limit = formatDuration(max);
  const where = `in namespace ${grants.namespace}${grantedBy(grants)}`;
  if (spec.ttl !== undefined) {
    if ((parseDuration(spec.ttl) ?? 0) > max) {
      return {
        reason: NOT_PERMITTED,
        message: `spec.ttl ${JSON.stringify(spec.ttl)} is not permitted: keys live at most ${limit} ${where}`,
      };
    }
    return undefined;
  }
  if (spec.expiresAt !== undefined) {
    if (new Date(spec.expiresAt).getTime() - from.getTime() > max) {
      return {
        reason: NOT_PERMITTED,
        message: `spec.expiresAt ${JSON.stringify(spec.expiresAt)} is not permitted: keys live at most ${limit} from issue or rotation ${where}`,
      };
    }
    return undefined;
  }
  return {
    reason: NOT_PERMITTED,
    message: `a key without spec.ttl or spec.expiresAt is not permitted: keys live at most ${limit} ${where}`,
  };
}

/** The expiry to store: the desired one, never later than the granted lifetime allows. */
export function grantedExpiry(desired: Date | null, grants: Grants, from: Date): Date | null {
  const max = grants.maxKeyLifetimeMs;
  if (max === null) return desired;
  const latest = from.getTime() + max;
  return desired === null || desired.getTime() > latest ? new Date(latest) : desired;
}

/** The items of `wanted` the grants permit, in order: what may be stored of a NotPermitted spec. */
export function permittedScopes(grants: Grants, wanted: readonly string[]): string[] {
  return wanted.filter((s) => scopePermitted(grants, s));
}

export function permittedGroups(grants: Grants, wanted: readonly string[]): string[] {
  return wanted.filter((g) => groupPermitted(grants, g));
}
