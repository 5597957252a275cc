import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { StoreTestbed } from '../test/support/store-testbed.js';
import { StoreError } from './errors.js';
import { lookupByHash } from './lookup.js';
import { OperatorStore } from './operator-store.js';

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

describe('service users', () => {
  it('creates a user once; repeating the same spec writes nothing', async () => {
    const spec = tb.userSpec(tb.ref('team-a', 'ci'), { username: 'team-a-ci' });
    const first = await tb.store.upsertServiceUser(spec);
    expect(first).toMatchObject({
      kind: 'ok',
      created: true,
      user: { username: 'team-a-ci', groups: ['team-a'] },
    });
    const again = await tb.store.upsertServiceUser(spec);
    expect(again).toMatchObject({ kind: 'ok', created: false, changed: [] });
    if (first.kind !== 'ok' || again.kind !== 'ok') throw new Error('unreachable');
    expect(again.user.id).toBe(first.user.id);
    expect(await tb.auditRows('service_user_id = $1', [first.user.id])).toEqual([
      {
        action: 'user.created',
        detail: {
          username: 'team-a-ci',
          groups: ['team-a'],
          scopes: spec.scopes,
          suspended: false,
          kubernetesAuthentication: false,
          notPermitted: false,
        },
      },
    ]);
    expect(await tb.store.getServiceUser(spec.ref.uid)).toMatchObject({
      id: first.user.id,
      contact: spec.contact,
    });
  });

  it('records changes, and announces those that affect verification', async () => {
    const spec = await tb.newUser();
    const user = (await tb.store.getServiceUser(spec.ref.uid))!;
    await tb.settledChanges();

    const described = await tb.store.upsertServiceUser({ ...spec, description: 'now documented' });
    expect(described).toMatchObject({ kind: 'ok', changed: ['description'] });
    expect(await tb.settledChanges()).toEqual([]);

    const scoped = await tb.store.upsertServiceUser({
      ...spec,
      description: 'now documented',
      scopes: ['*'],
    });
    expect(scoped).toMatchObject({ kind: 'ok', changed: ['scopes'], user: { scopes: ['*'] } });
    expect(await tb.settledChanges()).toEqual([{ entity: 'user', op: 'updated', userId: user.id }]);

    // Suspension is a spec field like any other: the operator sends the whole spec every time.
    const suspendedSpec = { ...spec, description: 'now documented', scopes: ['*'], suspended: true };
    const suspended = await tb.store.upsertServiceUser(suspendedSpec);
    expect(suspended).toMatchObject({ kind: 'ok', changed: ['suspended'], user: { suspended: true } });
    expect(await tb.settledChanges()).toEqual([{ entity: 'user', op: 'updated', userId: user.id }]);
    expect(await tb.store.upsertServiceUser(suspendedSpec)).toMatchObject({ kind: 'ok', changed: [] });
    expect(await tb.settledChanges()).toEqual([]);

    const resumed = await tb.store.upsertServiceUser({ ...suspendedSpec, suspended: false });
    expect(resumed).toMatchObject({ kind: 'ok', changed: ['suspended'], user: { suspended: false } });
    expect(await tb.settledChanges()).toEqual([{ entity: 'user', op: 'updated', userId: user.id }]);

    expect((await tb.auditRows('service_user_id = $1', [user.id])).map((r) => r.action)).toEqual([
      'user.created',
      'user.updated',
      'user.updated',
      'user.suspended',
      'user.resumed',
    ]);
  });

  it('returns a typed conflict naming the holder when another namespace claims a username', async () => {
    const holder = await tb.newUser('team-b', 'builder');
    const claimant = tb.userSpec(tb.ref('team-c', 'builder'), { username: holder.username });
    expect(await tb.store.upsertServiceUser(claimant)).toEqual({
      kind: 'username_conflict',
      username: holder.username,
      holder: { namespace: 'team-b', name: 'builder' },
    });
    expect(await tb.store.getServiceUser(claimant.ref.uid)).toBeNull();

    // Once the holder is gone the name is free.
    await tb.store.deleteServiceUser(holder.ref.uid);
    expect(await tb.store.upsertServiceUser(claimant)).toMatchObject({ kind: 'ok', created: true });
  });

  it('gives a username to exactly one of two concurrent claimants', async () => {
    const username = `race-${randomUUID().slice(0, 8)}`;
    const other = new pg.Pool({ connectionString: tb.url, max: 2 });
    try {
      const a = tb.userSpec(tb.ref('race-a', 'svc'), { username });
      const b = tb.userSpec(tb.ref('race-b', 'svc'), { username });
      const results = await Promise.all([
        tb.store.upsertServiceUser(a),
        new OperatorStore(other).upsertServiceUser(b),
      ]);
      expect(results.map((r) => r.kind).sort()).toEqual(['ok', 'username_conflict']);
      const { rows } = await tb.pool.query('SELECT namespace FROM service_users WHERE username = $1', [
        username,
      ]);
      expect(rows).toHaveLength(1);
    } finally {
      await other.end();
    }
  });

  it('treats concurrent upserts of the same object as one', async () => {
    const spec = tb.userSpec(tb.ref(`ns-${randomUUID().slice(0, 8)}`, 'twin'));
    const other = new pg.Pool({ connectionString: tb.url, max: 2 });
    try {
      const results = await Promise.all([
        tb.store.upsertServiceUser(spec),
        new OperatorStore(other).upsertServiceUser(spec),
      ]);
      expect(results.map((r) => r.kind)).toEqual(['ok', 'ok']);
      expect(results.filter((r) => r.kind === 'ok' && r.created)).toHaveLength(1);
    } finally {
      await other.end();
    }
  });

  it('renames a user: keys verify under the new name, the old one is free from the commit on', async () => {
    const spec = await tb.newUser();
    const key = await tb.newKey(spec);
    const user = (await tb.store.getServiceUser(spec.ref.uid))!;
    await tb.settledChanges();
    const newName = `${spec.username}-renamed`;
    const renamed = await tb.store.upsertServiceUser({ ...spec, username: newName });
    expect(renamed).toMatchObject({ kind: 'ok', changed: ['username'], user: { username: newName } });
    expect(await tb.settledChanges()).toEqual([{ entity: 'user', op: 'updated', userId: user.id }]);
    expect(await lookupByHash(tb.pool, key.token.hash)).toMatchObject({ username: newName });
    expect(await tb.auditRows("service_user_id = $1 AND action = 'user.renamed'", [user.id])).toEqual([
      { action: 'user.renamed', detail: { from: spec.username, to: newName } },
    ]);
    // The old name is released: another object may claim it now.
    const claimant = tb.userSpec(tb.ref(`ns-${randomUUID().slice(0, 8)}`, 'next'), {
      username: spec.username,
    });
    expect(await tb.store.upsertServiceUser(claimant)).toMatchObject({ kind: 'ok', created: true });
  });

  it('a rename onto a held name keeps the old name in force and applies everything else', async () => {
    const holder = await tb.newUser();
    const spec = await tb.newUser();
    const key = await tb.newKey(spec);
    const result = await tb.store.upsertServiceUser({ ...spec, username: holder.username, suspended: true });
    expect(result).toMatchObject({
      kind: 'username_conflict',
      username: holder.username,
      holder: { namespace: holder.ref.namespace, name: holder.ref.name },
      user: { username: spec.username, suspended: true },
    });
    expect(await lookupByHash(tb.pool, key.token.hash)).toMatchObject({
      username: spec.username,
      suspended: true,
    });
  });

  it('two users renaming to one name at once: exactly one gets it', async () => {
    const a = await tb.newUser();
    const b = await tb.newUser();
    const username = `race-${randomUUID().slice(0, 8)}`;
    const other = new pg.Pool({ connectionString: tb.url, max: 2 });
    try {
      const results = await Promise.all([
        tb.store.upsertServiceUser({ ...a, username }),
        new OperatorStore(other).upsertServiceUser({ ...b, username }),
      ]);
      expect(results.map((r) => r.kind).sort()).toEqual(['ok', 'username_conflict']);
      const { rows } = await tb.pool.query(
        'SELECT count(*)::int AS n FROM service_users WHERE username = $1',
        [username],
      );
      expect(rows[0].n).toBe(1);
    } finally {
      await other.end();
    }
  });

  it('does not resurrect a deleted user', async () => {
    const spec = await tb.newUser();
    await tb.store.deleteServiceUser(spec.ref.uid);
    expect(await tb.store.upsertServiceUser(spec)).toEqual({ kind: 'deleted' });
  });

  it('stores what the AccessPolicies decided and announces it', async () => {
    const spec = await tb.newUser();
    const key = await tb.newKey(spec);
    const user = (await tb.store.getServiceUser(spec.ref.uid))!;
    expect(user).toMatchObject({ kubernetesAuthentication: false, notPermitted: false });
    await tb.settledChanges();
    const granted = await tb.store.upsertServiceUser({ ...spec, kubernetesAuthentication: true });
    expect(granted).toMatchObject({ kind: 'ok', changed: ['kubernetesAuthentication'] });
    expect(await tb.settledChanges()).toEqual([{ entity: 'user', op: 'updated', userId: user.id }]);
    expect(await lookupByHash(tb.pool, key.token.hash)).toMatchObject({ kubernetesAuthentication: true });

    const blocked = await tb.store.upsertServiceUser({ ...spec, scopes: [], notPermitted: true });
    expect(blocked).toMatchObject({
      kind: 'ok',
      changed: ['scopes', 'kubernetesAuthentication', 'notPermitted'],
    });
    expect(await tb.settledChanges()).toEqual([{ entity: 'user', op: 'updated', userId: user.id }]);
    expect(await lookupByHash(tb.pool, key.token.hash)).toMatchObject({
      notPermitted: true,
      kubernetesAuthentication: false,
      userScopes: [],
    });

    const keyBlocked = await tb.store.updateKey(key.ref.uid, { notPermitted: true });
    expect(keyBlocked).toMatchObject({ kind: 'ok', changed: ['notPermitted'], key: { notPermitted: true } });
    await tb.store.upsertServiceUser(spec);
    expect(await lookupByHash(tb.pool, key.token.hash)).toMatchObject({ notPermitted: true });
    await tb.store.updateKey(key.ref.uid, { notPermitted: false });
    expect(await lookupByHash(tb.pool, key.token.hash)).toMatchObject({ notPermitted: false });
  });

  it('never stores a system: group, whatever the caller sends', async () => {
    const spec = tb.userSpec(tb.ref(`ns-${randomUUID().slice(0, 8)}`, 'root'), {
      groups: ['ok', 'system:masters'],
    });
    await expect(tb.store.upsertServiceUser(spec)).rejects.toThrow(StoreError);
  });

  it('deletes a user, revoking its keys, once', async () => {
    const spec = await tb.newUser();
    const k1 = await tb.newKey(spec);
    const k2 = await tb.newKey(spec);
    const user = (await tb.store.getServiceUser(spec.ref.uid))!;
    await tb.settledChanges();

    const deleted = await tb.store.deleteServiceUser(spec.ref.uid);
    expect(deleted.deleted).toBe(true);
    expect(deleted.revokedKeyIds.sort()).toEqual([k1.key.keyId, k2.key.keyId].sort());
    expect(await tb.settledChanges()).toEqual([{ entity: 'user', op: 'deleted', userId: user.id }]);
    expect(await tb.store.deleteServiceUser(spec.ref.uid)).toEqual({ deleted: false, revokedKeyIds: [] });
    expect(await tb.store.deleteServiceUser(randomUUID())).toEqual({ deleted: false, revokedKeyIds: [] });

    const looked = await lookupByHash(tb.pool, k1.token.hash);
    expect(looked).toMatchObject({ userDeleted: true, revokedAt: expect.any(Date) });
    expect((await tb.store.getServiceUser(spec.ref.uid))?.deletedAt).toBeInstanceOf(Date);
    const actions = (await tb.auditRows('service_user_id = $1', [user.id])).map((r) => r.action);
    expect(actions.filter((a) => a === 'key.revoked')).toHaveLength(2);
    expect(actions.filter((a) => a === 'user.deleted')).toHaveLength(1);
  });

  it('retires a stale row when the object was re-created with a new uid', async () => {
    const old = await tb.newUser(`ns-${randomUUID().slice(0, 8)}`, 'svc');
    const oldKey = await tb.newKey(old);
    const recreated = { ...old, ref: { ...old.ref, uid: randomUUID() } };
    expect(await tb.store.upsertServiceUser(recreated)).toMatchObject({ kind: 'ok', created: true });
    expect((await tb.store.getServiceUser(old.ref.uid))?.deletedAt).toBeInstanceOf(Date);
    expect((await tb.store.getKey(oldKey.ref.uid))?.revokedAt).toBeInstanceOf(Date);
  });
});

describe('after everything above', () => {
  it('no table holds an issued token, and the audit trail holds no hash', async () => {
    await tb.expectNoTokenStored(5);
  });
});
