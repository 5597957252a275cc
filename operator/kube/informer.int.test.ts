import { CoreV1Api, CustomObjectsApi, type KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startControlPlane } from '../../devenv/controlplane/controlplane.js';
import { createTestNamespace } from '../../devenv/kube.js';
import { eventually } from '../../devenv/poll.js';
import { testKubeConfig } from '../../test/harness/kube.js';
import { type EventHandler, Informer, type InformerOptions, type RestartReason } from './informer.js';
import { kubeListWatch, type ListWatch } from './listwatch.js';
import type { KubeObject } from './object.js';

// Integration tests against the run's real kube-apiserver (test/harness/global-setup.ts).

const fast: Partial<InformerOptions> = { backoff: { baseMs: 50, capMs: 500 } };

/** Everything an informer told its handlers, plus its watch restarts. */
class Seen<T extends KubeObject> implements EventHandler<T> {
  readonly events: string[] = [];
  readonly restarts: RestartReason[] = [];
  readonly restartedAt: number[] = [];
  readonly metrics = {
    watchRestart: (r: RestartReason): void => {
      this.restarts.push(r);
      this.restartedAt.push(Date.now());
    },
  };

  onAdd(obj: T): void {
    this.events.push(`add ${obj.metadata?.name}`);
  }
  onUpdate(old: T, obj: T): void {
    const resync = old === obj ? ' (resync)' : '';
    this.events.push(`update ${obj.metadata?.name}${resync}`);
  }
  onDelete(obj: T): void {
    this.events.push(`delete ${obj.metadata?.name}`);
  }
}

function configMapInformer(
  kc: KubeConfig,
  namespace: string,
  seen: Seen<V1ConfigMap>,
  opts: Partial<InformerOptions> = {},
  labelSelector?: string,
  wrap: (lw: ListWatch<V1ConfigMap>) => ListWatch<V1ConfigMap> = (lw) => lw,
): Informer<V1ConfigMap> {
  const lw = kubeListWatch<V1ConfigMap>(kc, {
    group: '',
    version: 'v1',
    plural: 'configmaps',
    namespace,
    labelSelector,
  });
  const informer = new Informer(wrap(lw), { name: 'configmaps', metrics: seen.metrics, ...fast, ...opts });
  informer.addEventHandler(seen);
  return informer;
}

