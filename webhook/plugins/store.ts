import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import pg from 'pg';
import { ChangeFollower } from '../../store/change-follower.js';
import { ChangeListener, type ChangeSubscriber } from '../../store/listener.js';
import { lookupByHashes } from '../../store/lookup.js';
import { VerifyCache } from '../cache.js';
import type { WebhookConfig } from '../config.js';
import { safeError } from '../logger.js';
import type { LookupQueue } from '../lookup-queue.js';
import type { WebhookMetrics } from '../metrics.js';
import { Resolver } from '../resolver.js';

/** The webhook's view of the credential store: what routes and readiness reach through `app.store`. */
export interface WebhookStore {
  /** Lookups and readiness: KEYWARD_STORE_URL, which may be a read replica. */
  readonly pool: pg.Pool;
  /**
   * Usage, request-log, rate-limit and leak-report writes: KEYWARD_STORE_WRITE_URL when set, else
   * KEYWARD_STORE_URL, always on connections of their own (see WRITE_POOL_SIZE).
   */
  readonly writePool: pg.Pool;
  /** Applies each change-log seq once, by NOTIFY or by reading the log (store/change-follower.ts). */
  readonly follower: ChangeFollower;
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

// The primary's writes are few and batched (usage, request log and rate-limit syncs, leak
// reports): a small pool of their own, one connection per background writer. Separate even when
// both URLs are the same database: a request-log COPY or a usage flush holding a connection of
// the lookups' pool would make a miss wait for it, or for a new connection to be opened.
const WRITE_POOL_SIZE = 3;

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
  const writePool = new pg.Pool({
    connectionString: config.storeWriteUrl ?? config.storeUrl,
    max: WRITE_POOL_SIZE,
    connectionTimeoutMillis: config.storeTimeoutMs,
    query_timeout: config.storeTimeoutMs,
    statement_timeout: config.storeTimeoutMs,
    idleTimeoutMillis: 30_000,
    application_name: 'keyward-webhook-writes',
  });
  writePool.on('error', (err) => app.log.warn({ err: safeError(err) }, 'idle store write connection lost'));

  const cache = new VerifyCache({ ...config.cache, now, onEvict: () => metrics.cacheEvictions.inc() });
  const resolver = new Resolver({
    cache,
    queue: {
      maxConcurrent: config.lookups.maxConcurrent,
      maxQueued: config.lookups.maxQueued,
      maxWaitMs: config.storeTimeoutMs,
      now,
      onShed: (priority) => metrics.lookupsShed.labels(priority).inc(),
    },
    maxBatch: config.lookups.maxBatch,
    lookup: (hashes) => lookupByHashes(pool, hashes),
    metrics,
    logger: app.log,
    tokenPrefix: config.tokenPrefix,
  });
  const lookups = resolver.queue;

  let attachedBefore = false;
  let warnedReadOnly = false;
  const follower = new ChangeFollower({
    apply: (change, source) => {
      cache.apply(change);
      metrics.invalidations.labels(change.entity).inc();
      if (source !== 'unlogged') metrics.changesApplied.labels(source).inc();
    },
    reset: (reason) => {
      // A new epoch: nothing confirmed before it is trusted again (the first attach does the same).
      cache.listenerAttached();
      if (reason === 'pruned') {
        metrics.cacheResets.inc();
        app.log.warn(
          'the change log no longer reaches back to the last change applied; cached keys are re-read',
        );
      }
    },
    synced: (last) => metrics.changeSeq.set(last),
  });
  const subscriber: ChangeSubscriber = {
    onChange: (change, seq) => follower.notified(seq, change),
    synchronise: (client) => follower.sync(client),
    onConnected: () => {
      // Whatever the gap held has been applied from the log (or the cache was reset) by now.
      cache.listenerResumed();
      metrics.listenerAttached.set(1);
      if (attachedBefore) {
        metrics.listenerReconnects.inc();
        app.log.info(
          { seq: follower.last },
          'change listener re-attached; missed changes applied from the change log',
        );
      }
      attachedBefore = true;
      if (listener.mode === 'poll' && config.storeWriteUrl === undefined && !warnedReadOnly) {
        warnedReadOnly = true;
        app.log.warn(
          'the store is a read replica and KEYWARD_STORE_WRITE_URL is unset: usage counts and leak reports cannot be written',
        );
      }
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
    pollIntervalMs: config.changePollIntervalMs,
    ...options.listener,
  });

  let probe: Promise<boolean> | undefined;
  const store: WebhookStore = {
    pool,
    writePool,
    follower,
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
    await Promise.all([pool.end(), writePool.end()]);
  });
}

export default fp(storePlugin, { name: 'keyward-store' });
