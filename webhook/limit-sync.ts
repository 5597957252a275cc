import type pg from 'pg';
import { StoreError } from '../store/errors.js';
import { syncCounters } from '../store/rate-limits.js';
import { RequestLimits } from './limits.js';

export interface LimitSyncOptions {
  /** The longest a replica's counts stay unknown to the others (KEYWARD_RATE_LIMIT_SYNC_INTERVAL). */
  readonly intervalMs: number;
  readonly now: () => number;
  readonly onError?: (err: StoreError) => void;
}

/**
 * Early syncs (a new counter, one running low) are at least this far apart, so a limit being
 * hammered near its end costs the store a bounded number of statements, not one per request.
 */
const MIN_EARLY_SYNC_GAP_MS = 20;

/**
 * Owns this replica's RequestLimits and keeps them in step with the store: every interval, and
 * early when the limits ask, one statement adds the local counts and reads the totals back. Only
 * one sync runs at a time; the request path never waits for one.
 */
export class LimitSync {
  readonly limits: RequestLimits;
  readonly #pool: pg.Pool;
  readonly #options: LimitSyncOptions;
  readonly #timer: NodeJS.Timeout;
  #running: Promise<void> | undefined;
  #early: NodeJS.Timeout | undefined;
  #lastSyncAt = Number.NEGATIVE_INFINITY;
  #closed = false;

  constructor(pool: pg.Pool, options: LimitSyncOptions) {
    this.#pool = pool;
    this.#options = options;
    this.limits = new RequestLimits({ now: options.now, syncSoon: () => this.#syncSoon() });
    this.#timer = setInterval(() => void this.#run(), options.intervalMs);
    this.#timer.unref();
  }

  /** Runs one sync now (after the one under way); rejects with a StoreError. */
  async sync(): Promise<void> {
    while (this.#running) await this.#running.catch(() => undefined);
    const sent = this.limits.takeDeltas();
    if (sent.length === 0) return;
    this.#lastSyncAt = this.#options.now();
    this.#running = syncCounters(this.#pool, sent).then(
      (totals) => this.limits.settle(sent, totals),
      (err: unknown) => {
        this.limits.restore(sent);
        throw StoreError.from('sync rate-limit counters', err);
      },
    );
    try {
      await this.#running;
    } finally {
      this.#running = undefined;
    }
  }

  /** Stops syncing and writes what is left. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#early);
    await this.sync();
  }

  #syncSoon(): void {
    if (this.#closed || this.#early !== undefined) return;
    const wait = Math.max(0, this.#lastSyncAt + MIN_EARLY_SYNC_GAP_MS - this.#options.now());
    this.#early = setTimeout(() => {
      this.#early = undefined;
      void this.#run();
    }, wait);
    this.#early.unref();
  }

  async #run(): Promise<void> {
    try {
      await this.sync();
    } catch (err) {
      this.#options.onError?.(
        err instanceof StoreError ? err : StoreError.from('sync rate-limit counters', err),
      );
    }
  }
}
