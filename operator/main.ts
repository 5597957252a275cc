import type { KubeConfig, KubernetesObject, V1Secret } from '@kubernetes/client-node';
import pg from 'pg';
import pino, { type Logger } from 'pino';
import { GROUP, VERSION } from '../api/common.js';
import { ActAsStore } from '../store/act-as.js';
import { OperatorStore } from '../store/operator-store.js';
import { RateLimitDefinitions } from '../store/rate-limits.js';
import { AccessPolicyWatch } from './accesspolicy/watch.js';
import { apiKeyController } from './apikey/controller.js';
import { LeakWatcher } from './apikey/leaks.js';
import { WriteMemory } from './apikey/memory.js';
import { ApiKeyReconciler } from './apikey/reconciler.js';
import { UsageRefresh } from './apikey/usage-refresh.js';
import { startChangeLogPruner } from './change-log-pruner.js';
import type { OperatorConfig } from './config.js';
import { armFailpoints } from './failpoints.js';
import { PooledKubeConfig } from './kube/connections.js';
import type { Controller } from './kube/controller.js';
import { EventRecorder } from './kube/events.js';
import {
  Informer,
  type InformerOptions,
  type SharedInformer,
  withoutManagedFields,
} from './kube/informer.js';
import { LeaderElector } from './kube/leader.js';
import { kubeListWatch, type ResourceRef } from './kube/listwatch.js';
import { NamespacedInformers } from './kube/namespaced.js';
import type { KubeObject } from './kube/object.js';
import { OwnStatusWrites } from './kube/own-writes.js';
import { WorkQueue } from './kube/workqueue.js';
import { countedReconcile, createMetrics, type OperatorMetrics, serveMetrics } from './metrics.js';
import { KubeWriter } from './objects.js';
import { RequestLogMaintenance } from './request-log.js';
import { MANAGED_SECRET_SELECTOR } from './secret.js';
import { serviceUserController } from './serviceuser/controller.js';
import { ServiceUserReconciler } from './serviceuser/reconciler.js';
import { WorkloadRestarter } from './workloads.js';

/** The running controllers of one leadership term. */
interface Controllers {
  synced(): boolean;
  stop(): Promise<void>;
}

/**
 * Wiring only: the informers, queues and store the controllers share, each controller with its
 * own watches (apikey/controller.ts, serviceuser/controller.ts, accesspolicy/watch.ts), and the
 * workers, started once every cache is full.
 */
