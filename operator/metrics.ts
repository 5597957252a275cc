import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { OperatorConfig } from './config.js';
import type { Controller } from './kube/controller.js';
import type { HandlerResult } from './kube/workqueue.js';

export interface OperatorMetrics {
  registry: Registry;
  reconciles: Counter<'controller' | 'result'>;
  duration: Histogram<'controller'>;
  depth: Gauge<'controller'>;
  retries: Counter<'controller'>;
  leader: Gauge;
  watchRestarts: Counter<'informer' | 'reason'>;
}

export function createMetrics(): OperatorMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    reconciles: new Counter({
      name: 'keyward_operator_reconciles_total',
      help: 'Reconciles by controller and result (success, requeue, error).',
      labelNames: ['controller', 'result'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'keyward_operator_reconcile_duration_seconds',
      help: 'Time spent reconciling one object.',
      labelNames: ['controller'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    depth: new Gauge({
      name: 'keyward_operator_queue_depth',
      help: 'Keys waiting for a worker.',
      labelNames: ['controller'],
      registers: [registry],
    }),
    retries: new Counter({
      name: 'keyward_operator_queue_retries_total',
      help: 'Reconciles that failed and were requeued with backoff.',
      labelNames: ['controller'],
      registers: [registry],
    }),
    leader: new Gauge({
      name: 'keyward_operator_leader',
      help: '1 while this replica leads.',
      registers: [registry],
    }),
    watchRestarts: new Counter({
      name: 'keyward_operator_watch_restarts_total',
      help: 'Watch restarts by informer and reason.',
      labelNames: ['informer', 'reason'],
      registers: [registry],
    }),
  };
}

/** The controller's reconcile, counted by result and logged when it fails (the queue retries it). */
export function countedReconcile(
  controller: Controller,
  metrics: OperatorMetrics,
  logger: Logger,
): (key: string) => Promise<HandlerResult | undefined> {
  return async (key) => {
    try {
      const result = await controller.reconcile(key);
      metrics.reconciles.inc({
        controller: controller.name,
        result: result?.requeueAfterMs === undefined ? 'success' : 'requeue',
      });
      return result;
    } catch (err) {
      metrics.reconciles.inc({ controller: controller.name, result: 'error' });
      logger.warn({ err, controller: controller.name, key }, 'reconcile failed; retrying with backoff');
      throw err;
    }
  };
}

/** /metrics, /healthz and /readyz (ready: the leader's caches have synced; standbys are ready). */
export function serveMetrics(config: OperatorConfig, metrics: OperatorMetrics, ready: () => boolean): Server {
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      metrics.registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(body);
        })
        .catch(() => res.writeHead(500).end());
      return;
    }
    if (req.url === '/healthz') return void res.writeHead(200).end('ok');
    if (req.url === '/readyz') return void res.writeHead(ready() ? 200 : 503).end(ready() ? 'ok' : 'syncing');
    res.writeHead(404).end();
  });
  server.listen(config.metricsPort, config.metricsHost);
  return server;
}
