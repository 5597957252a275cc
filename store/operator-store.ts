import type pg from 'pg';
import { generateKeyId } from '../credentials/token.js';
import { recordExpiry } from './audit.js';
import { endGrace, type RotateKeyInput, type RotateKeyResult, rotateKey } from './key-rotation.js';
import { type KeyPatch, type UpdateKeyResult, updateKey } from './key-update.js';
import {
  countKeys,
  getKey,
  type IssueKeyInput,
  type IssueKeyResult,
  issueKey,
  revokeKey,
  secretMatch,
} from './keys.js';
import { processLeakReports } from './leak-reports.js';
import { type RecentUse, recentlyUsedKeys } from './recent-use.js';
import type {
  ApiKeyState,
  KeyCounts,
  SecretMatch,
  ServiceUserRecord,
  ServiceUserSpec,
  StoreContext,
} from './rows.js';
import {
  deleteServiceUser,
  getServiceUser,
  type UpsertServiceUserResult,
  upsertServiceUser,
} from './users.js';

export { revokedWithUser } from './key-reissue.js';
export type { RotateKeyInput, RotateKeyResult } from './key-rotation.js';
export type { KeyPatch, UpdateKeyResult } from './key-update.js';
export type { IssueKeyInput, IssueKeyResult } from './keys.js';
export type {
  ApiKeyState,
  KeyCounts,
  ObjectRef,
  SecretMatch,
  ServiceUserRecord,
  ServiceUserSpec,
} from './rows.js';
export type { UpsertServiceUserResult } from './users.js';

export interface OperatorStoreOptions {
  /** Recorded as the actor of every audit event. */
  readonly actor?: string;
  /** Public key id source; injectable for tests. */
  readonly newKeyId?: () => string;
}

/**
 * The operator's side of the credential store. Every write is one transaction that also records
 * its audit events and its NOTIFY, and is idempotent: repeating a call with the same inputs after
 * a crash or a lost reply changes nothing and answers as the first call did. The work is in
 * users.ts, keys.ts, key-rotation.ts, key-update.ts, key-reissue.ts, leak-reports.ts and audit.ts; this class binds it to a pool.
 */
export class OperatorStore {
  readonly #ctx: StoreContext;

  constructor(pool: pg.Pool, options: OperatorStoreOptions = {}) {
    this.#ctx = {
      pool,
      actor: options.actor ?? 'keyward-operator',
      newKeyId: options.newKeyId ?? generateKeyId,
    };
  }

  /** Creates or updates the store's row for a ServiceUser (suspension included). */
  upsertServiceUser(spec: ServiceUserSpec): Promise<UpsertServiceUserResult> {
    return upsertServiceUser(this.#ctx, spec);
  }

  /**
   * Marks the user deleted (its username becomes free) and revokes all its keys. Unknown or
   * already deleted users are fine: the finalizer can proceed.
   */
  deleteServiceUser(uid: string): Promise<{ deleted: boolean; revokedKeyIds: string[] }> {
    return deleteServiceUser(this.#ctx, uid);
  }

  /**
   * Creates the key with `hash` as its current secret. Call it after the token is in the Secret,
   * so that the store never accepts a token nobody holds beyond a crash-and-retry.
   */
  issueKey(input: IssueKeyInput): Promise<IssueKeyResult> {
    return issueKey(this.#ctx, input);
  }

  /**
   * Makes `newHash` the current secret. The secret workloads hold (see `heldHash`) stays valid
   * for the grace period; any other secret is dropped, so a key never has more than two.
   */
  rotateKey(input: RotateKeyInput): Promise<RotateKeyResult> {
    return rotateKey(this.#ctx, input);
  }

  /** Ends a running grace of the previous secret now (a 0s rotation's hold); null if none ran. */
  endGrace(uid: string): Promise<Date | null> {
    return endGrace(this.#ctx, uid);
  }

  /** Applies the given fields (disabled, expiry, scopes, description); omitted ones stay. */
  updateKey(uid: string, patch: KeyPatch): Promise<UpdateKeyResult> {
    return updateKey(this.#ctx, uid, patch);
  }

  /** Revokes the key for good (the ApiKey's finalizer). Unknown or already revoked keys are fine. */
  revokeKey(uid: string, reason = 'deleted'): Promise<{ revoked: boolean }> {
    return revokeKey(this.#ctx, uid, reason);
  }

  /** Revokes the keys whose tokens were reported leaked (see leak-reports.ts). */
  processLeakReports(
    namespaces: readonly string[] | null,
    limit = 100,
  ): Promise<Array<{ namespace: string; name: string; keyId: string; source: string | null }>> {
    return processLeakReports(this.#ctx, namespaces, limit);
  }

  /** Live keys used within the last `withinSeconds` (recent-use.ts). */
  recentlyUsedKeys(namespaces: readonly string[] | null, withinSeconds: number): Promise<RecentUse[]> {
    return recentlyUsedKeys(this.#ctx, namespaces, withinSeconds);
  }

  /** Records `key.expired` once per expiry; returns whether it wrote (see audit.ts). */
  recordExpiry(uid: string): Promise<boolean> {
    return recordExpiry(this.#ctx, uid);
  }

  getServiceUser(uid: string): Promise<ServiceUserRecord | null> {
    return getServiceUser(this.#ctx, uid);
  }

  /** The key's store state by ApiKey uid, including revoked keys; null if never issued. */
  getKey(uid: string): Promise<ApiKeyState | null> {
    return getKey(this.#ctx, uid);
  }

  /** Whether `hash` (of the token in the key's Secret) is the key's current or previous secret. */
  secretMatch(uid: string, hash: Uint8Array): Promise<SecretMatch> {
    return secretMatch(this.#ctx, uid, hash);
  }

  /** Key counts for a ServiceUser's status (by the ServiceUser's uid). */
  countKeys(serviceUserUid: string): Promise<KeyCounts> {
    return countKeys(this.#ctx, serviceUserUid);
  }
}
