import { setTimeout as sleep } from 'node:timers/promises';
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
} from '@kubernetes/client-node';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace } from '../../devenv/kube.js';
import {
  applyAccessPolicy,
  KeywardObjects,
  type OperatorProcess,
  operatorKubeconfig,
  startOperator,
} from '../../devenv/operator.js';
import { eventually } from '../../devenv/poll.js';
import { migrate } from '../../store/migrate.js';
import { testDatabase } from '../harness/database.js';
import { testKubeConfig } from '../harness/kube.js';
import { condition } from '../support/status.js';
import { poolFor, tokenVerifies } from '../support/store.js';

/**
 * Consumer restarts (spec.restartTargets) and the previous token in the Secret
 * (spec.secret.previousTokenKey), against a real kube-apiserver and Postgres, the operator running
 * with the chart's RBAC. The control plane has no kubelet and no deployment controller: a restart
 * shows as what `kubectl rollout restart` changes, the pod template's restartedAt annotation and
 * with it the workload's metadata.generation.
 */
const RESTARTED_AT = 'kubectl.kubernetes.io/restartedAt';
const TOKEN_VERSION = 'keyward.dev/token-version';
const DEBOUNCE_SECONDS = 4;
const RESYNC_SECONDS = 10;

let kc: KubeConfig;
let ns: string;
let objects: KeywardObjects;
let core: CoreV1Api;
let apps: AppsV1Api;
let pool: pg.Pool;
let operator: OperatorProcess;
let kubeconfigPath: string;
let storeUrl: string;

async function start(): Promise<OperatorProcess> {
  return startOperator({
    kubeconfigPath,
    storeUrl,
    namespace: ns,
    watchNamespace: ns,
    env: {
      KEYWARD_RESTART_DEBOUNCE_SECONDS: String(DEBOUNCE_SECONDS),
      KEYWARD_RESYNC_SECONDS: String(RESYNC_SECONDS),
    },
  });
}

beforeAll(async () => {
  kc = testKubeConfig();
  ns = await createTestNamespace(kc, 'restarts');
  await applyAccessPolicy(kc, ns, { namespaces: [ns], usernames: ['*'], scopes: ['projects:*'] });
  objects = new KeywardObjects(kc, ns);
  core = kc.makeApiClient(CoreV1Api);
  apps = kc.makeApiClient(AppsV1Api);
  storeUrl = await testDatabase();
  await migrate(storeUrl);
  pool = poolFor(storeUrl);
  kubeconfigPath = await operatorKubeconfig(kc, ns);
  operator = await start();
});

afterAll(async () => {
  await operator?.stop();
  await pool?.end();
});

const logs = (): string => operator.process.logTail(30);

async function deployment(name: string, labels: Record<string, string>, secretName: string): Promise<void> {
  await apps.createNamespacedDeployment({
    namespace: ns,
    body: {
      metadata: { name, labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: name } },
        template: {
          metadata: { labels: { app: name } },
          spec: {
            containers: [
              {
                name: 'app',
                image: 'registry.invalid/app:1',
                env: [{ name: 'API_KEY', valueFrom: { secretKeyRef: { name: secretName, key: 'token' } } }],
              },
            ],
          },
        },
      },
    },
  });
}

interface Restart {
  generation: number;
  restartedAt: string | undefined;
}

async function restartState(name: string): Promise<Restart> {
  const d: V1Deployment = await apps.readNamespacedDeployment({ namespace: ns, name });
  return {
    generation: d.metadata?.generation ?? 0,
    restartedAt: d.spec?.template?.metadata?.annotations?.[RESTARTED_AT],
  };
}

async function user(name: string): Promise<void> {
  await objects.create('serviceusers', {
    kind: 'ServiceUser',
    metadata: { name },
    spec: { scopes: ['projects:*'] },
  });
}

async function apiKey(name: string, userName: string, spec: Record<string, unknown>): Promise<void> {
  await objects.create('apikeys', {
    kind: 'ApiKey',
    metadata: { name },
    spec: { serviceUserRef: { name: userName }, ...spec },
  });
}

type Key = Awaited<ReturnType<KeywardObjects['get']>>;

interface LastRestart {
  tokenVersion: string;
  at?: string;
  targets?: string[];
}
const lastRestart = (key: Key): LastRestart | undefined => key.status?.lastRestart as LastRestart | undefined;

