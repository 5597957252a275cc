import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../../devenv/poll.js';
import { testDatabase } from '../harness/database.js';
import {
  metricsText,
  readyApp,
  type StoreFixture,
  storeFixture,
  type TestKey,
  testConfig,
  verify,
} from '../support/webhook.js';

/**
 * A revocation is final, so its NOTIFY says all a re-read would: a cached key is refused as
 * revoked from the notification alone, without a store round trip on the request path.
 */
let fx: StoreFixture;
let app: FastifyInstance;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  app = await readyApp(testConfig(fx.url));
});

afterAll(async () => {
  await app?.close();
  await fx?.close();
});

async function metric(name: string, labels = ''): Promise<number> {
  let total = 0;
  for (const line of (await metricsText(app)).split('\n')) {
    if (line.startsWith(`${name}{${labels}`) || line.startsWith(`${name} `))
      total += Number(line.split(' ').at(-1));
  }
  return total;
}

const ROUND_TRIPS = 'keyward_webhook_store_lookup_round_trips_total';

/** Verifies until the key is answered from the cache (its own `issued` NOTIFY has passed). */
async function cached(key: TestKey): Promise<void> {
  await eventually(
    'the key answered from the cache',
    async () => {
      const hits = await metric('keyward_webhook_cache_lookups_total', 'outcome="hit"');
      expect((await verify(app, key.token)).statusCode).toBe(200);
      return (await metric('keyward_webhook_cache_lookups_total', 'outcome="hit"')) > hits;
    },
    10_000,
  );
}

async function refusedAsRevoked(key: TestKey): Promise<void> {
  await eventually('401', async () => (await verify(app, key.token)).statusCode === 401, 10_000);
  expect((await verify(app, key.token)).json()).toMatchObject({
    error_description: 'The API key has been revoked.',
  });
}

describe('revocation reaching a webhook', () => {
  it('refuses a revoked cached key without asking the store', async () => {
    const user = await fx.createUser();
    const key = await fx.issueKey(user);
    const sibling = await fx.issueKey(user);
    await cached(key);
    await cached(sibling);
    const roundTrips = await metric(ROUND_TRIPS);
    await fx.store.revokeKey(key.uid);
    await refusedAsRevoked(key);
    // The user's other key is untouched and still served from the cache.
    expect((await verify(app, sibling.token)).statusCode).toBe(200);
    expect(await metric(ROUND_TRIPS)).toBe(roundTrips);
  });

  it('refuses every cached key of a deleted user without asking the store', async () => {
    const user = await fx.createUser();
    const keys = [await fx.issueKey(user), await fx.issueKey(user)];
    for (const key of keys) await cached(key);
    const roundTrips = await metric(ROUND_TRIPS);
    await fx.store.deleteServiceUser(user.uid);
    for (const key of keys) await refusedAsRevoked(key);
    expect(await metric(ROUND_TRIPS)).toBe(roundTrips);
  });
});
