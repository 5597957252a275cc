import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../credentials/token.js';
import { eventually } from '../devenv/poll.js';
import { testDatabase } from '../test/harness/database.js';
import { CHANGES_CHANNEL, parseChange } from './changes.js';
import { lookupByHash } from './lookup.js';
import { migrate } from './migrate.js';
import { OperatorStore } from './operator-store.js';
import { RateLimitDefinitions, syncCounters } from './rate-limits.js';

let url: string;
let pool: pg.Pool;
/** Connections as the webhook's database role: what it may do is what the grants allow. */
let webhookPool: pg.Pool;
let store: OperatorStore;
let definitions: RateLimitDefinitions;

const BURST = { name: 'burst', limit: 10, periodMs: 60_000 };

async function newKey(): Promise<{
  userUid: string;
  userId: string;
  keyUid: string;
  apiKeyId: string;
  keyId: string;
  hash: Buffer;
}> {
  const namespace = `ns-${randomUUID().slice(0, 8)}`;
  const userUid = randomUUID();
  const upserted = await store.upsertServiceUser({
    ref: { namespace, name: 'svc', uid: userUid },
    username: namespace,
    description: '',
    contact: null,
    groups: [],
    scopes: ['*'],
    suspended: false,
  });
  const token = generateToken();
  const keyUid = randomUUID();
  const result = await store.issueKey({
    ref: { namespace, name: 'k', uid: keyUid },
    serviceUserName: 'svc',
    hash: token.hash,
    displayPrefix: token.displayPrefix,
  });
  if (result.kind !== 'ok') throw new Error(result.kind);
  if (upserted.kind !== 'ok') throw new Error(upserted.kind);
  return {
    userUid,
    userId: upserted.user.id,
    keyUid,
    apiKeyId: result.key.id,
    keyId: result.key.keyId,
    hash: Buffer.from(token.hash),
  };
}

beforeAll(async () => {
  url = await testDatabase();
  await migrate(url);
  pool = new pg.Pool({ connectionString: url, max: 4 });
  webhookPool = new pg.Pool({ connectionString: url, max: 2, options: '-c role=keyward_webhook' });
  store = new OperatorStore(pool);
  definitions = new RateLimitDefinitions(pool);
});

afterAll(async () => {
  await webhookPool?.end();
  await pool?.end();
});

describe('rate-limit definitions', () => {
  it('the lookup carries the key’s and the user’s limits and the quota; a key without any has none', async () => {
    const key = await newKey();
    expect((await lookupByHash(webhookPool, key.hash))?.limits).toEqual({ key: [], user: [], quota: null });
    const quota = { name: 'quota', limit: 1000, periodMs: null };
    await definitions.define({ uid: key.keyUid, kind: 'ApiKey', rateLimits: [BURST], quota });
    await definitions.define({
      uid: key.userUid,
      kind: 'ServiceUser',
      rateLimits: [{ name: 'shared', limit: 100, periodMs: 3_600_000 }],
      quota: null,
    });
    expect((await lookupByHash(webhookPool, key.hash))?.limits).toEqual({
      key: [BURST],
      user: [{ name: 'shared', limit: 100, periodMs: 3_600_000 }],
      quota,
    });
  });

  it('a change is announced, naming the key; writing the same limits again announces nothing', async () => {
    const key = await newKey();
    const listener = new pg.Client({ connectionString: url });
    await listener.connect();
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(n.payload ?? ''));
    try {
      await listener.query(`LISTEN ${CHANGES_CHANNEL}`);
      const input = { uid: key.keyUid, kind: 'ApiKey' as const, rateLimits: [BURST], quota: null };
      await definitions.define(input);
      await eventually('the change is announced', async () => heard.length === 1, 5_000);
      // What the webhook's listener parses (a payload it cannot parse would drop its whole cache).
      expect(parseChange(heard[0])).toEqual({
        entity: 'key',
        op: 'updated',
        keyId: key.keyId,
        userId: key.userId,
      });
      await definitions.define(input);
      await definitions.define({ ...input, rateLimits: [{ ...BURST, limit: 11 }] });
      await eventually('the second change is announced', async () => heard.length === 2, 5_000);
      // Limits removed: announced too, and no row is left.
      await definitions.define({ ...input, rateLimits: [] });
      await eventually('the removal is announced', async () => heard.length === 3, 5_000);
      const rows = await pool.query('SELECT 1 FROM rate_limit_definitions WHERE uid = $1', [key.keyUid]);
      expect(rows.rowCount).toBe(0);
      await definitions.define({ ...input, rateLimits: [] });
      // A user's change names the user.
      await definitions.define({ uid: key.userUid, kind: 'ServiceUser', rateLimits: [BURST], quota: null });
      await eventually('the user change is announced', async () => heard.length === 4, 5_000);
      expect(parseChange(heard[3])).toEqual({ entity: 'user', op: 'updated', userId: key.userId });
    } finally {
      await listener.end();
    }
  });

  it('forgetting a deleted key removes its definitions and counters', async () => {
    const key = await newKey();
    await definitions.define({ uid: key.keyUid, kind: 'ApiKey', rateLimits: [BURST], quota: null });
    await syncCounters(webhookPool, [{ subject: key.apiKeyId, name: 'key:burst', windowStart: 0, delta: 3 }]);
    await store.revokeKey(key.keyUid);
    await definitions.forget(key.keyUid, 'ApiKey');
    const left = await pool.query(
      'SELECT (SELECT count(*) FROM rate_limit_definitions WHERE uid = $1) + (SELECT count(*) FROM rate_limit_counters WHERE subject = $2) AS n',
      [key.keyUid, key.apiKeyId],
    );
    expect(Number(left.rows[0].n)).toBe(0);
  });
});

