import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type GeneratedToken, generateToken } from '../credentials/token.js';
import { postgresTool } from '../devenv/postgres.js';
import { testDatabase } from '../test/harness/database.js';
import { CHANGES_CHANNEL, parseChange, type StoreChange } from './changes.js';
import { StoreError } from './errors.js';
import { lookupByHash } from './lookup.js';
import { migrate } from './migrate.js';
import { type ObjectRef, OperatorStore, type ServiceUserSpec } from './operator-store.js';

let url: string;
let pool: pg.Pool;
let store: OperatorStore;
let listener: pg.Client;
let changes: StoreChange[] = [];
/** Every token this file puts into the store, for the final dump check. */
const issued: GeneratedToken[] = [];

function token(): GeneratedToken {
  const t = generateToken();
  issued.push(t);
  return t;
}

function ref(namespace: string, name: string): ObjectRef {
  return { namespace, name, uid: randomUUID() };
}

function userSpec(r: ObjectRef, overrides: Partial<ServiceUserSpec> = {}): ServiceUserSpec {
  return {
    ref: r,
    username: `${r.namespace}-${r.name}`,
    description: 'CI pipelines of team A',
    contact: { name: 'Team A', email: 'team-a@example.com' },
    groups: ['team-a'],
    scopes: ['projects:alpha', 'projects:beta'],
    suspended: false,
    ...overrides,
  };
}

async function newUser(namespace = `ns-${randomUUID().slice(0, 8)}`, name = 'ci'): Promise<ServiceUserSpec> {
  const spec = userSpec(ref(namespace, name));
  const result = await store.upsertServiceUser(spec);
  expect(result.kind).toBe('ok');
  return spec;
}

async function newKey(user: ServiceUserSpec, name = `key-${randomUUID().slice(0, 8)}`) {
  const t = token();
  const r = ref(user.ref.namespace, name);
  const result = await store.issueKey({
    ref: r,
    serviceUserName: user.ref.name,
    hash: t.hash,
    displayPrefix: t.displayPrefix,
    description: 'deploys',
  });
  if (result.kind !== 'ok') throw new Error(`issue failed: ${result.kind}`);
  return { ref: r, token: t, key: result.key };
}

async function auditRows(
  where: string,
  values: unknown[],
): Promise<Array<{ action: string; detail: object }>> {
  const { rows } = await pool.query(
    `SELECT action, detail FROM audit_events WHERE ${where} ORDER BY id`,
    values,
  );
  return rows;
}

/** Waits until the listener has seen the NOTIFYs of everything committed so far. */
async function settledChanges(): Promise<StoreChange[]> {
  const marker = randomUUID();
  const seen = new Promise<void>((resolve) => {
    const onMessage = (msg: pg.Notification): void => {
      if (msg.payload === marker) {
        listener.off('notification', onMessage);
        resolve();
      }
    };
    listener.on('notification', onMessage);
  });
  await pool.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, marker]);
  await seen;
  const out = changes.filter((c) => c.entity !== 'unknown');
  changes = [];
  return out;
}

beforeAll(async () => {
  url = await testDatabase();
  await migrate(url);
  pool = new pg.Pool({ connectionString: url, max: 8 });
  store = new OperatorStore(pool, { actor: 'test-operator' });
  listener = new pg.Client({ connectionString: url });
  await listener.connect();
  await listener.query(`LISTEN ${CHANGES_CHANNEL}`);
  listener.on('notification', (msg) => changes.push(parseChange(msg.payload)));
});

afterAll(async () => {
  await listener?.end();
  await pool?.end();
});

beforeEach(async () => {
  await settledChanges();
});

