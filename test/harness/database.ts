import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { createDatabase } from '../../devenv/postgres.js';

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
  return await createDatabase(adminUrl, `t_${randomBytes(6).toString('hex')}`);
}
