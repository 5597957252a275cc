import type pg from 'pg';
import { CHANGES_CHANNEL, encodeChange, parseChange, type StoreChange } from './changes.js';

type Queryable = Pick<pg.ClientBase, 'query'>;

/** A change as the log holds it. */
export interface LoggedChange {
  readonly seq: number;
  readonly change: StoreChange;
}

// Taken by every writer before it draws a seq and held until its commit: without it, a transaction
// could draw seq 5, commit after seq 6, and a reader that had already moved past 6 would never see it.
const WRITER_LOCK = `pg_advisory_xact_lock(hashtextextended('keyward:change_log', 0))`;

/**
 * Appends `change` to the change log and NOTIFYs it with its seq, in the caller's transaction and
 * in one round trip. The one place a change is announced: no change path can log without notifying
 * or notify without logging. Call it last in the transaction (it serialises writers until commit).
 */
export async function recordChange(
  client: Queryable,
  change: Exclude<StoreChange, { entity: 'unknown' }>,
): Promise<number> {
  const { rows } = await client.query<{ seq: string }>(
    `WITH locked AS (SELECT ${WRITER_LOCK}),
          logged AS (INSERT INTO change_log (change) SELECT $1::jsonb FROM locked RETURNING seq)
     SELECT seq, pg_notify($2, (jsonb_build_object('seq', seq) || $1::jsonb)::text) FROM logged`,
    [encodeChange(change), CHANGES_CHANNEL],
  );
  return Number(rows[0]?.seq);
}

/**
 * Up to `limit` rows from seq `from` on (inclusive, so the caller can see whether its own last row
 * is still there), in seq order.
 */
export async function readChanges(client: Queryable, from: number, limit: number): Promise<LoggedChange[]> {
  const { rows } = await client.query<{ seq: string; change: unknown }>(
    'SELECT seq, change FROM change_log WHERE seq >= $1 ORDER BY seq LIMIT $2',
    [from, limit],
  );
  return rows.map((r) => ({ seq: Number(r.seq), change: parseChange(JSON.stringify(r.change)) }));
}

/** The newest seq, 0 for an empty log: where a webhook with an empty cache starts following. */
export async function latestSeq(client: Queryable): Promise<number> {
  const { rows } = await client.query<{ seq: string | null }>('SELECT max(seq) AS seq FROM change_log');
  return Number(rows[0]?.seq ?? 0);
}

/**
 * Deletes rows recorded more than `retentionMs` ago, but never the newest row: it is what tells
 * a follower that nothing happened since (an empty log could not). Returns how many went.
 */
export async function pruneChangeLog(client: Queryable, retentionMs: number): Promise<number> {
  const { rowCount } = await client.query(
    `DELETE FROM change_log
      WHERE recorded_at < now() - $1 * interval '1 millisecond'
        AND seq < (SELECT max(seq) FROM change_log)`,
    [retentionMs],
  );
  return rowCount ?? 0;
}
