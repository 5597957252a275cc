import { EventsV1Api, type KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../store/migrate.js';
import { createTestNamespace, testKubeConfig } from '../harness/kube.js';
import {
  applyAccessPolicy,
  condition,
  eventually,
  KeywardObjects,
  type OperatorProcess,
  operatorKubeconfig,
  startOperator,
} from '../harness/operator.js';
import { createDatabase, startPostgres, type TestPostgres } from '../harness/postgres.js';

/**
 * The store goes away under a running operator: healthy keys keep Ready, work that needs the store
 * reports StoreUnavailable and retries with backoff, and everything converges once Postgres is back.
 * A private Postgres, so stopping it does not disturb other suites.
 */
let kc: KubeConfig;
let ns: string;
let objects: KeywardObjects;
let postgres: TestPostgres;
let operator: OperatorProcess;

beforeAll(async () => {
  kc = testKubeConfig();
  ns = await createTestNamespace(kc, 'store-outage');
  // What these suites create (unprefixed usernames, shared scopes) needs the cluster admin's grant.
  await applyAccessPolicy(kc, ns, { namespaces: [ns], usernames: ['*'], scopes: ['*'] });
  objects = new KeywardObjects(kc, ns);
  postgres = await startPostgres();
  const storeUrl = await createDatabase(postgres.adminUrl, 'keyward');
  await migrate(storeUrl);
  const kubeconfigPath = await operatorKubeconfig(kc, ns);
  operator = await startOperator({
    kubeconfigPath,
    storeUrl,
    namespace: ns,
    watchNamespace: ns,
  });
});

afterAll(async () => {
  await operator?.stop();
  await postgres?.stop();
});

describe('store outage', () => {
  it('keeps healthy keys Ready, reports StoreUnavailable, and converges after Postgres returns', async () => {
    await objects.create('serviceusers', {
      kind: 'ServiceUser',
      metadata: { name: 'outage' },
      spec: { scopes: ['*'] },
    });
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'healthy' },
      spec: { serviceUserRef: { name: 'outage' } },
    });
    await eventually('healthy key Ready', async () =>
      condition(await objects.get('apikeys', 'healthy'), 'Ready')?.status === 'True' ? true : undefined,
    );

    await postgres.pause();
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'during' },
      spec: { serviceUserRef: { name: 'outage' } },
    });
    const during = await eventually(
      'StoreUnavailable on the new key',
      async () => {
        const key = await objects.get('apikeys', 'during');
        return condition(key, 'StoreAvailable')?.status === 'False' ? key : undefined;
      },
      30_000,
      () => operator.process.logTail(20),
    );
    expect(condition(during, 'StoreAvailable')?.reason).toBe('StoreUnavailable');
    const events = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns });
    expect(events.items.some((e) => e.regarding?.name === 'during' && e.reason === 'StoreUnavailable')).toBe(
      true,
    );
    const healthy = await objects.get('apikeys', 'healthy');
    expect(condition(healthy, 'Ready')?.status).toBe('True');

    await postgres.resume();
    const converged = await eventually(
      'the new key issued after the store returns',
      async () => {
        const key = await objects.get('apikeys', 'during');
        return condition(key, 'Ready')?.status === 'True' ? key : undefined;
      },
      60_000,
      () => operator.process.logTail(20),
    );
    expect(condition(converged, 'StoreAvailable')).toBeUndefined();
    expect(converged.status?.keyId).toMatch(/^key_/);
  });
});