describe('service users', () => {
  it('creates a user once; repeating the same spec writes nothing', async () => {
    const spec = userSpec(ref('team-a', 'ci'), { username: 'team-a-ci' });
    const first = await store.upsertServiceUser(spec);
    expect(first).toMatchObject({
      kind: 'ok',
      created: true,
      user: { username: 'team-a-ci', groups: ['team-a'] },
    });
    const again = await store.upsertServiceUser(spec);
    expect(again).toMatchObject({ kind: 'ok', created: false, changed: [] });
    if (first.kind !== 'ok' || again.kind !== 'ok') throw new Error('unreachable');
    expect(again.user.id).toBe(first.user.id);
    expect(await auditRows('service_user_id = $1', [first.user.id])).toEqual([
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
    expect(await store.getServiceUser(spec.ref.uid)).toMatchObject({
      id: first.user.id,
      contact: spec.contact,
    });
  });

  it('records changes, and announces those that affect verification', async () => {
    const spec = await newUser();
    const user = (await store.getServiceUser(spec.ref.uid))!;
    await settledChanges();

    const described = await store.upsertServiceUser({ ...spec, description: 'now documented' });
    expect(described).toMatchObject({ kind: 'ok', changed: ['description'] });
    expect(await settledChanges()).toEqual([]);

    const scoped = await store.upsertServiceUser({ ...spec, description: 'now documented', scopes: ['*'] });
    expect(scoped).toMatchObject({ kind: 'ok', changed: ['scopes'], user: { scopes: ['*'] } });
    expect(await settledChanges()).toEqual([{ entity: 'user', op: 'updated', userId: user.id }]);

    const suspended = await store.upsertServiceUser({
      ...spec,
      description: 'now documented',
      scopes: ['*'],
      suspended: true,
    });
    expect(suspended).toMatchObject({ kind: 'ok', changed: ['suspended'], user: { suspended: true } });
    expect(await settledChanges()).toEqual([{ entity: 'user', op: 'updated', userId: user.id }]);

    expect(await store.setSuspended(spec.ref.uid, true)).toEqual({ kind: 'ok', changed: false });
    expect(await store.setSuspended(spec.ref.uid, false)).toEqual({ kind: 'ok', changed: true });
    expect(await store.setSuspended(randomUUID(), false)).toEqual({ kind: 'not_found' });
    expect(await settledChanges()).toEqual([{ entity: 'user', op: 'updated', userId: user.id }]);

    expect((await auditRows('service_user_id = $1', [user.id])).map((r) => r.action)).toEqual([
      'user.created',
      'user.updated',
      'user.updated',
      'user.suspended',
      'user.resumed',
    ]);
  });

  it('returns a typed conflict naming the holder when another namespace claims a username', async () => {
    const holder = await newUser('team-b', 'builder');
    const claimant = userSpec(ref('team-c', 'builder'), { username: holder.username });
    expect(await store.upsertServiceUser(claimant)).toEqual({
      kind: 'username_conflict',
      username: holder.username,
      holder: { namespace: 'team-b', name: 'builder' },
    });
    expect(await store.getServiceUser(claimant.ref.uid)).toBeNull();

    // Once the holder is gone the name is free.
    await store.deleteServiceUser(holder.ref.uid);
    expect(await store.upsertServiceUser(claimant)).toMatchObject({ kind: 'ok', created: true });
  });

  it('gives a username to exactly one of two concurrent claimants', async () => {
    const username = `race-${randomUUID().slice(0, 8)}`;
    const other = new pg.Pool({ connectionString: url, max: 2 });
    try {
      const a = userSpec(ref('race-a', 'svc'), { username });
      const b = userSpec(ref('race-b', 'svc'), { username });
      const results = await Promise.all([
        store.upsertServiceUser(a),
        new OperatorStore(other).upsertServiceUser(b),
      ]);
      expect(results.map((r) => r.kind).sort()).toEqual(['ok', 'username_conflict']);
      const { rows } = await pool.query('SELECT namespace FROM service_users WHERE username = $1', [
        username,
      ]);
      expect(rows).toHaveLength(1);
    } finally {
      await other.end();
    }
  });

  it('treats concurrent upserts of the same object as one', async () => {
    const spec = userSpec(ref(`ns-${randomUUID().slice(0, 8)}`, 'twin'));
    const other = new pg.Pool({ connectionString: url, max: 2 });
    try {
      const results = await Promise.all([
        store.upsertServiceUser(spec),
        new OperatorStore(other).upsertServiceUser(spec),
      ]);
      expect(results.map((r) => r.kind)).toEqual(['ok', 'ok']);
      expect(results.filter((r) => r.kind === 'ok' && r.created)).toHaveLength(1);
    } finally {
      await other.end();
    }
  });

  it('renames a user: keys verify under the new name, the old one is free from the commit on', async () => {
    const spec = await newUser();
    const key = await newKey(spec);
    const user = (await store.getServiceUser(spec.ref.uid))!;
    await settledChanges();
    const newName = `${spec.username}-renamed`;
    const renamed = await store.upsertServiceUser({ ...spec, username: newName });
    expect(renamed).toMatchObject({ kind: 'ok', changed: ['username'], user: { username: newName } });
    expect(await settledChanges()).toEqual([{ entity: 'user', op: 'updated', userId: user.id }]);
    expect(await lookupByHash(pool, key.token.hash)).toMatchObject({ username: newName });
    expect(await auditRows("service_user_id = $1 AND action = 'user.renamed'", [user.id])).toEqual([
      { action: 'user.renamed', detail: { from: spec.username, to: newName } },
    ]);
    // The old name is released: another object may claim it now.
    const claimant = userSpec(ref(`ns-${randomUUID().slice(0, 8)}`, 'next'), { username: spec.username });
    expect(await store.upsertServiceUser(claimant)).toMatchObject({ kind: 'ok', created: true });
  });

  it('a rename onto a held name keeps the old name in force and applies everything else', async () => {
    const holder = await newUser();
    const spec = await newUser();
    const key = await newKey(spec);
    const result = await store.upsertServiceUser({ ...spec, username: holder.username, suspended: true });
    expect(result).toMatchObject({
      kind: 'username_conflict',
      username: holder.username,
      holder: { namespace: holder.ref.namespace, name: holder.ref.name },
      user: { username: spec.username, suspended: true },
    });
    expect(await lookupByHash(pool, key.token.hash)).toMatchObject({
      username: spec.username,
      suspended: true,
    });
  });

  it('two users renaming to one name at once: exactly one gets it', async () => {
    const a = await newUser();
    const b = await newUser();
    const username = `race-${randomUUID().slice(0, 8)}`;
    const other = new pg.Pool({ connectionString: url, max: 2 });
    try {
      const results = await Promise.all([
        store.upsertServiceUser({ ...a, username }),
        new OperatorStore(other).upsertServiceUser({ ...b, username }),
      ]);
      expect(results.map((r) => r.kind).sort()).toEqual(['ok', 'username_conflict']);
      const { rows } = await pool.query('SELECT count(*)::int AS n FROM service_users WHERE username = $1', [
        username,
      ]);
      expect(rows[0].n).toBe(1);
    } finally {
      await other.end();
    }
  });

  it('does not resurrect a deleted user', async () => {
    const spec = await newUser();
    await store.deleteServiceUser(spec.ref.uid);
    expect(await store.upsertServiceUser(spec)).toEqual({ kind: 'deleted' });
  });

  it('stores what the AccessPolicies decided and announces it', async () => {
    const spec = await newUser();
    const key = await newKey(spec);
    const user = (await store.getServiceUser(spec.ref.uid))!;
    expect(user).toMatchObject({ kubernetesAuthentication: false, notPermitted: false });
    await settledChanges();
    const granted = await store.upsertServiceUser({ ...spec, kubernetesAuthentication: true });
    expect(granted).toMatchObject({ kind: 'ok', changed: ['kubernetesAuthentication'] });
    expect(await settledChanges()).toEqual([{ entity: 'user', op: 'updated', userId: user.id }]);
    expect(await lookupByHash(pool, key.token.hash)).toMatchObject({ kubernetesAuthentication: true });

    const blocked = await store.upsertServiceUser({ ...spec, scopes: [], notPermitted: true });
    expect(blocked).toMatchObject({
      kind: 'ok',
      changed: ['scopes', 'kubernetesAuthentication', 'notPermitted'],
    });
    expect(await settledChanges()).toEqual([{ entity: 'user', op: 'updated', userId: user.id }]);
    expect(await lookupByHash(pool, key.token.hash)).toMatchObject({
      notPermitted: true,
      kubernetesAuthentication: false,
      userScopes: [],
    });

    const keyBlocked = await store.updateKey(key.ref.uid, { notPermitted: true });
    expect(keyBlocked).toMatchObject({ kind: 'ok', changed: ['notPermitted'], key: { notPermitted: true } });
    await store.upsertServiceUser(spec);
    expect(await lookupByHash(pool, key.token.hash)).toMatchObject({ notPermitted: true });
    await store.updateKey(key.ref.uid, { notPermitted: false });
    expect(await lookupByHash(pool, key.token.hash)).toMatchObject({ notPermitted: false });
  });

  it('never stores a system: group, whatever the caller sends', async () => {
    const spec = userSpec(ref(`ns-${randomUUID().slice(0, 8)}`, 'root'), {
      groups: ['ok', 'system:masters'],
    });
    await expect(store.upsertServiceUser(spec)).rejects.toThrow(StoreError);
  });

  it('deletes a user, revoking its keys, once', async () => {
    const spec = await newUser();
    const k1 = await newKey(spec);
    const k2 = await newKey(spec);
    const user = (await store.getServiceUser(spec.ref.uid))!;
    await settledChanges();

    const deleted = await store.deleteServiceUser(spec.ref.uid);
    expect(deleted.deleted).toBe(true);
    expect(deleted.revokedKeyIds.sort()).toEqual([k1.key.keyId, k2.key.keyId].sort());
    expect(await settledChanges()).toEqual([{ entity: 'user', op: 'deleted', userId: user.id }]);
    expect(await store.deleteServiceUser(spec.ref.uid)).toEqual({ deleted: false, revokedKeyIds: [] });
    expect(await store.deleteServiceUser(randomUUID())).toEqual({ deleted: false, revokedKeyIds: [] });

    const looked = await lookupByHash(pool, k1.token.hash);
    expect(looked).toMatchObject({ userDeleted: true, revokedAt: expect.any(Date) });
    expect((await store.getServiceUser(spec.ref.uid))?.deletedAt).toBeInstanceOf(Date);
    const actions = (await auditRows('service_user_id = $1', [user.id])).map((r) => r.action);
    expect(actions.filter((a) => a === 'key.revoked')).toHaveLength(2);
    expect(actions.filter((a) => a === 'user.deleted')).toHaveLength(1);
  });

  it('retires a stale row when the object was re-created with a new uid', async () => {
    const old = await newUser(`ns-${randomUUID().slice(0, 8)}`, 'svc');
    const oldKey = await newKey(old);
    const recreated = { ...old, ref: { ...old.ref, uid: randomUUID() } };
    expect(await store.upsertServiceUser(recreated)).toMatchObject({ kind: 'ok', created: true });
    expect((await store.getServiceUser(old.ref.uid))?.deletedAt).toBeInstanceOf(Date);
    expect((await store.getKey(oldKey.ref.uid))?.revokedAt).toBeInstanceOf(Date);
  });
});

describe('keys', () => {
  it('issues a key, idempotently, and looks it up by hash in one query', async () => {
    const user = await newUser();
    const t = token();
    const r = ref(user.ref.namespace, 'web');
    const input = {
      ref: r,
      serviceUserName: user.ref.name,
      hash: t.hash,
      displayPrefix: t.displayPrefix,
      scopes: ['projects:alpha'],
      expiresAt: new Date('2100-01-01T00:00:00Z'),
    };
    const first = await store.issueKey(input);
    if (first.kind !== 'ok') throw new Error(first.kind);
    expect(first.created).toBe(true);
    expect(first.key).toMatchObject({
      keyId: expect.stringMatching(/^key_[0-9A-Za-z]{16}$/),
      tokenPrefix: t.displayPrefix,
      scopes: ['projects:alpha'],
      username: user.username,
      previousValidUntil: null,
    });
    const userId = (await store.getServiceUser(user.ref.uid))!.id;
    expect(await settledChanges()).toEqual([{ entity: 'key', op: 'issued', keyId: first.key.keyId, userId }]);

    const again = await store.issueKey(input);
    expect(again).toEqual({ kind: 'ok', created: false, key: first.key });
    expect(await settledChanges()).toEqual([]);

    expect(await lookupByHash(pool, t.hash)).toEqual({
      apiKeyId: first.key.id,
      keyId: first.key.keyId,
      namespace: r.namespace,
      name: 'web',
      userId,
      username: user.username,
      groups: ['team-a'],
      userScopes: ['projects:alpha', 'projects:beta'],
      keyScopes: ['projects:alpha'],
      suspended: false,
      notPermitted: false,
      kubernetesAuthentication: false,
      userDeleted: false,
      disabled: false,
      revokedAt: null,
      expiresAt: new Date('2100-01-01T00:00:00Z'),
      issuedAt: first.key.issuedAt,
      rotatedAt: null,
      secret: { current: true },
      tokenPrefix: t.displayPrefix,
    });
    expect(await lookupByHash(pool, token().hash)).toBeNull();
    expect(await lookupByHash(pool, new Uint8Array(5))).toBeNull();
    expect(await auditRows('key_id = $1', [first.key.keyId])).toEqual([
      {
        action: 'key.issued',
        detail: {
          tokenPrefix: t.displayPrefix,
          username: user.username,
          scopes: ['projects:alpha'],
          disabled: false,
          expiresAt: '2100-01-01T00:00:00.000Z',
        },
      },
    ]);
  });

  it('answers issue with typed outcomes: no user, already issued, hash in use, revoked', async () => {
    const user = await newUser();
    const { ref: r, token: t, key } = await newKey(user);
    const other = token();
    const base = { serviceUserName: user.ref.name, displayPrefix: other.displayPrefix };
    expect(
      await store.issueKey({
        ...base,
        ref: ref(user.ref.namespace, 'x'),
        serviceUserName: 'nobody',
        hash: other.hash,
      }),
    ).toEqual({
      kind: 'user_not_found',
    });
    // A namespace can only mint keys for its own users.
    expect(await store.issueKey({ ...base, ref: ref('elsewhere', 'x'), hash: other.hash })).toEqual({
      kind: 'user_not_found',
    });
    expect(await store.issueKey({ ...base, ref: r, hash: other.hash })).toEqual({
      kind: 'already_issued',
      key,
    });
    expect(await store.issueKey({ ...base, ref: ref(user.ref.namespace, 'y'), hash: t.hash })).toEqual({
      kind: 'hash_in_use',
    });
    expect(await store.revokeKey(r.uid)).toEqual({ revoked: true });
    expect(await store.revokeKey(r.uid)).toEqual({ revoked: false });
    expect(await store.revokeKey(randomUUID())).toEqual({ revoked: false });
    expect(await store.issueKey({ ...base, ref: r, hash: t.hash })).toEqual({ kind: 'revoked' });
    expect(await lookupByHash(pool, t.hash)).toMatchObject({ revokedAt: expect.any(Date) });
  });

  it('rotates: new current, previous in grace, older dropped; a retry is a no-op', async () => {
    const user = await newUser();
    const { ref: r, token: t0 } = await newKey(user);
    const t1 = token();
    const rotate = {
      uid: r.uid,
      newHash: t1.hash,
      displayPrefix: t1.displayPrefix,
      graceSeconds: 3600,
      reason: 'annotation',
    };
    await settledChanges();
    const first = await store.rotateKey(rotate);
    if (first.kind !== 'ok') throw new Error(first.kind);
    expect(first.rotated).toBe(true);
    expect(first.key.tokenPrefix).toBe(t1.displayPrefix);
    expect(first.key.rotatedAt).toBeInstanceOf(Date);
    const graceEnd = first.key.previousValidUntil!;
    expect(graceEnd.getTime() - Date.now()).toBeGreaterThan(3500_000);
    expect(await settledChanges()).toEqual([
      { entity: 'key', op: 'rotated', keyId: first.key.keyId, userId: first.key.serviceUserId },
    ]);

    expect(await store.rotateKey(rotate)).toEqual({ kind: 'ok', rotated: false, key: first.key });
    expect(await settledChanges()).toEqual([]);

    expect(await lookupByHash(pool, t0.hash)).toMatchObject({
      secret: { current: false, notAfter: graceEnd },
    });
    expect(await lookupByHash(pool, t1.hash)).toMatchObject({
      secret: { current: true },
      rotatedAt: expect.any(Date),
    });
    expect(await store.secretMatch(r.uid, t0.hash)).toEqual({ role: 'previous', notAfter: graceEnd });
    expect(await store.secretMatch(r.uid, t1.hash)).toEqual({ role: 'current' });

    const t2 = token();
    const second = await store.rotateKey({
      ...rotate,
      newHash: t2.hash,
      displayPrefix: t2.displayPrefix,
      graceSeconds: 0,
    });
    expect(second).toMatchObject({ kind: 'ok', rotated: true });
    expect(await lookupByHash(pool, t0.hash)).toBeNull();
    const previous = await lookupByHash(pool, t1.hash);
    expect(previous?.secret.current).toBe(false);
    if (previous && !previous.secret.current)
      expect(previous.secret.notAfter.getTime()).toBeLessThanOrEqual(Date.now());
    expect(await store.secretMatch(r.uid, t0.hash)).toEqual({ role: 'none' });
    // Rotating back to a token the key has held is refused.
    expect(await store.rotateKey({ ...rotate, newHash: t1.hash })).toEqual({ kind: 'hash_in_use' });

    const details = (await auditRows(`key_id = $1 AND action = 'key.rotated'`, [first.key.keyId])).map(
      (r) => r.detail,
    );
    expect(details).toMatchObject([
      { reason: 'annotation', graceSeconds: 3600, droppedSecrets: 0, previousTokenPrefix: t0.displayPrefix },
      { reason: 'annotation', graceSeconds: 0, droppedSecrets: 1, previousTokenPrefix: t1.displayPrefix },
    ]);
    expect(await store.rotateKey({ ...rotate, uid: randomUUID() })).toEqual({ kind: 'not_found' });
  });

  it('recovers from a crash between "new hash stored" and "Secret written" by keeping the held token', async () => {
    const user = await newUser();
    const { ref: r, token: held } = await newKey(user);
    const orphan = token(); // stored, but the operator died before writing it to the Secret
    await store.rotateKey({
      uid: r.uid,
      newHash: orphan.hash,
      displayPrefix: orphan.displayPrefix,
      graceSeconds: 600,
      reason: 'annotation',
    });
    expect(await store.secretMatch(r.uid, held.hash)).toMatchObject({ role: 'previous' });

    const replacement = token();
    const result = await store.rotateKey({
      uid: r.uid,
      newHash: replacement.hash,
      displayPrefix: replacement.displayPrefix,
      heldHash: held.hash,
      graceSeconds: 600,
      reason: 'annotation',
    });
    expect(result).toMatchObject({ kind: 'ok', rotated: true });
    expect(await lookupByHash(pool, orphan.hash)).toBeNull();
    expect((await lookupByHash(pool, held.hash))?.secret.current).toBe(false);
    expect((await lookupByHash(pool, replacement.hash))?.secret.current).toBe(true);
  });

  it('keeps nothing of a lost Secret when rotating with an unknown held hash', async () => {
    const user = await newUser();
    const { ref: r, token: lost } = await newKey(user);
    const fresh = token();
    const result = await store.rotateKey({
      uid: r.uid,
      newHash: fresh.hash,
      displayPrefix: fresh.displayPrefix,
      heldHash: token().hash,
      graceSeconds: 3600,
      reason: 'SecretLost',
    });
    expect(result).toMatchObject({ kind: 'ok', key: { previousValidUntil: null } });
    expect(await lookupByHash(pool, lost.hash)).toBeNull();
  });

  it('updates disabled, expiry, scopes and description, announcing what verification sees', async () => {
    const user = await newUser();
    const { ref: r, key } = await newKey(user);
    await settledChanges();
    const disabled = await store.updateKey(r.uid, { disabled: true });
    expect(disabled).toMatchObject({ kind: 'ok', changed: ['disabled'], key: { disabled: true } });
    expect(await store.updateKey(r.uid, { disabled: true })).toMatchObject({ kind: 'ok', changed: [] });
    const expiry = new Date(Date.now() + 86_400_000);
    expect(
      await store.updateKey(r.uid, {
        disabled: false,
        scopes: ['projects:beta'],
        expiresAt: expiry,
        description: 'x',
      }),
    ).toMatchObject({
      kind: 'ok',
      changed: ['description', 'scopes', 'disabled', 'expiresAt'],
      key: { scopes: ['projects:beta'], expiresAt: expiry, disabled: false, description: 'x' },
    });
    expect(await store.updateKey(r.uid, { description: 'y' })).toMatchObject({ changed: ['description'] });
    expect(await store.updateKey(r.uid, { scopes: null, expiresAt: null })).toMatchObject({
      key: { scopes: null, expiresAt: null },
    });
    const note = { entity: 'key', op: 'updated', keyId: key.keyId, userId: key.serviceUserId };
    expect(await settledChanges()).toEqual([note, note, note]);
    expect((await auditRows('key_id = $1', [key.keyId])).map((a) => a.action)).toEqual([
      'key.issued',
      'key.disabled',
      'key.enabled',
      'key.updated',
      'key.updated',
      'key.updated',
    ]);
    expect(await store.updateKey(randomUUID(), { disabled: true })).toEqual({ kind: 'not_found' });
    await store.revokeKey(r.uid);
    expect(await store.updateKey(r.uid, { disabled: true })).toEqual({ kind: 'revoked' });
  });

  it('enforces maxKeys in the issuing transaction: 10 concurrent issues for maxKeys 3 give exactly 3 keys', async () => {
    const user = await newUser();
    const attempt = (name: string) => {
      const t = token();
      return store.issueKey({
        ref: ref(user.ref.namespace, name),
        serviceUserName: user.ref.name,
        hash: t.hash,
        displayPrefix: t.displayPrefix,
        maxKeys: 3,
      });
    };
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => attempt(`k${i}`)));
    const ok = results.filter((r) => r.kind === 'ok');
    expect(ok).toHaveLength(3);
    expect(results.filter((r) => r.kind === 'max_keys_exceeded')).toHaveLength(7);
    expect(await store.countKeys(user.ref.uid)).toMatchObject({ total: 3 });
    // A revoked (deleted ApiKey's) key frees its slot; a fourth live one is still refused.
    expect((await attempt('late-1')).kind).toBe('max_keys_exceeded');
    const first = ok[0];
    if (first?.kind !== 'ok') throw new Error('unreachable');
    await store.revokeKey(first.key.ref.uid);
    expect((await attempt('late-2')).kind).toBe('ok');
    expect((await attempt('late-3')).kind).toBe('max_keys_exceeded');
  });

  it('records key.expired once per expiry', async () => {
    const user = await newUser();
    const { ref: r, key } = await newKey(user);
    expect(await store.recordExpiry(r.uid)).toBe(false); // no expiry at all
    const first = new Date(Date.now() - 1_000);
    await store.updateKey(r.uid, { expiresAt: first });
    expect(await store.recordExpiry(r.uid)).toBe(true);
    expect(await store.recordExpiry(r.uid)).toBe(false);
    // Renewed (a rotation with a fresh ttl) and expired again: a second row.
    await store.updateKey(r.uid, { expiresAt: new Date(first.getTime() + 500) });
    expect(await store.recordExpiry(r.uid)).toBe(true);
    const rows = await auditRows(`key_id = $1 AND action = 'key.expired'`, [key.keyId]);
    expect(rows.map((row) => row.detail)).toEqual([
      { expiresAt: first.toISOString() },
      { expiresAt: new Date(first.getTime() + 500).toISOString() },
    ]);
  });

  it('counts keys for the user status', async () => {
    const user = await newUser();
    const a = await newKey(user);
    const b = await newKey(user);
    const c = await newKey(user);
    await newKey(user);
    await store.updateKey(a.ref.uid, { disabled: true });
    await store.updateKey(b.ref.uid, { expiresAt: new Date(Date.now() - 1000) });
    await store.revokeKey(c.ref.uid);
    expect(await store.countKeys(user.ref.uid)).toEqual({ total: 3, active: 1 });
    expect(await store.countKeys(randomUUID())).toEqual({ total: 0, active: 0 });
  });

  it('never leaves two current secrets under concurrent issue and rotate from two connections', async () => {
    const user = await newUser();
    const second = new pg.Pool({ connectionString: url, max: 4 });
    const storeB = new OperatorStore(second);
    try {
      for (let round = 0; round < 15; round++) {
        const r = ref(user.ref.namespace, `race-${round}`);
        const [ta, tb] = [token(), token()];
        const issue = (s: OperatorStore, t: GeneratedToken) =>
          s.issueKey({
            ref: r,
            serviceUserName: user.ref.name,
            hash: t.hash,
            displayPrefix: t.displayPrefix,
          });
        const issuedBoth = await Promise.all([issue(store, ta), issue(storeB, tb)]);
        expect(issuedBoth.map((x) => x.kind).sort()).toEqual(['already_issued', 'ok']);

        const rotations = Array.from({ length: 4 }, () => token());
        await Promise.all(
          rotations.map((t, i) =>
            (i % 2 ? storeB : store).rotateKey({
              uid: r.uid,
              newHash: t.hash,
              displayPrefix: t.displayPrefix,
              graceSeconds: 60,
              reason: 'race',
            }),
          ),
        );
        const { rows } = await pool.query<{ current: number; total: number }>(
          `SELECT count(*) FILTER (WHERE s.not_after IS NULL)::int AS current, count(*)::int AS total
             FROM api_key_secrets s JOIN api_keys k ON k.id = s.api_key_id WHERE k.uid = $1`,
          [r.uid],
        );
        expect(rows[0]).toEqual({ current: 1, total: 2 });
      }
    } finally {
      await second.end();
    }
  });
});

