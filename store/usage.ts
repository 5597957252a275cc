import type pg from 'pg';
import { StoreError } from './errors.js';

export type UsageOutcome = 'allowed' | 'denied';

export interface UsageBatcherOptions {
  /** How often pending counts are written (default 10 s). */
  readonly flushIntervalMs?: number;
  /** Bound on pending (key, minute) buckets; past it new buckets are dropped and counted. */
  readonly maxBuckets?: number;
  /** Failures of timer-driven flushes; counts are kept for the next flush. */
  readonly onError?: (err: StoreError) => void;
  /** Clock, injectable for tests. */
  readonly now?: () => number;
}

interface Bucket {
  apiKeyId: string;
  minute: number;
  allowed: number;
  denied: number;
  /** The last allowed use counted here (epoch ms, 0 for none); folded into lastUsed at flush. */
  lastAllowedAt: number;
}

const MINUTE_MS = 60_000;
/** Keys per flush statement: well inside the webhook role's statement timeout on a loaded store. */
const FLUSH_CHUNK_KEYS = 2_000;
// Store ids are uuids; anything else would fail the whole batch's cast, so it is never queued.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// One statement per chunk of keys (see write()). Rows are locked in a fixed order (usage rows by key and minute, key
// rows by id) so that webhook replicas flushing at the same time cannot deadlock; FOR NO KEY
// UPDATE does not conflict with the FOR KEY SHARE lock the usage rows' foreign key takes.
const FLUSH_SQL = `
  WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[])
      AS t(api_key_id, minute, allowed, denied)
  ),
  counted AS (
    INSERT INTO api_key_usage AS u (api_key_id, minute, allowed, denied)
    SELECT i.api_key_id, i.minute, i.allowed, i.denied FROM input i
     WHERE EXISTS (SELECT 1 FROM api_keys k WHERE k.id = i.api_key_id)
     ORDER BY i.api_key_id, i.minute
    ON CONFLICT (api_key_id, minute) DO UPDATE
      SET allowed = u.allowed + EXCLUDED.allowed, denied = u.denied + EXCLUDED.denied
  ),
  used AS (
    SELECT * FROM unnest($5::uuid[], $6::timestamptz[]) AS t(api_key_id, at)
  ),
  locked AS (
    SELECT k.id, used.at FROM api_keys k JOIN used ON used.api_key_id = k.id
     ORDER BY k.id FOR NO KEY UPDATE OF k
  )
  UPDATE api_keys k SET last_used_at = locked.at
    FROM locked
   WHERE k.id = locked.id AND (k.last_used_at IS NULL OR k.last_used_at < locked.at)`;

/**
 * Counts verify outcomes per key per minute in memory and writes them in one statement every
 * few seconds (api_key_usage, and api_keys.last_used_at from allowed requests), so the request
 * path never waits on a write. close() flushes what is left.
 */
export class UsageBatcher {
  /**
   * Pending buckets by minute, then by the key's store id: the request path finds a key's bucket
   * with one lookup of a string it already holds. A new key costs one map slot and the bucket,
   * with no `id|minute` string built per key: on the miss path nearly every request is a new key.
   */
  private buckets = new Map<number, Map<string, Bucket>>();
  private bucketCount = 0;
  /** The minute last counted in and its buckets (nearly every record() falls in it). */
  private minute = Number.NaN;
  private ofMinute: Map<string, Bucket> | undefined;
  private lastUsed = new Map<string, number>();
  private droppedCount = 0;
  private inFlight: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly maxBuckets: number;
  private readonly now: () => number;
  private closed = false;

  constructor(
    private readonly pool: pg.Pool,
    private readonly options: UsageBatcherOptions = {},
  ) {
    this.maxBuckets = options.maxBuckets ?? 100_000;
    this.now = options.now ?? Date.now;
    this.timer = setInterval(() => {
      this.flush().catch((err: unknown) => this.options.onError?.(StoreError.from('flush usage', err)));
    }, options.flushIntervalMs ?? 10_000);
    this.timer.unref();
  }

  /** Counts one verify outcome for a key (by its store id). Never blocks, never throws. */
  record(apiKeyId: string, outcome: UsageOutcome): void {
    if (this.closed) return;
    const at = this.now();
    const minute = at - (at % MINUTE_MS);
    const bucket = this.bucketsOf(minute).get(apiKeyId) ?? this.newBucket(apiKeyId, minute);
    if (bucket === undefined) return;
    bucket[outcome] += 1;
    if (outcome === 'allowed' && at > bucket.lastAllowedAt) bucket.lastAllowedAt = at;
  }

  private bucketsOf(minute: number): Map<string, Bucket> {
    if (minute === this.minute && this.ofMinute !== undefined) return this.ofMinute;
    let ofMinute = this.buckets.get(minute);
    if (ofMinute === undefined) {
      ofMinute = new Map();
      this.buckets.set(minute, ofMinute);
    }
    this.minute = minute;
    this.ofMinute = ofMinute;
    return ofMinute;
  }