describe('counter sync', () => {
  it('adds every replica’s counts in a window and answers the total', async () => {
    const subject = randomUUID();
    const window = Date.UTC(2026, 0, 1, 12, 0);
    const delta = (n: number, windowStart = window) => [
      { subject, name: 'key:burst', windowStart, delta: n },
    ];
    expect(await syncCounters(webhookPool, delta(3))).toEqual([
      { subject, name: 'key:burst', windowStart: window, count: 3 },
    ]);
    expect((await syncCounters(webhookPool, delta(4)))[0]?.count).toBe(7);
    // A pure read (delta 0) answers the total too.
    expect((await syncCounters(webhookPool, delta(0)))[0]?.count).toBe(7);
    // A replica still in the previous window changes nothing and learns the current total.
    expect(await syncCounters(webhookPool, delta(5, window - 60_000))).toEqual([
      { subject, name: 'key:burst', windowStart: window, count: 7 },
    ]);
    // The next window starts from that replica's count alone.
    expect((await syncCounters(webhookPool, delta(2, window + 60_000)))[0]).toMatchObject({
      windowStart: window + 60_000,
      count: 2,
    });
  });

  it('concurrent syncs of the same counters from several replicas lose nothing', async () => {
    const subjects = [randomUUID(), randomUUID(), randomUUID()];
    const batch = (order: string[]) =>
      order.map((subject) => ({ subject, name: 'quota', windowStart: 0, delta: 1 }));
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        syncCounters(webhookPool, batch(i % 2 ? subjects : [...subjects].reverse())),
      ),
    );
    const { rows } = await pool.query<{ count: string }>(
      'SELECT count FROM rate_limit_counters WHERE subject = ANY($1::uuid[])',
      [subjects],
    );
    expect(rows.map((r) => Number(r.count))).toEqual([20, 20, 20]);
  });

  it('quota usage for status is the key’s quota counter', async () => {
    const key = await newKey();
    expect(await definitions.quotaUsage(key.keyUid)).toBeNull();
    await syncCounters(webhookPool, [{ subject: key.apiKeyId, name: 'quota', windowStart: 0, delta: 42 }]);
    expect(await definitions.quotaUsage(key.keyUid)).toEqual({ used: 42, windowStart: new Date(0) });
  });

  it('the webhook role cannot change definitions', async () => {
    await expect(
      webhookPool.query("INSERT INTO rate_limit_definitions (uid, kind) VALUES ('x', 'ApiKey')"),
    ).rejects.toThrow(/permission denied/);
  });
});