describe('Informer against the API server', () => {
  let kc: KubeConfig;
  let core: CoreV1Api;
  let ns: string;
  const informers: Informer<KubeObject>[] = [];
  const started = <T extends KubeObject>(informer: Informer<T>): Informer<T> => {
    informers.push(informer as unknown as Informer<KubeObject>);
    informer.start();
    return informer;
  };
  const createCm = (name: string, labels?: Record<string, string>): Promise<V1ConfigMap> =>
    core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name, labels }, data: { v: '1' } } });
  const deleteCm = (name: string): Promise<unknown> =>
    core.deleteNamespacedConfigMap({ namespace: ns, name });

  beforeAll(async () => {
    kc = testKubeConfig();
    core = kc.makeApiClient(CoreV1Api);
  });

  beforeEach(async () => {
    ns = await createTestNamespace(kc, 'kube-informer');
  });

  afterEach(async () => {
    await Promise.all(informers.splice(0).map((i) => i.stop()));
  });

  it('lists what exists, then sees add, update and delete', async () => {
    await createCm('before');
    const seen = new Seen<V1ConfigMap>();
    const informer = started(configMapInformer(kc, ns, seen));
    await informer.waitForSync();
    expect(informer.hasSynced()).toBe(true);
    expect(informer.get(`${ns}/before`)?.data).toEqual({ v: '1' });
    // List items arrive without kind; the cache fills it in so they match watch events.
    expect(informer.get(`${ns}/before`)).toMatchObject({ apiVersion: 'v1', kind: 'ConfigMap' });
    expect(seen.events).toContain('add before');

    await createCm('a');
    await eventually('add a', () => seen.events.includes('add a'));
    await core.replaceNamespacedConfigMap({
      namespace: ns,
      name: 'a',
      body: { metadata: { name: 'a' }, data: { v: '2' } },
    });
    await eventually('a updated in the cache', () => informer.get(`${ns}/a`)?.data?.v === '2');
    expect(seen.events).toContain('update a');
    await deleteCm('a');
    await eventually('delete a', () => seen.events.includes('delete a'));
    expect(informer.get(`${ns}/a`)).toBeUndefined();
    expect(informer.list().map((o) => o.metadata?.name)).toContain('before');
  });

  it('gives a handler added after sync an add for every cached object', async () => {
    await createCm('x');
    const informer = started(configMapInformer(kc, ns, new Seen()));
    await informer.waitForSync();
    const late = new Seen<V1ConfigMap>();
    informer.addEventHandler(late);
    expect(late.events).toContain('add x');
  });

  it('only sees objects matching its label selector', async () => {
    const seen = new Seen<V1ConfigMap>();
    const informer = started(configMapInformer(kc, ns, seen, {}, 'keyward.dev/test-pick=yes'));
    await informer.waitForSync();
    await createCm('picked', { 'keyward.dev/test-pick': 'yes' });
    await createCm('ignored', { 'keyward.dev/test-pick': 'no' });
    await eventually('add picked', () => seen.events.includes('add picked'));
    // Relabelling into the selector shows up as an add, out of it as a delete.
    await core.patchNamespacedConfigMap({
      namespace: ns,
      name: 'ignored',
      body: [{ op: 'replace', path: '/metadata/labels/keyward.dev~1test-pick', value: 'yes' }],
    });
    await eventually('relabelled object added', () => seen.events.includes('add ignored'));
    await core.patchNamespacedConfigMap({
      namespace: ns,
      name: 'picked',
      body: [{ op: 'replace', path: '/metadata/labels/keyward.dev~1test-pick', value: 'no' }],
    });
    await eventually('relabelled object deleted', () => seen.events.includes('delete picked'));
    expect(informer.list().map((o) => o.metadata?.name)).toEqual(['ignored']);
  });

  it('restarts a watch that stays silent past the watchdog timeout and keeps up', async () => {
    const seen = new Seen<V1ConfigMap>();
    // Bookmarks come about once a minute, so a 700 ms watchdog finds this idle stream silent.
    const informer = started(configMapInformer(kc, ns, seen, { watchdogMs: 700 }));
    await informer.waitForSync();
    await eventually(
      'two watchdog restarts',
      () => seen.restarts.filter((r) => r === 'watchdog').length >= 2,
    );
    await createCm('still-seen');
    await eventually('add after watchdog restarts', () => seen.events.includes('add still-seen'));
  });

  it('resyncs: re-emits update for every cached object periodically', async () => {
    await createCm('steady');
    const seen = new Seen<V1ConfigMap>();
    const informer = started(configMapInformer(kc, ns, seen, { resyncMs: 200 }));
    await informer.waitForSync();
    await eventually(
      'three resyncs of an unchanged object',
      () => seen.events.filter((e) => e === 'update steady (resync)').length >= 3,
    );
  });

  it('watches custom resources across all namespaces', async () => {
    const seen = new Seen<KubeObject>();
    const lw = kubeListWatch<KubeObject>(kc, {
      group: 'keyward.dev',
      version: 'v1alpha1',
      plural: 'serviceusers',
    });
    const informer = new Informer(lw, { name: 'serviceusers', ...fast });
    informer.addEventHandler(seen);
    started(informer);
    await informer.waitForSync();
    await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
      group: 'keyward.dev',
      version: 'v1alpha1',
      namespace: ns,
      plural: 'serviceusers',
      body: {
        apiVersion: 'keyward.dev/v1alpha1',
        kind: 'ServiceUser',
        metadata: { name: 'informer-probe' },
        spec: { description: 'informer integration test', scopes: ['projects:alpha'] },
      },
    });
    await eventually('ServiceUser in the cache', () => informer.get(`${ns}/informer-probe`) !== undefined);
    expect(informer.get(`${ns}/informer-probe`)?.kind).toBe('ServiceUser');
  });

  it('stops promptly and rejects waitForSync afterwards', async () => {
    const informer = started(configMapInformer(kc, ns, new Seen()));
    await informer.waitForSync();
    const t0 = Date.now();
    await informer.stop();
    expect(Date.now() - t0).toBeLessThan(1000);
    await expect(
      new Informer(kubeListWatch(kc, { group: '', version: 'v1', plural: 'configmaps', namespace: ns }), {
        name: 'never-started',
      })
        .stop()
        .then(() => 'stopped'),
    ).resolves.toBe('stopped');
  });

  it('retries with backoff while the resource cannot be listed', async () => {
    const seen = new Seen<KubeObject>();
    const lw = kubeListWatch<KubeObject>(kc, {
      group: 'keyward.dev',
      version: 'v1alpha1',
      plural: 'nosuchthings',
    });
    const informer = new Informer(lw, {
      name: 'missing',
      metrics: seen.metrics,
      backoff: { baseMs: 100, capMs: 400 },
    });
    started(informer);
    const waiting = informer.waitForSync().then(
      () => 'synced',
      (err: Error) => err.message,
    );
    const impatient = new AbortController();
    const gaveUp = informer.waitForSync(impatient.signal).catch((err: Error) => err.message);
    await eventually('five failed attempts', () => seen.restarts.length >= 5);
    expect(seen.restarts.every((r) => r === 'error')).toBe(true);
    // Each delay is drawn from the upper half of a ceiling doubling from 100 ms up to 400 ms.
    const gaps = seen.restartedAt.slice(1, 5).map((t, i) => t - seen.restartedAt[i]!);
    expect(gaps.map((g, i) => g >= Math.min(400, 100 * 2 ** i) / 2)).toEqual([true, true, true, true]);
    expect(gaps[3]).toBeLessThan(400 + 1000);
    expect(informer.hasSynced()).toBe(false);
    impatient.abort();
    expect(await gaveUp).toMatch(/aborted/);
    await informer.stop();
    expect(await waiting).toMatch(/stopped/);
  });
});

