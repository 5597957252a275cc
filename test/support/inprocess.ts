import {
  CoreV1Api,
  EventsV1Api,
  type KubeConfig,
  type KubernetesObject,
  type V1Secret,
} from '@kubernetes/client-node';
import type pg from 'pg';
import pino from 'pino';
import type { AccessPolicy } from '../../api/accesspolicy.js';
import { GROUP, VERSION } from '../../api/common.js';
import { createTestNamespace } from '../../devenv/kube.js';
import { KeywardObjects } from '../../devenv/operator.js';
import { eventually } from '../../devenv/poll.js';
import { type Grants, grantsFor } from '../../operator/accesspolicy/grants.js';
import { ApiKeyReconciler } from '../../operator/apikey/reconciler.js';
import { EventRecorder } from '../../operator/kube/events.js';
import { Informer, type SharedInformer } from '../../operator/kube/informer.js';
import { kubeListWatch } from '../../operator/kube/listwatch.js';
import type { HandlerResult } from '../../operator/kube/workqueue.js';
import { KubeWriter } from '../../operator/objects.js';
import { MANAGED_SECRET_SELECTOR } from '../../operator/secret.js';
import { ServiceUserReconciler } from '../../operator/serviceuser/reconciler.js';
import { WorkloadRestarter } from '../../operator/workloads.js';
import { ActAsStore } from '../../store/act-as.js';
import { migrate } from '../../store/migrate.js';
import { OperatorStore } from '../../store/operator-store.js';
import { RateLimitDefinitions } from '../../store/rate-limits.js';
import { testDatabase } from '../harness/database.js';
import { testKubeConfig } from '../harness/kube.js';
import { FakeClock } from './fake-clock.js';
import { poolFor, tokenVerifies } from './store.js';

/**
 * The two reconcilers in this process, against the run's real kube-apiserver and Postgres, with an
 * injected clock (expiry and grace end are crossed by moving it) and no work queue: a test calls
 * converge() and sees what one operator would have done by then.
 */
export interface InProcess {
  kc: KubeConfig;
  ns: string;
  objects: KeywardObjects;
  core: CoreV1Api;
  pool: pg.Pool;
  store: OperatorStore;
  /** The injected clock; resetClock() starts a new one at the real time (the database's clock). */
  readonly clock: FakeClock;
  resetClock(): void;
  keys: ApiKeyReconciler;
  /** The Secret informer the reconciler reads; stopping it freezes its cache (an informer lagging forever). */
  secrets: Informer<V1Secret>;
  /** A second ApiKey reconciler (a restarted operator) reading the given Secret informer. */
  keyReconciler(secrets: SharedInformer<V1Secret>): ApiKeyReconciler;
  /** A fresh Secret informer of the namespace, synced. */
  secretInformer(): Promise<Informer<V1Secret>>;
  /**
   * Reconciles the key (and its user first, unless `user: false`) until a pass writes nothing;
   * returns the key as stored then and the last pass's result.
   */
  converge(
    name: string,
    opts?: { reconciler?: ApiKeyReconciler; user?: boolean },
  ): Promise<{ key: KubernetesObject & { status?: Record<string, unknown> }; result?: HandlerResult }>;
  /** Reconciles the user alone until a pass writes nothing. */
  convergeUser(name: string): Promise<void>;
  /** The token under `dataKey` of the Secret as the API server has it. */
  tokenOf(secretName: string, dataKey?: string): Promise<string | undefined>;
  verifies(token: string): Promise<boolean>;
  eventReasons(name: string): Promise<string[]>;
  stop(): Promise<void>;
}

