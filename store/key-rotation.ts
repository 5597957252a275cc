import { recordAudit } from './audit.js';
import { StoreError } from './errors.js';
import { type ApiKeyState, hashBuffer, keyState, lockKey, type StoreContext, toKey } from './rows.js';
import { inTransaction, notifyChange } from './tx.js';

export interface RotateKeyInput {
  readonly uid: string;
  readonly newHash: Uint8Array;
  readonly displayPrefix: string;
  /** How long the secret workloads hold keeps working; 0 ends it at once. */
  readonly graceSeconds: number;
  /** Why, for the audit trail: `annotation`, `schedule`, `SecretLost`… */
  readonly reason: string;
  /**
   * Hash of the token the key's Secret holds now, which becomes the previous secret. Defaults to
   * the current secret. Any other secret is dropped: so after a crash between "new hash stored"
   * and "Secret written", rotating again with the Secret's hash keeps the token workloads hold
   * and drops the one nobody received. A hash that matches none (a lost Secret) keeps nothing.
   */
  readonly heldHash?: Uint8Array;
  /** New fixed expiry; with both this and lifetimeSeconds undefined the current one stays. */
  readonly expiresAt?: Date | null;
  /**
   * Lifetime counted from the rotation by the database clock (the earlier of this and expiresAt
   * applies), so the expiry agrees to the millisecond with one derived from `rotatedAt` later.
   */
  readonly lifetimeSeconds?: number | null;
}

export type RotateKeyResult =
  /** `rotated` is false when newHash was already current (an idempotent retry). */
  | { readonly kind: 'ok'; readonly key: ApiKeyState; readonly rotated: boolean }
  | { readonly kind: 'not_found' }
  | { readonly kind: 'revoked' }
  | { readonly kind: 'hash_in_use' };

/**
 * Makes `newHash` the current secret. The secret workloads hold (see `heldHash`) stays valid
 * for the grace period; any other secret is dropped, so a key never has more than two.
 */
export async function rotateKey(ctx: StoreContext, input: RotateKeyInput): Promise<RotateKeyResult> {
  const newHash = hashBuffer(input.newHash);
  const heldHash = input.heldHash ? hashBuffer(input.heldHash) : undefined;
  if (!Number.isFinite(input.graceSeconds) || input.graceSeconds < 0) {
    throw new StoreError('graceSeconds must be a finite number >= 0', undefined, false);
  }
  return inTransaction(ctx.pool, 'rotate key', async (client) => {
    const key = await lockKey(client, input.uid);
    if (!key) return { kind: 'not_found' };
    if (key.revoked_at) return { kind: 'revoked' };

    const secrets = await client.query<{ hash: Buffer; not_after: Date | null; display_prefix: string }>(
      'SELECT hash, not_after, display_prefix FROM api_key_secrets WHERE api_key_id = $1',
      [key.id],
    );
    const mine = secrets.rows.find((s) => s.hash.equals(newHash));
    if (mine) {
      if (mine.not_after === null) return { kind: 'ok', key: toKey(key), rotated: false };
      return { kind: 'hash_in_use' };
    }
    const owner = await client.query('SELECT 1 FROM api_key_secrets WHERE hash = $1', [newHash]);
    if (owner.rowCount) return { kind: 'hash_in_use' };

    const held = heldHash
      ? secrets.rows.find((s) => s.hash.equals(heldHash))
      : secrets.rows.find((s) => s.not_after === null);
    // Delete before update before insert: each step keeps the one-current/one-previous indexes.
    await client.query('DELETE FROM api_key_secrets WHERE api_key_id = $1 AND hash <> $2', [
      key.id,
      held?.hash ?? newHash,
    ]);
    let previousValidUntil: Date | null = null;
    if (held) {
      // A held secret already past its grace is not revived.
      const { rows } = await client.query<{ not_after: Date }>(
        `UPDATE api_key_secrets
            SET not_after = LEAST(COALESCE(not_after, 'infinity'), now() + make_interval(secs => $2))
          WHERE hash = $1 RETURNING not_after`,
        [held.hash, input.graceSeconds],
      );
      previousValidUntil = rows[0]!.not_after;
    }
    await client.query('INSERT INTO api_key_secrets (hash, api_key_id, display_prefix) VALUES ($1, $2, $3)', [
      newHash,
      key.id,
      input.displayPrefix,
    ]);
    const setExpiry = input.expiresAt !== undefined || input.lifetimeSeconds !== undefined;
    await client.query(
      `UPDATE api_keys SET rotated_at = now(), updated_at = now(),
              expires_at = CASE WHEN $2
                THEN LEAST($3::timestamptz, now() + make_interval(secs => $4::float8))
                ELSE expires_at END
        WHERE id = $1`,
      [key.id, setExpiry, input.expiresAt ?? null, input.lifetimeSeconds ?? null],
    );
    const state = (await keyState(client, key.id))!;
    await recordAudit(client, ctx.actor, {
      action: 'key.rotated',
      namespace: state.ref.namespace,
      name: state.ref.name,
      serviceUserId: state.serviceUserId,
      keyId: state.keyId,
      detail: {
        reason: input.reason,
        tokenPrefix: state.tokenPrefix,
        previousTokenPrefix: held?.display_prefix ?? null,
        graceSeconds: input.graceSeconds,
        previousValidUntil,
        droppedSecrets: secrets.rows.length - (held ? 1 : 0),
        ...(setExpiry && { expiresAt: state.expiresAt }),
      },
    });
    await notifyChange(client, {
      entity: 'key',
      op: 'rotated',
      keyId: state.keyId,
      userId: state.serviceUserId,
    });
    return { kind: 'ok', key: state, rotated: true };
  });
}

/**
 * Ends the grace of the key's previous secret now, if it is still running: a 0s rotation holds
 * the replaced token only until the Secret holds the new one. Returns the instant it ended, or
 * null when no grace was running.
 */
export async function endGrace(ctx: StoreContext, uid: string): Promise<Date | null> {
  return inTransaction(ctx.pool, 'end grace', async (client) => {
    const { rows } = await client.query<{
      key_id: string;
      namespace: string;
      name: string;
      service_user_id: string;
      not_after: Date;
    }>(
      `UPDATE api_key_secrets s SET not_after = now()
         FROM api_keys k
        WHERE k.id = s.api_key_id AND k.uid = $1 AND s.not_after > now()
        RETURNING k.key_id, k.namespace, k.name, k.service_user_id, s.not_after`,
      [uid],
    );
    const key = rows[0];
    if (!key) return null;
    await recordAudit(client, ctx.actor, {
      action: 'key.grace_ended',
      namespace: key.namespace,
      name: key.name,
      serviceUserId: key.service_user_id,
      keyId: key.key_id,
      detail: { reason: 'secret_written' },
    });
    await notifyChange(client, {
      entity: 'key',
      op: 'updated',
      keyId: key.key_id,
      userId: key.service_user_id,
    });
    return key.not_after;
  });
}
