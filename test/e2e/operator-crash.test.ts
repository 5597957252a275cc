import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenHash } from '../../credentials/token.js';
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
 * Crash safety (DESIGN.md §6): the operator is SIGKILLed at arbitrary points during bursts of
 * issue, rotate and delete, then restarted. At every kill: each Ready ApiKey's Secret holds a
 * token the store accepts. At the end: each live key's current secret is the one in its Secret.
 */
let kc: KubeConfig;
let ns: string;
let objects: KeywardObjects;
let core: CoreV1Api;
let pool: pg.Pool;
let storeUrl: string;
let kubeconfigPath: string;
let operator: OperatorProcess | undefined;

beforeAll(async () => {
  kc = testKubeConfig();
  ns = await createTestNamespace(kc, 'crash');
  // What these suites create (unprefixed usernames, shared scopes) needs the cluster admin's grant.
  await applyAccessPolicy(kc, ns, { namespaces: [ns], usernames: ['*'], scopes: ['*'] });
  objects = new KeywardObjects(kc, ns);
  core = kc.makeApiClient(CoreV1Api);
  storeUrl = await testDatabase();
  await migrate(storeUrl);
  pool = poolFor(storeUrl);
  kubeconfigPath = await operatorKubeconfig(kc, ns);
});

afterAll(async () => {
  await operator?.stop();
  await pool?.end();
});

async function start(): Promise<OperatorProcess> {
  return await startOperator({
    kubeconfigPath,
    storeUrl,
    namespace: ns,
    watchNamespace: ns,
    env: { KEYWARD_LEASE_DURATION_SECONDS: '2' },
  });
}

interface KeyView {
  name: string;
  ready: boolean;
  deleting: boolean;
  uid: string;
  token: string | undefined;
}

async function keys(): Promise<KeyView[]> {
  const list = (await kc.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
    group: 'keyward.dev',
    version: 'v1alpha1',
    namespace: ns,
    plural: 'apikeys',
  })) as {
    items: Array<{
      metadata: { name: string; uid: string; deletionTimestamp?: string };
      status?: Record<string, unknown>;
    }>;
  };
  const secrets = await core.listNamespacedSecret({
    namespace: ns,
    labelSelector: 'app.kubernetes.io/managed-by=keyward',
  });
  const tokenByOwner = new Map(
    secrets.items.map((s) => [
      s.metadata?.ownerReferences?.[0]?.uid ?? '',
      s.data?.token ? Buffer.from(s.data.token, 'base64').toString('utf8') : undefined,
    ]),
  );
  return list.items.map((k) => ({
    name: k.metadata.name,
    uid: k.metadata.uid,
    ready: condition(k, 'Ready')?.status === 'True',
    deleting: Boolean(k.metadata.deletionTimestamp),
    token: tokenByOwner.get(k.metadata.uid),
  }));
}

/** Invariant at any instant: a key reported Ready has a Secret whose token the store accepts. */
async function readyKeysVerify(): Promise<string[]> {
  const broken: string[] = [];
  for (const key of await keys()) {
    if (!key.ready || key.deleting) continue;
    if (!key.token || !(await tokenVerifies(pool, key.token))) broken.push(key.name);
  }
  return broken;
}

describe('crash safety', () => {
  it('no SIGKILL point leaves a Ready key whose Secret token the store rejects, and all converge', async () => {
    await objects.create('serviceusers', {
      kind: 'ServiceUser',
      metadata: { name: 'crash' },
      spec: { scopes: ['*'] },
    });
    // Reproducible "random" kill points and burst shapes.
    const plan = fc.sample(
      fc.record({
        killAfterMs: fc.integer({ min: 20, max: 1_200 }),
        creates: fc.integer({ min: 2, max: 6 }),
        rotations: fc.integer({ min: 1, max: 4 }),
        deletes: fc.integer({ min: 0, max: 2 }),
      }),
      { numRuns: 12, seed: 42 },
    );
    const custom = kc.makeApiClient(CustomObjectsApi);
    let next = 0;
    const deleted: string[] = [];
    const violations: string[] = [];
    for (const [round, step] of plan.entries()) {
      operator = await start();
      const existing = (await keys()).filter((k) => !k.deleting);
      const burst: Array<Promise<unknown>> = [];
      for (let i = 0; i < step.creates; i++) {
        burst.push(
          objects.create('apikeys', {
            kind: 'ApiKey',
            metadata: { name: `k${next++}` },
            spec: { serviceUserRef: { name: 'crash' } },
          }),
        );
      }
      for (const key of existing.slice(0, step.rotations)) {
        burst.push(
          custom.patchNamespacedCustomObject(
            {
              group: 'keyward.dev',
              version: 'v1alpha1',
              namespace: ns,
              plural: 'apikeys',
              name: key.name,
              body: { metadata: { annotations: { 'keyward.dev/rotate': `round-${round}` } } },
            },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          ),
        );
      }
      for (const key of existing.slice(step.rotations, step.rotations + step.deletes)) {
        burst.push(objects.delete('apikeys', key.name));
        deleted.push(key.uid);
      }
      await Promise.all(burst);
      await new Promise((r) => setTimeout(r, step.killAfterMs));
      operator.process.killGroup('SIGKILL');
      await operator.process.exited;
      const broken = await readyKeysVerify();
      if (broken.length)
        violations.push(`round ${round} (kill after ${step.killAfterMs} ms): ${broken.join(', ')}`);
    }
    expect(violations).toEqual([]);

    operator = await start();
    const converged = await eventually(
      'every ApiKey Ready after the last restart',
      async () => {
        const all = await keys();
        return all.every((k) => k.ready && k.token) && all.length > 0 ? all : undefined;
      },
      60_000,
      () => operator?.process.logTail(20) ?? '',
    );
    expect(await readyKeysVerify()).toEqual([]);
    // No orphan current hash: each live key's current secret is the token its Secret holds.
    const current = await pool.query<{ uid: string; hash: Buffer }>(
      `SELECT k.uid, s.hash FROM api_key_secrets s JOIN api_keys k ON k.id = s.api_key_id
        WHERE s.not_after IS NULL AND k.revoked_at IS NULL`,
    );
    const byUid = new Map(converged.map((k) => [k.uid, k]));
    expect(current.rows.length).toBe(converged.length);
    for (const row of current.rows) {
      const key = byUid.get(row.uid);
      expect(key, `store key ${row.uid} has no ApiKey`).toBeDefined();
      expect(row.hash.equals(tokenHash(key?.token ?? ''))).toBe(true);
    }
    // Deleted ApiKeys are gone from the API server, and revoked (not forgotten) in the store if
    // they had been issued before their deletion.
    expect(converged.filter((k) => deleted.includes(k.uid))).toEqual([]);
    const rows = await pool.query<{ uid: string; revoked_at: Date | null }>(
      'SELECT uid, revoked_at FROM api_keys WHERE uid = ANY($1)',
      [deleted],
    );
    expect(rows.rows.filter((r) => r.revoked_at === null)).toEqual([]);
    expect(rows.rows.length).toBeGreaterThan(0);
  });
});