describe('constraints hold even against hand-written SQL', () => {
  it('rejects a second current secret, a key outside its user namespace, bad values, and audit edits', async () => {
    const user = await newUser();
    const { key } = await newKey(user);
    const t = token();
    await expect(
      pool.query(`INSERT INTO api_key_secrets (hash, api_key_id, display_prefix) VALUES ($1, $2, $3)`, [
        t.hash,
        key.id,
        t.displayPrefix,
      ]),
    ).rejects.toMatchObject({ constraint: 'api_key_secrets_one_current' });
    await expect(
      pool.query(
        `INSERT INTO api_keys (key_id, service_user_id, namespace, name, uid) VALUES ('key_0000000000000000', $1, 'other', 'k', $2)`,
        [key.serviceUserId, randomUUID()],
      ),
    ).rejects.toMatchObject({ code: '23503' });
    await expect(
      pool.query(
        `INSERT INTO service_users (namespace, name, uid, username) VALUES ('a', 'b', $1, 'bad name')`,
        [randomUUID()],
      ),
    ).rejects.toMatchObject({ code: '23514' });
    await expect(
      pool.query(
        `INSERT INTO api_key_secrets (hash, api_key_id, display_prefix) VALUES ('\\x00', $1, 'kw_abcd')`,
        [key.id],
      ),
    ).rejects.toMatchObject({ code: '23514' });
    await expect(pool.query(`UPDATE audit_events SET actor = 'someone else'`)).rejects.toThrow(/append-only/);
    await expect(pool.query(`DELETE FROM audit_events`)).rejects.toThrow(/append-only/);
  });

  it('keeps the values a Postgres error quotes (a hash, here) out of StoreError', async () => {
    const user = await newUser();
    const { key, token: t } = await newKey(user);
    const err = await pool
      .query(
        `INSERT INTO api_key_secrets (hash, api_key_id, display_prefix, not_after) VALUES ($1, $2, 'kw_abcd', now())`,
        [t.hash, key.id],
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(pg.DatabaseError);
    expect((err as pg.DatabaseError).detail).toContain(t.hash.toString('hex'));
    const wrapped = StoreError.from('issue key', err);
    expect(wrapped).toMatchObject({ code: '23505', transient: false });
    expect(JSON.stringify({ ...wrapped, message: wrapped.message, stack: wrapped.stack })).not.toContain(
      t.hash.toString('hex'),
    );
  });

  it('refuses audit details that look like a token, a hex hash or raw bytes', async () => {
    const t = token();
    await expect(
      store.recordAuditEvent({ action: 'key.expired', detail: { oops: t.token } }),
    ).rejects.toThrow(/looks like it holds a token/);
    await expect(
      store.recordAuditEvent({ action: 'key.expired', detail: { oops: `see ${t.token}.` } }),
    ).rejects.toThrow(/looks like it holds a token/);
    await expect(
      store.recordAuditEvent({ action: 'key.expired', detail: { oops: t.hash.toString('hex') } }),
    ).rejects.toThrow(/looks like it holds a hash/);
    await expect(store.recordAuditEvent({ action: 'key.expired', detail: { oops: t.hash } })).rejects.toThrow(
      /raw bytes/,
    );
    await store.recordAuditEvent({
      action: 'key.expired',
      namespace: 'a',
      name: 'b',
      keyId: 'key_0000000000000000',
    });
    expect(await auditRows(`key_id = 'key_0000000000000000'`, [])).toEqual([
      { action: 'key.expired', detail: {} },
    ]);
  });
});

describe('the audit guard', () => {
  it('stores long scopes and group names that are not tokens or hashes', async () => {
    const r = ref(`ns-${randomUUID().slice(0, 8)}`, 'long');
    // Token-shaped (prefix, underscore, 49+ base62) and hex-bearing names, as a tenant may pick them.
    const scopes = [`projects:team_${'A1b2C3d4E5'.repeat(6)}`, `commits:${'ab12'.repeat(16)}`];
    const groups = [`org_${'x'.repeat(60)}`, 'cd34'.repeat(16)];
    const result = await store.upsertServiceUser(userSpec(r, { scopes, groups }));
    expect(result.kind).toBe('ok');
    const rows = await auditRows(`namespace = $1 AND action = 'user.created'`, [r.namespace]);
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows[0]?.detail)).toContain(scopes[0]);
  });
});

