import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { GeneratedToken } from '../credentials/token.js';
import { StoreTestbed } from '../test/support/store-testbed.js';
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

describe('key rotation', () => {
  it('rotates: new current, previous in grace, older dropped; a retry is a no-op', async () => {
    const user = await tb.newUser();
    const { ref: r, token: t0 } = await tb.newKey(user);
    const t1 = tb.token();
    const rotate = {
      uid: r.uid,
      newHash: t1.hash,
      displayPrefix: t1.displayPrefix,
      graceSeconds: 3600,
      reason: 'annotation',
    };
    await tb.settledChanges();
    const first = await tb.store.rotateKey(rotate);
    if (first.kind !== 'ok') throw new Error(first.kind);
    expect(first.rotated).toBe(true);
    expect(first.key.tokenPrefix).toBe(t1.displayPrefix);
    expect(first.key.rotatedAt).toBeInstanceOf(Date);
    const graceEnd = first.key.previousValidUntil!;
    expect(graceEnd.getTime() - Date.now()).toBeGreaterThan(3500_000);
    expect(await tb.settledChanges()).toEqual([
      { entity: 'key', op: 'rotated', keyId: first.key.keyId, userId: first.key.serviceUserId },
    ]);

    expect(await tb.store.rotateKey(rotate)).toEqual({ kind: 'ok', rotated: false, key: first.key });
    expect(await tb.settledChanges()).toEqual([]);

    expect(await lookupByHash(tb.pool, t0.hash)).toMatchObject({
      secret: { current: false, notAfter: graceEnd },
    });
    expect(await lookupByHash(tb.pool, t1.hash)).toMatchObject({
      secret: { current: true },
      rotatedAt: expect.any(Date),
    });
    expect(await tb.store.secretMatch(r.uid, t0.hash)).toEqual({ role: 'previous', notAfter: graceEnd });
    expect(await tb.store.secretMatch(r.uid, t1.hash)).toEqual({ role: 'current' });

    const t2 = tb.token();
    const second = await tb.store.rotateKey({
      ...rotate,
      newHash: t2.hash,
      displayPrefix: t2.displayPrefix,
      graceSeconds: 0,
    });
    expect(second).toMatchObject({ kind: 'ok', rotated: true });
    expect(await lookupByHash(tb.pool, t0.hash)).toBeNull();
    const previous = await lookupByHash(tb.pool, t1.hash);
    expect(previous?.secret.current).toBe(false);
    if (previous && !previous.secret.current)
      expect(previous.secret.notAfter.getTime()).toBeLessThanOrEqual(Date.now());
    expect(await tb.store.secretMatch(r.uid, t0.hash)).toEqual({ role: 'none' });
    // Rotating back to a token the key has held is refused.
    expect(await tb.store.rotateKey({ ...rotate, newHash: t1.hash })).toEqual({ kind: 'hash_in_use' });

    const details = (await tb.auditRows(`key_id = $1 AND action = 'key.rotated'`, [first.key.keyId])).map(
      (r) => r.detail,
    );
    expect(details).toMatchObject([
      { reason: 'annotation', graceSeconds: 3600, droppedSecrets: 0, previousTokenPrefix: t0.displayPrefix },
      { reason: 'annotation', graceSeconds: 0, droppedSecrets: 1, previousTokenPrefix: t1.displayPrefix },
    ]);
    expect(await tb.store.rotateKey({ ...rotate, uid: randomUUID() })).toEqual({ kind: 'not_found' });
  });

  it('recovers from a crash between "new hash stored" and "Secret written" by keeping the held token', async () => {
    const user = await tb.newUser();
    const { ref: r, token: held } = await tb.newKey(user);
    const orphan = tb.token(); // stored, but the operator died before writing it to the Secret
    await tb.store.rotateKey({
      uid: r.uid,
      newHash: orphan.hash,
      displayPrefix: orphan.displayPrefix,
      graceSeconds: 600,
      reason: 'annotation',
    });
    expect(await tb.store.secretMatch(r.uid, held.hash)).toMatchObject({ role: 'previous' });

    const replacement = tb.token();
    const result = await tb.store.rotateKey({
      uid: r.uid,
      newHash: replacement.hash,
      displayPrefix: replacement.displayPrefix,
      heldHash: held.hash,
      graceSeconds: 600,
      reason: 'annotation',
    });
    expect(result).toMatchObject({ kind: 'ok', rotated: true });
    expect(await lookupByHash(tb.pool, orphan.hash)).toBeNull();
    expect((await lookupByHash(tb.pool, held.hash))?.secret.current).toBe(false);
    expect((await lookupByHash(tb.pool, replacement.hash))?.secret.current).toBe(true);
  });

  it('keeps nothing of a lost Secret when rotating with an unknown held hash', async () => {
    const user = await tb.newUser();
    const { ref: r, token: lost } = await tb.newKey(user);
    const fresh = tb.token();
    const result = await tb.store.rotateKey({
      uid: r.uid,
      newHash: fresh.hash,
      displayPrefix: fresh.displayPrefix,
      heldHash: tb.token().hash,
      graceSeconds: 3600,
      reason: 'SecretLost',
    });
    expect(result).toMatchObject({ kind: 'ok', key: { previousValidUntil: null } });
    expect(await lookupByHash(tb.pool, lost.hash)).toBeNull();
  });

  it('never leaves two current secrets under concurrent issue and rotate from two connections', async () => {
    const user = await tb.newUser();
    const second = new pg.Pool({ connectionString: tb.url, max: 4 });
    const storeB = new OperatorStore(second);
    try {
      for (let round = 0; round < 15; round++) {
        const r = tb.ref(user.ref.namespace, `race-${round}`);
        const [ta, tb2] = [tb.token(), tb.token()];
        const issue = (s: OperatorStore, t: GeneratedToken) =>
          s.issueKey({
            ref: r,
            serviceUserName: user.ref.name,
            hash: t.hash,
            displayPrefix: t.displayPrefix,
          });
        const issuedBoth = await Promise.all([issue(tb.store, ta), issue(storeB, tb2)]);
        expect(issuedBoth.map((x) => x.kind).sort()).toEqual(['already_issued', 'ok']);

        const rotations = Array.from({ length: 4 }, () => tb.token());
        await Promise.all(
          rotations.map((t, i) =>
            (i % 2 ? storeB : tb.store).rotateKey({
              uid: r.uid,
              newHash: t.hash,
              displayPrefix: t.displayPrefix,
              graceSeconds: 60,
              reason: 'race',
            }),
          ),
        );
        const { rows } = await tb.pool.query<{ current: number; total: number }>(
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

describe('after everything above', () => {
  it('no table holds an issued token, and the audit trail holds no hash', async () => {
    await tb.expectNoTokenStored(30);
  });
});
