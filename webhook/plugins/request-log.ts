import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Gauge } from 'prom-client';
import { Backoff } from '../../lib/backoff.js';
import { type DropReason, RequestLogWriter } from '../../store/request-log.js';
import { ClientAddress } from '../client-address.js';
import type { WebhookConfig } from '../config.js';
import { safeError } from '../logger.js';
import type { WebhookMetrics } from '../metrics.js';
import { RequestRecorder, type RowSink } from '../request-log.js';
import { JsonLinesSink } from '../request-log-json.js';

/** The request log: what verification records into, and its sinks for tests and shutdown. */
export interface RequestLog {
  readonly recorder: RequestRecorder;
  /** null when KEYWARD_REQUEST_LOG_STORE is off. */
  readonly store: RequestLogWriter | null;
  /** null when KEYWARD_REQUEST_LOG_JSON is off. */
  readonly json: JsonLinesSink | null;
  /** Writes what every sink holds now; rejects if the store write fails. */
  flush(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    requestLog: RequestLog;
  }
}

export interface RequestLogPluginOptions {
  readonly config: WebhookConfig;
  readonly metrics: WebhookMetrics;
  readonly now: () => number;
}

const ERROR_LOG_INTERVAL_MS = 60_000;
/** Retries after a failed store write: from about a second up to half a minute, jittered across replicas. */
const RETRY = { baseMs: 1_000, capMs: 30_000 };
const DROP_REASONS: readonly DropReason[] = ['buffer_full', 'rejected'];

/**
 * The request audit log (docs/request-log.md): a recorder on the verification path, the store's
 * batched writer (through the store plugin's pool) and JSON lines, with their metrics. Closing
 * flushes both; it runs before the store plugin ends the pool (onClose runs in reverse order).
 */
async function requestLogPlugin(app: FastifyInstance, options: RequestLogPluginOptions): Promise<void> {
  const { config, metrics, now } = options;
  const settings = config.requestLog;
  let loggedAt = Number.NEGATIVE_INFINITY;
  // The recorder counts the run of like decisions it is in; each flush takes that run too.
  const beforeFlush = (): void => recorder.settle();
  const store = settings.store
    ? new RequestLogWriter(app.store.writePool, {
        flushIntervalMs: settings.flushIntervalMs,
        maxPending: settings.maxPending,
        retry: new Backoff(RETRY, Math.random),
        now,
        beforeFlush,
        onError: (err) => {
          // A store outage fails every attempt: one line per interval would drown the log.
          if (now() - loggedAt < ERROR_LOG_INTERVAL_MS) return;
          loggedAt = now();
          app.log.warn(
            { err: safeError(err), pending: store?.pending },
            err.transient
              ? 'writing the request log failed; keeping rows (up to KEYWARD_REQUEST_LOG_BUFFER) for a retry'
              : 'the store refused request log rows; they are dropped (keyward_webhook_request_log_dropped_total)',
          );
        },
      })
    : null;
  const json =
    settings.json === null
      ? null
      : new JsonLinesSink(settings.json, {
          flushIntervalMs: settings.flushIntervalMs,
          maxPending: settings.maxPending,
          beforeFlush,
          onError: (err) =>
            app.log.error(
              { err: safeError(err) },
              'cannot write the request log JSON lines; they are dropped',
            ),
        });
  const sinks: RowSink[] = [];
  if (store) sinks.push(store);
  if (json) sinks.push(json);
  const recorder = new RequestRecorder({
    sinks,
    addresses: new ClientAddress({ trustedProxies: config.trustedProxies, header: config.clientIpHeader }),
    clientIpHeader: config.clientIpHeader,
  });
  registerMetrics(metrics, store, json);

  app.decorate('requestLog', {
    recorder,
    store,
    json,
    async flush(): Promise<void> {
      await json?.flush();
      await store?.flush();
    },
  } satisfies RequestLog);
  app.addHook('onClose', async () => {
    await json?.close();
    await store
      ?.close()
      .catch((err: unknown) =>
        app.log.warn({ err: safeError(err), lost: store.pending }, 'final request log write failed'),
      );
  });
}

/** Counters read from the sinks when scraped: the request path only bumps plain numbers. */
function registerMetrics(
  metrics: WebhookMetrics,
  store: RequestLogWriter | null,
  json: JsonLinesSink | null,
): void {
  const registers = [metrics.registry];
  const reported = new Map<string, number>();
  const advance = (counter: Counter<'sink' | 'reason'>, labels: Record<string, string>, total: number) => {
    const id = `${counter === written ? 'written' : 'dropped'}|${JSON.stringify(labels)}`;
    const delta = total - (reported.get(id) ?? 0);
    if (delta > 0) counter.inc(labels, delta);
    reported.set(id, total);
  };
  const written: Counter<'sink' | 'reason'> = new Counter({
    name: 'keyward_webhook_request_log_written_total',
    help: 'Decisions written to the request log, by sink (store, json); like decisions of one millisecond share a row.',
    labelNames: ['sink'],
    registers,
    collect() {
      if (store) advance(written, { sink: 'store' }, store.written);
      if (json) advance(written, { sink: 'json' }, json.written);
    },
  });
  const dropped: Counter<'sink' | 'reason'> = new Counter({
    name: 'keyward_webhook_request_log_dropped_total',
    help: 'Request log decisions lost, by sink and reason: buffer_full (the sink was unreachable or slow for longer than KEYWARD_REQUEST_LOG_BUFFER rows), rejected (the store refused the batch for good).',
    labelNames: ['sink', 'reason'],
    registers,
    collect() {
      if (store) {
        for (const reason of DROP_REASONS) advance(dropped, { sink: 'store', reason }, store.dropped(reason));
      }
      if (json) advance(dropped, { sink: 'json', reason: 'buffer_full' }, json.dropped);
    },
  });
  const pending = new Gauge({
    name: 'keyward_webhook_request_log_pending',
    help: 'Request log decisions waiting to be written, by sink.',
    labelNames: ['sink'],
    registers,
    collect() {
      if (store) pending.set({ sink: 'store' }, store.pending);
      if (json) pending.set({ sink: 'json' }, json.pending);
    },
  });
}

export default fp(requestLogPlugin, { name: 'keyward-request-log', dependencies: ['keyward-store'] });
