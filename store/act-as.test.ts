import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenHash } from '../credentials/token.js';
import { testDatabase } from '../test/harness/database.js';
import { type StoreFixture, storeFixture } from '../test/support/webhook.js';
import { ActAsStore, lookupSubject } from './act-as.js';
import { lookupByHash } from './lookup.js';

let fx: StoreFixture;
let store: ActAsStore;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  store = new ActAsStore(fx.pool, { actor: 'act-as-store-tests' });
});

afterAll(async () => {
  await fx?.close();
});

describe('ActAsStore', () => {
  it('stores the patterns with the user, where the key lookup reads them; audits and announces each change', async () => {
    const user = await fx.createUser();
    const key = await fx.issueKey(user);
    const before = await lookupByHash(fx.pool, tokenHash(key.token));
    expect(before?.actAs).toEqual({ serviceUsers: [], externalSubjects: [] });

    const listener = await fx.pool.connect();
    const notes: string[] = [];
    listener.on('notification', (n) => notes.push(n.payload ?? ''));
    await listener.query('LISTEN keyward_changes');
    try {
      const actAs = { serviceUsers: ['team_*'], externalSubjects: ['customer:*'] };
      expect(await store.set(user.id, actAs)).toBe(true);
      expect(await store.set(user.id, actAs)).toBe(false);
      expect((await lookupByHash(fx.pool, tokenHash(key.token)))?.actAs).toEqual(actAs);
      await expect.poll(() => notes.length).toBe(1);
      expect(JSON.parse(notes[0] ?? '{}')).toEqual({
        entity: 'user',
        op: 'updated',
        userId: user.id,
        seq: expect.any(Number),
      });
    } finally {
      listener.release();
    }
    const { rows } = await fx.pool.query<{ action: string; detail: unknown }>(
      "SELECT action, detail FROM audit_events WHERE service_user_id = $1 AND action = 'user.act_as_changed'",
      [user.id],
    );
    expect(rows).toEqual([
      {
        action: 'user.act_as_changed',
        detail: { serviceUsers: ['team_*'], externalSubjects: ['customer:*'] },
      },
    ]);
  });

  it('leaves deleted and unknown users alone', async () => {
    const user = await fx.createUser();
    await fx.store.deleteServiceUser(user.uid);
    expect(await store.set(user.id, { serviceUsers: ['*'], externalSubjects: [] })).toBe(false);
    expect(await store.set(randomUUID(), { serviceUsers: ['*'], externalSubjects: [] })).toBe(false);
  });
});

describe('lookupSubject', () => {
  it('finds a live user by username with what acting needs, and nothing for a deleted one', async () => {
    const user = await fx.createUser({ scopes: ['projects:alpha'], groups: ['readers'], suspended: true });
    expect(await lookupSubject(fx.pool, user.username)).toEqual({
      userId: user.id,
      username: user.username,
      groups: ['readers'],
      scopes: ['projects:alpha'],
      suspended: true,
      notPermitted: false,
    });
    await fx.store.deleteServiceUser(user.uid);
    expect(await lookupSubject(fx.pool, user.username)).toBeNull();
    expect(await lookupSubject(fx.pool, 'nobody-here')).toBeNull();
  });
});
