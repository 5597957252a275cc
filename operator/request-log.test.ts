import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../devenv/poll.js';
import { migrate } from '../store/migrate.js';
import { testDatabase } from '../test/harness/database.js';
import { RequestLogMaintenance } from './request-log.js';

let pool: pg.Pool;

async function partitions(): Promise<string[]> {
  const { rows } = await pool.query<{ relname: string }>(
    `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'request_log'::regclass ORDER BY 1`,
  );
  return rows.map((r) => r.relname);
}

beforeAll(async () => {
  const url = await testDatabase();
  await migrate(url);
  pool = new pg.Pool({ connectionString: url, max: 2 });
});

afterAll(async () => {
  await pool?.end();
});

describe('RequestLogMaintenance', () => {
  it('drops days past retention as soon as it starts, and keeps the week ahead', async () => {
    const old = new Date(Date.now() - 3 * 86_400_000).toISOString().slice(0, 10);
    const name = `request_log_${old.replace(/-/g, '')}`;
    await pool.query(`DROP TABLE IF EXISTS ${name}`);
    await pool.query(
      `CREATE TABLE ${name} PARTITION OF request_log FOR VALUES FROM ('${old} 00:00Z') TO ('${old} 00:00Z'::timestamptz + interval '1 day')`,
    );
    const maintenance = new RequestLogMaintenance({
      pool,
      logger: pino({ level: 'silent' }),
      retentionDays: 2,
    });
    maintenance.start();
    try {
      await eventually('the old day dropped', async () => !(await partitions()).includes(name), 10_000);
    } finally {
      await maintenance.stop();
    }
    const ahead = new Date(Date.now() + 7 * 86_400_000).toISOString().slice(0, 10).replace(/-/g, '');
    expect(await partitions()).toContain(`request_log_${ahead}`);
  });
});
