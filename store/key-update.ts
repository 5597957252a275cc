import { recordAudit } from './audit.js';
import { type ApiKeyState, keyState, lockKey, type StoreContext, sameList, sameTime, toKey } from './rows.js';
import { inTransaction, notifyChange } from './tx.js';

export interface KeyPatch {
  readonly description?: string;
  readonly scopes?: readonly string[] | null;
  readonly disabled?: boolean;
  readonly notPermitted?: boolean;
  readonly expiresAt?: Date | null;
}

export type UpdateKeyResult =
  | { readonly kind: 'ok'; readonly key: ApiKeyState; readonly changed: string[] }
  | { readonly kind: 'not_found' }
  | { readonly kind: 'revoked' };

/** Applies the given fields (disabled, expiry, scopes, description); omitted ones stay. */
export async function updateKey(ctx: StoreContext, uid: string, patch: KeyPatch): Promise<UpdateKeyResult> {
  return inTransaction(ctx.pool, 'update key', async (client) => {
    const key = await lockKey(client, uid);
    if (!key) return { kind: 'not_found' };
    if (key.revoked_at) return { kind: 'revoked' };
    const next = {
      description: patch.description ?? key.description,
      scopes: patch.scopes === undefined ? key.scopes : patch.scopes === null ? null : [...patch.scopes],
      disabled: patch.disabled ?? key.disabled,
      notPermitted: patch.notPermitted ?? key.not_permitted,
      expiresAt: patch.expiresAt === undefined ? key.expires_at : patch.expiresAt,
    };
    const changed = [
      next.description !== key.description && 'description',
      !sameList(next.scopes, key.scopes) && 'scopes',
      next.disabled !== key.disabled && 'disabled',
      next.notPermitted !== key.not_permitted && 'notPermitted',
      !sameTime(next.expiresAt, key.expires_at) && 'expiresAt',
    ].filter((f): f is string => typeof f === 'string');
    if (changed.length === 0) return { kind: 'ok', key: toKey(key), changed };

    await client.query(
      `UPDATE api_keys SET description = $2, scopes = $3, disabled = $4, expires_at = $5, not_permitted = $6,
              updated_at = now()
        WHERE id = $1`,
      [key.id, next.description, next.scopes, next.disabled, next.expiresAt, next.notPermitted],
    );
    const state = (await keyState(client, key.id))!;
    const subject = {
      namespace: state.ref.namespace,
      name: state.ref.name,
      serviceUserId: state.serviceUserId,
      keyId: state.keyId,
    };
    if (changed.includes('disabled')) {
      await recordAudit(client, ctx.actor, {
        ...subject,
        action: state.disabled ? 'key.disabled' : 'key.enabled',
      });
    }
    const others = changed.filter((f) => f !== 'disabled');
    if (others.length > 0) {
      await recordAudit(client, ctx.actor, {
        ...subject,
        action: 'key.updated',
        detail: {
          changed: others,
          scopes: state.scopes,
          expiresAt: state.expiresAt,
          notPermitted: state.notPermitted,
        },
      });
    }
    if (changed.some((f) => f !== 'description')) {
      await notifyChange(client, {
        entity: 'key',
        op: 'updated',
        keyId: state.keyId,
        userId: state.serviceUserId,
      });
    }
    return { kind: 'ok', key: state, changed };
  });
}
