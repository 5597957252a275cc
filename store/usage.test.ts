import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../credentials/token.js';
import { testDatabase } from '../test/harness/database.js';
import { migrate } from './migrate.js';
import { type ApiKeyState, OperatorStore } from './operator-store.js';
import { UsageBatcher } from './usage.js';

let url: string;
let pool: pg.Pool;
let store: OperatorStore;

async function newKeys(count: number): Promise<ApiKeyState[]> {
  const namespace = `ns-${randomUUID().slice(0, 8)}`;
  await store.upsertServiceUser({
    ref: { namespace, name: 'svc', uid: randomUUID() },
    username: namespace,
    description: '',
    contact: null,
    groups: [],
    scopes: ['*'],
    suspended: false,
  });
  const keys: ApiKeyState[] = [];
  for (let i = 0; i < count; i++) {
    const t = generateToken();
    const result = await store.issueKey({
      ref: { namespace, name: `k${i}`, uid: randomUUID() },
      serviceUserName: 'svc',
      hash: t.hash,
      displayPrefix: t.displayPrefix,
    });
    if (result.kind !== 'ok') throw new Error(result.kind);
    keys.push(result.key);
  }
  return keys;
}

async function usage(apiKeyId: string): Promise<Array<{ minute: Date; allowed: string; denied: string }>> {
  const { rows } = await pool.query(
    'SELECT minute, allowed, denied FROM api_key_usage WHERE api_key_id = $1 ORDER BY minute',
    [apiKeyId],
  );
  return rows;
}

async function lastUsed(apiKeyId: string): Promise<Date | null> {
  const { rows } = await pool.query<{ at: Date | null }>(
    'SELECT last_used_at AS at FROM api_keys WHERE id = $1',
    [apiKeyId],
  );
  return rows[0]?.at ?? null;
}

beforeAll(async () => {
  url = await testDatabase();
  await migrate(url);
  pool = new pg.Pool({ connectionString: url, max: 4 });
  store = new OperatorStore(pool);
});

afterAll(async () => {
  await pool?.end();
});