async function settledKey(
  name: string,
  check: (key: Key) => boolean = () => true,
  what = 'settled',
): Promise<Key> {
  return eventually(
    `ApiKey ${name} ${what}`,
    async () => {
      const key = await objects.get('apikeys', name);
      const current = key.status?.observedGeneration === key.metadata?.generation;
      return current && condition(key, 'Ready')?.reason === 'Issued' && check(key) ? key : undefined;
    },
    30_000,
    logs,
  );
}

async function secretOf(
  name: string,
): Promise<{ data: Record<string, string>; version: string | undefined }> {
  const secret = await core.readNamespacedSecret({ namespace: ns, name });
  const data = Object.fromEntries(
    Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
  );
  return { data, version: secret.metadata?.annotations?.[TOKEN_VERSION] };
}

async function rotate(name: string, value: string): Promise<Key> {
  await objects.patch('apikeys', name, { metadata: { annotations: { 'keyward.dev/rotate': value } } });
  return settledKey(name, (k) => k.status?.lastRotationRequest === value, `rotated (${value})`);
}

async function restartEvents(name: string): Promise<string[]> {
  const list = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns });
  return list.items
    .filter((e) => e.regarding?.name === name && e.reason === 'Restarted')
    .map((e) => e.note ?? '');
}

/** Waits until status records a restart answering the Secret's current token. */
async function restartRecorded(name: string, secretName: string): Promise<Key> {
  return eventually(
    `ApiKey ${name} records a restart for its Secret's token`,
    async () => {
      const key = await objects.get('apikeys', name);
      const { version } = await secretOf(secretName);
      const last = lastRestart(key);
      return last?.at && last.tokenVersion === version ? key : undefined;
    },
    30_000,
    logs,
  );
}

/** Long enough for anything the operator would still do: the debounce window and a few reconciles. */
const quiet = (): Promise<void> => sleep((DEBOUNCE_SECONDS + 3) * 1000);

