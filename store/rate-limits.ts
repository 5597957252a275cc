import type pg from 'pg';
import type { LimitDefinition } from '../api/ratelimits.js';
import { CHANGES_CHANNEL } from './changes.js';
import { StoreError } from './errors.js';

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

// One statement each, so a reconcile pays one round trip and the NOTIFY commits with the write.
// The payloads are store/changes.ts' StoreChange for a key or a user, built in SQL from the same
// transaction's rows. Only a real change is announced (and an object without limits has no row).
const NOTIFY_CHANGED = `
  SELECT pg_notify('${CHANGES_CHANNEL}', CASE WHEN $2 = 'ApiKey'
           THEN (SELECT json_build_object('entity', 'key', 'op', 'updated', 'keyId', k.key_id,
                                          'userId', k.service_user_id)::text
                   FROM api_keys k WHERE k.uid = changed.uid AND k.revoked_at IS NULL)
           ELSE (SELECT json_build_object('entity', 'user', 'op', 'updated', 'userId', u.id)::text
                   FROM service_users u WHERE u.uid = changed.uid AND u.deleted_at IS NULL)
         END)
    FROM changed`;

const DEFINE_SQL = `
  WITH changed AS (
    INSERT INTO rate_limit_definitions AS d (uid, kind, rate_limits, quota)
    VALUES ($1, $2, $3::jsonb, $4::jsonb)
    ON CONFLICT (uid) DO UPDATE SET rate_limits = EXCLUDED.rate_limits, quota = EXCLUDED.quota, updated_at = now()
     WHERE d.rate_limits IS DISTINCT FROM EXCLUDED.rate_limits OR d.quota IS DISTINCT FROM EXCLUDED.quota
    RETURNING uid
  )${NOTIFY_CHANGED}`;

const UNDEFINE_SQL = `
  WITH changed AS (DELETE FROM rate_limit_definitions WHERE uid = $1 AND kind = $2 RETURNING uid)${NOTIFY_CHANGED}`;

/**
 * The operator's side of rate limits: definitions, written before the user or key they belong
 * to is upserted or issued (so no instant exists at which a key verifies without its limits),
 * and the quota count for status. A change commits with a NOTIFY naming the user or key, so
 * webhooks drop the cached entry and pick the new limits up at once.
 */
export class RateLimitDefinitions {
  constructor(private readonly pool: pg.Pool) {}

  /** Stores the limits; a no-op (nothing written, nothing announced) when the store has them already. */
  async define(input: LimitsInput): Promise<void> {
    const none = input.rateLimits.length === 0 && input.quota === null;
    try {
      await this.pool.query(
        none ? UNDEFINE_SQL : DEFINE_SQL,
        none
          ? [input.uid, input.kind]
          : [
              input.uid,
              input.kind,
              JSON.stringify(input.rateLimits),
              input.quota && JSON.stringify(input.quota),
            ],
      );
    } catch (err) {
      throw StoreError.from('define rate limits', err);
    }
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
