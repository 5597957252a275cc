import pg from 'pg';
import { recordChange } from './change-log.js';
import type { StoreChange } from './changes.js';
import { StoreError } from './errors.js';

const MAX_ATTEMPTS = 4;
// serialization_failure, deadlock_detected, unique_violation: the last one arises when two
// callers insert the same object at once; the next attempt sees the winner's row and answers
// from it (typed conflict, or the idempotent "already done").
const RETRY_CODES = new Set(['40001', '40P01', '23505']);

/** Thrown inside a transaction body to run it again from the start (a race was detected). */
export class RetryTransaction extends Error {
  constructor() {
    super('transaction raced with another; retrying');
  }
}

function retryable(err: unknown): boolean {
  return (
    err instanceof RetryTransaction || (err instanceof pg.DatabaseError && RETRY_CODES.has(err.code ?? ''))
  );
}

/**
 * Runs `body` in one transaction on one pooled connection: commits what it did, or nothing.
 * Races are retried a few times; every other failure becomes a StoreError.
 */
export async function inTransaction<T>(
  pool: pg.Pool,
  operation: string,
  body: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw StoreError.from(operation, err);
    }
    // A connection whose ROLLBACK failed is in an unknown state: destroy it rather than reuse it.
    let destroy = false;
    // pg-pool listens for errors only on idle clients; without this, a connection lost while
    // checked out emits an 'error' nobody handles, which ends the process. The failing query
    // rejects as well, so the error itself is reported there.
    const onError = (): void => {
      destroy = true;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const result = await body(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        destroy = true;
      });
      if (!destroy && attempt < MAX_ATTEMPTS && retryable(err)) continue;
      throw StoreError.from(operation, err);
    } finally {
      client.off('error', onError);
      client.release(destroy);
    }
  }
}

type Queryable = Pick<pg.ClientBase, 'query'>;

/** Logs and announces a change in the caller's transaction (store/change-log.ts); call it last. */
export async function notifyChange(
  client: Queryable,
  change: Exclude<StoreChange, { entity: 'unknown' }>,
): Promise<void> {
  await recordChange(client, change);
}
