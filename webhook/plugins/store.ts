import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import pg from 'pg';
import { ChangeListener, type ChangeSubscriber } from '../../store/listener.js';
import { lookupByHash } from '../../store/lookup.js';
import { VerifyCache } from '../cache.js';
import type { WebhookConfig } from '../config.js';
import { safeError } from '../logger.js';
import { LookupQueue } from '../lookup-queue.js';
import type { WebhookMetrics } from '../metrics.js';
import { Resolver } from '../resolver.js';

/** The webhook's view of the credential store: what routes and readiness reach through `app.store`. */
export interface WebhookStore {
  readonly pool: pg.Pool;
  readonly cache: VerifyCache;
  readonly listener: ChangeListener;
  readonly lookups: LookupQueue;
  readonly resolver: Resolver;
  /** One `SELECT 1` at a time, shared by concurrent callers. */
  reachable(): Promise<boolean>;
  /** Listener attached and the cache trusting it. */
  readonly attached: boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    store: WebhookStore;
  }
}

export interface StorePluginOptions {
  readonly config: WebhookConfig;
  readonly metrics: WebhookMetrics;
  readonly now: () => number;
  readonly listener?: { initialBackoffMs?: number; maxBackoffMs?: number; heartbeatMs?: number };
}

/**
 * Pool, change listener, cache and the bounded lookup queue. The listener starts on ready (until
 * it has attached, every request is answered from the store); close stops it and ends the pool,
 * after the plugins registered later (usage) have flushed.
 */
async function storePlugin(app: FastifyInstance, options: StorePluginOptions): Promise<void> {
  const { config, metrics, now } = options;
  const pool = new pg.Pool({
    connectionString: config.storeUrl,
    max: config.storePoolSize,
    connectionTimeoutMillis: config.storeTimeoutMs,
    query_timeout: config.storeTimeoutMs,
    statement_timeout: config.storeTimeoutMs,
    idleTimeoutMillis: 30_000,
    application_name: 'keyward-webhook',
  });
  // An idle pooled connection that dies (store restart) emits here; unhandled, it would crash the process.
  pool.on('error', (err) => app.log.warn({ err: safeError(err) }, 'idle store connection lost'));

  const cache = new VerifyCache({ ...config.cache, now, onEvict: () => metrics.cacheEvictions.inc() });
  const lookups = new LookupQueue({
    ...config.lookups,
    maxWaitMs: config.storeTimeoutMs,
    now,
    onShed: (priority) => metrics.lookupsShed.labels(priority).inc(),
  });
  const resolver = new Resolver({
    cache,
    queue: lookups,
    lookup: (hash) => lookupByHash(pool, hash),
    metrics,
    logger: app.log,
    tokenPrefix: config.tokenPrefix,
  });

  let attachedBefore = false;
  const subscriber: ChangeSubscriber = {
    onChange: (change) => {
      cache.apply(change);
      metrics.invalidations.labels(change.entity).inc();
    },
    onConnected: () => {
      cache.listenerAttached();
      metrics.listenerAttached.set(1);
      if (attachedBefore) {
        metrics.listenerReconnects.inc();
        app.log.info('change listener re-attached; cached keys are re-read on next use');
      }
      attachedBefore = true;
    },
    onDisconnected: (reason) => {
      cache.listenerDetached();
      metrics.listenerAttached.set(0);
      app.log.warn(
        { reason },
        'change listener lost; every cached key is re-read from the store until it is back',
      );
    },
  };
  const listener = new ChangeListener({
    connection: { connectionString: config.storeUrl, application_name: 'keyward-webhook-listener' },
    subscriber,
    ...options.listener,
  });

  let probe: Promise<boolean> | undefined;
  const store: WebhookStore = {
    pool,
    cache,
    listener,
    lookups,
    resolver,
    reachable(): Promise<boolean> {
      probe ??= pool
        .query('SELECT 1')
        .then(
          () => true,
          () => false,
        )
        .finally(() => {
          probe = undefined;
        });
      return probe;
    },
    get attached(): boolean {
      return listener.connected && cache.attached;
    },
  };
  app.decorate('store', store);
  app.addHook('onReady', async () => {
    listener.start();
  });
  app.addHook('onClose', async () => {
    await listener.close();
    await pool.end();
  });
}

export default fp(storePlugin, { name: 'keyward-store' });
