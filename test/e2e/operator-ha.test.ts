import type { KubeConfig } from '@kubernetes/client-node';
import { CoordinationV1Api } from '@kubernetes/client-node';
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
import { poolFor } from '../support/store.js';

/** Two replicas: only the Lease holder reconciles; killing it hands over within the lease duration. */
let kc: KubeConfig;
let ns: string;
let objects: KeywardObjects;
let pool: pg.Pool;
const replicas: OperatorProcess[] = [];

beforeAll(async () => {
  kc = testKubeConfig();
  ns = await createTestNamespace(kc, 'operator-ha');
  // What these suites create (unprefixed usernames, shared scopes) needs the cluster admin's grant.
  await applyAccessPolicy(kc, ns, { namespaces: [ns], usernames: ['*'], scopes: ['*'] });
  objects = new KeywardObjects(kc, ns);
  const storeUrl = await testDatabase();
  await migrate(storeUrl);
  pool = poolFor(storeUrl);
  const kubeconfigPath = await operatorKubeconfig(kc, ns);
  for (const identity of ['replica-a', 'replica-b']) {
    replicas.push(
      await startOperator({ kubeconfigPath, storeUrl, namespace: ns, watchNamespace: ns, identity }),
    );
  }
});

afterAll(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await pool?.end();
});

async function leaderGauge(replica: OperatorProcess): Promise<number> {
  const body = await (await fetch(`${replica.metricsUrl}/metrics`)).text();
  return Number(/^keyward_operator_leader (\d+)/m.exec(body)?.[1] ?? 'NaN');
}

async function holder(): Promise<string | undefined> {
  const lease = await kc
    .makeApiClient(CoordinationV1Api)
    .readNamespacedLease({ namespace: ns, name: 'keyward-operator' });
  return lease.spec?.holderIdentity ?? undefined;
}

async function keyReady(name: string): Promise<void> {
  await eventually(`ApiKey ${name} Ready`, async () => {
    const key = await objects.get('apikeys', name);
    return condition(key, 'Ready')?.status === 'True' ? true : undefined;
  });
}

describe('leader election', () => {
  it('only the lease holder runs controllers', async () => {
    const leaderId = await eventually('a lease holder', holder);
    const gauges = await Promise.all(replicas.map(leaderGauge));
    expect(gauges.sort()).toEqual([0, 1]);
    const leader = replicas.find((r) => r.identity === leaderId);
    expect(leader && (await leaderGauge(leader))).toBe(1);

    await objects.create('serviceusers', {
      kind: 'ServiceUser',
      metadata: { name: 'ha' },
      spec: { scopes: ['*'] },
    });
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'ha-1' },
      spec: { serviceUserRef: { name: 'ha' } },
    });
    await keyReady('ha-1');
    const standby = replicas.find((r) => r.identity !== leaderId);
    expect(standby?.process.logTail(1000)).not.toContain('issued key');
    expect(leader?.process.logTail(1000)).toContain('issued key');
  });

  it('a killed leader is replaced within the lease duration (4 s) and work continues', async () => {
    const leaderId = await eventually('a lease holder', holder);
    const leader = replicas.find((r) => r.identity === leaderId);
    const standby = replicas.find((r) => r.identity !== leaderId);
    leader?.process.killGroup('SIGKILL');
    const killedAt = Date.now();
    await eventually(
      'the standby takes the lease',
      async () => ((await holder()) === standby?.identity ? true : undefined),
      15_000,
    );
    const handover = Date.now() - killedAt;
    // Lease 4 s plus one standby poll; generous bound against a loaded CI machine.
    expect(handover).toBeLessThan(10_000);
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'ha-2' },
      spec: { serviceUserRef: { name: 'ha' } },
    });
    await keyReady('ha-2');
    expect(standby && (await leaderGauge(standby))).toBe(1);
  });

  it('a leader stopped with SIGTERM releases the lease so a new replica takes over at once', async () => {
    const current = replicas.find((r) => !r.process.hasExited);
    const kubeconfigPath = await operatorKubeconfig(kc, ns, 'keyward-operator-2');
    const storeUrl = (pool.options as { connectionString: string }).connectionString;
    const next = await startOperator({
      kubeconfigPath,
      storeUrl,
      namespace: ns,
      watchNamespace: ns,
      identity: 'replica-c',
    });
    replicas.push(next);
    await current?.stop();
    const stoppedAt = Date.now();
    await eventually(
      'replica-c takes the lease',
      async () => ((await holder()) === 'replica-c' ? true : undefined),
      15_000,
    );
    // A released lease is taken on the next poll, well before a 4 s lease would expire.
    expect(Date.now() - stoppedAt).toBeLessThan(4_000);
    expect(current?.process.logTail(50)).toContain('stopped');
  });
});
