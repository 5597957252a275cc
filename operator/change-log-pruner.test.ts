import { randomUUID } from 'node:crypto';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../devenv/poll.js';
import { latestSeq, readChanges, recordChange } from '../store/change-log.js';
import { migrate } from '../store/migrate.js';
import { testDatabase } from '../test/harness/database.js';
import { startChangeLogPruner } from './change-log-pruner.js';

let pool: pg.Pool;

beforeAll(async () => {
  const url = await testDatabase();
  await migrate(url);
  pool = new pg.Pool({ connectionString: url, max: 2 });
});

afterAll(async () => {
  await pool?.end();
});

describe('change-log pruner', () => {
  it('deletes rows past the retention at the start of the term and keeps recent ones', async () => {
    for (let i = 0; i < 3; i++)
      await recordChange(pool, { entity: 'user', op: 'updated', userId: randomUUID() });
    await pool.query(`UPDATE change_log SET recorded_at = now() - interval '2 days'`);
    await recordChange(pool, { entity: 'user', op: 'updated', userId: randomUUID() });
    const newest = await latestSeq(pool);
    const pruner = startChangeLogPruner(pool, 86_400_000, pino({ level: 'silent' }));
    try {
      await eventually('old rows pruned', async () => (await readChanges(pool, 0, 10)).length === 1, 10_000);
      expect((await readChanges(pool, 0, 10)).map((r) => r.seq)).toEqual([newest]);
    } finally {
      pruner.stop();
    }
  });
});
