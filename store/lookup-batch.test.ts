import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreTestbed } from '../test/support/store-testbed.js';
import { lookupByHash, lookupByHashes } from './lookup.js';

let tb: StoreTestbed;

beforeAll(async () => {
  tb = await StoreTestbed.open();
});

afterAll(async () => {
  await tb?.expectNoTokenStored(5);
  await tb?.close();
});

describe('lookupByHashes (the webhook’s coalesced misses)', () => {
  it('answers each hash with its own row, in the order asked, null for unknown ones and duplicates alike', async () => {
    const alice = await tb.newUser(undefined, 'alice');
    const bob = await tb.newUser(undefined, 'bob');
    const a1 = await tb.newKey(alice, 'a1');
    const a2 = await tb.newKey(alice, 'a2');
    const b1 = await tb.newKey(bob, 'b1');
    const unknown = tb.token();

    const hashes = [
      b1.token.hash,
      unknown.hash,
      a1.token.hash,
      a2.token.hash,
      b1.token.hash,
      new Uint8Array(5),
    ];
    const found = await lookupByHashes(tb.pool, hashes);

    expect(found).toHaveLength(hashes.length);
    expect(found.map((k) => k?.keyId ?? null)).toEqual([
      b1.key.keyId,
      null,
      a1.key.keyId,
      a2.key.keyId,
      b1.key.keyId,
      null,
    ]);
    expect(found[0]).toMatchObject({
      username: bob.username,
      name: 'b1',
      tokenPrefix: b1.token.displayPrefix,
    });
    expect(found[2]).toMatchObject({
      username: alice.username,
      name: 'a1',
      tokenPrefix: a1.token.displayPrefix,
    });
    // Each row is exactly what the one-hash lookup returns for it.
    for (const [i, hash] of hashes.entries()) {
      expect(found[i]).toEqual(await lookupByHash(tb.pool, hash));
    }
  });

  it('returns revoked keys and suspended users’ keys as rows, for the webhook to refuse with a reason', async () => {
    const carol = await tb.newUser(undefined, 'carol');
    const dave = await tb.newUser(undefined, 'dave');
    const live = await tb.newKey(carol, 'live');
    const revoked = await tb.newKey(carol, 'revoked');
    const ofSuspended = await tb.newKey(dave, 'held');
    await tb.store.revokeKey(revoked.ref.uid);
    expect((await tb.store.upsertServiceUser({ ...dave, suspended: true })).kind).toBe('ok');

    const [l, r, s] = await lookupByHashes(tb.pool, [
      live.token.hash,
      revoked.token.hash,
      ofSuspended.token.hash,
    ]);

    expect(l).toMatchObject({ keyId: live.key.keyId, revokedAt: null, suspended: false });
    expect(r).toMatchObject({ keyId: revoked.key.keyId, revokedAt: expect.any(Date), suspended: false });
    expect(s).toMatchObject({ keyId: ofSuspended.key.keyId, revokedAt: null, suspended: true });
  });

  it('sends nothing for an empty list or one of wrong-length hashes only', async () => {
    expect(await lookupByHashes(tb.pool, [])).toEqual([]);
    expect(await lookupByHashes(tb.pool, [new Uint8Array(0), new Uint8Array(33)])).toEqual([null, null]);
  });
});