function startControllers(
  kc: KubeConfig,
  config: OperatorConfig,
  pool: pg.Pool,
  logger: Logger,
  metrics: OperatorMetrics,
): Controllers {
  const informerOptions = (name: string): InformerOptions => ({
    name,
    logger,
    resyncMs: config.resyncMs,
    metrics: { watchRestart: (reason) => metrics.watchRestarts.inc({ informer: name, reason }) },
  });
  // Across all namespaces one informer per kind; restricted to a list, one per kind and namespace.
  const informerFor = <T extends KubeObject>(
    name: string,
    ref: ResourceRef,
    transform?: (obj: T) => T,
  ): SharedInformer<T> => {
    const options = (label: string): InformerOptions<T> => ({ ...informerOptions(label), transform });
    const namespaces = config.watchNamespaces;
    if (!namespaces) return new Informer<T>(kubeListWatch(kc, ref), options(name));
    return new NamespacedInformers<T>(
      new Map(
        namespaces.map((namespace) => [
          namespace,
          new Informer<T>(kubeListWatch(kc, { ...ref, namespace }), options(`${name}/${namespace}`)),
        ]),
      ),
    );
  };
  // Secrets keep their managedFields: the Secret writes decide from them (secret.ts).
  const apiKeys = informerFor<KubernetesObject>(
    'apikeys',
    { group: GROUP, version: VERSION, plural: 'apikeys' },
    withoutManagedFields,
  );
  const serviceUsers = informerFor<KubernetesObject>(
    'serviceusers',
    { group: GROUP, version: VERSION, plural: 'serviceusers' },
    withoutManagedFields,
  );
  const secrets = informerFor<V1Secret>('secrets', {
    group: '',
    version: 'v1',
    plural: 'secrets',
    labelSelector: MANAGED_SECRET_SELECTOR,
  });
  const queueFor = (controller: string): WorkQueue =>
    new WorkQueue({
      logger,
      backoff: { baseMs: 200, capMs: 60_000 },
      metrics: {
        depth: (n) => metrics.depth.set({ controller }, n),
        queueLatency: () => undefined,
        workDuration: (seconds) => metrics.duration.observe({ controller }, seconds),
        retry: () => metrics.retries.inc({ controller }),
      },
    });

  const memory = new WriteMemory();
  const ownWrites = { apikeys: new OwnStatusWrites(), serviceusers: new OwnStatusWrites() };
  const kube = new KubeWriter(kc, ownWrites);
  const store = new OperatorStore(pool, { actor: 'keyward-operator' });
  const limits = new RateLimitDefinitions(pool);
  const events = new EventRecorder(kc, {
    controller: 'keyward.dev/operator',
    instance: config.identity,
    logger,
  });
  // Every ServiceUser and ApiKey of a namespace whose grants changed is re-evaluated at once.
  const controllers: Controller[] = [];
  const policies = new AccessPolicyWatch(kc, {
    watchNamespaces: config.watchNamespaces,
    logger,
    informerOptions,
    onChange: (namespaces) => {
      for (const controller of controllers) controller.enqueueNamespaces(namespaces);
    },
  });
  const grants = (namespace: string): ReturnType<AccessPolicyWatch['grants']> => policies.grants(namespace);
  const keys = apiKeyController({
    apiKeys,
    serviceUsers,
    secrets,
    queue: queueFor('apikey'),
    ownWrites: ownWrites.apikeys,
    memory,
    reconciler: new ApiKeyReconciler({
      memory,
      apiKeys,
      serviceUsers,
      secrets,
      kube,
      store,
      limits,
      events,
      logger,
      tokenPrefix: config.tokenPrefix,
      grants,
      restarter: new WorkloadRestarter(kc),
      restartDebounceMs: config.restartDebounceMs,
      lastUsedRefreshMs: config.lastUsedRefreshMs,
    }),
  });
  const users = serviceUserController({
    serviceUsers,
    apiKeys,
    queue: queueFor('serviceuser'),
    ownWrites: ownWrites.serviceusers,
    reconciler: new ServiceUserReconciler({
      serviceUsers,
      kube,
      store,
      limits,
      actAs: new ActAsStore(pool, { actor: 'keyward-operator' }),
      events,
      logger,
      grants,
      enqueueKeysOf: (namespace, name) => keys.enqueueKeysOf(namespace, name),
    }),
  });
  controllers.push(keys, users);

  for (const informer of [apiKeys, serviceUsers, secrets] as Array<SharedInformer<KubernetesObject>>)
    informer.start();
  policies.start();
  const synced = Promise.all([
    apiKeys.waitForSync(),
    serviceUsers.waitForSync(),
    secrets.waitForSync(),
    policies.waitForSync(),
  ]);
  const workers = new Map([
    [keys, config.workers],
    [users, Math.max(1, Math.ceil(config.workers / 2))],
  ]);
  // Workers start only on a full cache: deciding from a half-filled one would re-issue keys.
  const running = synced.then(() =>
    Promise.all(
      controllers.map((c) => c.queue.run(workers.get(c) ?? 1, countedReconcile(c, metrics, logger))),
    ),
  );
  running.catch((err: unknown) => logger.error({ err }, 'controllers stopped'));
  const leaks = new LeakWatcher({
    store,
    apiKeys,
    events,
    logger,
    namespaces: config.watchNamespaces ?? null,
    enqueue: (key) => keys.queue.add(key),
  });
  void synced.then(() => leaks.start());
  const usage = new UsageRefresh({
    store,
    apiKeys,
    logger,
    namespaces: config.watchNamespaces ?? null,
    enqueue: (key) => keys.queue.add(key),
    intervalMs: config.lastUsedRefreshMs,
  });
  void synced.then(() => usage.start());
  const requestLog = new RequestLogMaintenance({
    pool,
    logger,
    retentionDays: config.requestLogRetentionDays,
  });
  requestLog.start();
  return {
    synced: () =>
      apiKeys.hasSynced() && serviceUsers.hasSynced() && secrets.hasSynced() && policies.hasSynced(),
    async stop(): Promise<void> {
      await Promise.all([
        ...controllers.map((c) => c.queue.shutDown()),
        leaks.stop(),
        usage.stop(),
        requestLog.stop(),
      ]);
      await Promise.all([apiKeys.stop(), serviceUsers.stop(), secrets.stop(), policies.stop()]);
      await running.catch(() => undefined);
      await events.flush();
    },
  };
}

function loadKubeConfig(): KubeConfig {
  const kc = new PooledKubeConfig();
  kc.loadFromDefault();
  return kc;
}

/**
 * Runs the operator until SIGTERM/SIGINT or loss of leadership. Standbys serve /healthz and
 * /metrics and wait for the lease; only the leader runs informers and workers.
 */
export async function runOperator(config: OperatorConfig, kc: KubeConfig = loadKubeConfig()): Promise<void> {
  armFailpoints(config.failpoints);
  const logger = pino({ level: config.logLevel, base: { component: 'operator', identity: config.identity } });
  const metrics = createMetrics();
  const pool = new pg.Pool({
    connectionString: config.storeUrl,
    max: config.workers + 2,
    connectionTimeoutMillis: 5_000,
  });
  // An idle client losing its connection (Postgres restart) must not crash the process.
  pool.on('error', (err) => logger.warn({ err: err.message }, 'idle store connection failed'));

  let controllers: Controllers | undefined;
  let pruner: { stop(): void } | undefined;
  let shuttingDown: Promise<void> | undefined;
  const server = serveMetrics(config, metrics, () => controllers?.synced() ?? true);

  const elector = new LeaderElector(kc, {
    namespace: config.namespace,
    name: config.leaseName,
    identity: config.identity,
    leaseDurationSeconds: Math.round(config.leaseDurationMs / 1000),
    renewDeadlineMs: Math.round(config.leaseDurationMs * (2 / 3)),
    retryPeriodMs: Math.max(200, Math.round(config.leaseDurationMs / 7.5)),
    logger,
    onStartedLeading: () => {
      logger.info('became leader; starting controllers');
      metrics.leader.set(1);
      controllers = startControllers(kc, config, pool, logger, metrics);
      pruner = startChangeLogPruner(pool, config.changeLogRetentionMs, logger);
    },
    onStoppedLeading: () => {
      logger.error('lost leadership; exiting so a fresh process competes again');
      metrics.leader.set(0);
      process.exitCode = 1;
      void shutdown();
    },
  });

  const shutdown = (): Promise<void> => {
    shuttingDown ??= (async (): Promise<void> => {
      logger.info('shutting down');
      pruner?.stop();
      await controllers?.stop();
      await elector.stop();
      await pool.end().catch(() => undefined);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      logger.info('stopped');
    })();
    return shuttingDown;
  };
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());

  await elector.run();
  await shutdown();
}
