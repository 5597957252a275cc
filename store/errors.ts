import pg from 'pg';

// SQLSTATE classes and codes after which the same call may succeed if simply retried.
const TRANSIENT_CLASSES = ['08', '53', '57', '58', '40'];
// read_only_sql_transaction: a standby answered a write. It ends when the standby is promoted or
// the URL's name moves to the new primary (a failover), so the same write may then succeed.
const TRANSIENT_CODES = new Set(['25006']);
const TRANSIENT_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
]);

/**
 * A store call that failed for a reason other than a typed outcome. Carries no parameters, no
 * row data and no `cause`: a pg error's `detail` quotes the offending values (a hash, say), and
 * store errors end up in logs and Kubernetes Events.
 */
export class StoreError extends Error {
  override readonly name = 'StoreError';

  constructor(
    message: string,
    /** SQLSTATE when Postgres answered, or the socket error code. */
    readonly code: string | undefined,
    /** True when retrying the same call later may succeed (connection loss, deadlock, shutdown…). */
    readonly transient: boolean,
  ) {
    super(message);
  }

  static from(operation: string, err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    if (err instanceof pg.DatabaseError) {
      const code = err.code;
      const transient =
        code !== undefined &&
        (TRANSIENT_CODES.has(code) || TRANSIENT_CLASSES.some((c) => code.startsWith(c)));
      const where = err.constraint ? ` (constraint ${err.constraint})` : '';
      return new StoreError(`${operation}: ${err.message}${where}`, code, transient);
    }
    const code =
      err && typeof err === 'object' && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
    const message = err instanceof Error ? err.message : String(err);
    // pg reports a lost connection as a plain Error ("Connection terminated unexpectedly").
    const transient =
      (code !== undefined && TRANSIENT_NODE_CODES.has(code)) || /connection|timeout/i.test(message);
    return new StoreError(`${operation}: ${message}`, code, transient);
  }
}

// pg-pool's message when no connection became free within connectionTimeoutMillis (a connection
// attempt that times out has a different one): every connection is busy, the store may be fine.
const POOL_ACQUIRE_TIMEOUT = 'timeout exceeded when trying to connect';

/** True when a call failed only because the pool had no free connection in time. */
export function isPoolAcquireTimeout(err: unknown): boolean {
  return err instanceof Error && err.message.endsWith(POOL_ACQUIRE_TIMEOUT);
}
