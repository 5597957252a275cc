import {
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  type EventsV1Event,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Secret,
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
 * Secret ownership (DESIGN.md §2, §6): keyward writes and deletes only Secrets whose controller
 * ownerReference is the ApiKey itself. A tenant's Secret, another ApiKey's Secret, or one taken out
 * of keyward's hands stays exactly as it is; the ApiKey reports SecretConflict. The operator
 * resyncs every 10 s here, so "over several resyncs" fits in a test.
 */
const RESYNC_SECONDS = 10;

let kc: KubeConfig;
let ns: string;
let objects: KeywardObjects;
let core: CoreV1Api;
let pool: pg.Pool;
let operator: OperatorProcess;

beforeAll(async () => {
  kc = testKubeConfig();
  ns = await createTestNamespace(kc, 'secret-ownership');
  // Unprefixed usernames and `*` scopes need the cluster admin's grant.
  await applyAccessPolicy(kc, ns, { namespaces: [ns], usernames: ['*'], scopes: ['*'] });
  objects = new KeywardObjects(kc, ns);
  core = kc.makeApiClient(CoreV1Api);
  const storeUrl = await testDatabase();
  await migrate(storeUrl);
  pool = poolFor(storeUrl);
  operator = await startOperator({
    kubeconfigPath: await operatorKubeconfig(kc, ns),
    storeUrl,
    namespace: ns,
    watchNamespace: ns,
    env: { KEYWARD_RESYNC_SECONDS: String(RESYNC_SECONDS) },
  });
});

afterAll(async () => {
  await operator?.stop();
  await pool?.end();
});

const logs = (): string => operator.process.logTail(30);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function readSecret(name: string): Promise<V1Secret | undefined> {
  return await core.readNamespacedSecret({ namespace: ns, name }).catch(() => undefined);
}

async function tokenOf(name: string): Promise<string | undefined> {
  const data = (await readSecret(name))?.data?.token;
  return data ? Buffer.from(data, 'base64').toString('utf8') : undefined;
}

async function user(name: string): Promise<void> {
  await objects.create('serviceusers', { kind: 'ServiceUser', metadata: { name }, spec: { scopes: ['*'] } });
}

async function apiKey(name: string, userName: string, spec: Record<string, unknown> = {}): Promise<void> {
  await objects.create('apikeys', {
    kind: 'ApiKey',
    metadata: { name },
    spec: { serviceUserRef: { name: userName }, ...spec },
  });
}

async function keyWithReason(
  name: string,
  reason: string,
): Promise<Awaited<ReturnType<KeywardObjects['get']>>> {
  return eventually(
    `ApiKey ${name} Ready reason ${reason}`,
    async () => {
      const key = await objects.get('apikeys', name);
      const current = key.status?.observedGeneration === key.metadata?.generation;
      return current && condition(key, 'Ready')?.reason === reason ? key : undefined;
    },
    30_000,
    logs,
  );
}

async function eventsOf(name: string, reason?: string): Promise<EventsV1Event[]> {
  const list = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns });
  return list.items.filter((e) => e.regarding?.name === name && (!reason || e.reason === reason));
}

async function patchKey(name: string, patch: object): Promise<void> {
  await kc
    .makeApiClient(CustomObjectsApi)
    .patchNamespacedCustomObject(
      { group: 'keyward.dev', version: 'v1alpha1', namespace: ns, plural: 'apikeys', name, body: patch },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
}

async function jsonPatchSecret(name: string, ops: object[]): Promise<V1Secret> {
  return await core.patchNamespacedSecret(
    { namespace: ns, name, body: ops },
    setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
  );
}

async function deleteKeyAndWait(name: string): Promise<void> {
  await objects.delete('apikeys', name);
  await eventually(
    `ApiKey ${name} gone`,
    async () => ((await objects.get('apikeys', name).catch(() => undefined)) ? undefined : true),
    30_000,
    logs,
  );
}

const managers = (s: V1Secret | undefined): string[] =>
  (s?.metadata?.managedFields ?? []).map((m) => `${m.manager}:${m.operation}`);

describe('a Secret keyward does not control', () => {
  it('is left byte-for-byte as the tenant wrote it, reported once as SecretConflict, and survives the ApiKey', async () => {
    const tenant = await core.createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: { name: 'tenant-db', labels: { app: 'billing' }, annotations: { owner: 'team-billing' } },
        // No `token` entry: an unforced apply would have merged one in without any field conflict.
        stringData: { password: 'hunter2-not-a-keyward-token' },
      },
    });
    await user('grabber');
    await apiKey('grab', 'grabber', { secret: { name: 'tenant-db' } });
    const key = await keyWithReason('grab', 'SecretConflict');
    expect(condition(key, 'Ready')).toMatchObject({ status: 'False' });
    expect(condition(key, 'Ready')?.message).toContain(
      'Secret tenant-db exists and is not controlled by this ApiKey',
    );
    expect(key.status?.keyId).toBeUndefined();
    const warnings = await eventually('one SecretConflict Warning', async () => {
      const found = await eventsOf('grab', 'SecretConflict');
      return found.length > 0 ? found : undefined;
    });
    expect(warnings.map((e) => e.type)).toEqual(['Warning']);
    expect(warnings[0]?.note).toContain('Secret tenant-db');

    await deleteKeyAndWait('grab');
    // The garbage collector has had time to act on any ownerReference keyward might have added.
    await sleep(2_000);
    expect(await readSecret('tenant-db')).toEqual(tenant);
  });

  it('includes keyward’s own Secret once its ownerReference was edited away: kept, not written, not deleted', async () => {
    await user('released');
    await apiKey('released-key', 'released');
    await keyWithReason('released-key', 'Issued');
    const index = (await readSecret('released-key'))?.metadata?.ownerReferences?.length ?? 0;
    expect(index).toBe(1);
    // The Secret keeps keyward's labels, so the operator still watches it: labels alone prove nothing.
    const released = await jsonPatchSecret('released-key', [
      { op: 'remove', path: '/metadata/ownerReferences' },
    ]);
    const key = await keyWithReason('released-key', 'SecretConflict');
    expect(condition(key, 'Ready')?.message).toContain('Secret released-key exists and is not controlled');
    // A rotation request would make keyward write a new token, if it still wrote this Secret.
    await patchKey('released-key', { metadata: { annotations: { 'keyward.dev/rotate': 'now' } } });
    await sleep(2_000);
    expect(await readSecret('released-key')).toEqual(released);
    await deleteKeyAndWait('released-key');
    await sleep(2_000);
    expect(await readSecret('released-key')).toEqual(released);
  });
});

