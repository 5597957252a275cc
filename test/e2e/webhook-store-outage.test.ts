import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../../credentials/token.js';
import { eventually } from '../../devenv/poll.js';
import { createDatabase, startPostgres, type TestPostgres } from '../../devenv/postgres.js';
import { readyApp, type StoreFixture, storeFixture, testConfig, verify } from '../support/webhook.js';

/**
 * The store goes away under a serving webhook. A private Postgres, so stopping it does not disturb
 * other suites. Requests keep flowing from a background loop the whole time ("under load"), and
 * every answer the loop gets is checked against what a client may see.
 */
let postgres: TestPostgres;
let fx: StoreFixture;
let app: FastifyInstance;

beforeAll(async () => {
  postgres = await startPostgres();
  const storeUrl = await createDatabase(postgres.adminUrl, 'keyward');
  fx = await storeFixture(storeUrl, 2);
  // Stale-if-error stays at its default (5 min): the cached key must survive the outage.
  app = await readyApp(testConfig(storeUrl, { KEYWARD_STORE_TIMEOUT: '1s' }));
});

afterAll(async () => {
  await app?.close();
  await fx?.close();
  await postgres?.stop();
});

/**
 * Sends the token in a loop until stopped. Returns the sequence of distinct answers in order
 * (runs collapsed: 200, 200, 401 → [200, 401]) and how many requests were made.
 */
function load(token: string): {
  readonly requests: number;
  stop(): Promise<{ statuses: number[]; requests: number }>;
} {
  const statuses: number[] = [];
  let requests = 0;
  let running = true;
  const loop = (async (): Promise<void> => {
    while (running) {
      const status = (await verify(app, token)).statusCode;
      requests += 1;
      if (statuses.at(-1) !== status) statuses.push(status);
      // Yields to timers and I/O: inject() alone would starve the listener's reconnects.
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  return {
    get requests() {
      return requests;
    },
    async stop() {
      running = false;
      await loop;
      return { statuses, requests };
    },
  };
}

describe('webhook while the store is down', () => {
  it('keeps allowing cached keys, answers 503 for uncached ones, and recovers without a restart', async () => {
    const user = await fx.createUser();
    const cached = await fx.issueKey(user);
    const uncached = await fx.issueKey(user);
    expect((await verify(app, cached.token)).statusCode).toBe(200);
    const background = load(cached.token);

    await postgres.pause();
    await eventually('readiness to turn false', async () => !(await app.keyward.readiness()).ready, 10_000);
    const readyz = await app.inject({ method: 'GET', url: '/readyz' });
    expect(readyz.statusCode).toBe(503);
    expect(readyz.json()).toMatchObject({ store: 'unreachable' });

    expect((await verify(app, cached.token)).statusCode).toBe(200);
    const unknownToStore = await verify(app, uncached.token);
    expect(unknownToStore.statusCode).toBe(503);
    expect(unknownToStore.body).not.toContain('ECONNREFUSED');
    // Garbage never needs the store, so it is still a plain 401.
    expect((await verify(app, 'kw_garbage')).statusCode).toBe(401);
    expect((await verify(app, generateToken().token.slice(0, -1))).statusCode).toBe(401);
    // Load while the store is down, not just around it: a hundred more answers before it is back.
    const duringOutage = background.requests + 100;
    await eventually('requests during the outage', () => background.requests >= duringOutage, 20_000);

    await postgres.resume();
    await eventually('readiness to return', async () => (await app.keyward.readiness()).ready, 20_000);
    expect((await verify(app, uncached.token)).statusCode).toBe(200);
    const { statuses, requests } = await background.stop();
    expect(requests).toBeGreaterThan(100);
    expect(statuses).toEqual([200]);
  });

  it('misses no change made while the listener is detached', async () => {
    const user = await fx.createUser();
    const key = await fx.issueKey(user);
    expect((await verify(app, key.token)).statusCode).toBe(200);
    const background = load(key.token);

    // Only the listener's backend goes; lookups and the rest of the store keep working.
    const { rowCount } = await fx.pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'keyward-webhook-listener'`,
    );
    expect(rowCount).toBe(1);
    await fx.store.revokeKey(key.uid);
    // The NOTIFY for that revoke went to nobody. Once the listener is back, the key must be refused.
    await eventually('listener', async () => (await app.keyward.readiness()).listener === 'attached', 10_000);
    expect((await verify(app, key.token)).statusCode).toBe(401);
    // Allowed before the revoke committed, refused after: never flapping back to 200.
    const { statuses } = await background.stop();
    expect(statuses).toEqual([200, 401]);
  });

  it('never serves an entry confirmed before a listener gap, even when the store then fails', async () => {
    const user = await fx.createUser();
    const key = await fx.issueKey(user);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await verify(app, key.token)).statusCode).toBe(200);

    await fx.pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'keyward-webhook-listener'`,
    );
    // The listener reconnects after 50 ms: poll faster than that or the gap goes unseen.
    await eventually('gap', async () => (await app.keyward.readiness()).listener === 'detached', 10_000, {
      intervalMs: 5,
    });
    // Revoked during the gap: nobody hears the NOTIFY.
    await fx.store.revokeKey(key.uid);
    await eventually('listener', async () => (await app.keyward.readiness()).listener === 'attached', 10_000);
    // Now the store goes away before the key is asked for again. Its cached row predates the gap
    // and is well within stale-if-error, but it is a revoked key: the reconnect read the revoke
    // from the change log, which marks the entry revoked, so it is refused without the store.
    await postgres.pause();
    try {
      await eventually('store down', async () => !(await app.keyward.readiness()).ready, 10_000);
      const res = await verify(app, key.token);
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ error_description: 'The API key has been revoked.' });
    } finally {
      await postgres.resume();
    }
    await eventually('readiness to return', async () => (await app.keyward.readiness()).ready, 20_000);
    expect((await verify(app, key.token)).statusCode).toBe(401);
  });
});
