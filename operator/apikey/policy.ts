import { createHash } from 'node:crypto';
import type { ApiKeySpec } from '../../api/apikey.js';
import { parseDuration } from '../../api/duration.js';
import { DISABLED, EXPIRED, ISSUED, LEAKED, REVOKED, SUSPENDED } from './reasons.js';

/** What the store holds for a key, as far as the decisions below need it. */
export interface StoredKey {
  keyId: string;
  /** Grace end of the secret replaced by the last rotation, if one is kept. */
  previousValidUntil: Date | null;
  issuedAt: Date;
  /** When the current secret was created (issuedAt until the first rotation). */
  rotatedAt: Date;
  expiresAt: Date | null;
  disabled: boolean;
  revokedAt: Date | null;
  /** `leaked`: revoked on a leak report (docs/secret-scanning.md). */
  revokedReason?: string | null;
}

/** The key's Secret as a decision may see it: never the token, only where it stands in the store. */
export interface SecretView {
  /** 'missing': no Secret or no token entry; 'none': a token the store does not know for this key. */
  match: 'current' | 'previous' | 'none' | 'missing';
  /** The Secret's controller reference points at this ApiKey (same uid). */
  ownedByKey: boolean;
  /**
   * The keyward.dev/rotate value that produced the Secret's token, recorded on the Secret in the
   * same write as the token, so a rotation request is acted on exactly once even across crashes.
   */
  rotationRequest: string | null;
}

export type RotationReason = 'Requested' | 'Scheduled' | 'SecretLost' | 'RotationResumed';

export type CredentialAction =
  | { kind: 'none' }
  /** First issue. `adopt`: the Secret already holds a token from an attempt that crashed before the store write. */
  | { kind: 'issue'; adopt: boolean; request: string | null }
  /**
   * New current secret. `keepHeld`: the token the Secret holds now stays accepted for the grace
   * period; otherwise every other secret of the key stops at once. `request` is recorded on the Secret.
   */
  | { kind: 'rotate'; reason: RotationReason; keepHeld: boolean; request: string | null }
  | { kind: 'revoked' };

export interface CredentialDecision {
  reason: string;
  message: string;
  action: CredentialAction;
}

export interface CredentialInput {
  spec: ApiKeySpec;
  stored: StoredKey | null;
  secret: SecretView;
  /** Value of the keyward.dev/rotate annotation, if any. */
  rotateRequest: string | null;
  /** requestDigest() of the rotate requests the key has already answered (status.rotationRequests). */
  answeredRequests: readonly string[];
  now: Date;
}

/** How many answered rotate requests status remembers; a revert to an older value still rotates. */
const ROTATION_REQUEST_HISTORY = 16;

/**
 * What status remembers of a rotate request: annotation values may be long (up to the 256 KiB of
 * all annotations), so only the first 16 hex digits of their SHA-256.
 */
export function requestDigest(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 16);
}

/** `history` with `value`'s digest appended (moved to the end if present), at most the last 16. */
export function rememberRequest(history: readonly string[], value: string | null): string[] {
  if (value === null) return [...history];
  const digest = requestDigest(value);
  return [...history.filter((d) => d !== digest), digest].slice(-ROTATION_REQUEST_HISTORY);
}

/**
 * Decides what must happen to the key's secrets. The write order this implies is what makes a
 * crash at any point safe (see operator/README.md): issue writes the Secret first and the hash
 * second; rotate stores the new hash (old one moved to grace) first and the Secret second, so a
 * crash between the two is detected here as "the Secret holds the previous secret" and resumed.
 */
