import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { StoreTestbed } from '../test/support/store-testbed.js';
import { recordAudit } from './audit.js';

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

describe('key.expired', () => {
  it('records key.expired once per expiry', async () => {
    const user = await tb.newUser();
    const { ref: r, key } = await tb.newKey(user);
    expect(await tb.store.recordExpiry(r.uid)).toBe(false); // no expiry at all
    const first = new Date(Date.now() - 1_000);
    await tb.store.updateKey(r.uid, { expiresAt: first });
    expect(await tb.store.recordExpiry(r.uid)).toBe(true);
    expect(await tb.store.recordExpiry(r.uid)).toBe(false);
    // Renewed (a rotation with a fresh ttl) and expired again: a second row.
    await tb.store.updateKey(r.uid, { expiresAt: new Date(first.getTime() + 500) });
    expect(await tb.store.recordExpiry(r.uid)).toBe(true);
    const rows = await tb.auditRows(`key_id = $1 AND action = 'key.expired'`, [key.keyId]);
    expect(rows.map((row) => row.detail)).toEqual([
      { expiresAt: first.toISOString() },
      { expiresAt: new Date(first.getTime() + 500).toISOString() },
    ]);
  });
});

// The guard sits in recordAudit, which every store write goes through; it is driven here directly
// because no honest store call can be made to carry a token in its details.
const audit = (event: Parameters<typeof recordAudit>[2]): Promise<void> =>
  recordAudit(tb.pool, 'test-operator', event);

describe('the audit guard', () => {
  it('refuses audit details that look like a token, a hex hash or raw bytes', async () => {
    const t = tb.token();
    await expect(audit({ action: 'key.expired', detail: { oops: t.token } })).rejects.toThrow(
      /looks like it holds a token/,
    );
    await expect(audit({ action: 'key.expired', detail: { oops: `see ${t.token}.` } })).rejects.toThrow(
      /looks like it holds a token/,
    );
    await expect(audit({ action: 'key.expired', detail: { oops: t.hash.toString('hex') } })).rejects.toThrow(
      /looks like it holds a hash/,
    );
    await expect(audit({ action: 'key.expired', detail: { oops: t.hash } })).rejects.toThrow(/raw bytes/);
    await audit({
      action: 'key.expired',
      namespace: 'a',
      name: 'b',
      keyId: 'key_0000000000000000',
    });
    expect(await tb.auditRows(`key_id = 'key_0000000000000000'`, [])).toEqual([
      { action: 'key.expired', detail: {} },
    ]);
  });
  it('stores long scopes and group names that are not tokens or hashes', async () => {
    const r = tb.ref(`ns-${randomUUID().slice(0, 8)}`, 'long');
    // Token-shaped (prefix, underscore, 49+ base62) and hex-bearing names, as a tenant may pick them.
    const scopes = [`projects:team_${'A1b2C3d4E5'.repeat(6)}`, `commits:${'ab12'.repeat(16)}`];
    const groups = [`org_${'x'.repeat(60)}`, 'cd34'.repeat(16)];
    const result = await tb.store.upsertServiceUser(tb.userSpec(r, { scopes, groups }));
    expect(result.kind).toBe('ok');
    const rows = await tb.auditRows(`namespace = $1 AND action = 'user.created'`, [r.namespace]);
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows[0]?.detail)).toContain(scopes[0]);
  });
});
