import type pg from 'pg';
import { recordAudit } from './audit.js';
import { reissueLocked, revokedWithItsUser } from './key-reissue.js';
import {
  type ApiKeyState,
  hashBuffer,
  KEY_STATE_SQL,
  type KeyCounts,
  type KeyRow,
  keyState,
  lockKey,
  matchSecret,
  type ObjectRef,
  read,
  type SecretMatch,
  type StoreContext,
  secretRole,
  toKey,
} from './rows.js';
import { inTransaction, notifyChange, RetryTransaction } from './tx.js';

export interface IssueKeyInput {
  readonly ref: ObjectRef;
  /** The ServiceUser, by name, in the key's own namespace. */
  readonly serviceUserName: string;
  /** SHA-256 of the token already written to the key's Secret. */
  readonly hash: Uint8Array;
  readonly displayPrefix: string;
  readonly description?: string;
  readonly scopes?: readonly string[] | null;
  readonly disabled?: boolean;
  readonly expiresAt?: Date | null;
  /** Lifetime counted from the issue, by the database clock; the earlier of this and expiresAt applies. */
  readonly lifetimeSeconds?: number | null;
  /**
   * The user's maxKeys: the issue is refused when the user already has this many live (not
   * revoked) keys. Checked under a lock on the user row, so concurrent issues cannot overshoot.
   */
  readonly maxKeys?: number;
}

export type IssueKeyResult =
  /**
   * Issued now (`created`), or already issued with this very hash (an idempotent retry).
   * `reissued`: the key had been revoked only because its user was deleted, and the user exists
   * again (a re-created ServiceUser): it lives again with this hash, none of its old secrets.
   */
  | {
      readonly kind: 'ok';
      readonly key: ApiKeyState;
      readonly created: boolean;
      readonly reissued?: boolean;
    }
  /** No live ServiceUser of that name in the namespace. */
  | { readonly kind: 'user_not_found' }
  /** The key exists with another current secret or for another user: rotate, don't issue. */
  | { readonly kind: 'already_issued'; readonly key: ApiKeyState }
  /** This ApiKey object was revoked (deleted, leaked, replaced); it cannot be issued again. */
  | { readonly kind: 'revoked' }
  /** The hash is already a secret of some other key. */
  | { readonly kind: 'hash_in_use' }
  /** The user already has `maxKeys` live keys. */
  | { readonly kind: 'max_keys_exceeded'; readonly maxKeys: number };

/**
 * Creates the key with `hash` as its current secret. Call it after the token is in the Secret,
 * so that the store never accepts a token nobody holds beyond a crash-and-retry.
 */
export async function issueKey(ctx: StoreContext, input: IssueKeyInput): Promise<IssueKeyResult> {
  const hash = hashBuffer(input.hash);
  return inTransaction(ctx.pool, 'issue key', async (client) => {
    // FOR SHARE waits out a concurrent deleteServiceUser, then sees the user gone. With a key
    // limit, FOR UPDATE also makes concurrent issues for the user count one after the other.
    const users = await client.query<{ id: string }>(
      `SELECT id FROM service_users WHERE namespace = $1 AND name = $2 AND deleted_at IS NULL
         ${input.maxKeys === undefined ? 'FOR SHARE' : 'FOR UPDATE'}`,
      [input.ref.namespace, input.serviceUserName],
    );
    const user = users.rows[0];
    if (!user) return { kind: 'user_not_found' };

    const existing = await lockKey(client, input.ref.uid);
    const reissue = existing ? await revokedWithItsUser(client, existing, user.id) : false;
    if (existing && !reissue) {
      if (existing.revoked_at) return { kind: 'revoked' };
      const match = await matchSecret(client, existing.id, hash);
      if (match.role === 'current' && existing.service_user_id === user.id) {
        return { kind: 'ok', key: toKey(existing), created: false };
      }
      return { kind: 'already_issued', key: toKey(existing) };
    }
    const owner = await client.query('SELECT 1 FROM api_key_secrets WHERE hash = $1', [hash]);
    if (owner.rowCount) return { kind: 'hash_in_use' };

    const stale = await client.query<{ id: string; uid: string }>(
      'SELECT id, uid FROM api_keys WHERE namespace = $1 AND name = $2 AND revoked_at IS NULL FOR UPDATE',
      [input.ref.namespace, input.ref.name],
    );
    if (stale.rows[0]) await revokeLocked(ctx, client, stale.rows[0].id, 'replaced');
    if (input.maxKeys !== undefined) {
      // Revoked keys (deleted ApiKeys, leaks, replaced objects) hold no slot.
      const live = await client.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM api_keys WHERE service_user_id = $1 AND revoked_at IS NULL',
        [user.id],
      );
      if ((live.rows[0]?.n ?? 0) >= input.maxKeys)
        return { kind: 'max_keys_exceeded', maxKeys: input.maxKeys };
    }
    if (existing && reissue) {
      const key = await reissueLocked(ctx, client, existing, user.id, input, hash);
      return { kind: 'ok', key, created: true, reissued: true };
    }

    const inserted = await client.query<{ id: string }>(
      `INSERT INTO api_keys (key_id, service_user_id, namespace, name, uid, description, scopes, disabled, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
               LEAST($9::timestamptz, now() + make_interval(secs => $10::float8)))
       ON CONFLICT DO NOTHING RETURNING id`,
      [
        ctx.newKeyId(),
        user.id,
        input.ref.namespace,
        input.ref.name,
        input.ref.uid,
        input.description ?? '',
        input.scopes ?? null,
        input.disabled ?? false,
        input.expiresAt ?? null,
        input.lifetimeSeconds ?? null,
      ],
    );
    // A concurrent issue of the same object, or (rarely) a key id collision: start over.
    if (!inserted.rows[0]) throw new RetryTransaction();
    const id = inserted.rows[0].id;
    await client.query('INSERT INTO api_key_secrets (hash, api_key_id, display_prefix) VALUES ($1, $2, $3)', [
      hash,
      id,
      input.displayPrefix,
    ]);
    const key = (await keyState(client, id))!;
    await recordAudit(client, ctx.actor, {
      action: 'key.issued',
      namespace: key.ref.namespace,
      name: key.ref.name,
      serviceUserId: key.serviceUserId,
      keyId: key.keyId,
      detail: {
        tokenPrefix: key.tokenPrefix,
        username: key.username,
        scopes: key.scopes,
        disabled: key.disabled,
        expiresAt: key.expiresAt,
      },
    });
    await notifyChange(client, {
      entity: 'key',
      op: 'issued',
      keyId: key.keyId,
      userId: key.serviceUserId,
    });
    return { kind: 'ok', key, created: true };
  });
}

