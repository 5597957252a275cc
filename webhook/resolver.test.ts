import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type KeyLookup, lookupByHashes } from '../store/lookup.js';
import { StoreTestbed } from '../test/support/store-testbed.js';
import { VerifyCache } from './cache.js';
import { createLogger } from './logger.js';
import { WebhookMetrics } from './metrics.js';
import { type Resolution, Resolver } from './resolver.js';

let tb: StoreTestbed;

beforeAll(async () => {
  tb = await StoreTestbed.open();
});

afterAll(async () => {
  await tb?.close();
});

/** A resolver over the real store; `db` answers its round trips, each one recorded. */
function setup(db: pg.Pool, options: { maxBatch?: number; maxConcurrent?: number; maxQueued?: number } = {}) {
  const clock = { now: 1_000_000 };
  const roundTrips: number[] = [];
  const cache = new VerifyCache({
    maxEntries: 100,
    ttlMs: 60_000,
    staleIfErrorMs: 300_000,
    negativeMaxEntries: 100,
    negativeTtlMs: 5_000,
    now: () => clock.now,
  });
  cache.listenerAttached();
  const metrics = new WebhookMetrics({ defaultMetrics: false });
  const resolver = new Resolver({
    cache,
    queue: {
      maxConcurrent: options.maxConcurrent ?? 2,
      maxQueued: options.maxQueued ?? 100,
      maxWaitMs: 2_000,
      now: () => clock.now,
    },
    maxBatch: options.maxBatch ?? 64,
    lookup: (hashes): Promise<(KeyLookup | null)[]> => {
      roundTrips.push(hashes.length);
      return lookupByHashes(db, hashes);
    },
    metrics,
    logger: createLogger({ level: 'silent' }),
    tokenPrefix: undefined,
  });
  const resolve = (token: string): Resolution | Promise<Resolution> => {
    const first = resolver.resolveCached(token);
    return first.kind === 'pending' ? resolver.complete(first) : first;
  };
  return { resolver, cache, clock, roundTrips, resolve };
}

const keyIdOf = (r: Resolution): string | undefined => (r.kind === 'key' ? r.entry.key.keyId : undefined);

describe('Resolver with coalesced misses', () => {
  it('answers concurrent misses in one round trip, each caller with its own key, and caches them', async () => {
    const user = await tb.newUser();
    const keys = [await tb.newKey(user, 'one'), await tb.newKey(user, 'two'), await tb.newKey(user, 'three')];
    const unknown = tb.token();
    const { resolve, roundTrips } = setup(tb.pool);

    // The same key twice, an unknown token and a bad checksum among them, all in one event-loop turn.
    const tokens = [keys[2]!.token.token, unknown.token, keys[0]!.token.token, keys[1]!.token.token];
    const answers = await Promise.all([
      ...tokens.map(resolve),
      resolve(keys[2]!.token.token),
      resolve(`${keys[0]!.token.token.slice(0, -1)}${keys[0]!.token.token.endsWith('A') ? 'B' : 'A'}`),
    ]);

    expect(answers.map(keyIdOf)).toEqual([
      keys[2]!.key.keyId,
      undefined,
      keys[0]!.key.keyId,
      keys[1]!.key.keyId,
      keys[2]!.key.keyId,
      undefined,
    ]);
    expect(answers[1]).toMatchObject({ kind: 'invalid', reason: 'unknown' });
    expect(answers[5]).toMatchObject({ kind: 'invalid', reason: 'bad_checksum' });
    // Four distinct hashes (the duplicate shared its entry; the bad checksum never left the process).
    expect(roundTrips).toEqual([4]);

    // Filled: the keys are hits now, the unknown token a negative hit; no further round trip.
    const again = await Promise.all(tokens.map(resolve));
    expect(again.map(keyIdOf)).toEqual(answers.slice(0, 4).map(keyIdOf));
    expect(again[1]).toMatchObject({ kind: 'invalid', reason: 'unknown' });
    expect(roundTrips).toEqual([4]);
  });

  it('splits a burst into batches of at most maxBatch, none of them mixing up rows', async () => {
    const user = await tb.newUser();
    const keys = [];
    for (let i = 0; i < 7; i++) keys.push(await tb.newKey(user, `k${i}`));
    const { resolve, roundTrips } = setup(tb.pool, { maxBatch: 3, maxConcurrent: 1 });

    const answers = await Promise.all(keys.map((k) => resolve(k.token.token)));

    expect(answers.map(keyIdOf)).toEqual(keys.map((k) => k.key.keyId));
    expect(roundTrips).toEqual([3, 3, 1]);
  });

  it('answers a miss shed by a full queue as overloaded, and looks the same token up once there is room', async () => {
    const user = await tb.newUser();
    const first = await tb.newKey(user, 'first');
    const shed = await tb.newKey(user, 'shed');
    const { resolve } = setup(tb.pool, { maxConcurrent: 1, maxQueued: 1 });

    // One lookup waits for the batch; the next, of equal priority, finds the queue full.
    const [a, b] = await Promise.all([resolve(first.token.token), resolve(shed.token.token)]);
    expect(keyIdOf(a)).toBe(first.key.keyId);
    expect(b).toMatchObject({ kind: 'unavailable', reason: 'overloaded' });

    // The shed answer was for that moment only: nothing keeps handing it out.
    expect(keyIdOf(await resolve(shed.token.token))).toBe(shed.key.keyId);
  });

  it('fails only the hashes of a failed round trip, and serves what stale-if-error allows', async () => {
    const user = await tb.newUser();
    const cached = await tb.newKey(user, 'cached');
    const never = await tb.newKey(user, 'never');
    // A database that does not exist: every round trip of this pool fails in the real server.
    const broken = new pg.Pool({
      connectionString: tb.url.replace(/\/[^/?]+(\?|$)/, '/keyward_no_such_db$1'),
    });
    broken.on('error', () => undefined);
    try {
      const { resolver, resolve, cache, clock } = setup(broken);
      // Fill one entry through a working store, then let its TTL run out so it needs a re-read.
      const generation = cache.beginFill();
      const [row] = await lookupByHashes(tb.pool, [cached.token.hash]);
      cache.fill(cached.token.hash.toString('latin1'), row!, generation);
      clock.now += 61_000;

      const [stale, missing] = await Promise.all([resolve(cached.token.token), resolve(never.token.token)]);

      expect(keyIdOf(stale)).toBe(cached.key.keyId);
      expect(missing).toMatchObject({ kind: 'unavailable', reason: 'store_unavailable' });
      expect(resolver.storeAnswering).toBe(false);
    } finally {
      await broken.end();
    }
  });
});
