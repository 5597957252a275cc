import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../../devenv/poll.js';
import { testDatabase } from '../harness/database.js';
import { readyApp, type StoreFixture, storeFixture, testConfig, verify } from '../support/webhook.js';

/**
 * Writes never take a lookup's connection. The lookups' pool has one connection; another session
 * holds ACCESS EXCLUSIVE on request_log, so the request log's COPY waits on the lock (as behind
 * a long migration) with its connection checked out. A miss must still be answered by the store.
 */
let fx: StoreFixture;
let app: FastifyInstance;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  app = await readyApp(
    testConfig(fx.url, {
      KEYWARD_STORE_POOL_SIZE: '1',
      KEYWARD_STORE_MAX_CONCURRENT_LOOKUPS: '1',
      KEYWARD_REQUEST_LOG_FLUSH_INTERVAL: '1s',
      KEYWARD_USAGE_FLUSH_INTERVAL: '1s',
    }),
  );
});

afterAll(async () => {
  await app?.close();
  await fx?.close();
});

describe('webhook store connections', () => {
  it('answers a miss from the store while the request log and usage writes are stuck', async () => {
    const user = await fx.createUser();
    const first = await fx.issueKey(user);
    const second = await fx.issueKey(user);
    const blocker = await fx.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE request_log, api_key_usage IN ACCESS EXCLUSIVE MODE');
      // Its decision is logged and counted: the next flushes wait on the lock.
      expect((await verify(app, first.token)).statusCode).toBe(200);
      await eventually(
        'the webhook writes waiting on the lock',
        async () =>
          (
            await fx.pool.query(
              `SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                WHERE a.application_name LIKE 'keyward-webhook%' AND NOT l.granted`,
            )
          ).rowCount! >= 1,
        10_000,
      );
      const res = await verify(app, second.token);
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-keyward-key-id']).toBe(second.keyId);
    } finally {
      await blocker.query('ROLLBACK');
      blocker.release();
    }
  });
});