export function decideCredentials(input: CredentialInput): CredentialDecision {
  const { stored, secret, rotateRequest, now } = input;
  if (!stored) {
    const adopt = secret.match !== 'missing' && secret.ownedByKey;
    return {
      reason: 'Issuing',
      message: adopt ? 'storing the hash of the token already written to the Secret' : 'issuing a new key',
      action: { kind: 'issue', adopt, request: rotateRequest },
    };
  }
  if (stored.revokedAt && stored.revokedReason === 'leaked') {
    return {
      reason: LEAKED,
      message: `key ${stored.keyId} was revoked at ${stored.revokedAt.toISOString()} because its token was reported leaked; re-create the ApiKey to issue a new one`,
      action: { kind: 'revoked' },
    };
  }
  if (stored.revokedAt) {
    return {
      reason: REVOKED,
      message: `key ${stored.keyId} was revoked at ${stored.revokedAt.toISOString()}; re-create the ApiKey to issue a new one`,
      action: { kind: 'revoked' },
    };
  }
  const expired = isExpired(input.spec, stored, now);
  if (secret.match === 'current') {
    // A value that rotated the key once never does again: a GitOps revert to it is not a request.
    const answered =
      rotateRequest === secret.rotationRequest ||
      (rotateRequest !== null && input.answeredRequests.includes(requestDigest(rotateRequest)));
    if (rotateRequest !== null && !answered) {
      // A manual rotation renews an expired ttl key (docs/rotation.md), but the expired token it
      // replaces has already stopped verifying and must not come back for a grace period.
      return {
        reason: 'Requested',
        message: `rotation requested by annotation keyward.dev/rotate=${JSON.stringify(rotateRequest)}`,
        action: { kind: 'rotate', reason: 'Requested', keepHeld: !expired, request: rotateRequest },
      };
    }
    const due = scheduledRotationAt(input.spec, stored);
    if (due && now.getTime() >= due.getTime() && !dead(input.spec, stored, now)) {
      return {
        reason: 'Scheduled',
        message: `scheduled rotation (every ${input.spec.rotation?.every})`,
        action: { kind: 'rotate', reason: 'Scheduled', keepHeld: true, request: secret.rotationRequest },
      };
    }
    return { reason: 'UpToDate', message: 'the Secret holds the current token', action: { kind: 'none' } };
  }
  if (expired) {
    // Repairing the Secret of an expired key would mint a token with a fresh ttl: a revival.
    return {
      reason: 'Expired',
      message: `key ${stored.keyId} has expired; its Secret is not repaired`,
      action: { kind: 'none' },
    };
  }
  if (secret.match === 'previous' && stored.previousValidUntil !== null && stored.previousValidUntil > now) {
    return {
      reason: 'RotationResumed',
      message: 'a rotation stopped before the new token reached the Secret; rotating again',
      action: { kind: 'rotate', reason: 'RotationResumed', keepHeld: true, request: rotateRequest },
    };
  }
  return {
    reason: 'SecretLost',
    message:
      secret.match === 'missing'
        ? 'the Secret or its token entry is missing; only the hash is stored, so a new token is issued'
        : 'the Secret holds a token that is not this key’s current one; a new token is issued',
    action: { kind: 'rotate', reason: 'SecretLost', keepHeld: false, request: rotateRequest },
  };
}

/** When the key stops verifying: the fixed expiresAt, or ttl counted from the current secret. */
export function desiredExpiry(spec: ApiKeySpec, rotatedAt: Date): Date | null {
  if (spec.expiresAt) return new Date(spec.expiresAt);
  const ttl = spec.ttl ? parseDuration(spec.ttl) : undefined;
  return ttl === undefined ? null : new Date(rotatedAt.getTime() + ttl);
}

/**
 * Expired by the store's record or by the spec as it stands now (a shortened ttl is not yet in
 * the store when this runs; a lengthened one takes effect on the next pass, after the store update).
 */
function isExpired(spec: ApiKeySpec, stored: StoredKey, now: Date): boolean {
  const bySpec = desiredExpiry(spec, stored.rotatedAt);
  return [stored.expiresAt, bySpec].some((d) => d !== null && d.getTime() <= now.getTime());
}

/** A key a scheduled rotation must leave alone: expired, disabled or revoked. */
function dead(spec: ApiKeySpec, stored: StoredKey, now: Date): boolean {
  return (
    stored.revokedAt !== null || stored.disabled || spec.disabled === true || isExpired(spec, stored, now)
  );
}

function scheduledRotationAt(spec: ApiKeySpec, stored: Pick<StoredKey, 'rotatedAt'>): Date | null {
  const every = spec.rotation?.every ? parseDuration(spec.rotation.every) : undefined;
  return every === undefined ? null : new Date(stored.rotatedAt.getTime() + every);
}

export interface Readiness {
  ready: boolean;
  reason: string;
  message: string;
  expired: boolean;
}

/** Whether a key whose credentials are in place verifies, and if not, the first reason why. */
export function readiness(
  stored: StoredKey,
  userSuspended: boolean,
  secretName: string,
  now: Date,
): Readiness {
  const expired = stored.expiresAt !== null && now >= stored.expiresAt;
  if (expired) {
    return {
      ready: false,
      reason: EXPIRED,
      message: `key ${stored.keyId} expired at ${stored.expiresAt?.toISOString()}`,
      expired,
    };
  }
  if (stored.disabled)
    return {
      ready: false,
      reason: DISABLED,
      message: `key ${stored.keyId} is disabled by spec.disabled`,
      expired,
    };
  if (userSuspended) {
    return {
      ready: false,
      reason: SUSPENDED,
      message: `key ${stored.keyId} is rejected while its ServiceUser is suspended`,
      expired,
    };
  }
  return {
    ready: true,
    reason: ISSUED,
    message: `key ${stored.keyId} verifies; its token is in Secret ${secretName}`,
    expired,
  };
}

/** The next instant at which the key's state changes by itself: expiry, grace end or scheduled rotation. */
export function nextWakeup(spec: ApiKeySpec, stored: StoredKey, now: Date): Date | null {
  const due = scheduledRotationAt(spec, stored);
  // A rotation due after the key expires, or of a disabled key, never happens.
  const rotation = due && !dead(spec, stored, due) ? due : null;
  const instants = [stored.expiresAt, stored.previousValidUntil, rotation].filter(
    (d): d is Date => d !== null && d > now,
  );
  if (instants.length === 0) return null;
  return new Date(Math.min(...instants.map((d) => d.getTime())));
}
