import type pg from 'pg';
import { recordAudit } from './audit.js';
import type { IssueKeyInput } from './keys.js';
import { type ApiKeyState, type KeyRow, keyState, type StoreContext } from './rows.js';
import { notifyChange } from './tx.js';

/** revoked_reason of the keys a deleted (or replaced) user took with it: see users.ts. */
const USER_RETIRED_REASONS = ['user_deleted', 'user_replaced'];

/**
 * For the ApiKey reconciler: whether issuing this revoked key again may succeed once its user
 * exists anew (issueKey decides, and answers `reissued`); false for keys revoked on their own.
 * A null reason is a row revoked before reasons were recorded, which issueKey tells apart.
 */
export function revokedWithUser(state: Pick<ApiKeyState, 'revokedAt' | 'revokedReason'>): boolean {
  if (!state.revokedAt) return false;
  return state.revokedReason === null || USER_RETIRED_REASONS.includes(state.revokedReason);
}

/**
 * Whether `key` is dead only because its user went: the ApiKey object still exists (it is being
 * issued) and `userId`, a live user of the same name, is a re-created ServiceUser. A key revoked
 * on its own (deleted, leaked, replaced) never comes back. Rows revoked before revoked_reason was
 * recorded for this are told by their timestamp: the user's deletion revoked them in its own
 * transaction, so revoked_at equals the user's deleted_at.
 */
export async function revokedWithItsUser(
  client: pg.PoolClient,
  key: KeyRow,
  userId: string,
): Promise<boolean> {
  if (!key.revoked_at || key.service_user_id === userId) return false;
  if (key.revoked_reason !== null) return USER_RETIRED_REASONS.includes(key.revoked_reason);
  // Compared in SQL: a JS Date holds milliseconds, the columns microseconds.
  const { rowCount } = await client.query(
    `SELECT 1 FROM api_keys k JOIN service_users u ON u.id = k.service_user_id
      WHERE k.id = $1 AND u.deleted_at = k.revoked_at`,
    [key.id],
  );
  return (rowCount ?? 0) > 0;
}

/**
 * Brings `key` (locked, revoked with its former user) back for `userId` with `hash` as its only
 * secret: what was issued before stays dead. It keeps its row and public key id (the ApiKey is
 * the same object, and its audit trail reads on), and starts over as a fresh issue would.
 */
export async function reissueLocked(
  ctx: StoreContext,
  client: pg.PoolClient,
  key: KeyRow,
  userId: string,
  input: IssueKeyInput,
  hash: Buffer,
): Promise<ApiKeyState> {
  await client.query('DELETE FROM api_key_secrets WHERE api_key_id = $1', [key.id]);
  await client.query(
    `UPDATE api_keys
        SET service_user_id = $2, description = $3, scopes = $4, disabled = $5, not_permitted = false,
            expires_at = LEAST($6::timestamptz, now() + make_interval(secs => $7::float8)),
            issued_at = now(), rotated_at = NULL, revoked_at = NULL, revoked_reason = NULL,
            last_used_at = NULL, updated_at = now()
      WHERE id = $1`,
    [
      key.id,
      userId,
      input.description ?? '',
      input.scopes ?? null,
      input.disabled ?? false,
      input.expiresAt ?? null,
      input.lifetimeSeconds ?? null,
    ],
  );
  await client.query('INSERT INTO api_key_secrets (hash, api_key_id, display_prefix) VALUES ($1, $2, $3)', [
    hash,
    key.id,
    input.displayPrefix,
  ]);
  const state = (await keyState(client, key.id))!;
  await recordAudit(client, ctx.actor, {
    action: 'key.issued',
    namespace: state.ref.namespace,
    name: state.ref.name,
    serviceUserId: state.serviceUserId,
    keyId: state.keyId,
    detail: {
      tokenPrefix: state.tokenPrefix,
      username: state.username,
      scopes: state.scopes,
      disabled: state.disabled,
      expiresAt: state.expiresAt,
      reissued: { previousUserId: key.service_user_id, revokedReason: key.revoked_reason ?? 'user_deleted' },
    },
  });
  await notifyChange(client, {
    entity: 'key',
    op: 'issued',
    keyId: state.keyId,
    userId: state.serviceUserId,
  });
  return state;
}
