import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { UsageBatcher } from '../../store/usage.js';
import { safeError } from '../logger.js';

declare module 'fastify' {
  interface FastifyInstance {
    usage: UsageBatcher;
  }
}

const ERROR_LOG_INTERVAL_MS = 60_000;

export interface UsagePluginOptions {
  readonly flushIntervalMs: number;
  readonly now: () => number;
}

/**
 * Per-key usage counts, written in batches through the store plugin's pool. Closing flushes what
 * is pending; it runs before the store plugin ends the pool (onClose runs in reverse order).
 */
async function usagePlugin(app: FastifyInstance, options: UsagePluginOptions): Promise<void> {
  let loggedAt = Number.NEGATIVE_INFINITY;
  const usage = new UsageBatcher(app.store.writePool, {
    flushIntervalMs: options.flushIntervalMs,
    now: options.now,
    onError: (err) => {
      // A store outage fails every flush: one line per interval would drown the log.
      if (options.now() - loggedAt < ERROR_LOG_INTERVAL_MS) return;
      loggedAt = options.now();
      app.log.warn({ err: safeError(err) }, 'writing usage counts failed; keeping them for the next flush');
    },
  });
  app.decorate('usage', usage);
  app.addHook('onClose', async () => {
    await usage
      .close()
      .catch((err: unknown) => app.log.warn({ err: safeError(err) }, 'final usage flush failed'));
  });
}

export default fp(usagePlugin, { name: 'keyward-usage', dependencies: ['keyward-store'] });
