import { createServer, type Server } from 'node:http';
import { KubeConfig, type KubernetesObject, type V1Secret } from '@kubernetes/client-node';
import pg from 'pg';
import pino, { type Logger } from 'pino';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { GROUP, VERSION } from '../api/common.js';
import { OperatorStore } from '../store/operator-store.js';
import { RateLimitDefinitions } from '../store/rate-limits.js';
import { AccessPolicyWatch } from './accesspolicy/watch.js';
import { LeakWatcher } from './apikey/leaks.js';
import { ApiKeyReconciler } from './apikey/reconciler.js';
import type { OperatorConfig } from './config.js';
import { armFailpoints } from './failpoints.js';
import { EventRecorder } from './kube/events.js';
import { Informer, type SharedInformer } from './kube/informer.js';
import { LeaderElector } from './kube/leader.js';
import { kubeListWatch, type ResourceRef } from './kube/listwatch.js';
import { NamespacedInformers } from './kube/namespaced.js';
import { type KubeObject, objectKey } from './kube/object.js';
import { type HandlerResult, WorkQueue } from './kube/workqueue.js';
import { KubeWriter } from './objects.js';
import { API_KEY_LABEL, keysNamingSecret, MANAGED_SECRET_SELECTOR } from './secret.js';
import { ServiceUserReconciler } from './serviceuser/reconciler.js';
import { WorkloadRestarter } from './workloads.js';

interface OperatorMetrics {
  registry: Registry;
  reconciles: Counter<'controller' | 'result'>;
  duration: Histogram<'controller'>;
  depth: Gauge<'controller'>;
  retries: Counter<'controller'>;
  leader: Gauge;
  watchRestarts: Counter<'informer' | 'reason'>;
}

