import pg from 'pg';
import { parseToken, TOKEN_CANDIDATE } from '../credentials/token.js';
import { CHANGES_CHANNEL, encodeChange, type StoreChange } from './changes.js';
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

export async function notifyChange(
  client: Queryable,
  change: Exclude<StoreChange, { entity: 'unknown' }>,
): Promise<void> {
  await client.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, encodeChange(change)]);
}

export interface AuditEvent {
  readonly action: string;
  readonly namespace?: string | null;
  readonly name?: string | null;
  readonly serviceUserId?: string | null;
  readonly keyId?: string | null;
  readonly detail?: Record<string, unknown>;
}

// Audit rows are kept forever and shown to humans: a bug that put a token or a hash there must
// fail loudly instead. A token is a candidate with a valid checksum (so a long scope or group name
// of the same shape passes); a hash is a scalar that is exactly 64 hex digits, what
// `hash.toString('hex')` gives. Lists in audit details hold user-given names (scopes, groups),
// which may be anything the schema allows, so they get only the token check.
const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;

function holdsToken(text: string): boolean {
  return [...text.matchAll(TOKEN_CANDIDATE)].some((m) => parseToken(m[0]).ok);
}

function refuse(what: string): never {
  throw new AuditRefused(`audit detail looks like it holds ${what}; refusing to store it`);
}

class AuditRefused extends Error {
  override readonly name = 'AuditRefused';
}

function guard(this: unknown, key: string, value: unknown): unknown {
  // Buffers serialise as {type: 'Buffer', data: [...]}: raw bytes (a hash) have no place in audit.
  if (
    value instanceof Uint8Array ||
    (value && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer')
  ) {
    throw new Error('audit detail holds raw bytes; refusing to store it');
  }
  if (holdsToken(key)) refuse('a token');
  if (typeof value === 'string') {
    if (holdsToken(value)) refuse('a token');
    if (!Array.isArray(this) && HEX_SHA256.test(value)) refuse('a hash');
  }
  return value;
}

export async function recordAudit(client: Queryable, actor: string, event: AuditEvent): Promise<void> {
  let detail: string;
  try {
    detail = JSON.stringify(event.detail ?? {}, guard);
  } catch (err) {
    if (err instanceof AuditRefused) throw new Error(`${event.action}: ${err.message}`);
    throw err;
  }
  await client.query(
    `INSERT INTO audit_events (actor, action, namespace, name, service_user_id, key_id, detail)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [
      actor,
      event.action,
      event.namespace ?? null,
      event.name ?? null,
      event.serviceUserId ?? null,
      event.keyId ?? null,
      detail,
    ],
  );
}
