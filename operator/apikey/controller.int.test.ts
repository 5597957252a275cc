import type { KubeConfig, KubernetesObject, V1Secret } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GROUP, VERSION } from '../../api/common.js';
import { createTestNamespace } from '../../devenv/kube.js';
import { KeywardObjects } from '../../devenv/operator.js';
import { eventually } from '../../devenv/poll.js';
import { testKubeConfig } from '../../test/harness/kube.js';
import { Informer } from '../kube/informer.js';
import { kubeListWatch } from '../kube/listwatch.js';
import { OwnStatusWrites } from '../kube/own-writes.js';
import { WorkQueue } from '../kube/workqueue.js';
import { KubeWriter } from '../objects.js';
import { MANAGED_SECRET_SELECTOR } from '../secret.js';
import { apiKeyController } from './controller.js';

// Against the run's real kube-apiserver (test/harness/global-setup.ts): which watch events bring an
// ApiKey back to its queue once the reconcile has written its status.

/** Long enough for a watch event to arrive on the loaded test machine; absence is what is checked. */
const QUIET_MS = 2_000;

describe('the ApiKey controller', () => {
  let kc: KubeConfig;
  let ns: string;
  let objects: KeywardObjects;
  let stop: () => Promise<void>;
  let shown: () => Promise<string | undefined>;
  /** The controller's own view of an object, to wait until it has seen a write. */
  let seen: (plural: 'apikeys' | 'serviceusers', name: string) => KubernetesObject | undefined;
  const passes: string[] = [];

  beforeEach(async () => {
    kc = testKubeConfig();
    ns = await createTestNamespace(kc, 'apikey-echo');
    objects = new KeywardObjects(kc, ns);
    passes.length = 0;
    const ref = (plural: string) => ({ group: GROUP, version: VERSION, plural, namespace: ns });
    const apiKeys = new Informer<KubernetesObject>(kubeListWatch(kc, ref('apikeys')), { name: 'apikeys' });
    const serviceUsers = new Informer<KubernetesObject>(kubeListWatch(kc, ref('serviceusers')), {
      name: 'serviceusers',
    });
    const secrets = new Informer<V1Secret>(
      kubeListWatch(kc, {
        group: '',
        version: 'v1',
        plural: 'secrets',
        namespace: ns,
        labelSelector: MANAGED_SECRET_SELECTOR,
      }),
      { name: 'secrets' },
    );
    const ownWrites = new OwnStatusWrites();
    const kube = new KubeWriter(kc, { apikeys: ownWrites });
    const queue = new WorkQueue();
    const controller = apiKeyController({
      apiKeys,
      serviceUsers,
      secrets,
      queue,
      ownWrites,
      // A pass that writes status whenever it does not yet show the object's `note` annotation.
      reconciler: {
        reconcile: async (key) => {
          passes.push(key);
          const obj = apiKeys.get(key);
          const note = obj?.metadata?.annotations?.note ?? '';
          const shown = (obj as { status?: { lastRotationRequest?: string } } | undefined)?.status;
          if (obj && shown?.lastRotationRequest !== note)
            await kube.patchStatus('apikeys', obj, { lastRotationRequest: note });
          return undefined;
        },
      },
    });
    seen = (plural, name) => (plural === 'apikeys' ? apiKeys : serviceUsers).get(`${ns}/${name}`);
    for (const i of [apiKeys, serviceUsers, secrets]) i.start();
    await Promise.all([apiKeys.waitForSync(), serviceUsers.waitForSync(), secrets.waitForSync()]);
    const running = queue.run(2, (key) => controller.reconcile(key));
    stop = async () => {
      await queue.shutDown();
      await running;
      await Promise.all([apiKeys.stop(), serviceUsers.stop(), secrets.stop()]);
    };
    shown = async () =>
      ((await objects.get('apikeys', 'k')).status as { lastRotationRequest?: string } | undefined)
        ?.lastRotationRequest;
  });

  afterEach(async () => {
    await stop();
  });

  it('does not run again for the echo of its own status write, and does for anyone else’s change', async () => {
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'k', annotations: { note: 'one' } },
      spec: { serviceUserRef: { name: 'u' } },
    });
    await eventually('status written', async () => ((await shown()) === 'one' ? true : undefined), 15_000);
    await new Promise((r) => setTimeout(r, QUIET_MS));
    // The create, and nothing for the status write it caused.
    expect(passes).toEqual([`${ns}/k`]);

    await objects.patch('apikeys', 'k', { metadata: { annotations: { note: 'two' } } });
    await eventually('status follows', async () => ((await shown()) === 'two' ? true : undefined), 15_000);
    await new Promise((r) => setTimeout(r, QUIET_MS));
    expect(passes).toEqual([`${ns}/k`, `${ns}/k`]);
  });

  it('runs a key waiting for a slot when its user’s count shows one free, though the count never went down', async () => {
    // Another writer than the controller's, so none of these writes counts as its own.
    const writer = new KubeWriter(kc);
    /** Writes status (again on a 409, as the controller's own pass may write too) until the controller has seen it. */
    const writeStatus = async (
      plural: 'apikeys' | 'serviceusers',
      name: string,
      status: Record<string, unknown>,
      shows: (obj: KubernetesObject | undefined) => boolean,
    ): Promise<void> => {
      await eventually(
        `${plural}/${name} status written`,
        async () =>
          (await writer.patchStatus(plural, await objects.get(plural, name), status)) ? true : undefined,
        15_000,
      );
      await eventually(
        `${plural}/${name} status seen`,
        async () => (shows(seen(plural, name)) ? true : undefined),
        15_000,
      );
    };
    const keysShown = (n: number) => (obj: KubernetesObject | undefined) =>
      (obj as { status?: { keys?: number } } | undefined)?.status?.keys === n;
    const userCounts = (keys: number) =>
      writeStatus('serviceusers', 'u', { keys, activeKeys: keys }, keysShown(keys));
    await objects.create('serviceusers', {
      kind: 'ServiceUser',
      metadata: { name: 'u' },
      spec: { maxKeys: 2 },
    });
    await userCounts(0);
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'w' },
      spec: { serviceUserRef: { name: 'u' } },
    });
    // The create's pass writes status too; the controller must have seen that write first.
    const statusOf = (obj: KubernetesObject | undefined) => (obj as { status?: object } | undefined)?.status;
    await eventually(
      'the create run written',
      async () => (statusOf(seen('apikeys', 'w')) ? true : undefined),
      15_000,
    );
    const waiting = {
      type: 'Ready',
      status: 'False',
      reason: 'MaxKeysExceeded',
      message: 'test',
      lastTransitionTime: new Date().toISOString(),
    };
    await writeStatus('apikeys', 'w', { conditions: [waiting] }, (obj) =>
      JSON.stringify(statusOf(obj) ?? {}).includes('MaxKeysExceeded'),
    );
    await new Promise((r) => setTimeout(r, QUIET_MS));

    // Full: nothing to do for the waiting key.
    passes.length = 0;
    await userCounts(2);
    await new Promise((r) => setTimeout(r, QUIET_MS));
    expect(passes).not.toContain(`${ns}/w`);
    // 2 → 0 goes down, which always queued the user's keys. What this is about: a count that
    // rises yet leaves room (the slot freed before any status counted the key that held it).
    await userCounts(0);
    await new Promise((r) => setTimeout(r, QUIET_MS));
    passes.length = 0;
    await userCounts(1);
    await eventually(
      'the waiting key run',
      async () => (passes.includes(`${ns}/w`) ? true : undefined),
      15_000,
    );
  });
});
