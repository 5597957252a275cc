import type pg from 'pg';
import type { Logger } from 'pino';
import { Backoff } from '../lib/backoff.js';
import { maintainRequestLog } from '../store/request-log.js';

/** Partitions are checked this often; creating a day ahead makes a missed hour harmless. */
const MAINTAIN_EVERY_MS = 3_600_000;
/**
 * Days of partitions kept ahead of today: an operator that is down this long still finds a
 * partition for every row the webhooks write meanwhile.
 */
const AHEAD_DAYS = 7;
/** A failed run is retried sooner than the next hour, from seconds up to this. */
const RETRY = { baseMs: 5_000, capMs: 300_000 };

export interface RequestLogMaintenanceDeps {
  readonly pool: pg.Pool;
  readonly logger: Logger;
  readonly retentionDays: number;
  readonly random?: () => number;
}

/**
 * The leader keeps the request log's day partitions: creates the coming week's, drops those past
 * retention, through the store's SECURITY DEFINER function (the operator role has no DDL right).
 * One run at start, then hourly.
 */
export class RequestLogMaintenance {
  readonly #d: RequestLogMaintenanceDeps;
  readonly #retry: Backoff;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(deps: RequestLogMaintenanceDeps) {
    this.#d = deps;
    this.#retry = new Backoff(RETRY, deps.random ?? Math.random);
  }

  start(): void {
    this.#schedule(0);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.#run().then((next) => this.#schedule(next));
    }, ms);
    this.#timer.unref();
  }

  /** Resolves with the delay until the next run. */
  async #run(): Promise<number> {
    const { pool, logger, retentionDays } = this.#d;
    try {
      const { created, dropped } = await maintainRequestLog(pool, { retentionDays, aheadDays: AHEAD_DAYS });
      if (created > 0 || dropped > 0) {
        logger.info({ created, dropped, retentionDays }, 'request log partitions maintained');
      }
      this.#retry.reset();
      return MAINTAIN_EVERY_MS;
    } catch (err) {
      const delay = this.#retry.next();
      logger.warn(
        { err: err instanceof Error ? err.message : String(err), retryInMs: Math.round(delay) },
        'request log partition maintenance failed',
      );
      return delay;
    }
  }
}
