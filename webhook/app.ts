import formbody from '@fastify/formbody';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyRequest,
  LogController,
} from 'fastify';
import pg from 'pg';
import type { Logger } from 'pino';
import { ChangeListener, type ChangeSubscriber } from '../store/listener.js';
import { lookupByHash } from '../store/lookup.js';
import { UsageBatcher } from '../store/usage.js';
import { VerifyCache } from './cache.js';
import type { WebhookConfig } from './config.js';
import { createLogger } from './logger.js';
import { WebhookMetrics } from './metrics.js';
import { FailureLimiter } from './ratelimit.js';
import { healthRoutes } from './routes/health.js';
import { introspectRoutes } from './routes/introspect.js';
import { tokenReviewRoutes } from './routes/tokenreview.js';
import { verifyRoutes } from './routes/verify.js';
import { safeError, Verifier } from './verifier.js';

export interface Readiness {
  readonly ready: boolean;
  readonly draining: boolean;
  readonly store: 'reachable' | 'unreachable';
  readonly listener: 'attached' | 'detached';
}

/** What routes reach through `app.keyward`. */
export interface WebhookContext {
  readonly config: WebhookConfig;
  readonly cache: VerifyCache;
  readonly verifier: Verifier;
  readonly metrics: WebhookMetrics;
  readonly limiter: FailureLimiter;
  readonly usage: UsageBatcher;
  readonly listener: ChangeListener;
  readonly pool: pg.Pool;
  /** Epoch ms; every time-based decision goes through this clock. */
  now(): number;
  /** The address failed attempts are counted against. */
  clientAddress(request: FastifyRequest): string;
  readiness(): Promise<Readiness>;
  /** Shutting down: readiness turns false at once, serving goes on until the server closes. */
  drain(): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    keyward: WebhookContext;
  }
}

export interface AppOptions {
  readonly config: WebhookConfig;
  /** Defaults to a redacting pino logger at config.logLevel. */
  readonly logger?: Logger;
  readonly now?: () => number;
  /** Listener reconnect and heartbeat timings (tests shorten them). */
  readonly listener?: { initialBackoffMs?: number; maxBackoffMs?: number; heartbeatMs?: number };
  /** Process metrics (CPU, heap…); off for apps that share a process with others. */
  readonly defaultMetrics?: boolean;
}

/** Extra methods Envoy and Traefik may forward to /verify (WebDAV, CalDAV). */
const EXTRA_METHODS = [
  'PROPFIND',
  'PROPPATCH',
  'MKCOL',
  'COPY',
  'MOVE',
  'LOCK',
  'UNLOCK',
  'REPORT',
  'SEARCH',
];

const STATUS_ERRORS: Record<number, string> = {
  400: 'invalid_request',
  404: 'not_found',
  405: 'method_not_allowed',
  406: 'not_acceptable',
  408: 'request_timeout',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  431: 'request_header_fields_too_large',
};

/**
 * Builds the webhook: routes, cache, store pool, change listener and usage batcher, all closed
 * by app.close(). It never listens (server.ts does), so tests drive it with app.inject() against
 * a real Postgres. The listener starts on app.ready(); until it has attached, /readyz is false
 * and every request is answered from the store.
 */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config } = options;
  const now = options.now ?? Date.now;
  const logger = options.logger ?? createLogger({ level: config.logLevel, tokenHeader: config.tokenHeader });

  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Per-request log lines would cost more than the decision itself; decisions are metrics.
    logController: new LogController({ disableRequestLogging: true }),
    // No per-request child logger: building one (bindings, redaction) cost more than the whole
    // cached decision. The few request-scoped lines carry keyId and tokenPrefix themselves.
    childLoggerFactory: (logger) => logger,
    http: { maxHeaderSize: config.maxHeaderBytes },
    bodyLimit: 64 * 1024,
    // Envoy appends the whole original path after /verify/.
    routerOptions: { maxParamLength: config.maxUrlBytes },
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  });
  for (const method of EXTRA_METHODS) app.addHttpMethod(method, { hasBody: true });

  const metrics = new WebhookMetrics({ defaultMetrics: options.defaultMetrics ?? true });
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
  const verifier = new Verifier({
    cache,
    lookup: (hash) => lookupByHash(pool, hash),
    metrics,
    logger: app.log,
    tokenPrefix: config.tokenPrefix,
  });
  const limiter = new FailureLimiter({ ...config.failedAttempts, now });
  let usageErrorLogged = false;
  const usage = new UsageBatcher(pool, {
    flushIntervalMs: config.usageFlushIntervalMs,
    now,
    onError: (err) => {
      if (usageErrorLogged) return;
      usageErrorLogged = true;
      app.log.warn({ err: safeError(err) }, 'writing usage counts failed; keeping them for the next flush');
    },
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
      usageErrorLogged = false;
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
  const storeReachable = (): Promise<boolean> => {
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
  };

  const trusted = config.trustedClientIpHeader;
  let draining = false;
  const context: WebhookContext = {
    config,
    cache,
    verifier,
    metrics,
    limiter,
    usage,
    listener,
    pool,
    now,
    clientAddress(request: FastifyRequest): string {
      if (trusted !== null) {
        const value = request.headers[trusted];
        const text = Array.isArray(value) ? value[value.length - 1] : value;
        if (text) {
          // The last element is the one the trusted proxy itself appended; earlier ones came from the client.
          const last = text.slice(text.lastIndexOf(',') + 1).trim();
          if (last !== '') return last.slice(0, 64);
        }
      }
      return request.socket.remoteAddress ?? 'unknown';
    },
    async readiness(): Promise<Readiness> {
      const reachable = await storeReachable();
      const attached = listener.connected && cache.attached;
      return {
        ready: reachable && attached && !draining,
        draining,
        store: reachable ? 'reachable' : 'unreachable',
        listener: attached ? 'attached' : 'detached',
      };
    },
    drain(): void {
      draining = true;
    },
  };
  app.decorate('keyward', context);

  // Callback style: an async hook would cost a promise on every request.
  app.addHook('onRequest', (request, reply, done) => {
    if (request.raw.url !== undefined && request.raw.url.length > config.maxUrlBytes) {
      reply.code(414).send({ error: 'uri_too_long', error_description: 'The request URL is too long.' });
      return;
    }
    done();
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 500;
    if (status >= 500) {
      // The body says nothing about the cause: internals (SQL, stack, store address) stay in the log.
      request.log.error({ err: safeError(error) }, 'request failed');
      return reply.code(500).send({ error: 'server_error', error_description: 'Internal error.' });
    }
    // Fastify's own 4xx messages can quote the request (a content type, a JSON fragment): send
    // a fixed description per status instead.
    return reply.code(status).send({
      error: STATUS_ERRORS[status] ?? 'invalid_request',
      error_description: 'The request is not valid.',
    });
  });
  app.setNotFoundHandler((_request, reply) => {
    return reply.code(404).send({ error: 'not_found', error_description: 'No such route.' });
  });

  await app.register(formbody);
  await app.register(verifyRoutes);
  await app.register(tokenReviewRoutes);
  await app.register(introspectRoutes);
  await app.register(healthRoutes);

  app.addHook('onReady', async () => {
    listener.start();
  });
  app.addHook('onClose', async () => {
    await listener.close();
    await usage
      .close()
      .catch((err: unknown) => app.log.warn({ err: safeError(err) }, 'final usage flush failed'));
    await pool.end();
  });
  return app;
}
