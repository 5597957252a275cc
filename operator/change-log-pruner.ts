import type pg from 'pg';
import type { Logger } from 'pino';
import { pruneChangeLog } from '../store/change-log.js';

// Rows expire by the hour at the default retention; a prune a few times an hour keeps the table
// within a few percent of it without a DELETE per change.
const PRUNE_INTERVAL_MS = 10 * 60_000;

/**
 * The leader's change-log retention (the webhook's role may not delete). Runs once at the start of
 * a term, then every PRUNE_INTERVAL_MS; a failed prune is logged and tried again next time.
 */
export function startChangeLogPruner(pool: pg.Pool, retentionMs: number, logger: Logger): { stop(): void } {
  let busy = false;
  const prune = (): void => {
    // A prune slower than the interval (a huge backlog) is not started twice.
    if (busy) return;
    busy = true;
    void pruneChangeLog(pool, retentionMs)
      .then(
        (deleted) => {
          if (deleted > 0) logger.info({ deleted }, 'pruned the change log');
        },
        (err: unknown) =>
          logger.warn(
            { err: err instanceof Error ? err.message : String(err) },
            'pruning the change log failed',
          ),
      )
      .finally(() => {
        busy = false;
      });
  };
  prune();
  const timer = setInterval(prune, PRUNE_INTERVAL_MS);
  timer.unref();
  return {
    stop(): void {
      clearInterval(timer);
    },
  };
}
