import {
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
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
import { recordLeakReports } from '../../store/leak-reports.js';
import { migrate } from '../../store/migrate.js';
import { UsageBatcher } from '../../store/usage.js';
import { testDatabase } from '../harness/database.js';
import { testKubeConfig } from '../harness/kube.js';
import {
  argoHealth,
  argoHealthAll,
  condition,
  kstatus,
  kstatusAll,
  watchVersions,
} from '../support/status.js';
import { poolFor, tokenVerifies } from '../support/store.js';

/**
 * The operator as users meet it: a real kube-apiserver, a real Postgres, `keyward operator` as a
 * child process running with the chart's RBAC. Every assertion is something a user can observe:
 * object status, Secrets, Events, and whether a token verifies against the store.
 */
let kc: KubeConfig;
let ns: string;
let objects: KeywardObjects;
let core: CoreV1Api;
let pool: pg.Pool;
let operator: OperatorProcess;
let storeUrl: string;

beforeAll(async () => {
  kc = testKubeConfig();
  ns = await createTestNamespace(kc, 'operator');
  // What these suites create (unprefixed usernames, shared scopes) needs the cluster admin's grant.
  await applyAccessPolicy(kc, ns, {
    namespaces: [ns],
    usernames: ['*'],
    scopes: ['projects:*'],
    groups: ['deployers'],
  });
  objects = new KeywardObjects(kc, ns);
  core = kc.makeApiClient(CoreV1Api);
  storeUrl = await testDatabase();
  await migrate(storeUrl);
  pool = poolFor(storeUrl);
  const kubeconfigPath = await operatorKubeconfig(kc, ns);
  operator = await startOperator({
    kubeconfigPath,
    storeUrl,
    namespace: ns,
    watchNamespace: ns,
    // A short bound, so the lastUsedAt test need not wait the default minute.
    env: { KEYWARD_LAST_USED_REFRESH_SECONDS: '2' },
  });
});

afterAll(async () => {
  await operator?.stop();
  await pool?.end();
});

const logs = (): string => operator.process.logTail(30);

async function tokenOf(secretName: string, key = 'token'): Promise<string | undefined> {
  try {
    const secret = await core.readNamespacedSecret({ namespace: ns, name: secretName });
    const data = secret.data?.[key];
    return data ? Buffer.from(data, 'base64').toString('utf8') : undefined;
  } catch {
    return undefined;
  }
}

async function readyKey(
  name: string,
  reason = 'Issued',
): Promise<Awaited<ReturnType<KeywardObjects['get']>>> {
  return eventually(
    `ApiKey ${name} Ready (${reason})`,
    async () => {
      const key = await objects.get('apikeys', name);
      const ready = condition(key, 'Ready');
      const current = key.status?.observedGeneration === key.metadata?.generation;
      return current && ready?.reason === reason ? key : undefined;
    },
    30_000,
    logs,
  );
}

async function user(name: string, spec: Record<string, unknown> = {}): Promise<void> {
  await objects.create('serviceusers', {
    kind: 'ServiceUser',
    metadata: { name },
    spec: { scopes: ['projects:*'], ...spec },
  });
}

async function apiKey(
  name: string,
  userName: string,
  spec: Record<string, unknown> = {},
  annotations?: Record<string, string>,
): Promise<void> {
  await objects.create('apikeys', {
    kind: 'ApiKey',
    metadata: { name, ...(annotations ? { annotations } : {}) },
    spec: { serviceUserRef: { name: userName }, ...spec },
  });
}

async function patchKey(name: string, patch: object): Promise<void> {
  await kc
    .makeApiClient(CustomObjectsApi)
    .patchNamespacedCustomObject(
      { group: 'keyward.dev', version: 'v1alpha1', namespace: ns, plural: 'apikeys', name, body: patch },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
}

async function eventReasons(name: string): Promise<string[]> {
  const list = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns });
  return list.items.filter((e) => e.regarding?.name === name).map((e) => e.reason ?? '');
}

