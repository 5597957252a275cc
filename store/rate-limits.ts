import type pg from 'pg';
import type { LimitDefinition } from '../api/ratelimits.js';
import { StoreError } from './errors.js';
import { inTransaction, notifyChange } from './tx.js';

/** What one ServiceUser or ApiKey asks for; empty lists and a null quota mean "no limits". */
export interface LimitsInput {
  /** The object's Kubernetes uid (known before the store holds the user or key). */
  readonly uid: string;
  readonly kind: 'ServiceUser' | 'ApiKey';
  readonly rateLimits: readonly LimitDefinition[];
  readonly quota: LimitDefinition | null;
}

export interface QuotaUsage {
  readonly used: number;
  /** Start of the window the count belongs to (epoch 0 for a quota that never refills). */
  readonly windowStart: Date;
}

/**
 * The operator's side of rate limits: definitions, written before the user or key they belong
 * to is upserted or issued (so no instant exists at which a key verifies without its limits),
 * and the quota count for status. A change commits with a NOTIFY naming the user or key, so
 * webhooks drop the cached entry and pick the new limits up at once.
 */
export class RateLimitDefinitions {
  constructor(private readonly pool: pg.Pool) {}

  /** Stores the limits; a no-op (no write, no NOTIFY) when they are what the store has. */
  async define(input: LimitsInput): Promise<void> {
    const limits = JSON.stringify(input.rateLimits);
    const quota = input.quota === null ? null : JSON.stringify(input.quota);
    await inTransaction(this.pool, 'define rate limits', async (client) => {
      const { rowCount } = await client.query(
        `INSERT INTO rate_limit_definitions AS d (uid, kind, rate_limits, quota)
         VALUES ($1, $2, $3::jsonb, $4::jsonb)
         ON CONFLICT (uid) DO UPDATE SET rate_limits = EXCLUDED.rate_limits, quota = EXCLUDED.quota,
                                         updated_at = now()
          WHERE d.rate_limits IS DISTINCT FROM EXCLUDED.rate_limits OR d.quota IS DISTINCT FROM EXCLUDED.quota`,
        [input.uid, input.kind, limits, quota],
      );
      if (rowCount === 0) return;
      await this.#announce(client, input);
    });
  }

  /** Removes the definitions and counters of a deleted object. */
  async forget(uid: string, kind: LimitsInput['kind']): Promise<void> {
    const table = kind === 'ApiKey' ? 'api_keys' : 'service_users';
    try {
      await this.pool.query(
        `WITH gone AS (DELETE FROM rate_limit_definitions WHERE uid = $1)
         DELETE FROM rate_limit_counters WHERE subject IN (SELECT id FROM ${table} WHERE uid = $1)`,
        [uid],
      );
    } catch (err) {
      throw StoreError.from('forget rate limits', err);
    }
  }

  /** The quota count of the key with this uid, as the webhooks have reported it; null if none. */
  async quotaUsage(uid: string): Promise<QuotaUsage | null> {
    try {
      const { rows } = await this.pool.query<{ count: string; window_start: Date }>(
        `SELECT c.count, c.window_start FROM rate_limit_counters c
           JOIN api_keys k ON k.id = c.subject
          WHERE k.uid = $1 AND k.revoked_at IS NULL AND c.name = 'quota'`,
        [uid],
      );
      const row = rows[0];
      return row ? { used: Number(row.count), windowStart: row.window_start } : null;
    } catch (err) {
      throw StoreError.from('read quota usage', err);
    }
  }

  async #announce(client: pg.PoolClient, input: LimitsInput): Promise<void> {
    if (input.kind === 'ServiceUser') {
      const { rows } = await client.query<{ id: string }>(
        'SELECT id FROM service_users WHERE uid = $1 AND deleted_at IS NULL',
        [input.uid],
      );
      if (rows[0]) await notifyChange(client, { entity: 'user', op: 'updated', userId: rows[0].id });
      return;
    }
    const { rows } = await client.query<{ key_id: string; service_user_id: string }>(
      'SELECT key_id, service_user_id FROM api_keys WHERE uid = $1 AND revoked_at IS NULL',
      [input.uid],
    );
    if (rows[0]) {
      await notifyChange(client, {
        entity: 'key',
        op: 'updated',
        keyId: rows[0].key_id,
        userId: rows[0].service_user_id,
      });
    }
  }
}

/** One counter's local count since the last sync, for the window it belongs to. */
export interface CounterDelta {
  readonly subject: string;
  readonly name: string;
  readonly windowStart: number;
  readonly delta: number;
}

/** Every replica's total for a counter's window after this replica's delta was added. */
export interface CounterTotal {
  readonly subject: string;
  readonly name: string;
  readonly windowStart: number;
  readonly count: number;
}

// One statement per sync. A later window replaces the stored count (the old window is over); an
// earlier one (a replica with a slow clock, or a sync that raced a window change) leaves it and
// reads the current total back. Rows are locked in key order so concurrent replicas never deadlock.
const SYNC_SQL = `
  INSERT INTO rate_limit_counters AS c (subject, name, window_start, count)
  SELECT subject, name, window_start, delta
    FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::bigint[]) AS t(subject, name, window_start, delta)
   ORDER BY subject, name
  ON CONFLICT (subject, name) DO UPDATE SET
    count = CASE WHEN EXCLUDED.window_start > c.window_start THEN EXCLUDED.count
                 WHEN EXCLUDED.window_start = c.window_start THEN c.count + EXCLUDED.count
                 ELSE c.count END,
    window_start = GREATEST(c.window_start, EXCLUDED.window_start)
  RETURNING subject, name, window_start, count`;

// Store ids are uuids; anything else would fail the whole batch's cast.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Adds local counts to the store's and returns the totals, in one round trip. */
export async function syncCounters(pool: pg.Pool, deltas: readonly CounterDelta[]): Promise<CounterTotal[]> {
  const rows = deltas.filter((d) => UUID.test(d.subject));
  if (rows.length === 0) return [];
  try {
    const result = await pool.query<{ subject: string; name: string; window_start: Date; count: string }>(
      SYNC_SQL,
      [
        rows.map((d) => d.subject),
        rows.map((d) => d.name),
        rows.map((d) => new Date(d.windowStart).toISOString()),
        rows.map((d) => d.delta),
      ],
    );
    return result.rows.map((r) => ({
      subject: r.subject,
      name: r.name,
      windowStart: r.window_start.getTime(),
      count: Number(r.count),
    }));
  } catch (err) {
    throw StoreError.from('sync rate-limit counters', err);
  }
}
