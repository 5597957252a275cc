import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

/**
 * Creates a fresh, uniquely named database in the run's private Postgres and returns its URL.
 * Call it once per test file (in beforeAll): files run in parallel and must not share tables.
 */
export async function testDatabase(): Promise<string> {
  const adminUrl = inject('pgAdminUrl');
  if (!adminUrl)
    throw new Error(
      'pgAdminUrl is not provided: run the tests through vitest with test/harness/global-setup.ts',
    );
  const name = `t_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
