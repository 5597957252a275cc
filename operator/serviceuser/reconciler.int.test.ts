import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../../credentials/token.js';
import { createTestNamespace } from '../../devenv/kube.js';
import { applyAccessPolicy, KeywardObjects } from '../../devenv/operator.js';
import { eventually } from '../../devenv/poll.js';
import { ActAsStore } from '../../store/act-as.js';
import { migrate } from '../../store/migrate.js';
import { OperatorStore } from '../../store/operator-store.js';
import { RateLimitDefinitions } from '../../store/rate-limits.js';
import { testDatabase } from '../../test/harness/database.js';
import { testKubeConfig } from '../../test/harness/kube.js';
import { FakeClock } from '../../test/support/fake-clock.js';
import { tokenVerifies } from '../../test/support/store.js';
import { AccessPolicyWatch } from '../accesspolicy/watch.js';
import { apiKeyController, serviceUserOf } from '../apikey/controller.js';
import { EventRecorder } from '../kube/events.js';
import { Informer } from '../kube/informer.js';
import { kubeListWatch } from '../kube/listwatch.js';
import { WorkQueue } from '../kube/workqueue.js';
import { KubeWriter } from '../objects.js';
import { serviceUserController } from './controller.js';
import { ServiceUserReconciler } from './reconciler.js';

// The ServiceUser controller in-process, against the run's real kube-apiserver and Postgres, with
// an injected clock: what a user observes in status and in whether the user's keys verify. The
// ApiKey controller runs with its real watches but a recording reconcile (its reconciler is tested
// elsewhere): these tests check which keys reach it, and when.

const logger = pino({ level: 'silent' });
let kc: KubeConfig;
let ns: string;
let objects: KeywardObjects;
let pool: pg.Pool;
let store: OperatorStore;
const clock = new FakeClock(Date.UTC(2026, 0, 1));
const stops: Array<() => Promise<void>> = [];
/** ApiKey reconciles, each with the store id its ServiceUser had then (null: not in the store). */
const keyReconciles: Array<{ key: string; userId: string | null }> = [];

beforeAll(async () => {
  kc = testKubeConfig();
  ns = await createTestNamespace(kc, 'su-reconciler');
  await applyAccessPolicy(kc, ns, { namespaces: [ns], usernames: ['*'], scopes: ['projects:*'] });
  objects = new KeywardObjects(kc, ns);
  const url = await testDatabase();
  await migrate(url);
  pool = new pg.Pool({ connectionString: url, max: 4 });
  store = new OperatorStore(pool, { actor: 'test-operator' });

  const informer = (plural: string) =>
    new Informer<KubernetesObject>(
      kubeListWatch(kc, { group: 'keyward.dev', version: 'v1alpha1', plural, namespace: ns }),
      {
        name: plural,
        logger,
      },
    );
  const serviceUsers = informer('serviceusers');
  const apiKeys = informer('apikeys');
  const secrets = new Informer(
    kubeListWatch(kc, { group: '', version: 'v1', plural: 'secrets', namespace: ns }),
    {
      name: 'secrets',
      logger,
    },
  );
  const events = new EventRecorder(kc, { controller: 'keyward.dev/operator', instance: 'test', logger });
  const policies = new AccessPolicyWatch(kc, {
    watchNamespaces: [ns],
    logger,
    informerOptions: (name) => ({ name, logger }),
    onChange: (namespaces) => users.enqueueNamespaces(namespaces),
  });
  const keyQueue = new WorkQueue({ logger });
  const recordKey = async (key: string): Promise<undefined> => {
    const apiKey = apiKeys.get(key);
    const user = apiKey && serviceUsers.get(`${ns}/${serviceUserOf(apiKey)}`);
    const stored = user ? await store.getServiceUser(user.metadata?.uid ?? '') : null;
    keyReconciles.push({ key, userId: stored && !stored.deletedAt ? stored.id : null });
    return undefined;
  };
  const keys = apiKeyController({
    apiKeys,
    serviceUsers,
    secrets,
    queue: keyQueue,
    reconciler: { reconcile: recordKey },
  });
  const users = serviceUserController({
    serviceUsers,
    apiKeys,
    queue: new WorkQueue({ logger, backoff: { baseMs: 50, capMs: 1_000 } }),
    reconciler: new ServiceUserReconciler({
      serviceUsers,
      kube: new KubeWriter(kc),
      store,
      limits: new RateLimitDefinitions(pool),
      actAs: new ActAsStore(pool, { actor: 'test-operator' }),
      events,
      logger,
      grants: (namespace) => policies.grants(namespace),
      enqueueKeysOf: (namespace, name) => keys.enqueueKeysOf(namespace, name),
      now: () => new Date(clock.now()),
    }),
  });
  for (const i of [serviceUsers, apiKeys, secrets]) i.start();
  policies.start();
  await Promise.all([
    serviceUsers.waitForSync(),
    apiKeys.waitForSync(),
    secrets.waitForSync(),
    policies.waitForSync(),
  ]);
  const running = Promise.all([
    users.queue.run(2, (key) => users.reconcile(key)),
    keyQueue.run(1, recordKey),
  ]);
  stops.push(async () => {
    await users.queue.shutDown();
    await keyQueue.shutDown();
    await running;
    await Promise.all([serviceUsers.stop(), apiKeys.stop(), secrets.stop(), policies.stop()]);
    await events.flush();
  });
});

