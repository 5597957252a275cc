import formbody from '@fastify/formbody';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { Logger } from 'pino';
import { subjectSource } from './act-as-step.js';
import { Callers } from './callers.js';
import { ClientAddress } from './client-address.js';
import type { WebhookConfig } from './config.js';
import { serverFactory } from './http-server.js';
import { createLogger, safeError } from './logger.js';
import { WebhookMetrics } from './metrics.js';
import limitsPlugin from './plugins/limits.js';
import requestLogPlugin from './plugins/request-log.js';
import storePlugin from './plugins/store.js';
import tlsPlugin from './plugins/tls.js';
import usagePlugin from './plugins/usage.js';
import { FailureLimiter } from './ratelimit.js';
import { decorateRequestStart, refuseLongUrl, requestStartHook } from './request-start.js';
import { healthRoutes } from './routes/health.js';
import { introspectRoutes } from './routes/introspect.js';
import { leakRoutes } from './routes/leaks.js';
import { tokenReviewRoutes } from './routes/tokenreview.js';
import { verifyRoutes } from './routes/verify.js';
import { Verification } from './verification.js';

export interface Readiness {
  readonly ready: boolean;
  readonly draining: boolean;
  readonly store: 'reachable' | 'unreachable';
  readonly listener: 'attached' | 'detached';
}

/** What routes reach through `app.keyward`. */
export interface WebhookContext {
  readonly config: WebhookConfig;
  readonly metrics: WebhookMetrics;
  readonly limiter: FailureLimiter;
  readonly verification: Verification;
  readonly callers: Callers;
  /** Epoch ms; every time-based decision goes through this clock. */
  now(): number;
  /** The address failed attempts are counted against (see client-address.ts). */
  clientAddress(request: FastifyRequest): string;
  readiness(): Promise<Readiness>;
  /** Shutting down: readiness turns false at once, serving goes on until the server closes. */
  drain(): void;
  /** The Prometheus exposition, for the metrics port. */
  renderMetrics(): Promise<string>;
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
 * Builds the webhook: plugins (store: pool, listener, cache, lookup queue; usage; TLS reload),
 * the verification pipeline and the routes, all closed by app.close(). It never listens
 * (server.ts does), so tests drive it with app.inject() against a real Postgres.
 */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config } = options;
  const now = options.now ?? Date.now;
  const logger = options.logger ?? createLogger({ level: config.logLevel, tokenHeader: config.tokenHeader });

  // No logger for Fastify itself: with one it builds a child logger and a pair of response
  // listeners per request, for request log lines that would cost more than the decision itself
  // (decisions are metrics; request-start.ts times requests instead). app.log is keyward's
  // logger, set before any plugin inherits it; request.log is Fastify's silent one, so keyward
  // logs through app.log only. The few request-scoped lines carry keyId and tokenPrefix themselves.
  const app = Fastify({
    logController: new LogController({ disableRequestLogging: true }),
    serverFactory: serverFactory(config),
    bodyLimit: 64 * 1024,
    // Envoy appends the whole original path after /verify/.
    routerOptions: { maxParamLength: config.maxUrlBytes },
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  });
  app.log = logger as FastifyBaseLogger;
  decorateRequestStart(app);
  for (const method of EXTRA_METHODS) app.addHttpMethod(method, { hasBody: true });

  const metrics = new WebhookMetrics({ defaultMetrics: options.defaultMetrics ?? true });
  await app.register(storePlugin, {
    config,
    metrics,
    now,
    ...(options.listener ? { listener: options.listener } : {}),
  });
  await app.register(usagePlugin, { flushIntervalMs: config.usageFlushIntervalMs, now });
  await app.register(requestLogPlugin, { config, metrics, now });
  await app.register(limitsPlugin, { syncIntervalMs: config.rateLimitSyncIntervalMs, now });
  await app.register(tlsPlugin, { tls: config.tls });

  const limiter = new FailureLimiter({ ...config.failedAttempts, now });
  const verification = new Verification({
    resolver: app.store.resolver,
    limiter,
    usage: app.usage,
    requestLimits: app.limits.limits,
    metrics,
    recorder: app.requestLog.recorder,
    logger: app.log,
    subjects: subjectSource(app.store.pool, app.store.lookups),
    now,
  });
  const addresses = new ClientAddress({
    trustedProxies: config.trustedProxies,
    header: config.clientIpHeader,
  });
  let draining = false;
  const context: WebhookContext = {
    config,
    metrics,
    limiter,
    verification,
    callers: new Callers({
      introspect: config.introspectCredentials,
      tokenReview: config.tokenReviewCredentials,
      leakReport: config.leakReportCredentials,
    }),
    now,
    clientAddress: (request) => addresses.of(request.socket.remoteAddress, request.headers),
    async readiness(): Promise<Readiness> {
      const reachable = await app.store.reachable();
      const attached = app.store.attached;
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
    async renderMetrics(): Promise<string> {
      const { cache, lookups } = app.store;
      metrics.cacheEntries.labels('positive').set(cache.size);
      metrics.cacheEntries.labels('negative').set(cache.negativeSize);
      metrics.lookupSlots.labels('in_flight').set(lookups.inFlight);
      metrics.lookupSlots.labels('queued').set(lookups.queued);
      return await metrics.registry.metrics();
    },
  };
  app.decorate('keyward', context);

  app.setErrorHandler((error: FastifyError, _request, reply) => {
    const status = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 500;
    if (status >= 500) {
      // The body says nothing about the cause: internals (SQL, stack, store address) stay in the log.
      app.log.error({ err: safeError(error) }, 'request failed');
      return reply.code(500).send({ error: 'server_error', error_description: 'Internal error.' });
    }
    // Fastify's own 4xx messages can quote the request (a content type, a JSON fragment): send
    // a fixed description per status instead.
    return reply.code(status).send({
      error: STATUS_ERRORS[status] ?? 'invalid_request',
      error_description: 'The request is not valid.',
    });
  });
  app.setNotFoundHandler((request, reply) => {
    if (refuseLongUrl(request, reply, config.maxUrlBytes)) return reply;
    return reply.code(404).send({ error: 'not_found', error_description: 'No such route.' });
  });

  await app.register(formbody);
  // /verify starts its timer and checks the URL in its own hook (request-start.ts); the other routes share one.
  await app.register(verifyRoutes);
  await app.register(async (routes) => {
    routes.addHook('onRequest', requestStartHook(config.maxUrlBytes));
    await routes.register(tokenReviewRoutes);
    await routes.register(introspectRoutes);
    await routes.register(leakRoutes);
    await routes.register(healthRoutes);
  });
  return app;
}