describe('issue', () => {
  it('turns a ServiceUser and an ApiKey into a Secret whose token verifies, with status a user can read', async () => {
    await user('alpha', { groups: ['deployers'], scopes: ['projects:alpha'] });
    await apiKey('alpha-ci', 'alpha', {
      description: 'ci',
      secret: { tokenKey: 'API_KEY', labels: { team: 'a' } },
    });
    const key = await readyKey('alpha-ci');
    const token = await tokenOf('alpha-ci', 'API_KEY');
    expect(token).toMatch(/^kw_[0-9A-Za-z]{49}$/);
    const found = await tokenVerifies(pool, token ?? '');
    expect(found?.keyId).toBe(key.status?.keyId);
    expect(found?.username).toBe('alpha');
    expect(found?.groups).toEqual(['deployers']);
    expect(token?.startsWith(String(key.status?.tokenPrefix))).toBe(true);
    expect(key.status?.secretName).toBe('alpha-ci');
    expect(await kstatus(key)).toBe('Current');
    expect((await argoHealth('ApiKey', key)).status).toBe('Healthy');

    const secret = await core.readNamespacedSecret({ namespace: ns, name: 'alpha-ci' });
    expect(secret.metadata?.labels).toMatchObject({
      team: 'a',
      'app.kubernetes.io/managed-by': 'keyward',
      'keyward.dev/api-key': 'alpha-ci',
    });
    expect(secret.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'ApiKey',
      name: 'alpha-ci',
      uid: key.metadata?.uid,
      controller: true,
    });

    const su = await eventually('ServiceUser alpha counts its key', async () => {
      const u = await objects.get('serviceusers', 'alpha');
      return u.status?.keys === 1 && condition(u, 'Ready')?.status === 'True' ? u : undefined;
    });
    expect(su.status?.username).toBe('alpha');
    expect(su.status?.activeKeys).toBe(1);
    expect(await kstatus(su)).toBe('Current');
    expect((await argoHealth('ServiceUser', su)).status).toBe('Healthy');
    expect(await eventReasons('alpha-ci')).toContain('Issued');
  });

  it('reports a scope the user does not grant, and issues nothing', async () => {
    await user('narrow', { scopes: ['projects:alpha'] });
    await apiKey('narrow-wide', 'narrow', { scopes: ['projects:beta'] });
    const key = await readyKey('narrow-wide', 'ScopeNotGranted');
    expect(condition(key, 'Ready')?.message).toContain('projects:beta');
    expect(await kstatus(key)).toBe('Failed');
    expect(await argoHealth('ApiKey', key)).toEqual({
      status: 'Degraded',
      message: condition(key, 'Ready')?.message,
    });
    expect(await tokenOf('narrow-wide')).toBeUndefined();
  });

  it('waits for a missing ServiceUser and issues once it appears', async () => {
    await apiKey('early', 'late-user');
    const waiting = await readyKey('early', 'ServiceUserNotFound');
    // Work in flight, not done: Flux `wait` and Argo CD keep waiting, and there is no Secret yet.
    expect(condition(waiting, 'Reconciling')).toMatchObject({ status: 'True', reason: 'Progressing' });
    expect(await kstatus(waiting)).toBe('InProgress');
    expect((await argoHealth('ApiKey', waiting)).status).toBe('Progressing');
    expect(await tokenOf('early')).toBeUndefined();
    await user('late-user');
    const ready = await readyKey('early');
    expect(condition(ready, 'Reconciling')).toBeUndefined();
    expect(await kstatus(ready)).toBe('Current');
    expect(await tokenVerifies(pool, (await tokenOf('early')) ?? '')).toBeDefined();
  });
});