describe('Informer across an API server restart', () => {
  let cp: Awaited<ReturnType<typeof startControlPlane>>;

  beforeAll(async () => {
    // Its own control plane: restarting the shared one would disturb every other suite.
    cp = await startControlPlane();
  }, 180_000);

  afterAll(async () => {
    await cp?.stop();
  });

  it('reconnects and catches up with changes made after the restart', async () => {
    const kc = cp.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const ns = await createTestNamespace(kc, 'kube-informer-restart');
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'old' } } });
    const seen = new Seen<V1ConfigMap>();
    const informer = configMapInformer(kc, ns, seen);
    informer.start();
    try {
      await informer.waitForSync();
      await cp.restartApiServer();
      await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'new' } } });
      await core.deleteNamespacedConfigMap({ namespace: ns, name: 'old' });
      await eventually(
        'changes after the restart',
        () => seen.events.includes('add new') && seen.events.includes('delete old'),
        30_000,
      );
      expect(seen.restarts.length).toBeGreaterThan(0);
      expect(informer.list().map((o) => o.metadata?.name)).toEqual(['new']);
    } finally {
      await informer.stop();
    }
  }, 120_000);

  it('relists on 410 Gone and reports objects deleted while it was not watching', async () => {
    const kc = cp.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const ns = await createTestNamespace(kc, 'kube-informer-gone');
    for (const name of ['stays', 'vanishes']) {
      await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name } } });
    }
    // Holds reconnecting watches back while the test changes things behind the informer's back.
    let gate: Promise<void> | undefined;
    let openGate = (): void => {};
    const gated = (lw: ListWatch<V1ConfigMap>): ListWatch<V1ConfigMap> => ({
      list: (signal) => lw.list(signal),
      async watch(opts, onEvent, onDone) {
        await gate;
        return lw.watch(opts, onEvent, onDone);
      },
    });
    const seen = new Seen<V1ConfigMap>();
    const informer = configMapInformer(kc, ns, seen, {}, undefined, gated);
    informer.start();
    try {
      await informer.waitForSync();
      gate = new Promise((resolve) => {
        openGate = resolve;
      });
      // A restarted API server starts its watch cache at the current revision, so resuming from
      // the informer's older resourceVersion is answered 410 Expired by the real server.
      await cp.restartApiServer();
      await core.deleteNamespacedConfigMap({ namespace: ns, name: 'vanishes' });
      openGate();
      await eventually('delete found by the relist', () => seen.events.includes('delete vanishes'), 30_000);
      expect(seen.restarts).toContain('expired');
      expect(informer.list().map((o) => o.metadata?.name)).toEqual(['stays']);
      await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'after' } } });
      await eventually('watching again after the relist', () => seen.events.includes('add after'));
    } finally {
      openGate();
      await informer.stop();
    }
  }, 120_000);
});