afterAll(async () => {
  for (const stop of stops) await stop();
  await pool?.end();
});

type Obj = Awaited<ReturnType<KeywardObjects['get']>>;
type Cond = { type: string; status: string; reason: string; lastTransitionTime: string };

function cond(obj: Obj | undefined, type: string): Cond | undefined {
  return (obj?.status?.conditions as Cond[] | undefined)?.find((c) => c.type === type);
}

/** Waits until the ServiceUser's Ready condition has `reason`; returns the object. */
async function readyReason(name: string, reason: string): Promise<Obj> {
  return await eventually(`${name} Ready reason ${reason}`, async () => {
    const obj = await objects.get('serviceusers', name).catch(() => undefined);
    return cond(obj, 'Ready')?.reason === reason ? obj : undefined;
  });
}

async function createUser(name: string, spec: object): Promise<void> {
  await objects.create('serviceusers', { kind: 'ServiceUser', metadata: { name }, spec });
}

/** An ApiKey object and its key in the store, issued as the ApiKey reconciler would. */
async function keyFor(userName: string, keyName: string): Promise<{ uid: string; token: string }> {
  const created = await objects.create('apikeys', {
    kind: 'ApiKey',
    metadata: { name: keyName },
    spec: { serviceUserRef: { name: userName } },
  });
  const t = generateToken();
  const uid = created.metadata?.uid ?? '';
  const result = await store.issueKey({
    ref: { namespace: ns, name: keyName, uid },
    serviceUserName: userName,
    hash: t.hash,
    displayPrefix: t.displayPrefix,
  });
  expect(result.kind).toBe('ok');
  return { uid, token: t.token };
}

async function gone(plural: 'serviceusers' | 'apikeys', name: string): Promise<void> {
  await eventually(`${name} to be gone`, async () =>
    (await objects.get(plural, name).then(
      () => false,
      () => true,
    ))
      ? true
      : undefined,
  );
}

