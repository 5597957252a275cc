import type pg from 'pg';
import { recordAudit } from './audit.js';
import {
  contactJson,
  read,
  type ServiceUserRecord,
  type ServiceUserSpec,
  type StoreContext,
  sameContact,
  sameList,
  toUser,
  type UserRow,
} from './rows.js';
import { inTransaction, notifyChange, RetryTransaction } from './tx.js';

export type UpsertServiceUserResult =
  | {
      readonly kind: 'ok';
      readonly user: ServiceUserRecord;
      readonly created: boolean;
      /** Spec fields that differed from the store; empty when nothing was written. */
      readonly changed: string[];
    }
  /**
   * Another live ServiceUser holds the username; `holder` names it for the condition message. For
   * a rename, `user` is the row as stored now: every other field applied, the old name in force.
   */
  | {
      readonly kind: 'username_conflict';
      readonly username: string;
      readonly holder: { namespace: string; name: string };
      readonly user?: ServiceUserRecord;
    }
  /** This object was already deleted from the store (a late reconcile must not resurrect it). */
  | { readonly kind: 'deleted' };

/** Creates or updates the store's row for a ServiceUser (suspension included). */
export async function upsertServiceUser(
  ctx: StoreContext,
  spec: ServiceUserSpec,
): Promise<UpsertServiceUserResult> {
  return inTransaction(ctx.pool, 'upsert service user', async (client) => {
    const existing = await client.query<UserRow>('SELECT * FROM service_users WHERE uid = $1 FOR UPDATE', [
      spec.ref.uid,
    ]);
    const row = existing.rows[0];
    if (row) return updateUser(ctx, client, row, spec);

    // Kubernetes holds one object per namespace/name: a live row there with another uid belongs
    // to a deleted predecessor whose finalizer never ran.
    const stale = await client.query<UserRow>(
      'SELECT * FROM service_users WHERE namespace = $1 AND name = $2 AND deleted_at IS NULL FOR UPDATE',
      [spec.ref.namespace, spec.ref.name],
    );
    if (stale.rows[0]) await retireUser(ctx, client, stale.rows[0], 'replaced');

    const inserted = await client.query<UserRow>(
      `INSERT INTO service_users (namespace, name, uid, username, description, contact, groups, scopes, suspended,
                                  kubernetes_authentication, not_permitted)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
       ON CONFLICT DO NOTHING RETURNING *`,
      [
        spec.ref.namespace,
        spec.ref.name,
        spec.ref.uid,
        spec.username,
        spec.description,
        contactJson(spec.contact),
        spec.groups,
        spec.scopes,
        spec.suspended,
        spec.kubernetesAuthentication ?? false,
        spec.notPermitted ?? false,
      ],
    );
    const created = inserted.rows[0];
    if (!created) {
      // Not this very object: a concurrent upsert of it may have inserted the row meanwhile.
      const holder = await client.query<{ namespace: string; name: string }>(
        'SELECT namespace, name FROM service_users WHERE username = $1 AND deleted_at IS NULL AND uid <> $2',
        [spec.username, spec.ref.uid],
      );
      const h = holder.rows[0];
      if (h) return { kind: 'username_conflict', username: spec.username, holder: h };
      // The conflict was on uid (a concurrent upsert of this object): answer from its row.
      throw new RetryTransaction();
    }
    await recordAudit(client, ctx.actor, {
      action: 'user.created',
      namespace: created.namespace,
      name: created.name,
      serviceUserId: created.id,
      detail: {
        username: created.username,
        groups: created.groups,
        scopes: created.scopes,
        suspended: created.suspended,
        kubernetesAuthentication: created.kubernetes_authentication,
        notPermitted: created.not_permitted,
      },
    });
    return { kind: 'ok', user: toUser(created), created: true, changed: [] };
  });
}