describe('status from the first pass', () => {
  const ready = (obj: { status?: Record<string, unknown> }): boolean =>
    condition(obj, 'Ready')?.status === 'True';

  it('a brand-new ApiKey is Ready=False/Reconciling=True, InProgress and Progressing, until its Secret holds a token', async () => {
    await user('first-pass');
    const watch = await watchVersions(kc, ns, 'apikeys', 'first-pass-key', ready);
    await apiKey('first-pass-key', 'first-pass');
    const all = await watch.versions;
    // Only the object as created (no finalizer yet) lacks status, and kstatus cannot help calling
    // that Current; from the operator's first write on, every version says what is going on.
    expect(all[0]?.status).toBeUndefined();
    const versions = all.slice(1);
    const first = versions[0];
    // The first pass writes status before the finalizer: the first version anyone can read after
    // the object as created already says "not yet".
    expect(versions.at(-1)?.metadata?.finalizers).toContain('keyward.dev/revoke');
    expect(condition(first ?? {}, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'Progressing',
      observedGeneration: 1,
    });
    expect(condition(first ?? {}, 'Reconciling')).toMatchObject({
      status: 'True',
      reason: 'Progressing',
      observedGeneration: 1,
    });
    expect(first?.status?.observedGeneration).toBe(1);
    const before = versions.slice(0, -1);
    expect(before.length).toBeGreaterThan(0);
    const verdicts = await kstatusAll(versions);
    const health = await argoHealthAll('ApiKey', versions);
    // Every version before Ready=True keeps a waiter waiting; only the Ready one lets it pass.
    expect(verdicts.map((v) => v.status)).toEqual([...before.map(() => 'InProgress'), 'Current']);
    expect(health.map((h) => h.status)).toEqual([...before.map(() => 'Progressing'), 'Healthy']);
    const last = versions.at(-1) ?? {};
    expect(condition(last, 'Reconciling')).toBeUndefined();
    expect(await tokenVerifies(pool, (await tokenOf('first-pass-key')) ?? '')).toBeDefined();
  });

  it('a brand-new ServiceUser is Ready=False/Reconciling=True and InProgress before it is stored', async () => {
    const watch = await watchVersions(kc, ns, 'serviceusers', 'first-pass-user', ready);
    await user('first-pass-user');
    const all = await watch.versions;
    expect(all[0]?.status).toBeUndefined();
    const versions = all.slice(1);
    const first = versions[0] ?? {};
    expect(condition(first, 'Ready')).toMatchObject({
      status: 'False',
      reason: 'Progressing',
      observedGeneration: 1,
    });
    expect(condition(first, 'Reconciling')).toMatchObject({
      status: 'True',
      reason: 'Progressing',
      observedGeneration: 1,
    });
    const verdicts = await kstatusAll(versions);
    const health = await argoHealthAll('ServiceUser', versions);
    const before = versions.slice(0, -1);
    expect(before.length).toBeGreaterThan(0);
    expect(verdicts.map((v) => v.status)).toEqual([...before.map(() => 'InProgress'), 'Current']);
    expect(health.map((h) => h.status)).toEqual([...before.map(() => 'Progressing'), 'Healthy']);
    expect(condition(versions.at(-1) ?? {}, 'Reconciling')).toBeUndefined();
  });
});

