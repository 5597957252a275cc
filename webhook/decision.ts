import { anyScopeCovers, isValidScope } from '../api/scopes.js';
import type { KeyLookup } from '../store/lookup.js';

/**
 * Why a request was not allowed. The first group never reaches the store or never matched a
 * key, so all of them get the same generic message: telling a caller "bad checksum" versus
 * "unknown" would only help someone probing. The second group belongs to a real key, whose
 * holder may learn what is wrong with it (DESIGN.md §5).
 */
export type DenyReason =
  | 'missing'
  | 'malformed'
  | 'bad_checksum'
  | 'wrong_prefix'
  | 'unknown'
  | 'revoked'
  | 'rotated'
  | 'expired'
  | 'disabled'
  | 'suspended'
  | 'not_permitted'
  | 'not_kubernetes_credential';

export type KeyDenyReason = Extract<
  DenyReason,
  'revoked' | 'rotated' | 'expired' | 'disabled' | 'suspended' | 'not_permitted' | 'not_kubernetes_credential'
>;

export const GENERIC_MESSAGE = 'The API key is invalid.';
export const MISSING_MESSAGE = 'Authentication credentials were not provided.';

const MESSAGES: Record<DenyReason, string> = {
  missing: MISSING_MESSAGE,
  malformed: GENERIC_MESSAGE,
  bad_checksum: GENERIC_MESSAGE,
  wrong_prefix: GENERIC_MESSAGE,
  unknown: GENERIC_MESSAGE,
  revoked: 'The API key has been revoked.',
  rotated: 'The API key has been rotated and the grace period of this secret is over.',
  expired: 'The API key has expired.',
  disabled: 'The API key is disabled.',
  suspended: 'The service user of this API key is suspended.',
  not_permitted: 'The API key or its service user asks for more than its AccessPolicy grants.',
  // No AccessPolicy lets this key's namespace authenticate to Kubernetes (/tokenreview only).
  not_kubernetes_credential: 'The API key is not allowed to authenticate to Kubernetes.',
};

/** Kubernetes reserves these; no identity keyward vouches for ever carries one. */
const RESERVED_GROUP_PREFIX = 'system:';

/**
 * The groups a key's user gets on TokenReview: each stored group with `prefix` (`keyward:` by
 * default, like kube-apiserver's --oidc-groups-prefix), so an ordinary group name can never turn
 * into one RBAC already means. A `system:` group is dropped before and after prefixing, whatever
 * the store holds: admission and the store refuse them too, this is the last line.
 */
export function kubernetesGroups(groups: readonly string[], prefix: string): string[] {
  const out: string[] = [];
  for (const group of groups) {
    if (group.startsWith(RESERVED_GROUP_PREFIX)) continue;
    const prefixed = `${prefix}${group}`;
    if (!prefixed.startsWith(RESERVED_GROUP_PREFIX)) out.push(prefixed);
  }
  return out;
}

export function denyMessage(reason: DenyReason): string {
  return MESSAGES[reason];
}

/**
 * What the webhook keeps of a store row: all but the key's namespace and name and the secret's
 * display prefix, which no answer, metric or log line of the webhook uses (logs carry the token's
 * own prefix). Each would cost a string per cached key.
 */
export type KeyRecord = Omit<KeyLookup, 'tokenPrefix' | 'namespace' | 'name'>;

/**
 * What a cache entry knows about a key: its record plus what is derived from it once (effective
 * scopes, header values, the instants it stops verifying), so the hot path does no array or Date
 * work. Implemented by key-state.ts's CachedKey.
 */
export interface KeyState {
  readonly key: KeyRecord;
  /** The user's scopes narrowed by the key's, per api/scopes.ts. */
  readonly scopes: readonly string[];
  /** Epoch ms at which the key stops verifying by time alone (expiry or grace end), or Infinity. */
  readonly deadline: number;
  /** `X-Keyward-Scopes` / `X-Keyward-Groups` values, built once per cache fill. */
  readonly scopesHeader: string;
  readonly groupsHeader: string;
  /** Revoked, or its user deleted. */
  readonly revoked: boolean;
  /** Epoch ms at which the grace of this (previous) secret ends; Infinity for the current secret. */
  readonly graceEnd: number;
  /** Epoch ms of the key's expiry, or Infinity. */
  readonly expiry: number;
}

/** The `X-Keyward-Groups` value: reserved groups left out, each name header-safe. */
export function groupsHeaderOf(groups: readonly string[]): string {
  return groups
    .filter((g) => !g.startsWith(RESERVED_GROUP_PREFIX))
    .map(headerListItem)
    .join(',');
}

/**
 * Group names are free text in the CRD, and a header value cannot carry control characters
 * (Node throws) and a comma would split one group into two. Percent-encoding just those bytes
 * keeps ordinary names as they are and makes the list unambiguous for any name.
 */
export function headerListItem(value: string): string {
  return /[^\x21-\x7e]|[,%]/.test(value) ? value.replace(/[^\x21-\x2b\x2d-\x7e]|%/gu, encodeChar) : value;
}

function encodeChar(char: string): string {
  return [...Buffer.from(char, 'utf8')]
    .map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`)
    .join('');
}

export type KeyDecision =
  | { readonly result: 'allow' }
  | { readonly result: 'deny'; readonly reason: KeyDenyReason }
  | { readonly result: 'forbidden'; readonly requiredScope: string };

const ALLOW: KeyDecision = { result: 'allow' };
const DENY = Object.fromEntries(
  (
    [
      'revoked',
      'rotated',
      'expired',
      'disabled',
      'suspended',
      'not_permitted',
      'not_kubernetes_credential',
    ] as const
  ).map((reason) => [reason, { result: 'deny', reason } as const]),
) as Record<KeyDenyReason, KeyDecision>;

/**
 * The verdict on a known key at instant `now` (epoch ms). Pure: the caller's clock decides,
 * which is how expiry and grace ends take effect without any notification. The order puts
 * permanent states first, so a revoked key never reports a reversible reason.
 *
 * Every required scope must be granted. Several can come from one request (`?scope=` set by the
 * ingress admin and a header a client may add), and requiring all of them means a client can
 * only ever make its own request stricter. A required scope outside the grammar is granted by
 * nothing, not even `*`: a typo in an ingress annotation must fail closed.
 */
/** `kubernetes`: the key is presented as a Kubernetes credential (TokenReview). */
export function decide(
  state: KeyState,
  now: number,
  requiredScopes: readonly string[] = [],
  kubernetes = false,
): KeyDecision {
  if (state.revoked) return DENY.revoked;
  if (now >= state.graceEnd) return DENY.rotated;
  if (now >= state.expiry) return DENY.expired;
  const { key } = state;
  if (key.disabled) return DENY.disabled;
  if (key.suspended) return DENY.suspended;
  if (key.notPermitted) return DENY.not_permitted;
  if (kubernetes && !key.kubernetesAuthentication) return DENY.not_kubernetes_credential;
  for (const requiredScope of requiredScopes) {
    if (!isValidScope(requiredScope) || !anyScopeCovers(state.scopes, requiredScope)) {
      return { result: 'forbidden', requiredScope };
    }
  }
  return ALLOW;
}