describe('UsageBatcher', () => {
  it('counts per key per minute in memory and writes them in one flush', async () => {
    const [a, b] = await newKeys(2);
    let now = Date.parse('2030-05-01T10:00:10Z');
    const batcher = new UsageBatcher(pool, { flushIntervalMs: 3_600_000, now: () => now });
    try {
      batcher.record(a!.id, 'allowed');
      batcher.record(a!.id, 'allowed');
      batcher.record(a!.id, 'denied');
      batcher.record(b!.id, 'denied');
      now += 60_000;
      batcher.record(a!.id, 'allowed');
      expect(batcher.pending).toBe(3);
      // Nothing is written before a flush.
      expect(await usage(a!.id)).toEqual([]);

      await batcher.flush();
      expect(batcher.pending).toBe(0);
      expect(await usage(a!.id)).toEqual([
        { minute: new Date('2030-05-01T10:00:00Z'), allowed: '2', denied: '1' },
        { minute: new Date('2030-05-01T10:01:00Z'), allowed: '1', denied: '0' },
      ]);
      expect(await usage(b!.id)).toEqual([
        { minute: new Date('2030-05-01T10:00:00Z'), allowed: '0', denied: '1' },
      ]);
      expect(await lastUsed(a!.id)).toEqual(new Date(now));
      // Denied requests are not "use".
      expect(await lastUsed(b!.id)).toBeNull();

      // A later flush adds to the same minute; last_used_at never goes back.
      now -= 30_000;
      batcher.record(a!.id, 'allowed');
      await batcher.flush();
      expect((await usage(a!.id))[0]).toMatchObject({ allowed: '3' });
      expect(await lastUsed(a!.id)).toEqual(new Date(now + 30_000));
    } finally {
      await batcher.close();
    }
  });

  it('flushes on its timer and on close, then ignores records', async () => {
    const [a] = await newKeys(1);
    const batcher = new UsageBatcher(pool, { flushIntervalMs: 50 });
    batcher.record(a!.id, 'allowed');
    await expect.poll(async () => (await usage(a!.id)).length, { timeout: 5_000 }).toBe(1);
    batcher.record(a!.id, 'denied');
    await batcher.close();
    batcher.record(a!.id, 'denied');
    expect(batcher.pending).toBe(0);
    const rows = await usage(a!.id);
    expect(rows.reduce((n, r) => n + Number(r.denied), 0)).toBe(1);
  });

  it('skips keys that do not exist and ids that are not store ids, without losing the rest', async () => {
    const [a] = await newKeys(1);
    const batcher = new UsageBatcher(pool, { flushIntervalMs: 3_600_000 });
    batcher.record(randomUUID(), 'allowed');
    batcher.record('not-a-uuid', 'allowed');
    batcher.record(a!.id, 'allowed');
    await batcher.close();
    expect(await usage(a!.id)).toMatchObject([{ allowed: '1' }]);
  });

  it('writes a flush of many keys in chunks without losing or splitting any key’s counts', async () => {
    const keys = await newKeys(3);
    let now = Date.parse('2026-12-01T10:00:30Z');
    const batcher = new UsageBatcher(pool, { flushIntervalMs: 3_600_000, now: () => now });
    // Keys the store does not know stand in for a miss-heavy minute: they fill the chunks.
    for (let i = 0; i < 4_500; i++) batcher.record(randomUUID(), 'denied');
    for (const k of keys) batcher.record(k.id, 'allowed');
    now += 60_000;
    for (const k of keys) {
      batcher.record(k.id, 'allowed');
      batcher.record(k.id, 'denied');
    }
    expect(batcher.pending).toBe(4_506);
    await batcher.flush();
    expect(batcher.pending).toBe(0);
    for (const k of keys) {
      expect(await usage(k.id)).toMatchObject([
        { allowed: '1', denied: '0' },
        { allowed: '1', denied: '1' },
      ]);
      expect((await lastUsed(k.id))?.getTime()).toBe(now);
    }
    await batcher.close();
  });

  it('bounds memory: past maxBuckets, new buckets are dropped and counted', async () => {
    const keys = await newKeys(3);
    const batcher = new UsageBatcher(pool, { flushIntervalMs: 3_600_000, maxBuckets: 2 });
    for (const k of keys) batcher.record(k.id, 'allowed');
    batcher.record(keys[0]!.id, 'allowed');
    expect(batcher.pending).toBe(2);
    expect(batcher.dropped).toBe(1);
    await batcher.close();
  });

  it('keeps exact totals when replicas flush the same keys at the same time', async () => {
    const keys = await newKeys(20);
    const pools = [
      new pg.Pool({ connectionString: url, max: 1 }),
      new pg.Pool({ connectionString: url, max: 1 }),
    ];
    const batchers = pools.map((p) => new UsageBatcher(p, { flushIntervalMs: 3_600_000 }));
    try {
      const rounds = 25;
      for (let round = 0; round < rounds; round++) {
        batchers.forEach((batcher, i) => {
          // Opposite orders on the two replicas: the statement must lock in its own fixed order.
          const ordered = i === 0 ? keys : [...keys].reverse();
          for (const k of ordered) batcher.record(k.id, 'allowed');
        });
        await Promise.all(batchers.map((b) => b.flush()));
      }
      const { rows } = await pool.query<{ total: string }>(
        'SELECT sum(allowed) AS total FROM api_key_usage WHERE api_key_id = ANY($1)',
        [keys.map((k) => k.id)],
      );
      expect(Number(rows[0]?.total)).toBe(rounds * 2 * keys.length);
    } finally {
      await Promise.all(batchers.map((b) => b.close()));
      await Promise.all(pools.map((p) => p.end()));
    }
  });
});
