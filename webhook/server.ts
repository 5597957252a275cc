import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './app.js';
import { ConfigError, loadConfig, type WebhookConfig } from './config.js';
import { cacheHeapWarning } from './heap-budget.js';
import { createLogger, safeError } from './logger.js';
import { type MetricsEndpoint, serveMetrics } from './metrics-server.js';

export interface RunningWebhook {
  readonly app: FastifyInstance;
  /** `http(s)://host:port` actually bound (port 0 in the config picks a free one). */
  readonly url: string;
  /** The metrics endpoint's `http://host:port`. */
  readonly metricsUrl: string;
  /** Drains and stops: readiness false, wait shutdownDelay, close listeners and connections. */
  close(): Promise<void>;
  /** Settles once the webhook has stopped, however that happened. */
  readonly closed: Promise<void>;
}

export interface RunWebhookOptions {
  /** Parsed configuration; default: loadConfig(process.env). */
  readonly config?: WebhookConfig;
  readonly logger?: Logger;
  /** Install SIGTERM/SIGINT handlers that drain and exit (default true; false for embedding). */
  readonly handleSignals?: boolean;
  readonly defaultMetrics?: boolean;
}

/**
 * `keyward webhook`: builds the app, listens on KEYWARD_WEBHOOK_LISTEN (HTTPS when
 * KEYWARD_TLS_CERT_FILE is set) and serves /metrics on KEYWARD_METRICS_LISTEN; on SIGTERM/SIGINT
 * drains gracefully: new connections are refused only after KEYWARD_SHUTDOWN_DELAY (endpoint
 * removal in Kubernetes lags the signal), in-flight requests finish within
 * KEYWARD_SHUTDOWN_TIMEOUT, pending usage counts are flushed, and the process exits 0.
 * A second signal exits at once. Resolves once listening.
 */
export async function runWebhook(options: RunWebhookOptions = {}): Promise<RunningWebhook> {
  let config: WebhookConfig;
  try {
    config = options.config ?? loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`keyward webhook: ${err.message}\n`);
      process.exitCode = 2;
    }
    throw err;
  }
  const logger = options.logger ?? createLogger({ level: config.logLevel, tokenHeader: config.tokenHeader });
  const app = await buildApp({
    config,
    logger,
    ...(options.defaultMetrics === undefined ? {} : { defaultMetrics: options.defaultMetrics }),
  });
  let metricsEndpoint: MetricsEndpoint;
  try {
    await app.listen({ host: config.listen.host, port: config.listen.port });
    metricsEndpoint = await serveMetrics(
      config.metricsListen,
      () => app.keyward.renderMetrics(),
      app.keyward.metrics.registry.contentType,
    );
  } catch (err) {
    await app.close();
    throw err;
  }
  const address = app.server.address();
  const scheme = config.tls === null ? 'http' : 'https';
  const url =
    address && typeof address === 'object'
      ? `${scheme}://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
      : String(address);
  app.log.info(
    { url, metricsUrl: metricsEndpoint.url, version: process.env.npm_package_version },
    'keyward webhook listening',
  );
  const heapWarning = cacheHeapWarning(config.cache.maxEntries);
  if (heapWarning !== undefined) app.log.warn(heapWarning);

  let resolveClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => {
    resolveClosed = resolve;
  });
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      app.keyward.drain();
      if (config.shutdownDelayMs > 0) {
        app.log.info(
          { delayMs: config.shutdownDelayMs },
          'shutting down: still serving while endpoints update',
        );
        await new Promise((resolve) => setTimeout(resolve, config.shutdownDelayMs));
      }
      const timer = setTimeout(() => {
        app.log.warn('shutdown timeout: closing remaining connections');
        app.server.closeAllConnections();
      }, config.shutdownTimeoutMs);
      timer.unref();
      try {
        await app.close();
        await metricsEndpoint.close();
      } finally {
        clearTimeout(timer);
        resolveClosed();
      }
    })();
    return closing;
  };

  if (options.handleSignals ?? true) {
    const onSignal = (signal: NodeJS.Signals): void => {
      if (closing) {
        app.log.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      app.log.info({ signal }, 'shutting down');
      close().then(
        () => process.exit(0),
        (err: unknown) => {
          app.log.error({ err: safeError(err) }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    void closed.then(() => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    });
  }
  return { app, url, metricsUrl: metricsEndpoint.url, close, closed };
}
