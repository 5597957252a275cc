import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { LimitSync } from '../limit-sync.js';
import { safeError } from '../logger.js';

declare module 'fastify' {
  interface FastifyInstance {
    limits: LimitSync;
  }
}

const ERROR_LOG_INTERVAL_MS = 60_000;

export interface LimitsPluginOptions {
  readonly syncIntervalMs: number;
  readonly now: () => number;
}

/**
 * Rate-limit and quota counters, synced through the store plugin's pool. Closing writes what is
 * left; it runs before the store plugin ends the pool (onClose runs in reverse order).
 */
async function limitsPlugin(app: FastifyInstance, options: LimitsPluginOptions): Promise<void> {
  let loggedAt = Number.NEGATIVE_INFINITY;
  const sync = new LimitSync(app.store.writePool, {
    intervalMs: options.syncIntervalMs,
    now: options.now,
    onError: (err) => {
      // A store outage fails every sync: one line per interval would drown the log.
      if (options.now() - loggedAt < ERROR_LOG_INTERVAL_MS) return;
      loggedAt = options.now();
      app.log.warn(
        { err: safeError(err) },
        'syncing rate-limit counters failed; each replica enforces its own counts until the store answers',
      );
    },
  });
  app.decorate('limits', sync);
  app.addHook('onClose', async () => {
    await sync
      .close()
      .catch((err: unknown) => app.log.warn({ err: safeError(err) }, 'final rate-limit sync failed'));
  });
}

export default fp(limitsPlugin, { name: 'keyward-limits', dependencies: ['keyward-store'] });
