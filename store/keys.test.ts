import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { StoreTestbed } from '../test/support/store-testbed.js';
import { lookupByHash } from './lookup.js';

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

describe('keys', () => {
  it('issues a key, idempotently, and looks it up by hash in one query', async () => {
    const user = await tb.newUser();
    const t = tb.token();
    const r = tb.ref(user.ref.namespace, 'web');
    const input = {
      ref: r,
      serviceUserName: user.ref.name,
      hash: t.hash,
      displayPrefix: t.displayPrefix,
      scopes: ['projects:alpha'],
      expiresAt: new Date('2100-01-01T00:00:00Z'),
    };
    const first = await tb.store.issueKey(input);
    if (first.kind !== 'ok') throw new Error(first.kind);
    expect(first.created).toBe(true);
    expect(first.key).toMatchObject({
      keyId: expect.stringMatching(/^key_[0-9A-Za-z]{16}$/),
      tokenPrefix: t.displayPrefix,
      scopes: ['projects:alpha'],
      username: user.username,
      previousValidUntil: null,
    });
    const userId = (await tb.store.getServiceUser(user.ref.uid))!.id;
    expect(await tb.settledChanges()).toEqual([
      { entity: 'key', op: 'issued', keyId: first.key.keyId, userId },
    ]);

    const again = await tb.store.issueKey(input);
    expect(again).toEqual({ kind: 'ok', created: false, key: first.key });
    expect(await tb.settledChanges()).toEqual([]);

    expect(await lookupByHash(tb.pool, t.hash)).toEqual({
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
      actAs: { serviceUsers: [], externalSubjects: [] },
      limits: { key: [], user: [], quota: null },
    });
    expect(await lookupByHash(tb.pool, tb.token().hash)).toBeNull();
    expect(await lookupByHash(tb.pool, new Uint8Array(5))).toBeNull();
    expect(await tb.auditRows('key_id = $1', [first.key.keyId])).toEqual([
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
    const user = await tb.newUser();
    const { ref: r, token: t, key } = await tb.newKey(user);
    const other = tb.token();
    const base = { serviceUserName: user.ref.name, displayPrefix: other.displayPrefix };
    expect(
      await tb.store.issueKey({
        ...base,
        ref: tb.ref(user.ref.namespace, 'x'),
        serviceUserName: 'nobody',
        hash: other.hash,
      }),
    ).toEqual({
      kind: 'user_not_found',
    });
    // A namespace can only mint keys for its own users.
    expect(await tb.store.issueKey({ ...base, ref: tb.ref('elsewhere', 'x'), hash: other.hash })).toEqual({
      kind: 'user_not_found',
    });
    expect(await tb.store.issueKey({ ...base, ref: r, hash: other.hash })).toEqual({
      kind: 'already_issued',
      key,
    });
    expect(await tb.store.issueKey({ ...base, ref: tb.ref(user.ref.namespace, 'y'), hash: t.hash })).toEqual({
      kind: 'hash_in_use',
    });
    expect(await tb.store.revokeKey(r.uid)).toEqual({ revoked: true });
    expect(await tb.store.revokeKey(r.uid)).toEqual({ revoked: false });
    expect(await tb.store.revokeKey(randomUUID())).toEqual({ revoked: false });
    expect(await tb.store.issueKey({ ...base, ref: r, hash: t.hash })).toEqual({ kind: 'revoked' });
    expect(await lookupByHash(tb.pool, t.hash)).toMatchObject({ revokedAt: expect.any(Date) });
  });

  it('updates disabled, expiry, scopes and description, announcing what verification sees', async () => {
    const user = await tb.newUser();
    const { ref: r, key } = await tb.newKey(user);
    await tb.settledChanges();
    const disabled = await tb.store.updateKey(r.uid, { disabled: true });
    expect(disabled).toMatchObject({ kind: 'ok', changed: ['disabled'], key: { disabled: true } });
    expect(await tb.store.updateKey(r.uid, { disabled: true })).toMatchObject({ kind: 'ok', changed: [] });
    const expiry = new Date(Date.now() + 86_400_000);
    expect(
      await tb.store.updateKey(r.uid, {
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
    expect(await tb.store.updateKey(r.uid, { description: 'y' })).toMatchObject({ changed: ['description'] });
    expect(await tb.store.updateKey(r.uid, { scopes: null, expiresAt: null })).toMatchObject({
      key: { scopes: null, expiresAt: null },
    });
    const note = { entity: 'key', op: 'updated', keyId: key.keyId, userId: key.serviceUserId };
    expect(await tb.settledChanges()).toEqual([note, note, note]);
    expect((await tb.auditRows('key_id = $1', [key.keyId])).map((a) => a.action)).toEqual([
      'key.issued',
      'key.disabled',
      'key.enabled',
      'key.updated',
      'key.updated',
      'key.updated',
    ]);
    expect(await tb.store.updateKey(randomUUID(), { disabled: true })).toEqual({ kind: 'not_found' });
    await tb.store.revokeKey(r.uid);
    expect(await tb.store.updateKey(r.uid, { disabled: true })).toEqual({ kind: 'revoked' });
  });

  it('enforces maxKeys in the issuing transaction: 10 concurrent issues for maxKeys 3 give exactly 3 keys', async () => {
    const user = await tb.newUser();
    const attempt = (name: string) => {
      const t = tb.token();
      return tb.store.issueKey({
        ref: tb.ref(user.ref.namespace, name),
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
    expect(await tb.store.countKeys(user.ref.uid)).toMatchObject({ total: 3 });
    // A revoked (deleted ApiKey's) key frees its slot; a fourth live one is still refused.
    expect((await attempt('late-1')).kind).toBe('max_keys_exceeded');
    const first = ok[0];
    if (first?.kind !== 'ok') throw new Error('unreachable');
    await tb.store.revokeKey(first.key.ref.uid);
    expect((await attempt('late-2')).kind).toBe('ok');
    expect((await attempt('late-3')).kind).toBe('max_keys_exceeded');
  });

  it('counts keys for the user status', async () => {
    const user = await tb.newUser();
    const a = await tb.newKey(user);
    const b = await tb.newKey(user);
    const c = await tb.newKey(user);
    await tb.newKey(user);
    await tb.store.updateKey(a.ref.uid, { disabled: true });
    await tb.store.updateKey(b.ref.uid, { expiresAt: new Date(Date.now() - 1000) });
    await tb.store.revokeKey(c.ref.uid);
    expect(await tb.store.countKeys(user.ref.uid)).toEqual({ total: 3, active: 1 });
    expect(await tb.store.countKeys(randomUUID())).toEqual({ total: 0, active: 0 });
  });
});

describe('after everything above', () => {
  it('no table holds an issued token, and the audit trail holds no hash', async () => {
    await tb.expectNoTokenStored(15);
  });
});