describe('restart targets', () => {
  it('restarts each target exactly once after a rotation, by name and by selector, and never on first issue', async () => {
    await user('web');
    for (const [name, labels] of [
      ['web', { tier: 'front' }],
      ['worker-a', { role: 'worker' }],
      ['worker-b', { role: 'worker' }],
      ['bystander', { role: 'other' }],
    ] as const)
      await deployment(name, labels, 'web-key');
    await apiKey('web-key', 'web', {
      restartTargets: [
        { kind: 'Deployment', name: 'web' },
        { kind: 'Deployment', selector: { matchLabels: { role: 'worker' } } },
      ],
    });
    const issued = await settledKey(
      'web-key',
      (k) => lastRestart(k) !== undefined,
      'records its first token',
    );
    const first = await secretOf('web-key');
    expect(first.version).toMatch(/^[0-9a-f]{16}$/);
    expect(lastRestart(issued)).toEqual({ tokenVersion: first.version });
    expect(condition(issued, 'RestartTargetsReady')).toMatchObject({ status: 'True' });
    const names = ['web', 'worker-a', 'worker-b', 'bystander'];
    await quiet();
    const before = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await restartState(n)])));
    for (const n of names) expect(before[n]?.restartedAt, `${n} restarted on first issue`).toBeUndefined();

    await rotate('web-key', 'r1');
    const restarted = await restartRecorded('web-key', 'web-key');
    const second = await secretOf('web-key');
    expect(second.version).not.toBe(first.version);
    expect(second.data.token).not.toBe(first.data.token);
    expect([...(lastRestart(restarted)?.targets ?? [])].sort()).toEqual([
      'Deployment/web',
      'Deployment/worker-a',
      'Deployment/worker-b',
    ]);
    await quiet();
    for (const n of ['web', 'worker-a', 'worker-b']) {
      const after = await restartState(n);
      expect(after.generation, `${n} rolled once`).toBe((before[n]?.generation ?? 0) + 1);
      // RFC 3339 to the second, as kubectl rollout restart writes it.
      expect(after.restartedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    }
    expect(await restartState('bystander')).toEqual(before.bystander);
    const events = await restartEvents('web-key');
    expect(events).toHaveLength(1);
    for (const n of ['Deployment/web', 'Deployment/worker-a', 'Deployment/worker-b'])
      expect(events[0]).toContain(n);
    expect(events.join()).not.toContain(second.data.token);
  });

  it('restarts nothing on an operator restart, a resync, or a spec change that keeps the token', async () => {
    const names = ['web', 'worker-a', 'worker-b'];
    const before = await Promise.all(names.map(restartState));
    const token = (await secretOf('web-key')).data.token;
    await operator.stop();
    operator = await start();
    await objects.patch('apikeys', 'web-key', {
      spec: { description: 're-applied with another description' },
    });
    await settledKey('web-key', (k) => (k.spec as { description?: string }).description !== undefined);
    // Past a full resync of every object.
    await sleep((RESYNC_SECONDS + 3) * 1000);
    expect(await Promise.all(names.map(restartState))).toEqual(before);
    expect((await secretOf('web-key')).data.token).toBe(token);
    expect(await restartEvents('web-key')).toHaveLength(1);
  });

  it('gives one restart for two rotations inside the debounce window, for the newer token', async () => {
    await user('burst');
    await deployment('burst', { app: 'burst' }, 'burst-key');
    await apiKey('burst-key', 'burst', { restartTargets: [{ kind: 'Deployment', name: 'burst' }] });
    await settledKey('burst-key', (k) => lastRestart(k) !== undefined, 'records its first token');
    const before = await restartState('burst');
    await rotate('burst-key', 'b1');
    await rotate('burst-key', 'b2');
    const key = await restartRecorded('burst-key', 'burst-key');
    await quiet();
    const after = await restartState('burst');
    expect(after.generation).toBe(before.generation + 1);
    expect(lastRestart(key)?.tokenVersion).toBe((await secretOf('burst-key')).version);
    expect(await restartEvents('burst-key')).toHaveLength(1);
  });

  it('names targets that do not exist or are of another kind, and still restarts the others', async () => {
    await user('partial');
    await deployment('partial-web', { app: 'partial-web' }, 'partial-key');
    await apiKey('partial-key', 'partial', {
      restartTargets: [
        { kind: 'Deployment', name: 'partial-missing' },
        // A Deployment of this name exists, a StatefulSet does not.
        { kind: 'StatefulSet', name: 'partial-web' },
        { kind: 'DaemonSet', selector: { matchLabels: { app: 'agent' } } },
        { kind: 'Deployment', name: 'partial-web' },
      ],
    });
    const key = await settledKey(
      'partial-key',
      (k) => condition(k, 'RestartTargetsReady')?.status === 'False',
      'reports missing targets',
    );
    const ready = condition(key, 'RestartTargetsReady');
    expect(ready?.reason).toBe('RestartTargetNotFound');
    expect(ready?.message).toContain('Deployment partial-missing not found');
    expect(ready?.message).toContain('StatefulSet partial-web not found');
    expect(ready?.message).toContain('no DaemonSet matches selector app=agent');
    // A missing target does not make the key unusable.
    expect(condition(key, 'Ready')?.status).toBe('True');

    const before = await restartState('partial-web');
    await rotate('partial-key', 'p1');
    const restarted = await restartRecorded('partial-key', 'partial-key');
    expect(lastRestart(restarted)?.targets).toEqual(['Deployment/partial-web']);
    expect((await restartState('partial-web')).generation).toBe(before.generation + 1);
    const events = await restartEvents('partial-key');
    expect(events).toHaveLength(1);
    expect(events[0]).toContain('Deployment partial-missing not found');
  });

  it('restarts after a SecretLost re-issue; the repaired Secret holds no previous token', async () => {
    await user('lost');
    await deployment('lost-web', { app: 'lost-web' }, 'lost-key');
    await apiKey('lost-key', 'lost', {
      secret: { previousTokenKey: 'previous' },
      restartTargets: [{ kind: 'Deployment', name: 'lost-web' }],
    });
    await settledKey('lost-key', (k) => lastRestart(k) !== undefined, 'records its first token');
    await rotate('lost-key', 'l1');
    const rotated = await secretOf('lost-key');
    expect(Object.keys(rotated.data).sort()).toEqual(['previous', 'token']);
    await restartRecorded('lost-key', 'lost-key');
    const before = await restartState('lost-web');

    await core.deleteNamespacedSecret({ namespace: ns, name: 'lost-key' });
    const repaired = await eventually(
      'the Secret is back with a new token (SecretLost)',
      async () => {
        const s = await secretOf('lost-key').catch(() => undefined);
        return s && s.version !== rotated.version ? s : undefined;
      },
      30_000,
      logs,
    );
    expect(repaired.data.token).not.toBe(rotated.data.token);
    expect(Object.keys(repaired.data)).toEqual(['token']);
    await restartRecorded('lost-key', 'lost-key');
    await quiet();
    expect((await restartState('lost-web')).generation).toBe(before.generation + 1);
  });
});

