import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { StoreTestbed } from '../test/support/store-testbed.js';
import { lookupByHash } from './lookup.js';
import { type ObjectRef, revokedWithUser, type ServiceUserSpec } from './operator-store.js';

// A ServiceUser deleted and applied again (GitOps prune + re-sync): the ApiKey objects stayed, and
// their keys must work again with fresh secrets, the old ones staying dead.

let tb: StoreTestbed;

beforeAll(async () => {
  tb = await StoreTestbed.open();
});

afterAll(async () => {
  await tb?.close();
});

beforeEach(async () => {
  await tb.settledChanges();
});

/** The same object applied again: same namespace, name and spec, a new uid. */
function recreated(user: ServiceUserSpec): ServiceUserSpec {
  return { ...user, ref: { ...user.ref, uid: randomUUID() } };
}

function issueAgain(user: ServiceUserSpec, key: ObjectRef, maxKeys?: number) {
  const t = tb.token();
  const result = tb.store.issueKey({
    ref: key,
    serviceUserName: user.ref.name,
    hash: t.hash,
    displayPrefix: t.displayPrefix,
    ...(maxKeys !== undefined && { maxKeys }),
  });
  return { token: t, result };
}

describe('a re-created ServiceUser', () => {
  it('gets back the keys its deletion revoked, with fresh secrets; a key revoked on its own stays dead', async () => {
    const user = await tb.newUser();
    const kept = await tb.newKey(user);
    const deletedKey = await tb.newKey(user);
    await tb.store.revokeKey(deletedKey.ref.uid);
    await tb.store.deleteServiceUser(user.ref.uid);
    const revoked = await tb.store.getKey(kept.ref.uid);
    expect(revoked).toMatchObject({ revokedReason: 'user_deleted' });
    expect(revokedWithUser(revoked!)).toBe(true);
    expect(revokedWithUser((await tb.store.getKey(deletedKey.ref.uid))!)).toBe(false);
    expect(await tb.store.issueKey({ ...issueParams(user, kept.ref) })).toEqual({ kind: 'user_not_found' });

    const again = recreated(user);
    const upserted = await tb.store.upsertServiceUser(again);
    if (upserted.kind !== 'ok') throw new Error(upserted.kind);
    await tb.settledChanges();

    const { token: fresh, result } = issueAgain(again, kept.ref);
    expect(await result).toMatchObject({
      kind: 'ok',
      created: true,
      reissued: true,
      key: {
        keyId: kept.key.keyId,
        serviceUserId: upserted.user.id,
        revokedAt: null,
        revokedReason: null,
        tokenPrefix: fresh.displayPrefix,
        previousValidUntil: null,
      },
    });
    expect(await tb.settledChanges()).toEqual([
      { entity: 'key', op: 'issued', keyId: kept.key.keyId, userId: upserted.user.id },
    ]);
    expect(await lookupByHash(tb.pool, fresh.hash)).toMatchObject({
      userId: upserted.user.id,
      revokedAt: null,
      userDeleted: false,
      secret: { current: true },
    });
    // The token handed out before the deletion is gone for good.
    expect(await lookupByHash(tb.pool, kept.token.hash)).toBeNull();
    // A retry of the same issue is the idempotent "already done".
    expect(await tb.store.issueKey(issueParams(again, kept.ref, fresh))).toMatchObject({
      kind: 'ok',
      created: false,
    });

    expect(await issueAgain(again, deletedKey.ref).result).toEqual({ kind: 'revoked' });
    expect(await tb.store.countKeys(again.ref.uid)).toEqual({ total: 1, active: 1 });
    expect(
      (await tb.auditRows('key_id = $1', [kept.key.keyId])).map((r) => [r.action, r.detail]),
    ).toMatchObject([
      ['key.issued', {}],
      ['key.revoked', { reason: 'user_deleted' }],
      ['key.issued', { reissued: { revokedReason: 'user_deleted' }, tokenPrefix: fresh.displayPrefix }],
    ]);
  });

  it('gets them back too when the old object was replaced without its finalizer running', async () => {
    const user = await tb.newUser();
    const key = await tb.newKey(user);
    const again = recreated(user);
    expect(await tb.store.upsertServiceUser(again)).toMatchObject({ kind: 'ok', created: true });
    expect(await tb.store.getKey(key.ref.uid)).toMatchObject({ revokedReason: 'user_replaced' });
    expect(await issueAgain(again, key.ref).result).toMatchObject({ kind: 'ok', reissued: true });
  });

  it('gets back keys revoked with their user before the reason was recorded', async () => {
    const user = await tb.newUser();
    const key = await tb.newKey(user);
    await tb.store.deleteServiceUser(user.ref.uid);
    await tb.pool.query('UPDATE api_keys SET revoked_reason = NULL WHERE id = $1', [key.key.id]);
    const again = recreated(user);
    await tb.store.upsertServiceUser(again);
    expect(await issueAgain(again, key.ref).result).toMatchObject({ kind: 'ok', reissued: true });
  });

  it('counts a key coming back against maxKeys', async () => {
    const user = await tb.newUser();
    const a = await tb.newKey(user);
    const b = await tb.newKey(user);
    await tb.store.deleteServiceUser(user.ref.uid);
    const again = recreated(user);
    await tb.store.upsertServiceUser(again);
    expect(await issueAgain(again, a.ref, 1).result).toMatchObject({ kind: 'ok', reissued: true });
    expect(await issueAgain(again, b.ref, 1).result).toEqual({ kind: 'max_keys_exceeded', maxKeys: 1 });
  });
});

function issueParams(user: ServiceUserSpec, key: ObjectRef, t = tb.token()) {
  return { ref: key, serviceUserName: user.ref.name, hash: t.hash, displayPrefix: t.displayPrefix };
}

describe('after everything above', () => {
  it('no table holds an issued token, and the audit trail holds no hash', async () => {
    await tb.expectNoTokenStored(10);
  });
});