export async function startInProcess(prefix: string): Promise<InProcess> {
  const kc = testKubeConfig();
  const ns = await createTestNamespace(kc, prefix);
  const url = await testDatabase();
  await migrate(url);
  const pool = poolFor(url);
  const store = new OperatorStore(pool, { actor: 'keyward-operator' });
  const logger = pino({ level: 'silent' });
  let clock = new FakeClock(Date.now());
  const now = (): Date => new Date(clock.now());
  const informer = <T extends KubernetesObject>(plural: string, group = GROUP, labelSelector?: string) =>
    new Informer<T>(
      kubeListWatch<T>(kc, { group, version: group ? VERSION : 'v1', plural, namespace: ns, labelSelector }),
      { name: plural, logger },
    );
  const apiKeys = informer<KubernetesObject>('apikeys');
  const serviceUsers = informer<KubernetesObject>('serviceusers');
  const secretInformer = async (): Promise<Informer<V1Secret>> => {
    const i = informer<V1Secret>('secrets', '', MANAGED_SECRET_SELECTOR);
    i.start();
    await i.waitForSync();
    return i;
  };
  apiKeys.start();
  serviceUsers.start();
  const secrets = await secretInformer();
  await Promise.all([apiKeys.waitForSync(), serviceUsers.waitForSync()]);
  const extra: Informer<V1Secret>[] = [];
  const policy = {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'AccessPolicy',
    metadata: { name: ns },
    spec: { namespaces: [ns], usernames: ['*'], scopes: ['projects:*'] },
  } as unknown as AccessPolicy;
  const grants = (): Grants => grantsFor([policy], { name: ns, labels: {} });
  const kube = new KubeWriter(kc);
  const events = new EventRecorder(kc, { controller: 'keyward.dev/operator', instance: 'test', logger });
  const keyReconciler = (s: SharedInformer<V1Secret>): ApiKeyReconciler =>
    new ApiKeyReconciler({
      apiKeys,
      serviceUsers,
      secrets: s,
      kube,
      store,
      limits: new RateLimitDefinitions(pool),
      events,
      logger,
      tokenPrefix: 'kw',
      grants,
      restarter: new WorkloadRestarter(kc),
      restartDebounceMs: 1000,
      now,
    });
  const keys = keyReconciler(secrets);
  const users = new ServiceUserReconciler({
    serviceUsers,
    kube,
    store,
    limits: new RateLimitDefinitions(pool),
    actAs: new ActAsStore(pool, { actor: 'keyward-operator' }),
    events,
    logger,
    grants,
    now,
  });
  const objects = new KeywardObjects(kc, ns);
  const core = kc.makeApiClient(CoreV1Api);

  const readSecret = (name: string): Promise<V1Secret | undefined> =>
    core.readNamespacedSecret({ namespace: ns, name }).catch(() => undefined);
  const version = async (kind: 'apikeys' | 'serviceusers', name: string): Promise<string> =>
    (await objects.get(kind, name).catch(() => undefined))?.metadata?.resourceVersion ?? '-';
  /** Waits until the running informers hold what the API server holds for these objects. */
  const caughtUp = async (keyName: string, userName: string, secretName: string): Promise<string> => {
    const [k, u, s] = [
      await version('apikeys', keyName),
      await version('serviceusers', userName),
      await readSecret(secretName),
    ];
    await eventually(`informers hold ${keyName}`, () => {
      const rv = (i: SharedInformer<KubernetesObject>, name: string): string =>
        i.get(`${ns}/${name}`)?.metadata?.resourceVersion ?? '-';
      return rv(apiKeys, keyName) === k && rv(serviceUsers, userName) === u;
    });
    return `${k}/${u}/${s?.metadata?.resourceVersion ?? '-'}`;
  };
  const convergeUser = async (name: string): Promise<void> => {
    for (let pass = 0; pass < 10; pass++) {
      await eventually(`informer holds ServiceUser ${name}`, async () => {
        const live = await version('serviceusers', name);
        return (serviceUsers.get(`${ns}/${name}`)?.metadata?.resourceVersion ?? '-') === live;
      });
      const before = await version('serviceusers', name);
      await users.reconcile(`${ns}/${name}`);
      if ((await version('serviceusers', name)) === before) return;
    }
    throw new Error(`ServiceUser ${name} did not settle`);
  };
  return {
    kc,
    ns,
    objects,
    core,
    pool,
    store,
    get clock() {
      return clock;
    },
    resetClock() {
      clock = new FakeClock(Date.now());
    },
    keys,
    secrets,
    keyReconciler,
    secretInformer: async () => {
      const i = await secretInformer();
      extra.push(i);
      return i;
    },
    convergeUser,
    async converge(name, opts = {}) {
      const reconciler = opts.reconciler ?? keys;
      const spec = ((await objects.get('apikeys', name)).spec ?? {}) as {
        serviceUserRef?: { name?: string };
        secret?: { name?: string };
      };
      const userName = spec.serviceUserRef?.name ?? '';
      const secretName = spec.secret?.name ?? name;
      let result: HandlerResult | undefined;
      for (let pass = 0; pass < 10; pass++) {
        const before = await caughtUp(name, userName, secretName);
        if (opts.user !== false && (await version('serviceusers', userName)) !== '-')
          await users.reconcile(`${ns}/${userName}`);
        result = await reconciler.reconcile(`${ns}/${name}`);
        if ((await caughtUp(name, userName, secretName)) === before)
          return { key: await objects.get('apikeys', name).catch(() => ({}) as KubernetesObject), result };
      }
      throw new Error(`ApiKey ${name} did not settle in 10 passes`);
    },
    async tokenOf(secretName, dataKey = 'token') {
      const data = (await readSecret(secretName))?.data?.[dataKey];
      return data ? Buffer.from(data, 'base64').toString('utf8') : undefined;
    },
    async verifies(token) {
      return (await tokenVerifies(pool, token, now())) !== undefined;
    },
    async eventReasons(name) {
      await events.flush();
      const list = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns });
      return list.items.filter((e) => e.regarding?.name === name).map((e) => e.reason ?? '');
    },
    async stop() {
      await events.flush();
      await Promise.all([apiKeys.stop(), serviceUsers.stop(), secrets.stop(), ...extra.map((i) => i.stop())]);
      await pool.end();
    },
  };
}