describe('restarts across crashes', () => {
  it('restarts once for a token written just before the operator was killed', async () => {
    await user('crash');
    await deployment('crash-web', { app: 'crash-web' }, 'crash-key');
    await apiKey('crash-key', 'crash', { restartTargets: [{ kind: 'Deployment', name: 'crash-web' }] });
    await settledKey('crash-key', (k) => lastRestart(k) !== undefined, 'records its first token');
    const first = await secretOf('crash-key');
    const before = await restartState('crash-web');
    await objects.patch('apikeys', 'crash-key', {
      metadata: { annotations: { 'keyward.dev/rotate': 'c1' } },
    });
    // Killed inside the debounce window: the restart is pending and only the Secret knows it.
    await eventually('the rotated token in the Secret', async () =>
      (await secretOf('crash-key')).version !== first.version ? true : undefined,
    );
    operator.process.killGroup('SIGKILL');
    await operator.process.exited;
    expect(await restartState('crash-web')).toEqual(before);
    operator = await start();
    await restartRecorded('crash-key', 'crash-key');
    await quiet();
    expect((await restartState('crash-web')).generation).toBe(before.generation + 1);
    expect(await restartEvents('crash-key')).toHaveLength(1);
  });

  it('does not roll a workload again when a restart is retried after its record was lost', async () => {
    const done = await restartRecorded('crash-key', 'crash-key');
    const before = await restartState('crash-web');
    const previous = lastRestart(done);
    // As if the operator died after patching the workloads and before writing status: the record
    // goes back to the token before.
    await kc.makeApiClient(CustomObjectsApi).patchNamespacedCustomObjectStatus(
      {
        group: 'keyward.dev',
        version: 'v1alpha1',
        namespace: ns,
        plural: 'apikeys',
        name: 'crash-key',
        body: { status: { lastRestart: { tokenVersion: 'lost-record' } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const again = await restartRecorded('crash-key', 'crash-key');
    expect(lastRestart(again)?.tokenVersion).toBe(previous?.tokenVersion);
    await quiet();
    expect(await restartState('crash-web')).toEqual(before);
    expect(await restartEvents('crash-key')).toHaveLength(1);
  });
});

describe('previous token in the Secret', () => {
  it('holds the previous token under previousTokenKey during the grace period and drops it after', async () => {
    await user('overlap');
    await apiKey('overlap-key', 'overlap', {
      rotation: { gracePeriod: '5s' },
      secret: { tokenKey: 'API_KEY', previousTokenKey: 'API_KEY_PREVIOUS' },
    });
    const issued = await settledKey('overlap-key');
    // 5 s is shorter than the kubelet takes to refresh a mounted Secret.
    expect(condition(issued, 'GracePeriodSufficient')).toMatchObject({
      status: 'False',
      reason: 'GracePeriodTooShort',
    });
    const first = await secretOf('overlap-key');
    expect(Object.keys(first.data)).toEqual(['API_KEY']);
    const oldToken = first.data.API_KEY ?? '';

    await rotate('overlap-key', 'o1');
    const during = await secretOf('overlap-key');
    expect(during.data.API_KEY_PREVIOUS).toBe(oldToken);
    expect(during.data.API_KEY).not.toBe(oldToken);
    expect(await tokenVerifies(pool, during.data.API_KEY ?? '')).toBeDefined();
    expect(await tokenVerifies(pool, oldToken)).toBeDefined();

    const after = await eventually(
      'the previous token leaves the Secret at grace end',
      async () => {
        const s = await secretOf('overlap-key');
        return s.data.API_KEY_PREVIOUS === undefined ? s : undefined;
      },
      20_000,
      logs,
    );
    expect(after.data.API_KEY).toBe(during.data.API_KEY);
    expect(after.version).toBe(during.version);
    expect(await tokenVerifies(pool, oldToken)).toBeUndefined();
  });
});