describe('two ApiKeys naming one Secret', () => {
  it(
    'the later one gets SecretConflict naming the holder, neither rotates over several resyncs, and the name frees up with the holder',
    async () => {
      await user('sharing');
      await apiKey('holder', 'sharing');
      const holder = await keyWithReason('holder', 'Issued');
      const token = (await tokenOf('holder')) ?? '';
      const before = await readSecret('holder');
      await apiKey('latecomer', 'sharing', { secret: { name: 'holder' } });
      const late = await keyWithReason('latecomer', 'SecretConflict');
      expect(condition(late, 'Ready')?.message).toContain('Secret holder is controlled by ApiKey holder');

      const reconciles = async (): Promise<number> => {
        const body = await (await fetch(`${operator.metricsUrl}/metrics`)).text();
        return [
          ...body.matchAll(/^keyward_operator_reconciles_total\{controller="apikey",[^}]*\} (\d+)/gm),
        ].reduce((sum, m) => sum + Number(m[1]), 0);
      };
      const reconcilesBefore = await reconciles();
      await sleep((3 * RESYNC_SECONDS + 5) * 1000);
      // Both keys (and the file's other keys) went through at least three resyncs.
      expect(await reconciles()).toBeGreaterThanOrEqual(reconcilesBefore + 6);

      expect(await readSecret('holder')).toEqual(before);
      const holderNow = await objects.get('apikeys', 'holder');
      expect(condition(holderNow, 'Ready')?.reason).toBe('Issued');
      expect(holderNow.status?.rotatedAt).toBe(holder.status?.rotatedAt);
      expect(await tokenVerifies(pool, token)).toBeDefined();
      const lateNow = await objects.get('apikeys', 'latecomer');
      expect(condition(lateNow, 'Ready')?.reason).toBe('SecretConflict');
      expect(lateNow.status?.keyId).toBeUndefined();
      const conflicts = await eventsOf('latecomer', 'SecretConflict');
      expect(conflicts).toHaveLength(1);
      expect(conflicts[0]?.series?.count ?? 1).toBe(1);
      expect((await eventsOf('holder')).map((e) => e.reason)).toEqual(['Issued']);

      await deleteKeyAndWait('holder');
      const issued = await keyWithReason('latecomer', 'Issued');
      const secret = await readSecret('holder');
      expect(secret?.metadata?.ownerReferences?.[0]?.uid).toBe(issued.metadata?.uid);
      const lateToken = (await tokenOf('holder')) ?? '';
      expect((await tokenVerifies(pool, lateToken))?.keyId).toBe(issued.status?.keyId);
      expect(await tokenVerifies(pool, token)).toBeUndefined();
    },
    (3 * RESYNC_SECONDS + 60) * 1000,
  );

  it('created at the same moment, exactly one gets the Secret and the other SecretConflict', async () => {
    await user('racing');
    await Promise.all(
      ['racer-a', 'racer-b'].map((name) => apiKey(name, 'racing', { secret: { name: 'contested' } })),
    );
    const settled = await eventually(
      'both racers settled',
      async () => {
        const keys = await Promise.all(['racer-a', 'racer-b'].map((n) => objects.get('apikeys', n)));
        const reasons = keys.map((k) => condition(k, 'Ready')?.reason).sort();
        return reasons.join() === 'Issued,SecretConflict' ? keys : undefined;
      },
      30_000,
      logs,
    );
    const winner = settled.find((k) => condition(k, 'Ready')?.reason === 'Issued');
    const loser = settled.find((k) => condition(k, 'Ready')?.reason === 'SecretConflict');
    expect(condition(loser ?? {}, 'Ready')?.message).toContain(
      `Secret contested is controlled by ApiKey ${winner?.metadata?.name}`,
    );
    const secret = await readSecret('contested');
    expect(secret?.metadata?.ownerReferences?.map((r) => r.uid)).toEqual([winner?.metadata?.uid]);
    const token = (await tokenOf('contested')) ?? '';
    expect((await tokenVerifies(pool, token))?.keyId).toBe(winner?.status?.keyId);
    await sleep(2_000);
    expect(await readSecret('contested')).toEqual(secret);
    expect(loser?.status?.keyId).toBeUndefined();
  });
});