describe('ServiceUser reconciler', () => {
  it('stores a user, suspends it through its spec, and moves transition times only on flips', async () => {
    await createUser('alice', { username: `${ns}_alice`, scopes: ['projects:a'] });
    const ready = await readyReason('alice', 'Stored');
    expect(cond(ready, 'Ready')?.lastTransitionTime).toBe(new Date(clock.now()).toISOString());
    const key = await keyFor('alice', 'alice-key');
    expect(await tokenVerifies(pool, key.token)).toBeDefined();

    const readySince = cond(ready, 'Ready')?.lastTransitionTime;
    await clock.advance(3_600_000);
    await objects.patch('serviceusers', 'alice', { spec: { suspended: true } });
    const suspended = await eventually('alice Suspended=True', async () => {
      const obj = await objects.get('serviceusers', 'alice');
      return cond(obj, 'Suspended')?.status === 'True' ? obj : undefined;
    });
    expect(cond(suspended, 'Ready')?.lastTransitionTime).toBe(readySince);
    expect(cond(suspended, 'Suspended')?.lastTransitionTime).toBe(new Date(clock.now()).toISOString());
    expect(await tokenVerifies(pool, key.token)).toBeUndefined();
    await objects.patch('serviceusers', 'alice', { spec: { suspended: false } });
    await eventually('alice to verify again', async () => tokenVerifies(pool, key.token));
  });

  it('a stored user beyond its grants verifies no key, and suspension still applies', async () => {
    await createUser('bob', { username: `${ns}_bob` });
    await readyReason('bob', 'Stored');
    const key = await keyFor('bob', 'bob-key');
    await objects.patch('serviceusers', 'bob', { spec: { groups: ['not-granted'], suspended: true } });
    const blocked = await readyReason('bob', 'NotPermitted');
    expect(cond(blocked, 'Stalled')).toMatchObject({ status: 'True', reason: 'NotPermitted' });
    expect(await tokenVerifies(pool, key.token)).toBeUndefined();
    const stored = await store.getServiceUser(blocked.metadata?.uid ?? '');
    expect(stored).toMatchObject({ notPermitted: true, suspended: true, groups: [] });
  });

  it('settles a username conflict once the holder is deleted', async () => {
    const username = `${ns}_shared`;
    await createUser('holder', { username });
    await readyReason('holder', 'Stored');
    await createUser('claimant', { username });
    const conflict = await readyReason('claimant', 'UsernameConflict');
    expect(cond(conflict, 'Stalled')).toMatchObject({ status: 'False', reason: 'Progressing' });
    await objects.delete('serviceusers', 'holder');
    await readyReason('claimant', 'Stored');
  });

  it('deleted and applied again (GitOps prune + re-sync): the user works, its keys are handed to the ApiKey controller and can be issued again', async () => {
    const spec = { username: `${ns}_ci`, scopes: ['projects:ci'] };
    await createUser('ci', spec);
    const first = await readyReason('ci', 'Stored');
    const key = await keyFor('ci', 'ci-key');
    await objects.delete('serviceusers', 'ci');
    await gone('serviceusers', 'ci');
    expect(await tokenVerifies(pool, key.token)).toBeUndefined();
    expect(await store.getKey(key.uid)).toMatchObject({ revokedReason: 'user_deleted' });

    await createUser('ci', spec);
    const again = await readyReason('ci', 'Stored');
    expect(again.metadata?.uid).not.toBe(first.metadata?.uid);
    expect(again.status).toMatchObject({ username: `${ns}_ci` });
    const userId = again.status?.userId;
    expect(userId).not.toBe(first.status?.userId);
    // The key is reconciled again once the new user is in the store: then it can be issued anew.
    await eventually('ci-key reconciled with the re-created user stored', async () =>
      keyReconciles.some((r) => r.key === `${ns}/ci-key` && r.userId === userId) ? true : undefined,
    );

    // What the ApiKey controller then does for the handed key: a fresh token, and the key lives.
    const fresh = generateToken();
    const reissued = await store.issueKey({
      ref: { namespace: ns, name: 'ci-key', uid: key.uid },
      serviceUserName: 'ci',
      hash: fresh.hash,
      displayPrefix: fresh.displayPrefix,
    });
    expect(reissued).toMatchObject({ kind: 'ok', reissued: true });
    expect(await tokenVerifies(pool, fresh.token)).toMatchObject({ username: `${ns}_ci` });
    expect(await tokenVerifies(pool, key.token)).toBeUndefined();
    // The ApiKey's status write (here: a label) brings the user back for its counts.
    await objects.patch('apikeys', 'ci-key', { metadata: { labels: { reissued: 'true' } } });
    await eventually('the re-created user to count the key', async () => {
      const obj = await objects.get('serviceusers', 'ci');
      return obj.status?.keys === 1 && obj.status?.activeKeys === 1 ? true : undefined;
    });
  });
});