async function updateUser(
  ctx: StoreContext,
  client: pg.PoolClient,
  row: UserRow,
  spec: ServiceUserSpec,
): Promise<UpsertServiceUserResult> {
  if (row.deleted_at) return { kind: 'deleted' };
  // A rename: the unique index keeps usernames unique, and the old name is free from the commit
  // on. A held name leaves the old one in force; every other field still applies.
  let conflict: { namespace: string; name: string } | undefined;
  if (row.username !== spec.username) {
    const holder = await client.query<{ namespace: string; name: string }>(
      'SELECT namespace, name FROM service_users WHERE username = $1 AND deleted_at IS NULL AND id <> $2',
      [spec.username, row.id],
    );
    conflict = holder.rows[0];
  }
  const username = conflict ? row.username : spec.username;
  const kubernetesAuthentication = spec.kubernetesAuthentication ?? false;
  const notPermitted = spec.notPermitted ?? false;
  const changed = [
    row.username !== username && 'username',
    row.description !== spec.description && 'description',
    !sameContact(row.contact, spec.contact) && 'contact',
    !sameList(row.groups, spec.groups) && 'groups',
    !sameList(row.scopes, spec.scopes) && 'scopes',
    row.suspended !== spec.suspended && 'suspended',
    row.kubernetes_authentication !== kubernetesAuthentication && 'kubernetesAuthentication',
    row.not_permitted !== notPermitted && 'notPermitted',
  ].filter((f): f is string => typeof f === 'string');
  const answer = (user: UserRow): UpsertServiceUserResult =>
    conflict
      ? { kind: 'username_conflict', username: spec.username, holder: conflict, user: toUser(user) }
      : { kind: 'ok', user: toUser(user), created: false, changed };
  if (changed.length === 0) return answer(row);

  // A concurrent claim of the same name fails here with unique_violation; inTransaction retries
  // and the next attempt sees the holder.
  const updated = await client.query<UserRow>(
    `UPDATE service_users
        SET username = $2, description = $3, contact = $4, groups = $5, scopes = $6, suspended = $7,
            kubernetes_authentication = $8, not_permitted = $9, updated_at = now()
      WHERE id = $1 RETURNING *`,
    [
      row.id,
      username,
      spec.description,
      contactJson(spec.contact),
      spec.groups,
      spec.scopes,
      spec.suspended,
      kubernetesAuthentication,
      notPermitted,
    ],
  );
  const user = updated.rows[0]!;
  const subject = { namespace: user.namespace, name: user.name, serviceUserId: user.id };
  if (changed.includes('username')) {
    await recordAudit(client, ctx.actor, {
      ...subject,
      action: 'user.renamed',
      detail: { from: row.username, to: user.username },
    });
  }
  if (changed.includes('suspended')) {
    await recordAudit(client, ctx.actor, {
      ...subject,
      action: user.suspended ? 'user.suspended' : 'user.resumed',
    });
  }
  const others = changed.filter((f) => f !== 'suspended' && f !== 'username');
  if (others.length > 0) {
    await recordAudit(client, ctx.actor, {
      ...subject,
      action: 'user.updated',
      detail: {
        changed: others,
        groups: user.groups,
        scopes: user.scopes,
        kubernetesAuthentication: user.kubernetes_authentication,
        notPermitted: user.not_permitted,
      },
    });
  }
  if (changed.some((f) => f !== 'description' && f !== 'contact')) {
    await notifyChange(client, { entity: 'user', op: 'updated', userId: user.id });
  }
  return answer(user);
}

/**
 * Marks the user deleted (its username becomes free) and revokes all its keys. Unknown or
 * already deleted users are fine: the finalizer can proceed.
 */
export async function deleteServiceUser(
  ctx: StoreContext,
  uid: string,
): Promise<{ deleted: boolean; revokedKeyIds: string[] }> {
  return inTransaction(ctx.pool, 'delete service user', async (client) => {
    const { rows } = await client.query<UserRow>(
      'SELECT * FROM service_users WHERE uid = $1 AND deleted_at IS NULL FOR UPDATE',
      [uid],
    );
    const user = rows[0];
    if (!user) return { deleted: false, revokedKeyIds: [] };
    const revokedKeyIds = await retireUser(ctx, client, user, 'deleted');
    return { deleted: true, revokedKeyIds };
  });
}

async function retireUser(
  ctx: StoreContext,
  client: pg.PoolClient,
  user: UserRow,
  reason: string,
): Promise<string[]> {
  await client.query('UPDATE service_users SET deleted_at = now(), updated_at = now() WHERE id = $1', [
    user.id,
  ]);
  const keys = await client.query<{ key_id: string; namespace: string; name: string }>(
    // The reason tells these keys from ones revoked on their own: a re-created user gets them back.
    `UPDATE api_keys SET revoked_at = now(), revoked_reason = $2, updated_at = now()
      WHERE service_user_id = $1 AND revoked_at IS NULL RETURNING key_id, namespace, name`,
    [user.id, `user_${reason}`],
  );
  const subject = { namespace: user.namespace, name: user.name, serviceUserId: user.id };
  await recordAudit(client, ctx.actor, {
    ...subject,
    action: 'user.deleted',
    detail: { reason, username: user.username, revokedKeys: keys.rows.map((k) => k.key_id) },
  });
  for (const key of keys.rows) {
    await recordAudit(client, ctx.actor, {
      action: 'key.revoked',
      namespace: key.namespace,
      name: key.name,
      serviceUserId: user.id,
      keyId: key.key_id,
      detail: { reason: `user_${reason}` },
    });
  }
  // One notification covers the user's keys: the webhook drops entries by user id.
  await notifyChange(client, { entity: 'user', op: 'deleted', userId: user.id });
  return keys.rows.map((k) => k.key_id);
}

export async function getServiceUser(ctx: StoreContext, uid: string): Promise<ServiceUserRecord | null> {
  const { rows } = await read<UserRow>(
    ctx.pool,
    'get service user',
    'SELECT * FROM service_users WHERE uid = $1',
    [uid],
  );
  return rows[0] ? toUser(rows[0]) : null;
}
