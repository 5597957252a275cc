import type { ApiKey, ApiKeySpec } from '../../api/apikey.js';
import { uncoveredScopes } from '../../api/scopes.js';
import type { ServiceUser } from '../../api/serviceuser.js';
import type { ApiKeyState, KeyPatch, ServiceUserRecord } from '../../store/operator-store.js';
import { checkApiKey, type Grants, grantedExpiry, permittedScopes } from '../accesspolicy/grants.js';
import type { CheckFailure } from '../conditions.js';
import type { SecretOwnership } from '../secret.js';
import { desiredExpiry, readiness, type StoredKey } from './policy.js';
import * as R from './reasons.js';

/**
 * The pure half of the ApiKey reconciler: given what gather.ts read, which check fails first.
 * The chain runs before any credential work; a failure stops the issue, rotation or repair but
 * never what reduces a key (reductions below), which applies whatever blocks the key.
 */
export interface Blocked extends CheckFailure {
  /** Worth a Warning Event: the key enters this state (not on every resync). */
  event?: boolean;
  /** Look again after this long even if nothing changes. */
  recheckMs?: number;
  /** Waiting for another object: Reconciling=True with the message. */
  inFlight?: boolean;
}

/** What the chain looks at: a subset of KeyFacts, so tables can state it directly. */
export interface CheckInput {
  apiKey: ApiKey;
  state: ApiKeyState | null;
  revokedWithUser: boolean;
  user: ServiceUser | undefined;
  storedUser: ServiceUserRecord | null;
  userReadyReason: string | undefined;
  grants: Grants;
  ownership: SecretOwnership;
  liveKeys: number | undefined;
  writeFailure: string | undefined;
  now: Date;
}

/** A tenant's Secret carries no keyward label, so no informer event announces that it is gone. */
export const SECRET_CONFLICT_RECHECK_MS = 60_000;
/** A slot frees when another key of the user is revoked, which no event of this key announces. */
export const MAX_KEYS_RECHECK_MS = 60_000;

type Check = (input: CheckInput) => Blocked | undefined;

const refName = (i: CheckInput): string => i.apiKey.spec.serviceUserRef.name;
const previousReady = (i: CheckInput): { reason: string; message: string } | undefined =>
  i.apiKey.status?.conditions?.find((c) => c.type === 'Ready');

/** The key's user exists, is stored and verifies: what issuing (again) needs. */
function userLive(i: Pick<CheckInput, 'user' | 'storedUser'>): boolean {
  return (
    i.user !== undefined && i.storedUser !== null && !i.storedUser.deletedAt && !i.storedUser.notPermitted
  );
}

const revoked: Check = (i) => {
  const s = i.state;
  if (!s?.revokedAt) return undefined;
  const at = s.revokedAt.toISOString();
  if (i.revokedWithUser) {
    if (userLive(i)) return undefined;
    return {
      reason: R.SERVICE_USER_DELETED,
      message: `key ${s.keyId} was revoked at ${at} with ServiceUser ${refName(i)}; it is issued again with a fresh secret when that ServiceUser exists again`,
      stalled: true,
    };
  }
  if (s.revokedReason === 'leaked')
    return {
      reason: R.LEAKED,
      message: `key ${s.keyId} was revoked at ${at} because its token was reported leaked; re-create the ApiKey to issue a new one`,
      stalled: true,
    };
  return {
    reason: R.REVOKED,
    message: `key ${s.keyId} was revoked at ${at}; re-create the ApiKey to issue a new one`,
    stalled: true,
  };
};

const notPermitted: Check = (i) => {
  const from = i.state ? (i.state.rotatedAt ?? i.state.issuedAt) : i.now;
  const violation = checkApiKey(i.apiKey.spec, i.grants, from);
  if (!violation) return undefined;
  const previous = previousReady(i);
  return {
    reason: R.NOT_PERMITTED,
    message: violation.message,
    stalled: true,
    event: previous?.reason !== R.NOT_PERMITTED || previous.message !== violation.message,
  };
};

const userMissing: Check = (i) =>
  i.user
    ? undefined
    : {
        reason: R.SERVICE_USER_NOT_FOUND,
        message: `ServiceUser ${refName(i)} does not exist in namespace ${i.apiKey.metadata.namespace}`,
        stalled: false,
        inFlight: true,
      };

const userNotPermitted: Check = (i) =>
  i.storedUser?.notPermitted || (!i.storedUser && i.userReadyReason === R.NOT_PERMITTED)
    ? {
        reason: R.SERVICE_USER_NOT_PERMITTED,
        message: `ServiceUser ${refName(i)} asks for more than its AccessPolicies grant; no key of it verifies`,
        stalled: false,
        inFlight: true,
      }
    : undefined;

