import { CoreV1Api } from '@kubernetes/client-node';
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
import type { RunningWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { testKubeConfig } from '../harness/kube.js';
import { condition } from '../support/status.js';
import { runReadyWebhook, testConfig } from '../support/webhook.js';

/**
 * Rate limits and quotas end to end: the operator (a child process, with the chart's RBAC) writes
 * what the manifests ask for, a real webhook enforces it, and status.quota shows the uses left.
 */
let ns: string;
let objects: KeywardObjects;
let core: CoreV1Api;
let operator: OperatorProcess;
let webhook: RunningWebhook;

beforeAll(async () => {
  const kc = testKubeConfig();
  ns = await createTestNamespace(kc, 'ratelimits');
  await applyAccessPolicy(kc, ns, { namespaces: [ns], usernames: ['*'], scopes: ['projects:*'] });
  objects = new KeywardObjects(kc, ns);
  core = kc.makeApiClient(CoreV1Api);
  const storeUrl = await testDatabase();
  await migrate(storeUrl);
  operator = await startOperator({
    kubeconfigPath: await operatorKubeconfig(kc, ns),
    storeUrl,
    namespace: ns,
    watchNamespace: ns,
    // status.quota follows the store at least this often.
    env: { KEYWARD_LAST_USED_REFRESH_SECONDS: '1' },
  });
  webhook = await runReadyWebhook(testConfig(storeUrl));
});

afterAll(async () => {
  await webhook?.close();
  await operator?.stop();
});

const logs = (): string => operator.process.logTail(30);

async function readyToken(name: string): Promise<string> {
  await eventually(
    `ApiKey ${name} Ready`,
    async () => condition(await objects.get('apikeys', name), 'Ready')?.status === 'True',
    30_000,
    logs,
  );
  const secret = await core.readNamespacedSecret({ namespace: ns, name });
  return Buffer.from(secret.data?.token ?? '', 'base64').toString('utf8');
}

async function verify(token: string): Promise<number> {
  const res = await fetch(`${webhook.url}/verify`, { headers: { authorization: `Bearer ${token}` } });
  await res.arrayBuffer();
  return res.status;
}

async function quotaStatus(name: string): Promise<unknown> {
  return (await objects.get('apikeys', name)).status?.quota;
}

describe('rate limits and quotas written by the operator', () => {
  it('a user limit is shared by its keys, a quota counts down in status, and a raised limit applies', async () => {
    await objects.create('serviceusers', {
      kind: 'ServiceUser',
      metadata: { name: 'partner' },
      spec: { scopes: ['projects:*'], rateLimits: [{ name: 'shared', limit: 3, period: '1h' }] },
    });
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'metered' },
      spec: { serviceUserRef: { name: 'partner' }, quota: { limit: 5 } },
    });
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'second' },
      spec: { serviceUserRef: { name: 'partner' } },
    });
    const metered = await readyToken('metered');
    const second = await readyToken('second');
    await eventually('status.quota', async () => (await quotaStatus('metered')) !== undefined, 10_000, logs);
    expect(await quotaStatus('metered')).toEqual({ limit: 5, remaining: 5 });

    // The user's 3 per hour cover both keys together.
    expect([await verify(metered), await verify(metered), await verify(second)]).toEqual([200, 200, 200]);
    expect([await verify(metered), await verify(second)]).toEqual([429, 429]);
    await eventually(
      'the quota counts down',
      async () => ((await quotaStatus('metered')) as { remaining?: number })?.remaining === 3,
      20_000,
      logs,
    );

    await objects.patch('serviceusers', 'partner', {
      spec: { rateLimits: [{ name: 'shared', limit: 100, period: '1h' }] },
    });
    await eventually('the raised limit applies', async () => (await verify(metered)) === 200, 20_000, logs);
    // Quota 5: 2 used before, 1 just now; 2 more, then the quota refuses.
    expect([await verify(metered), await verify(metered), await verify(metered)]).toEqual([200, 200, 429]);

    await objects.patch('apikeys', 'metered', { spec: { quota: null } });
    await eventually(
      'the quota is gone',
      async () => (await quotaStatus('metered')) === undefined,
      20_000,
      logs,
    );
    expect(await verify(metered)).toBe(200);
  });
});