function createMetrics(): OperatorMetrics {
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

/** The running controllers of one leadership term. */
interface Controllers {
  synced(): boolean;
  stop(): Promise<void>;
}

function startControllers(
  kc: KubeConfig,
  config: OperatorConfig,
  pool: pg.Pool,
  logger: Logger,
  metrics: OperatorMetrics,
): Controllers {
  const informerOptions = (name: string): ConstructorParameters<typeof Informer>[1] => ({
    name,
    logger,
    resyncMs: config.resyncMs,
    metrics: { watchRestart: (reason) => metrics.watchRestarts.inc({ informer: name, reason }) },
  });
  // Across all namespaces one informer per kind; restricted to a list, one per kind and namespace.
  const informerFor = <T extends KubeObject>(name: string, ref: ResourceRef): SharedInformer<T> => {
    const namespaces = config.watchNamespaces;
    if (!namespaces) return new Informer<T>(kubeListWatch(kc, ref), informerOptions(name));
    return new NamespacedInformers<T>(
      new Map(
        namespaces.map((namespace) => [
          namespace,
          new Informer<T>(kubeListWatch(kc, { ...ref, namespace }), informerOptions(`${name}/${namespace}`)),
        ]),
      ),
    );
  };
  const apiKeys = informerFor<KubernetesObject>('apikeys', {
    group: GROUP,
    version: VERSION,
    plural: 'apikeys',
  });
  const serviceUsers = informerFor<KubernetesObject>('serviceusers', {
    group: GROUP,
    version: VERSION,
    plural: 'serviceusers',
  });
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
  const keyQueue = queueFor('apikey');
  const userQueue = queueFor('serviceuser');

  const kube = new KubeWriter(kc);
  const store = new OperatorStore(pool, { actor: 'keyward-operator' });
  const limits = new RateLimitDefinitions(pool);
  const events = new EventRecorder(kc, {
    controller: 'keyward.dev/operator',
    instance: config.identity,
    logger,
  });
  // Every ServiceUser and ApiKey of a namespace whose grants changed is re-evaluated at once.
  const policies = new AccessPolicyWatch(kc, {
    watchNamespaces: config.watchNamespaces,
    logger,
    informerOptions,
    onChange: (namespaces) => {
      for (const user of serviceUsers.list()) {
        if (namespaces.has(user.metadata?.namespace ?? '')) userQueue.add(objectKey(user));
      }
      for (const key of apiKeys.list()) {
        if (namespaces.has(key.metadata?.namespace ?? '')) keyQueue.add(objectKey(key));
      }
    },
  });
  const grants = (namespace: string): ReturnType<AccessPolicyWatch['grants']> => policies.grants(namespace);
  const keyReconciler = new ApiKeyReconciler({
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
  });
  const userReconciler = new ServiceUserReconciler({
    serviceUsers,
    kube,
    store,
    limits,
    events,
    logger,
    grants,
  });

  const keysOfUser = (namespace: string, userName: string): string[] =>
    apiKeys
      .list()
      .filter(
        (k) =>
          k.metadata?.namespace === namespace &&
          (k as { spec?: { serviceUserRef?: { name?: string } } }).spec?.serviceUserRef?.name === userName,
      )
      .map(objectKey);
  const onKey = (obj: KubernetesObject): void => {
    keyQueue.add(objectKey(obj));
    const userName = (obj as { spec?: { serviceUserRef?: { name?: string } } }).spec?.serviceUserRef?.name;
    // The user's key counts change with its keys.
    if (userName) userQueue.add(`${obj.metadata?.namespace}/${userName}`);
  };
  const onUser = (obj: KubernetesObject): void => {
    userQueue.add(objectKey(obj));
    // Suspension, scopes and existence of the user decide its keys' conditions.
    for (const key of keysOfUser(obj.metadata?.namespace ?? '', obj.metadata?.name ?? '')) keyQueue.add(key);
  };
  const onUserDeleted = (obj: KubernetesObject): void => {
    onUser(obj);
    // A freed username may settle another user's conflict.
    for (const other of serviceUsers.list()) {
      const ready = (
        other as { status?: { conditions?: Array<{ type: string; reason: string }> } }
      ).status?.conditions?.find((c) => c.type === 'Ready');
      if (ready?.reason === 'UsernameConflict') userQueue.add(objectKey(other));
    }
  };
  const onSecret = (obj: V1Secret): void => {
    const keyName = obj.metadata?.labels?.[API_KEY_LABEL];
    if (keyName) keyQueue.add(`${obj.metadata?.namespace}/${keyName}`);
  };
  apiKeys.addEventHandler({ onAdd: onKey, onUpdate: (_old, obj) => onKey(obj), onDelete: onKey });
  serviceUsers.addEventHandler({
    onAdd: onUser,
    onUpdate: (_old, obj) => onUser(obj),
    onDelete: onUserDeleted,
  });
  const onSecretDeleted = (obj: V1Secret): void => {
    onSecret(obj);
    // A freed name may settle another key's SecretConflict.
    for (const key of keysNamingSecret(apiKeys.list(), obj)) keyQueue.add(key);
  };
  secrets.addEventHandler({
    onAdd: onSecret,
    onUpdate: (_old, obj) => onSecret(obj),
    onDelete: onSecretDeleted,
  });

  const counted =
    (controller: string, reconcile: (key: string) => Promise<HandlerResult | undefined>) =>
    async (key: string): Promise<HandlerResult | undefined> => {
      try {
        const result = await reconcile(key);
        metrics.reconciles.inc({
          controller,
          result: result?.requeueAfterMs === undefined ? 'success' : 'requeue',
        });
        return result;
      } catch (err) {
        metrics.reconciles.inc({ controller, result: 'error' });
        logger.warn({ err, controller, key }, 'reconcile failed; retrying with backoff');
        throw err;
      }
    };

  for (const informer of [apiKeys, serviceUsers, secrets] as Array<SharedInformer<KubernetesObject>>)
    informer.start();
  policies.start();
  const synced = Promise.all([
    apiKeys.waitForSync(),
    serviceUsers.waitForSync(),
    secrets.waitForSync(),
    policies.waitForSync(),
  ]);
  // Workers start only on a full cache: deciding from a half-filled one would re-issue keys.
  const running = synced.then(() =>
    Promise.all([
      keyQueue.run(
        config.workers,
        counted('apikey', (k) => keyReconciler.reconcile(k)),
      ),
      userQueue.run(
        Math.max(1, Math.ceil(config.workers / 2)),
        counted('serviceuser', (k) => userReconciler.reconcile(k)),
      ),
    ]),
  );
  running.catch((err: unknown) => logger.error({ err }, 'controllers stopped'));
  const leaks = new LeakWatcher({
    store,
    apiKeys,
    events,
    logger,
    namespaces: config.watchNamespaces ?? null,
    enqueue: (key) => keyQueue.add(key),
  });
  void synced.then(() => leaks.start());
  return {
    synced: () =>
      apiKeys.hasSynced() && serviceUsers.hasSynced() && secrets.hasSynced() && policies.hasSynced(),
    async stop(): Promise<void> {
      await Promise.all([keyQueue.shutDown(), userQueue.shutDown(), leaks.stop()]);
      await Promise.all([apiKeys.stop(), serviceUsers.stop(), secrets.stop(), policies.stop()]);
      await running.catch(() => undefined);
      await events.flush();
    },
  };
}

function loadKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
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

function serveMetrics(config: OperatorConfig, metrics: OperatorMetrics, ready: () => boolean): Server {
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