describe('keyward’s own Secret', () => {
  it('is repaired in place, same token, when its labels were edited away, and drops a label removed from the spec', async () => {
    await user('relabel');
    await apiKey('relabel-key', 'relabel', { secret: { labels: { team: 'a', tier: 'gold' } } });
    const key = await keyWithReason('relabel-key', 'Issued');
    const token = await tokenOf('relabel-key');
    // Out of the informer's label selector: keyward must find it by name, not re-issue.
    await jsonPatchSecret('relabel-key', [
      { op: 'remove', path: '/metadata/labels/app.kubernetes.io~1managed-by' },
      { op: 'remove', path: '/metadata/labels/team' },
    ]);
    const repaired = await eventually(
      'labels restored',
      async () => {
        const s = await readSecret('relabel-key');
        return s?.metadata?.labels?.['app.kubernetes.io/managed-by'] === 'keyward' &&
          s.metadata.labels.team === 'a'
          ? s
          : undefined;
      },
      30_000,
      logs,
    );
    expect(await tokenOf('relabel-key')).toBe(token);
    expect((await objects.get('apikeys', 'relabel-key')).status?.rotatedAt).toBe(key.status?.rotatedAt);
    expect((await eventsOf('relabel-key')).map((e) => e.reason)).not.toContain('SecretLost');
    expect(managers(repaired)).toContain(`keyward/${key.metadata?.uid}:Apply`);

    await patchKey('relabel-key', { spec: { secret: { labels: { tier: null } } } });
    await eventually(
      'label tier dropped',
      async () =>
        (await readSecret('relabel-key'))?.metadata?.labels?.tier === undefined ? true : undefined,
      30_000,
      logs,
    );
    expect((await readSecret('relabel-key'))?.metadata?.labels?.team).toBe('a');
    expect(await tokenOf('relabel-key')).toBe(token);
  });

  it('written by the shared `keyward` field manager of earlier releases stays keyward’s after an upgrade', async () => {
    await user('upgrade');
    await apiKey('legacy', 'upgrade', { secret: { labels: { team: 'a', tier: 'gold' } } });
    const key = await keyWithReason('legacy', 'Issued');
    const oldToken = (await tokenOf('legacy')) ?? '';
    // What earlier releases left behind: every field applied (forced) by one manager, `keyward`.
    const current = await readSecret('legacy');
    const legacyFields = (current?.metadata?.managedFields ?? []).map((m) =>
      m.manager?.startsWith('keyward') ? { ...m, manager: 'keyward', operation: 'Apply' } : m,
    );
    const legacy = await jsonPatchSecret('legacy', [
      { op: 'replace', path: '/metadata/managedFields', value: legacyFields },
    ]);
    expect(managers(legacy)).toEqual(['keyward:Apply']);
    await sleep(1_500);
    const settled = await objects.get('apikeys', 'legacy');
    expect(condition(settled, 'Ready')?.reason).toBe('Issued');
    expect(await tokenOf('legacy')).toBe(oldToken);

    // The first write after the upgrade: a rotation and a label removed from the spec.
    await patchKey('legacy', {
      metadata: { annotations: { 'keyward.dev/rotate': 'after-upgrade' } },
      spec: { secret: { labels: { tier: null } } },
    });
    const rotated = await eventually(
      'rotation after the upgrade',
      async () => {
        const k = await objects.get('apikeys', 'legacy');
        return k.status?.lastRotationRequest === 'after-upgrade' && condition(k, 'Ready')?.reason === 'Issued'
          ? k
          : undefined;
      },
      30_000,
      logs,
    );
    const newToken = (await tokenOf('legacy')) ?? '';
    expect(newToken).not.toBe(oldToken);
    expect((await tokenVerifies(pool, newToken))?.keyId).toBe(rotated.status?.keyId);
    const secret = await eventually('label tier dropped', async () => {
      const s = await readSecret('legacy');
      return s?.metadata?.labels?.tier === undefined ? s : undefined;
    });
    expect(secret.metadata?.labels?.team).toBe('a');
    expect(managers(secret)).toEqual([`keyward/${key.metadata?.uid}:Apply`]);
  });
});
