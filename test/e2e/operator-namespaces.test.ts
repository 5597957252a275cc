import {
  AuthorizationV1Api,
  CoreV1Api,
  EventsV1Api,
  type KubeConfig,
  type V1ResourceAttributes,
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
 * Namespace-list mode (KEYWARD_WATCH_NAMESPACES): the operator runs with the chart's namespace
 * rules as Roles in two namespaces, the Lease rules in its own, and nothing cluster-wide on
 * Secrets, ServiceUsers or ApiKeys. It must serve both namespaces fully and leave a third alone.
 */
const OPERATOR_ACCOUNT = 'keyward-operator';

let kc: KubeConfig;
let home: string;
let watched: string[];
let outside: string;
let pool: pg.Pool;
let operator: OperatorProcess;

beforeAll(async () => {
  kc = testKubeConfig();
  home = await createTestNamespace(kc, 'nslist-home');
  watched = [await createTestNamespace(kc, 'nslist-a'), await createTestNamespace(kc, 'nslist-b')];
  outside = await createTestNamespace(kc, 'nslist-outside');
  // Unprefixed usernames and `*` scopes need the cluster admin's grant, in all three namespaces:
  // the third is left alone because it is not listed, not because it lacks a grant.
  await applyAccessPolicy(kc, home, { namespaces: [...watched, outside], usernames: ['*'], scopes: ['*'] });
  const storeUrl = await testDatabase();
  await migrate(storeUrl);
  pool = poolFor(storeUrl);
  operator = await startOperator({
    kubeconfigPath: await operatorKubeconfig(kc, home, OPERATOR_ACCOUNT, { watchNamespaces: watched }),
    storeUrl,
    namespace: home,
    watchNamespace: watched,
  });
});

afterAll(async () => {
  await operator?.stop();
  await pool?.end();
});

const logs = (): string => operator.process.logTail(30);

async function create(namespace: string, user: string, key: string): Promise<void> {
  const objects = new KeywardObjects(kc, namespace);
  await objects.create('serviceusers', {
    kind: 'ServiceUser',
    metadata: { name: user },
    spec: { scopes: ['*'] },
  });
  await objects.create('apikeys', {
    kind: 'ApiKey',
    metadata: { name: key },
    spec: { serviceUserRef: { name: user } },
  });
}

async function allowed(attributes: V1ResourceAttributes): Promise<boolean> {
  const review = await kc.makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
    body: {
      spec: { user: `system:serviceaccount:${home}:${OPERATOR_ACCOUNT}`, resourceAttributes: attributes },
    },
  });
  return review.status?.allowed === true;
}

describe('namespace-list mode', () => {
  it('issues, reports and revokes keys in each listed namespace, on Roles there and no cluster-wide Secret right', async () => {
    expect(await allowed({ verb: 'list', resource: 'secrets' })).toBe(false);
    expect(await allowed({ verb: 'get', resource: 'secrets', namespace: outside })).toBe(false);
    expect(
      await allowed({ verb: 'list', group: 'keyward.dev', resource: 'apikeys', namespace: outside }),
    ).toBe(false);
    for (const namespace of watched)
      expect(await allowed({ verb: 'create', resource: 'secrets', namespace })).toBe(true);

    // Usernames are unique across the store, so each namespace has its own.
    for (const [i, namespace] of watched.entries()) await create(namespace, `svc-${i}`, 'svc-key');
    for (const [i, namespace] of watched.entries()) {
      const objects = new KeywardObjects(kc, namespace);
      let last: unknown;
      const key = await eventually(
        `ApiKey ${namespace}/svc-key Ready`,
        async () => {
          const k = await objects.get('apikeys', 'svc-key');
          last = k;
          return condition(k, 'Ready')?.reason === 'Issued' ? k : undefined;
        },
        30_000,
        () => `${JSON.stringify((last as { status?: unknown })?.status)}\n${logs()}`,
      );
      const secret = await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ namespace, name: 'svc-key' });
      const token = Buffer.from(secret.data?.token ?? '', 'base64').toString('utf8');
      expect((await tokenVerifies(pool, token))?.keyId).toBe(key.status?.keyId);
      const events = await eventually(`Issued Event in ${namespace}`, async () => {
        const list = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace });
        return list.items.some((e) => e.reason === 'Issued') ? list.items : undefined;
      });
      expect(events.some((e) => e.regarding?.name === 'svc-key')).toBe(true);
      expect(condition(await objects.get('serviceusers', `svc-${i}`), 'Ready')?.status).toBe('True');

      await objects.delete('apikeys', 'svc-key');
      await eventually(
        `ApiKey ${namespace}/svc-key revoked and gone`,
        async () => ((await objects.get('apikeys', 'svc-key').catch(() => undefined)) ? undefined : true),
        30_000,
        logs,
      );
      expect(await tokenVerifies(pool, token)).toBeUndefined();
    }
  });

  it('does not touch a namespace outside the list', async () => {
    await create(outside, 'svc-outside', 'svc-key');
    // A listed namespace's key created after the outside one is issued: the operator is working.
    await create(watched[0]!, 'later', 'later-key');
    const inside = new KeywardObjects(kc, watched[0]!);
    await eventually(
      'the listed namespace’s later key Ready',
      async () =>
        condition(await inside.get('apikeys', 'later-key'), 'Ready')?.reason === 'Issued' ? true : undefined,
      30_000,
      logs,
    );
    await new Promise((r) => setTimeout(r, 2_000));
    const objects = new KeywardObjects(kc, outside);
    for (const plural of ['serviceusers', 'apikeys'] as const) {
      const obj = await objects.get(plural, plural === 'apikeys' ? 'svc-key' : 'svc-outside');
      expect(obj.status, `${plural} status`).toBeUndefined();
      expect(obj.metadata?.finalizers, `${plural} finalizers`).toBeUndefined();
    }
    const core = kc.makeApiClient(CoreV1Api);
    expect((await core.listNamespacedSecret({ namespace: outside })).items).toEqual([]);
    expect((await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: outside })).items).toEqual(
      [],
    );
    expect(logs()).not.toContain(outside);
  });
});