  /** A new (key, minute) bucket if there is room; undefined when the outcome is not counted. */
  private newBucket(apiKeyId: string, minute: number): Bucket | undefined {
    // Checked once per bucket, not per request: one malformed id would fail the whole batch's uuid[] cast.
    if (!UUID.test(apiKeyId)) return undefined;
    if (this.bucketCount >= this.maxBuckets) {
      this.droppedCount += 1;
      return undefined;
    }
    const bucket = { apiKeyId, minute, allowed: 0, denied: 0, lastAllowedAt: 0 };
    this.bucketsOf(minute).set(apiKeyId, bucket);
    this.bucketCount += 1;
    return bucket;
  }

  /** Pending (key, minute) buckets. */
  get pending(): number {
    return this.bucketCount;
  }

  /** Outcomes not counted: maxBuckets was reached, or the store rejected a batch for good. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Writes what is pending now; concurrent calls share one write. Rejects with a StoreError. */
  async flush(): Promise<void> {
    while (this.inFlight) await this.inFlight.catch(() => undefined);
    if (this.bucketCount === 0 && this.lastUsed.size === 0) return;
    const buckets = [...this.buckets.values()].flatMap((ofMinute) => [...ofMinute.values()]);
    const lastUsed = this.lastUsed;
    for (const b of buckets) {
      if (b.lastAllowedAt > (lastUsed.get(b.apiKeyId) ?? 0)) lastUsed.set(b.apiKeyId, b.lastAllowedAt);
    }
    this.buckets = new Map();
    this.bucketCount = 0;
    this.minute = Number.NaN;
    this.ofMinute = undefined;
    this.lastUsed = new Map();
    this.inFlight = this.write(buckets, lastUsed);
    try {
      await this.inFlight;
    } finally {
      this.inFlight = undefined;
    }
  }

  /** Stops the timer and flushes what is left; later records are ignored. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.flush();
  }

  /**
   * One statement per chunk of keys, in key order. A miss-heavy minute holds tens of thousands of
   * keys, and one statement for all of them outran the statement timeout: every retry then failed
   * the same way. Chunks commit on their own, so a failure puts back only what was not written.
   */
  private async write(buckets: readonly Bucket[], lastUsed: Map<string, number>): Promise<void> {
    const byKey = new Map<string, Bucket[]>();
    for (const b of buckets) {
      const list = byKey.get(b.apiKeyId);
      if (list) list.push(b);
      else byKey.set(b.apiKeyId, [b]);
    }
    for (const id of lastUsed.keys()) if (!byKey.has(id)) byKey.set(id, []);
    const ids = [...byKey.keys()].sort();
    for (let start = 0; start < ids.length; start += FLUSH_CHUNK_KEYS) {
      const chunk = ids.slice(start, start + FLUSH_CHUNK_KEYS);
      const rows = chunk.flatMap((id) => byKey.get(id) ?? []);
      const used = chunk.flatMap((id) => {
        const at = lastUsed.get(id);
        return at === undefined ? [] : [[id, at] as const];
      });
      try {
        await this.pool.query(FLUSH_SQL, [
          rows.map((r) => r.apiKeyId),
          rows.map((r) => new Date(r.minute).toISOString()),
          rows.map((r) => r.allowed),
          rows.map((r) => r.denied),
          used.map(([id]) => id),
          used.map(([, at]) => new Date(at).toISOString()),
        ]);
      } catch (err) {
        const error = StoreError.from('flush usage', err);
        const unwritten = new Set(ids.slice(start));
        const left = buckets.filter((b) => unwritten.has(b.apiKeyId));
        // Only a retry that can succeed is worth keeping the counts for.
        if (error.transient) {
          this.restore(left, new Map([...lastUsed].filter(([id]) => unwritten.has(id))));
        } else {
          for (const b of left) this.droppedCount += b.allowed + b.denied;
        }
        throw error;
      }
    }
  }

  /** Puts counts from a failed write back, so the next flush retries them. */
  private restore(buckets: readonly Bucket[], lastUsed: Map<string, number>): void {
    for (const old of buckets) {
      const current = this.buckets.get(old.minute)?.get(old.apiKeyId);
      if (current) {
        current.allowed += old.allowed;
        current.denied += old.denied;
      } else if (this.bucketCount < this.maxBuckets) {
        this.bucketsOf(old.minute).set(old.apiKeyId, old);
        this.bucketCount += 1;
      } else {
        this.droppedCount += old.allowed + old.denied;
      }
    }
    for (const [id, at] of lastUsed) {
      if (at > (this.lastUsed.get(id) ?? 0)) this.lastUsed.set(id, at);
    }
  }
}