describe('rotation', () => {
  it('rotates once per annotation value, keeps keyId, and keeps the old token for the grace period', async () => {
    await user('rot');
    await apiKey('rot-key', 'rot', { rotation: { gracePeriod: '1h' } });
    const before = await readyKey('rot-key');
    const oldToken = (await tokenOf('rot-key')) ?? '';
    await patchKey('rot-key', { metadata: { annotations: { 'keyward.dev/rotate': 'r1' } } });
    const after = await eventually(
      'rotation r1 recorded',
      async () => {
        const k = await objects.get('apikeys', 'rot-key');
        return k.status?.lastRotationRequest === 'r1' ? k : undefined;
      },
      30_000,
      logs,
    );
    const newToken = (await tokenOf('rot-key')) ?? '';
    expect(newToken).not.toBe(oldToken);
    expect(after.status?.keyId).toBe(before.status?.keyId);
    expect(after.status?.previousValidUntil).toBeDefined();
    expect(await tokenVerifies(pool, newToken)).toBeDefined();
    expect(await tokenVerifies(pool, oldToken)).toBeDefined();
    // After the grace period (simulated by asking "one hour from now") only the new one verifies.
    const later = new Date(Date.now() + 3_600_000 + 1_000);
    expect(await tokenVerifies(pool, oldToken, later)).toBeUndefined();
    expect(await tokenVerifies(pool, newToken, later)).toBeDefined();
    expect(await eventReasons('rot-key')).toContain('Rotated');
  });

  it('does not rotate again when the same manifest is re-applied (GitOps re-sync), and does not churn status', async () => {
    await user('gitops');
    const manifest = {
      apiVersion: 'keyward.dev/v1alpha1',
      kind: 'ApiKey',
      metadata: { name: 'gitops-key', namespace: ns, annotations: { 'keyward.dev/rotate': 'v1' } },
      spec: { serviceUserRef: { name: 'gitops' }, description: 'synced' },
    };
    const custom = kc.makeApiClient(CustomObjectsApi);
    const apply = (): Promise<unknown> =>
      custom.patchNamespacedCustomObject(
        {
          group: 'keyward.dev',
          version: 'v1alpha1',
          namespace: ns,
          plural: 'apikeys',
          name: 'gitops-key',
          body: manifest,
          fieldManager: 'argocd',
          force: true,
        },
        setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
      );
    await apply();
    const first = await readyKey('gitops-key');
    const token = await tokenOf('gitops-key');
    expect(first.status?.lastRotationRequest).toBe('v1');
    for (let i = 0; i < 3; i++) await apply();
    // Give the operator time to react to anything it would react to.
    await new Promise((r) => setTimeout(r, 2_000));
    const again = await objects.get('apikeys', 'gitops-key');
    expect(await tokenOf('gitops-key')).toBe(token);
    expect(again.metadata?.resourceVersion).toBe(first.metadata?.resourceVersion);
    expect(again.metadata?.generation).toBe(first.metadata?.generation);
    expect(again.metadata?.annotations?.['keyward.dev/rotate']).toBe('v1');
  });

  it('does not rotate when GitOps self-heal reverts a manual rotation (v1 → v2 → v1)', async () => {
    await user('revert');
    await apiKey('revert-key', 'revert', { rotation: { gracePeriod: '1h' } }, { 'keyward.dev/rotate': 'v1' });
    await readyKey('revert-key');
    const first = (await tokenOf('revert-key')) ?? '';
    await patchKey('revert-key', { metadata: { annotations: { 'keyward.dev/rotate': 'v2' } } });
    const second = await eventually(
      'rotation v2 in the Secret',
      async () => {
        const t = await tokenOf('revert-key');
        return t && t !== first ? t : undefined;
      },
      30_000,
      logs,
    );
    await eventually('v2 recorded', async () =>
      (await objects.get('apikeys', 'revert-key')).status?.lastRotationRequest === 'v2' ? true : undefined,
    );
    await patchKey('revert-key', { metadata: { annotations: { 'keyward.dev/rotate': 'v1' } } });
    // The revert's own reconcile has run once status answers the new generation of metadata.
    const reverted = await eventually(
      'revert to v1 reconciled',
      async () => {
        const k = await objects.get('apikeys', 'revert-key');
        return k.metadata?.annotations?.['keyward.dev/rotate'] === 'v1' ? k : undefined;
      },
      30_000,
      logs,
    );
    await new Promise((r) => setTimeout(r, 2_000));
    expect(await tokenOf('revert-key')).toBe(second);
    // The token held before the manual rotation is still in its grace period.
    expect(await tokenVerifies(pool, first)).toBeDefined();
    expect(await tokenVerifies(pool, second)).toBeDefined();
    const after = await objects.get('apikeys', 'revert-key');
    expect(after.status?.lastRotationRequest).toBe('v2');
    expect(after.status?.rotationRequests).toHaveLength(2);
    expect(after.status?.keyId).toBe(reverted.status?.keyId);
    expect((await eventReasons('revert-key')).filter((r) => r === 'Rotated')).toHaveLength(1);
  });

  it('a scheduled rotation does not revive an expired key (ttl 2s, every 5s)', async () => {
    await user('lapsed');
    await apiKey('lapsed-key', 'lapsed', { ttl: '2s', rotation: { every: '5s' } });
    const key = await readyKey('lapsed-key');
    const token = (await tokenOf('lapsed-key')) ?? '';
    await readyKey('lapsed-key', 'Expired');
    // Past the instant the scheduled rotation was due, with reconciles in between (every 2 s here).
    const issuedAt = Date.parse(String(key.status?.issuedAt ?? ''));
    await new Promise((r) => setTimeout(r, Math.max(issuedAt + 7_000 - Date.now(), 0)));
    const after = await readyKey('lapsed-key', 'Expired');
    expect(await tokenOf('lapsed-key')).toBe(token);
    expect(await tokenVerifies(pool, token)).toBeUndefined();
    expect(after.status?.rotatedAt).toBe(key.status?.rotatedAt);
    expect(await eventReasons('lapsed-key')).not.toContain('Rotated');
  });

  it('with gracePeriod 0s the old token stops at once', async () => {
    await user('zero');
    await apiKey('zero-key', 'zero', { rotation: { gracePeriod: '0s' } });
    await readyKey('zero-key');
    const oldToken = (await tokenOf('zero-key')) ?? '';
    await patchKey('zero-key', { metadata: { annotations: { 'keyward.dev/rotate': 'now' } } });
    await eventually('new token in Secret', async () =>
      (await tokenOf('zero-key')) !== oldToken ? true : undefined,
    );
    // Held only until the Secret holds the new token (docs/rotation.md): ended in the next store
    // write, a round trip after the Secret write this test just saw.
    await eventually('old token rejected', async () =>
      (await tokenVerifies(pool, oldToken)) === undefined ? true : undefined,
    );
    const held = await pool.query<{ rotated: Date; ended: Date }>(
      `SELECT k.rotated_at AS rotated, s.not_after AS ended FROM api_key_secrets s
         JOIN api_keys k ON k.id = s.api_key_id WHERE k.name = 'zero-key' AND s.not_after IS NOT NULL`,
    );
    // Ended by the operator once the Secret was written, not by the 60 s hold running out.
    expect(held.rows[0]!.ended.getTime() - held.rows[0]!.rotated.getTime()).toBeLessThan(60_000);
    expect(await tokenVerifies(pool, (await tokenOf('zero-key')) ?? '')).toBeDefined();
  });

  it('repairs a deleted Secret with a new token (SecretLost) and invalidates the lost one', async () => {
    await user('lost');
    await apiKey('lost-key', 'lost');
    const before = await readyKey('lost-key');
    const oldToken = (await tokenOf('lost-key')) ?? '';
    await core.deleteNamespacedSecret({ namespace: ns, name: 'lost-key' });
    const newToken = await eventually(
      'Secret re-created',
      async () => {
        const t = await tokenOf('lost-key');
        return t && t !== oldToken ? t : undefined;
      },
      30_000,
      logs,
    );
    expect(await tokenVerifies(pool, newToken)).toBeDefined();
    expect(await tokenVerifies(pool, oldToken)).toBeUndefined();
    const after = await readyKey('lost-key');
    expect(after.status?.keyId).toBe(before.status?.keyId);
    expect(await eventReasons('lost-key')).toContain('SecretLost');
  });

  it('repairs a Secret whose token someone overwrote', async () => {
    await user('edited');
    await apiKey('edited-key', 'edited');
    await readyKey('edited-key');
    const original = (await tokenOf('edited-key')) ?? '';
    await core.patchNamespacedSecret(
      { namespace: ns, name: 'edited-key', body: { stringData: { token: 'kw_not-a-real-token' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const repaired = await eventually(
      'token replaced by the operator',
      async () => {
        const t = await tokenOf('edited-key');
        return t && t !== original && t !== 'kw_not-a-real-token' ? t : undefined;
      },
      30_000,
      logs,
    );
    expect(await tokenVerifies(pool, repaired)).toBeDefined();
    expect(await tokenVerifies(pool, original)).toBeUndefined();
  });
});

describe('lifecycle', () => {
  it('suspends and reactivates every key of a user', async () => {
    await user('sus');
    await apiKey('sus-key', 'sus');
    await readyKey('sus-key');
    const token = (await tokenOf('sus-key')) ?? '';
    await kc.makeApiClient(CustomObjectsApi).patchNamespacedCustomObject(
      {
        group: 'keyward.dev',
        version: 'v1alpha1',
        namespace: ns,
        plural: 'serviceusers',
        name: 'sus',
        body: { spec: { suspended: true } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const key = await readyKey('sus-key', 'Suspended');
    expect(condition(key, 'Suspended')?.status).toBe('True');
    expect(await tokenVerifies(pool, token)).toBeUndefined();
    expect((await argoHealth('ApiKey', key)).status).toBe('Suspended');
    // The two kinds reconcile in their own queues: the key may report its user's suspension first.
    const suspendedUser = await eventually('ServiceUser sus reports Suspended', async () => {
      const u = await objects.get('serviceusers', 'sus');
      return condition(u, 'Suspended')?.status === 'True' ? u : undefined;
    });
    expect((await argoHealth('ServiceUser', suspendedUser)).status).toBe('Suspended');
    expect(await kstatus(suspendedUser)).toBe('Current');
    await kc.makeApiClient(CustomObjectsApi).patchNamespacedCustomObject(
      {
        group: 'keyward.dev',
        version: 'v1alpha1',
        namespace: ns,
        plural: 'serviceusers',
        name: 'sus',
        body: { spec: { suspended: false } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await readyKey('sus-key');
    expect(await tokenVerifies(pool, token)).toBeDefined();
    expect(await eventReasons('sus')).toEqual(expect.arrayContaining(['Suspended', 'Reactivated']));
  });

  it('disables a key and enables it again', async () => {
    await user('dis');
    await apiKey('dis-key', 'dis');
    await readyKey('dis-key');
    const token = (await tokenOf('dis-key')) ?? '';
    await patchKey('dis-key', { spec: { disabled: true } });
    const disabled = await readyKey('dis-key', 'Disabled');
    expect(await tokenVerifies(pool, token)).toBeUndefined();
    expect((await argoHealth('ApiKey', disabled)).status).toBe('Suspended');
    await patchKey('dis-key', { spec: { disabled: false } });
    await readyKey('dis-key');
    expect(await tokenVerifies(pool, token)).toBeDefined();
  });

  it('expires a key at its ttl without any other change', async () => {
    await user('exp');
    await apiKey('exp-key', 'exp', { ttl: '4s' });
    const key = await readyKey('exp-key');
    const token = (await tokenOf('exp-key')) ?? '';
    expect(Date.parse(String(key.status?.expiresAt)) - Date.parse(String(key.status?.issuedAt))).toBe(4_000);
    const expired = await readyKey('exp-key', 'Expired');
    expect(condition(expired, 'Expired')?.status).toBe('True');
    expect((await argoHealth('ApiKey', expired)).status).toBe('Degraded');
    expect(await tokenVerifies(pool, token)).toBeUndefined();
    expect(await eventReasons('exp-key')).toContain('Expired');
  });

  it('revokes a deleted ApiKey at once, removes its Secret, and keeps the row for the audit trail', async () => {
    await user('del');
    await apiKey('del-key', 'del');
    const key = await readyKey('del-key');
    const token = (await tokenOf('del-key')) ?? '';
    await objects.delete('apikeys', 'del-key');
    await eventually('ApiKey gone', async () =>
      (await objects.get('apikeys', 'del-key').catch(() => undefined)) ? undefined : true,
    );
    expect(await tokenOf('del-key')).toBeUndefined();
    expect(await tokenVerifies(pool, token)).toBeUndefined();
    const rows = await pool.query('SELECT revoked_at FROM api_keys WHERE key_id = $1', [key.status?.keyId]);
    expect(rows.rows[0]?.revoked_at).toBeInstanceOf(Date);
  });

  it('revokes every key of a deleted ServiceUser, and issues them again when it is re-created', async () => {
    await user('gone');
    await apiKey('gone-a', 'gone');
    await apiKey('gone-b', 'gone');
    await readyKey('gone-a');
    await readyKey('gone-b');
    const tokens = [(await tokenOf('gone-a')) ?? '', (await tokenOf('gone-b')) ?? ''];
    await objects.delete('serviceusers', 'gone');
    await eventually('keys revoked', async () => {
      const results = await Promise.all(tokens.map((t) => tokenVerifies(pool, t)));
      return results.every((r) => r === undefined) ? true : undefined;
    });
    await readyKey('gone-a', 'ServiceUserDeleted');
    // GitOps prunes and re-applies the user: the keys whose objects still exist come back.
    await eventually('ServiceUser gone is deleted', async () =>
      (await objects.get('serviceusers', 'gone').catch(() => undefined)) ? undefined : true,
    );
    await user('gone');
    for (const [i, name] of ['gone-a', 'gone-b'].entries()) {
      await readyKey(name);
      const fresh = (await tokenOf(name)) ?? '';
      expect(fresh).not.toBe(tokens[i]);
      expect(await tokenVerifies(pool, fresh)).toBeDefined();
      expect(await eventReasons(name)).toContain('Reissued');
    }
    expect(await tokenVerifies(pool, tokens[0] ?? '')).toBeUndefined();
  });

  it('caps keys at maxKeys', async () => {
    await user('capped', { maxKeys: 1 });
    await apiKey('capped-1', 'capped');
    await readyKey('capped-1');
    await apiKey('capped-2', 'capped');
    const second = await readyKey('capped-2', 'MaxKeysExceeded');
    expect(condition(second, 'Ready')?.message).toContain('at most 1');
    expect(await tokenOf('capped-2')).toBeUndefined();
  });

  it('a revoked key frees its maxKeys slot, and concurrent keys never exceed maxKeys', async () => {
    await user('slots', { maxKeys: 2 });
    await Promise.all(['a', 'b', 'c', 'd', 'e'].map((n) => apiKey(`slots-${n}`, 'slots')));
    const reasons = async (): Promise<string[]> =>
      Promise.all(
        ['a', 'b', 'c', 'd', 'e'].map(
          async (n) => condition(await objects.get('apikeys', `slots-${n}`), 'Ready')?.reason ?? '',
        ),
      );
    const settled = await eventually(
      'two keys issued, three waiting',
      async () => {
        const r = await reasons();
        return r.filter((x) => x === 'Issued').length === 2 &&
          r.filter((x) => x === 'MaxKeysExceeded').length === 3
          ? r
          : undefined;
      },
      30_000,
      logs,
    );
    const { rows } = await pool.query(
      `SELECT count(*)::int AS n FROM api_keys WHERE namespace = $1 AND name LIKE 'slots-%' AND revoked_at IS NULL`,
      [ns],
    );
    expect(rows[0].n).toBe(2);
    // A leak report revokes one; the ApiKey object stays (Leaked), but its slot goes to a waiting key.
    const holder = `slots-${'abcde'[settled.indexOf('Issued')]}`;
    await recordLeakReports(pool, [
      {
        hash: tokenHash((await tokenOf(holder)) ?? ''),
        tokenType: 'keyward',
        url: null,
        source: 'test',
        reportedBy: 'test',
      },
    ]);
    await eventually(
      'a waiting key issued into the freed slot',
      async () => {
        const r = await reasons();
        return r.filter((x) => x === 'Issued').length === 2 && r.includes('Leaked') ? r : undefined;
      },
      90_000,
      logs,
    );
  }, 120_000);
});

describe('audit trail and usage', () => {
  async function auditActions(keyId: unknown): Promise<string[]> {
    const { rows } = await pool.query<{ action: string }>(
      'SELECT action FROM audit_events WHERE key_id = $1 ORDER BY id',
      [keyId],
    );
    return rows.map((r) => r.action);
  }

  it('an issue and a rotation of a ttl key write no key.updated', async () => {
    await user('audited');
    await apiKey('audited-key', 'audited', { ttl: '30d' });
    const key = await readyKey('audited-key');
    await patchKey('audited-key', { metadata: { annotations: { 'keyward.dev/rotate': 'r1' } } });
    await eventually('rotation r1 recorded', async () =>
      (await objects.get('apikeys', 'audited-key')).status?.lastRotationRequest === 'r1' ? true : undefined,
    );
    await patchKey('audited-key', { spec: { description: 'touched' } });
    await eventually('description synced', async () =>
      (await auditActions(key.status?.keyId)).length >= 3 ? true : undefined,
    );
    // The description change is the only key.updated: none after the issue or the rotation.
    expect(await auditActions(key.status?.keyId)).toEqual(['key.issued', 'key.rotated', 'key.updated']);
  });

  it('writes key.expired once when a key expires, however often it is reconciled afterwards', async () => {
    await user('expiring');
    await apiKey('expiring-key', 'expiring', { ttl: '3s' });
    const key = await readyKey('expiring-key');
    await readyKey('expiring-key', 'Expired');
    for (const description of ['one', 'two']) {
      await patchKey('expiring-key', { spec: { description } });
      await readyKey('expiring-key', 'Expired');
    }
    // Readiness reconciles every 2 s here; give the operator a few.
    await new Promise((r) => setTimeout(r, 3_000));
    expect((await auditActions(key.status?.keyId)).filter((a) => a === 'key.expired')).toHaveLength(1);
  });

  it('brings a use the webhook recorded to status.lastUsedAt without any change to the object', async () => {
    await user('used');
    await apiKey('used-key', 'used');
    const key = await readyKey('used-key');
    expect(key.status?.lastUsedAt).toBeUndefined();
    // Let the reconciles the issue itself causes (the user's key counts, say) pass first.
    await new Promise((r) => setTimeout(r, 4_000));
    const found = await tokenVerifies(pool, (await tokenOf('used-key')) ?? '');
    const usage = new UsageBatcher(pool, { flushIntervalMs: 3_600_000 });
    usage.record(found?.apiKeyId ?? '', 'allowed');
    await usage.close();
    const used = await eventually(
      'lastUsedAt in status',
      async () => {
        const k = await objects.get('apikeys', 'used-key');
        return k.status?.lastUsedAt ? k : undefined;
      },
      15_000,
      logs,
    );
    expect(used.metadata?.generation).toBe(key.metadata?.generation);
  });
});

describe('metrics', () => {
  it('exposes reconcile counts, durations, queue depth and leadership', async () => {
    const body = await (await fetch(`${operator.metricsUrl}/metrics`)).text();
    expect(body).toMatch(
      /keyward_operator_reconciles_total\{controller="apikey",result="(success|requeue)"\} [1-9]/,
    );
    expect(body).toContain('keyward_operator_reconcile_duration_seconds_bucket');
    expect(body).toContain('keyward_operator_queue_depth');
    expect(body).toMatch(/keyward_operator_leader 1/);
  });
});

describe('logs', () => {
  it('never contain a token', async () => {
    const secrets = await core.listNamespacedSecret({
      namespace: ns,
      labelSelector: 'app.kubernetes.io/managed-by=keyward',
    });
    const tokens = secrets.items.flatMap((s) =>
      Object.values(s.data ?? {}).map((v) => Buffer.from(v, 'base64').toString('utf8')),
    );
    expect(tokens.length).toBeGreaterThan(3);
    const log = operator.process.logTail(100_000);
    for (const token of tokens) expect(log.includes(token)).toBe(false);
  });
});