describe('connection loss mid-transaction', () => {
  /**
   * Runs `operation` on a pool of its own while another session holds audit_events locked, so
   * the operation blocks at its audit insert, after all its data writes; then terminates its
   * backend and checks nothing it did survived.
   */
  async function terminateMidway(operation: (s: OperatorStore) => Promise<unknown>): Promise<unknown> {
    const victimPool = new pg.Pool({ connectionString: url, max: 1, application_name: 'keyward-victim' });
    const blocker = new pg.Client({ connectionString: url });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE audit_events IN EXCLUSIVE MODE');
      const outcome = operation(new OperatorStore(victimPool)).then(
        () => undefined,
        (err: unknown) => err,
      );
      let pid: number | undefined;
      for (let i = 0; i < 200 && pid === undefined; i++) {
        const { rows } = await pool.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity
            WHERE application_name = 'keyward-victim' AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO audit_events%'`,
        );
        pid = rows[0]?.pid;
        if (pid === undefined) await new Promise((r) => setTimeout(r, 25));
      }
      expect(pid, 'the operation never reached its audit insert').toBeDefined();
      await pool.query('SELECT pg_terminate_backend($1)', [pid]);
      return await outcome;
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      await blocker.end();
      await victimPool.end();
    }
  }

  it('deleting a user leaves no partial state', async () => {
    const user = await newUser();
    const keys = [await newKey(user), await newKey(user), await newKey(user)];
    const userRow = (await store.getServiceUser(user.ref.uid))!;
    const auditBefore = await auditRows('service_user_id = $1', [userRow.id]);
    await settledChanges();

    const err = await terminateMidway((s) => s.deleteServiceUser(user.ref.uid));
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).transient).toBe(true);

    expect((await store.getServiceUser(user.ref.uid))?.deletedAt).toBeNull();
    for (const k of keys) expect((await store.getKey(k.ref.uid))?.revokedAt).toBeNull();
    expect(await auditRows('service_user_id = $1', [userRow.id])).toEqual(auditBefore);
    expect(await settledChanges()).toEqual([]);
    // The retry then does it all.
    expect((await store.deleteServiceUser(user.ref.uid)).revokedKeyIds).toHaveLength(3);
  });

  it('rotating a key leaves no partial state', async () => {
    const user = await newUser();
    const { ref: r, token: t0, key } = await newKey(user);
    const t1 = token();
    await settledChanges();
    const rotate = {
      uid: r.uid,
      newHash: t1.hash,
      displayPrefix: t1.displayPrefix,
      graceSeconds: 60,
      reason: 'x',
    };

    const err = await terminateMidway((s) => s.rotateKey(rotate));
    expect(err).toBeInstanceOf(StoreError);

    expect(await store.getKey(r.uid)).toEqual(key);
    expect(await store.secretMatch(r.uid, t0.hash)).toEqual({ role: 'current' });
    expect(await lookupByHash(pool, t1.hash)).toBeNull();
    expect(await settledChanges()).toEqual([]);
    expect(await store.rotateKey(rotate)).toMatchObject({ kind: 'ok', rotated: true });
  });

  it('issuing a key leaves no partial state', async () => {
    const user = await newUser();
    const t = token();
    const r = ref(user.ref.namespace, 'half');
    const err = await terminateMidway((s) =>
      s.issueKey({ ref: r, serviceUserName: user.ref.name, hash: t.hash, displayPrefix: t.displayPrefix }),
    );
    expect(err).toBeInstanceOf(StoreError);
    expect(await store.getKey(r.uid)).toBeNull();
    expect(await lookupByHash(pool, t.hash)).toBeNull();
  });
});

describe('after everything above', () => {
  it('no table holds an issued token, and the audit trail holds no hash', async () => {
    expect(issued.length).toBeGreaterThan(50);
    const { stdout: dump } = await promisify(execFile)(
      postgresTool('pg_dump'),
      ['--data-only', '--no-owner', url],
      {
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    const audit = (
      await pool.query<{ row: string }>('SELECT audit_events::text AS row FROM audit_events')
    ).rows
      .map((r) => r.row)
      .join('\n');
    expect(audit.length).toBeGreaterThan(1000);
    for (const t of issued) {
      expect(dump.includes(t.token), `token ${t.displayPrefix}… in the dump`).toBe(false);
      for (const form of [t.hash.toString('hex'), t.hash.toString('base64'), t.hash.toString('base64url')]) {
        expect(audit.includes(form), `hash of ${t.displayPrefix}… in audit_events`).toBe(false);
      }
    }
    // The dump is real: it does hold the hashes, where they belong.
    expect(dump.includes(issued[0]!.hash.toString('hex'))).toBe(true);
  });
});
