import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { StoreError } from './errors.js';
import {
  copyLine,
  decisionsIn,
  type RecordBatch,
  RecordQueue,
  type RequestLogFields,
  textChunks,
} from './request-log-rows.js';

/**
 * One row of request_log (store/migrations/0007_request_log.sql, `count` from 0009), named as its
 * columns are, as a JSON line has them too. Never a token and never a query string: the webhook
 * builds rows from the decision, not from the request.
 */
export interface RequestLogRow {
  /** RFC 3339, UTC. */
  readonly at: string;
  readonly route: 'verify' | 'tokenreview' | 'introspect';
  readonly key_id: string | null;
  readonly username: string | null;
  /** The key's own user; differs from `username` only when the key acted on behalf of `subject`. */
  readonly actor: string | null;
  readonly subject: string | null;
  readonly method: string | null;
  readonly path: string | null;
  readonly client_address: string | null;
  readonly result: string;
  readonly reason: string;
  /** Decisions alike in every other field, made in the same millisecond (RecordQueue). */
  readonly count: number;
}

/** The columns of request_log in the order copyLine (request-log-rows.ts) writes them. */
const COPY_COLUMNS = [
  'at',
  'key_id',
  'route',
  'username',
  'actor',
  'subject',
  'method',
  'client_address',
  'result',
  'reason',
  'path',
  'count',
] as const;

/** A delay source for retries after a failed write (lib/backoff.ts). */
export interface RetryDelay {
  next(): number;
  reset(): void;
}

export type DropReason = 'buffer_full' | 'rejected';

export interface RequestLogWriterOptions {
  /** How often pending rows are written. */
  readonly flushIntervalMs: number;
  /** Rows held while the store is slow or away; past it new decisions are dropped and counted. */
  readonly maxPending: number;
  /** After a failed write the next one waits this long (at least one flush interval). */
  readonly retry: RetryDelay;
  /** Rows per COPY statement. */
  readonly maxBatch?: number;
  /** Failures of timer-driven flushes. */
  readonly onError?: (err: StoreError) => void;
  /** Called as each flush starts: where decisions still held elsewhere (the recorder's open run) are added. */
  readonly beforeFlush?: () => void;
  readonly now?: () => number;
}

const DEFAULT_MAX_BATCH = 5_000;
/** Characters of COPY text per chunk written to the connection. */
const COPY_CHUNK_CHARS = 64 * 1024;

// COPY is Postgres's bulk path: per row it costs the store about half of what parsing one JSON
// array parameter did (json_populate_recordset), and the webhook sends text it built once per
// distinct set of fields. Rows are routed to their day partitions as with INSERT.
const COPY_SQL = `COPY request_log (${COPY_COLUMNS.join(', ')}) FROM STDIN`;

/**
 * Request-log records queued in memory (a time stamp and shared fields each, request-log-rows.ts)
 * and written in batches with COPY, so a decision never waits on the store. A store that cannot
 * be reached keeps records queued up to maxPending and is retried with backoff; beyond the bound,
 * and for batches the store refuses for good (say a missing partition), records are dropped and
 * counted, never blocking a request.
 */
export class RequestLogWriter {
  readonly #queue: RecordQueue;
  readonly #dropped: Record<DropReason, number> = { buffer_full: 0, rejected: 0 };
  #written = 0;
  #retryAt = 0;
  #inFlight: Promise<void> | undefined;
  #closed = false;
  readonly #timer: NodeJS.Timeout;
  readonly #now: () => number;
  readonly #maxBatch: number;