const userNotStored: Check = (i) =>
  !i.storedUser || i.storedUser.deletedAt
    ? {
        reason: R.SERVICE_USER_NOT_READY,
        message: `ServiceUser ${refName(i)} is not in the credential store yet`,
        stalled: false,
        inFlight: true,
      }
    : undefined;

const scopeNotGranted: Check = (i) => {
  const missing = uncoveredScopes(i.user?.spec.scopes ?? [], i.apiKey.spec.scopes ?? []);
  if (missing.length === 0) return undefined;
  return {
    reason: R.SCOPE_NOT_GRANTED,
    message: `ServiceUser ${refName(i)} does not grant ${missing.join(', ')}; such scopes are never effective for this key`,
    stalled: true,
  };
};

/** Saves writing a Secret the store would refuse; the issuing transaction decides (actions.ts). */
const maxKeys: Check = (i) => {
  const max = i.user?.spec.maxKeys;
  if (max === undefined || i.liveKeys === undefined || i.liveKeys < max) return undefined;
  return {
    reason: R.MAX_KEYS_EXCEEDED,
    message: maxKeysMessage(refName(i), max),
    stalled: true,
    recheckMs: MAX_KEYS_RECHECK_MS,
  };
};

const secretConflict: Check = (i) => {
  if (i.ownership.kind !== 'foreign') return undefined;
  return {
    reason: R.SECRET_CONFLICT,
    message: i.ownership.message,
    stalled: false,
    event: previousReady(i)?.reason !== R.SECRET_CONFLICT,
    recheckMs: SECRET_CONFLICT_RECHECK_MS,
  };
};

const secretWriteFailed: Check = (i) =>
  i.writeFailure === undefined
    ? undefined
    : {
        reason: R.SECRET_WRITE_FAILED,
        message: `the API server refused the Secret: ${i.writeFailure}; keyward tries again when the ApiKey changes`,
        stalled: true,
      };

/** In order: the first failure is the key's Ready reason. */
const CHAIN: readonly Check[] = [
  revoked,
  notPermitted,
  userMissing,
  userNotPermitted,
  userNotStored,
  scopeNotGranted,
  maxKeys,
  secretConflict,
  secretWriteFailed,
];

export function firstFailure(input: CheckInput): Blocked | undefined {
  for (const check of CHAIN) {
    const failed = check(input);
    if (failed) return failed;
  }
  return undefined;
}

export function maxKeysMessage(userName: string, max: number): string {
  return `ServiceUser ${userName} allows at most ${max} ApiKeys`;
}

/**
 * The store fields of a live key that the spec (or the grants) would make stricter: disabled,
 * an earlier expiry, narrower scopes. Applied even while the key is blocked (DESIGN.md §6): a
 * block stops what gives a key more, never what takes from it. Undefined when nothing is stricter.
 */
export function reductions(spec: ApiKeySpec, state: ApiKeyState, grants: Grants): KeyPatch | undefined {
  if (state.revokedAt) return undefined;
  const patch: { disabled?: boolean; expiresAt?: Date; scopes?: string[] } = {};
  if (spec.disabled === true && !state.disabled) patch.disabled = true;
  const from = state.rotatedAt ?? state.issuedAt;
  const expiry = grantedExpiry(desiredExpiry(spec, from), grants, from);
  if (expiry && (!state.expiresAt || expiry < state.expiresAt)) patch.expiresAt = expiry;
  const scopes = spec.scopes ? permittedScopes(grants, spec.scopes) : null;
  const narrower =
    scopes !== null &&
    (state.scopes === null || uncoveredScopes(state.scopes, scopes).length === 0) &&
    [...scopes].sort().join('\n') !== [...(state.scopes ?? [])].sort().join('\n');
  if (narrower) patch.scopes = scopes;
  return Object.keys(patch).length > 0 ? patch : undefined;
}

/**
 * Ready once the credentials are in place: the first of Expired (Stalled: only a spec change or a
 * manual rotation brings the key back, so Flux `wait` and kstatus stop waiting), Disabled and
 * Suspended (both switched off on purpose: not Stalled, kstatus Current, Argo CD Suspended).
 */
export function readyFailure(
  stored: StoredKey,
  userSuspended: boolean,
  secretName: string,
  now: Date,
): { failure: CheckFailure | undefined; message: string; expired: boolean } {
  const ready = readiness(stored, userSuspended, secretName, now);
  if (ready.ready) return { failure: undefined, message: ready.message, expired: false };
  return {
    failure: { reason: ready.reason, message: ready.message, stalled: ready.expired },
    message: ready.message,
    expired: ready.expired,
  };
}