/** Revokes the key for good (the ApiKey's finalizer). Unknown or already revoked keys are fine. */
export async function revokeKey(
  ctx: StoreContext,
  uid: string,
  reason = 'deleted',
): Promise<{ revoked: boolean }> {
  return inTransaction(ctx.pool, 'revoke key', async (client) => {
    const key = await lockKey(client, uid);
    if (!key || key.revoked_at) return { revoked: false };
    await revokeLocked(ctx, client, key.id, reason);
    return { revoked: true };
  });
}

/** Revokes the key row `id`, already locked by the caller, with its audit event and NOTIFY. */
export async function revokeLocked(
  ctx: StoreContext,
  client: pg.PoolClient,
  id: string,
  reason: string,
): Promise<void> {
  const { rows } = await client.query<{
    key_id: string;
    namespace: string;
    name: string;
    service_user_id: string;
  }>(
    `UPDATE api_keys SET revoked_at = now(), revoked_reason = $2, updated_at = now() WHERE id = $1
      RETURNING key_id, namespace, name, service_user_id`,
    [id, reason],
  );
  const key = rows[0]!;
  await recordAudit(client, ctx.actor, {
    action: 'key.revoked',
    namespace: key.namespace,
    name: key.name,
    serviceUserId: key.service_user_id,
    keyId: key.key_id,
    detail: { reason },
  });
  await notifyChange(client, {
    entity: 'key',
    op: 'revoked',
    keyId: key.key_id,
    userId: key.service_user_id,
  });
}

/** The key's store state by ApiKey uid, including revoked keys; null if never issued. */
export async function getKey(ctx: StoreContext, uid: string): Promise<ApiKeyState | null> {
  const { rows } = await read<KeyRow>(ctx.pool, 'get key', `${KEY_STATE_SQL} WHERE k.uid = $1`, [uid]);
  return rows[0] ? toKey(rows[0]) : null;
}

/** Whether `hash` (of the token in the key's Secret) is the key's current or previous secret. */
export async function secretMatch(ctx: StoreContext, uid: string, hash: Uint8Array): Promise<SecretMatch> {
  const { rows } = await read<{ not_after: Date | null }>(
    ctx.pool,
    'match secret',
    `SELECT s.not_after FROM api_key_secrets s JOIN api_keys k ON k.id = s.api_key_id
      WHERE k.uid = $1 AND s.hash = $2`,
    [uid, hashBuffer(hash)],
  );
  return secretRole(rows[0]);
}

/** Key counts for a ServiceUser's status (by the ServiceUser's uid). */
export async function countKeys(ctx: StoreContext, serviceUserUid: string): Promise<KeyCounts> {
  const { rows } = await read<{ total: number; active: number }>(
    ctx.pool,
    'count keys',
    `SELECT count(*)::int AS total,
            count(*) FILTER (
              WHERE NOT k.disabled AND (k.expires_at IS NULL OR k.expires_at > now())
                AND EXISTS (SELECT 1 FROM api_key_secrets s WHERE s.api_key_id = k.id AND s.not_after IS NULL)
            )::int AS active
       FROM api_keys k JOIN service_users u ON u.id = k.service_user_id
      WHERE u.uid = $1 AND k.revoked_at IS NULL`,
    [serviceUserUid],
  );
  return rows[0] ?? { total: 0, active: 0 };
}