  constructor(
    private readonly pool: pg.Pool,
    private readonly options: RequestLogWriterOptions,
  ) {
    this.#now = options.now ?? Date.now;
    this.#maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
    this.#queue = new RecordQueue(options.maxPending);
    this.#timer = setInterval(() => {
      if (this.#now() < this.#retryAt) return;
      this.flush().catch((err: unknown) => this.options.onError?.(StoreError.from('write request log', err)));
    }, options.flushIntervalMs);
    this.#timer.unref();
  }

  /** Queues `count` like decisions: their time (epoch milliseconds), key, other fields and path. Never blocks, never throws. */
  add(at: number, keyId: string | null, fields: RequestLogFields, path: string | null, count = 1): void {
    if (this.#closed) return;
    if (!this.#queue.push(at, keyId, fields, path, count)) this.#dropped.buffer_full += count;
  }

  /** Decisions waiting (in fewer rows when alike ones shared a millisecond). */
  get pending(): number {
    return this.#queue.decisions;
  }

  /** Decisions written. */
  get written(): number {
    return this.#written;
  }

  /** Decisions lost, by why: the buffer was full, or the store refused their batch for good. */
  dropped(reason: DropReason): number {
    return this.#dropped[reason];
  }

  /** Writes everything pending now; concurrent calls share the write. Rejects with a StoreError. */
  async flush(): Promise<void> {
    this.options.beforeFlush?.();
    while (this.#inFlight) await this.#inFlight.catch(() => undefined);
    if (this.#queue.length === 0) return;
    this.#inFlight = this.#drain();
    try {
      await this.#inFlight;
    } finally {
      this.#inFlight = undefined;
    }
  }

  /** Stops the timer and makes one last attempt; rows it cannot write are lost with the process. */
  async close(): Promise<void> {
    // While adds are still taken: once closed, the last flush's own call could add nothing.
    this.options.beforeFlush?.();
    this.#closed = true;
    clearInterval(this.#timer);
    await this.flush();
  }

  /** Writes the rows queued when it started (rows arriving meanwhile wait for the next flush). */
  async #drain(): Promise<void> {
    let remaining = this.#queue.length;
    while (remaining > 0) {
      const batch = this.#queue.take(Math.min(this.#maxBatch, remaining));
      remaining -= batch.at.length;
      try {
        await this.#copy(batch);
      } catch (err) {
        const error = StoreError.from('write request log', err);
        if (error.transient) {
          this.#dropped.buffer_full += this.#queue.putBack(batch);
          this.#retryAt = this.#now() + Math.max(this.options.flushIntervalMs, this.options.retry.next());
        } else {
          this.#dropped.rejected += decisionsIn(batch);
        }
        throw error;
      }
      this.#written += decisionsIn(batch);
      this.#retryAt = 0;
      this.options.retry.reset();
    }
  }

  async #copy(batch: RecordBatch): Promise<void> {
    const client = await this.pool.connect();
    try {
      await pipeline(
        Readable.from(textChunks(batch, copyLine, COPY_CHUNK_CHARS)),
        client.query(copyFrom(COPY_SQL)),
      );
    } catch (err) {
      // A COPY cut off half-way leaves the connection in an unknown state: it is not reused.
      client.release(err instanceof Error ? err : true);
      throw err;
    }
    client.release();
  }
}

export interface RequestLogFilter {
  readonly keyId?: string;
  /** Matches the effective user and the actor, so acting on behalf of someone is found both ways. */
  readonly username?: string;
  readonly since?: Date;
  readonly until?: Date;
  readonly limit: number;
}

export interface RequestLogEntry extends Omit<RequestLogRow, 'at'> {
  readonly at: Date;
}

/** The latest `limit` rows matching the filter, oldest first. */
export async function queryRequestLog(pool: pg.Pool, filter: RequestLogFilter): Promise<RequestLogEntry[]> {
  try {
    const { rows } = await pool.query<RequestLogEntry>(
      `SELECT * FROM (
         SELECT at, route, key_id, username, actor, subject, method, path, client_address, result, reason,
                count
           FROM request_log
          WHERE ($1::text IS NULL OR key_id = $1)
            AND ($2::text IS NULL OR username = $2 OR actor = $2)
            AND ($3::timestamptz IS NULL OR at >= $3)
            AND ($4::timestamptz IS NULL OR at < $4)
          ORDER BY at DESC
          LIMIT $5
       ) latest ORDER BY at`,
      [
        filter.keyId ?? null,
        filter.username ?? null,
        filter.since?.toISOString() ?? null,
        filter.until?.toISOString() ?? null,
        filter.limit,
      ],
    );
    return rows;
  } catch (err) {
    throw StoreError.from('read request log', err);
  }
}

/**
 * Creates the day partitions up to `aheadDays` ahead and drops those older than `retentionDays`
 * (keyward_request_log_maintain, run as the schema owner; the operator role may only call it).
 */
export async function maintainRequestLog(
  pool: pg.Pool,
  options: { readonly retentionDays: number; readonly aheadDays: number },
): Promise<{ created: number; dropped: number }> {
  try {
    const { rows } = await pool.query<{ created: number; dropped: number }>(
      'SELECT created, dropped FROM keyward_request_log_maintain($1, $2)',
      [options.retentionDays, options.aheadDays],
    );
    return rows[0] ?? { created: 0, dropped: 0 };
  } catch (err) {
    throw StoreError.from('maintain request log partitions', err);
  }
}
