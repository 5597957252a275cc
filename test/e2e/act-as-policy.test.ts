import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ControlPlane, startControlPlane } from '../../devenv/controlplane/controlplane.js';
import { installCrds } from '../../devenv/crds.js';
import { createTestNamespace, restrictedKubeConfig } from '../../devenv/kube.js';
import {
  applyAccessPolicy,
  deleteAccessPolicy,
  KeywardObjects,
  type OperatorProcess,
  operatorKubeconfig,
  startOperator,
} from '../../devenv/operator.js';
import { eventually } from '../../devenv/poll.js';
import { migrate } from '../../store/migrate.js';
import type { RunningWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { condition } from '../support/status.js';
import { poolFor } from '../support/store.js';
import { runReadyWebhook, testConfig } from '../support/webhook.js';

/**
 * spec.actAs as a tenant meets it: admission names a malformed pattern; the operator (running
 * with the chart's RBAC) stores nothing beyond what an AccessPolicy grants the namespace; the
 * webhook lets a key act only within what was stored.
 */
let cp: ControlPlane;
let admin: KubeConfig;
let webhook: RunningWebhook;
let operator: OperatorProcess;
let pool: pg.Pool;
let dir: string;

beforeAll(async () => {
  const storeUrl = await testDatabase();
  await migrate(storeUrl);
  pool = poolFor(storeUrl);
  webhook = await runReadyWebhook(testConfig(storeUrl));
  dir = await mkdtemp(join(tmpdir(), 'keyward-actas-e2e-'));
  cp = await startControlPlane();
  admin = cp.kubeConfig();
  await installCrds(admin);
  const system = await createTestNamespace(admin, 'keyward-system');
  operator = await startOperator({
    kubeconfigPath: await operatorKubeconfig(admin, system),
    storeUrl,
    namespace: system,
    watchNamespace: '',
  });
});

afterAll(async () => {
  await operator?.stop();
  await cp?.stop();
  await webhook?.close();
  await pool?.end();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const logs = (): string => operator.process.logTail(40);

type Obj = Awaited<ReturnType<KeywardObjects['get']>>;

async function readyReason(
  objects: KeywardObjects,
  plural: 'serviceusers' | 'apikeys',
  name: string,
  reason: string,
): Promise<Obj> {
  return eventually(
    `${plural} ${name} Ready reason ${reason}`,
    async () => {
      const obj = await objects.get(plural, name);
      const current = obj.status?.observedGeneration === obj.metadata?.generation;
      return current && condition(obj, 'Ready')?.reason === reason ? obj : undefined;
    },
    30_000,
    logs,
  );
}

async function storedActAs(
  namespace: string,
  name: string,
): Promise<{ users: string[]; external: string[] }> {
  const { rows } = await pool.query<{ act_as_service_users: string[]; act_as_external_subjects: string[] }>(
    'SELECT act_as_service_users, act_as_external_subjects FROM service_users WHERE namespace = $1 AND name = $2 AND deleted_at IS NULL',
    [namespace, name],
  );
  const row = rows[0];
  return { users: row?.act_as_service_users ?? [], external: row?.act_as_external_subjects ?? [] };
}

describe('spec.actAs', () => {
  it('is refused at admission with the field named when a pattern is malformed', async () => {
    const namespace = await createTestNamespace(admin, 'actas-admission');
    const objects = new KeywardObjects(admin, namespace);
    const attempt = objects.create('serviceusers', {
      kind: 'ServiceUser',
      metadata: { name: 'gw' },
      spec: {
        username: `${namespace}_gw`,
        actAs: { externalSubjects: ['customer 42'], serviceUsers: ['a:b'] },
      },
    });
    await expect(attempt).rejects.toThrow(/spec\.actAs\.externalSubjects\[0\]/);
    await expect(attempt).rejects.toThrow(/spec\.actAs\.serviceUsers\[0\]/);
  });

  it('is NotPermitted and stores nothing without a granting policy; within the grant a key acts, and withdrawal ends it', async () => {
    const namespace = await createTestNamespace(admin, 'actas-tenant');
    const kc = await restrictedKubeConfig(admin, {
      namespace,
      name: 'tenant',
      rules: [
        {
          apiGroups: ['keyward.dev'],
          resources: ['serviceusers', 'apikeys'],
          verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
        },
        { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list'] },
      ],
    });
    const objects = new KeywardObjects(kc, namespace);
    const policy = `${namespace}-acting`;
    const actAs = { serviceUsers: [`${namespace}_*`], externalSubjects: ['customer:*'] };
    await objects.create('serviceusers', {
      kind: 'ServiceUser',
      metadata: { name: 'gw' },
      spec: { username: `${namespace}_gw`, scopes: [], actAs },
    });
    await objects.create('serviceusers', {
      kind: 'ServiceUser',
      metadata: { name: 'alice' },
      spec: { username: `${namespace}_alice`, scopes: [`${namespace}:read`], groups: [] },
    });
    const blocked = await readyReason(objects, 'serviceusers', 'gw', 'NotPermitted');
    expect(condition(blocked, 'Ready')?.message).toBe(
      `spec.actAs.serviceUsers[0] "${namespace}_*" is not permitted in namespace ${namespace} (no AccessPolicy selects it)`,
    );

    await applyAccessPolicy(admin, policy, { namespaces: [namespace], actAs });
    await readyReason(objects, 'serviceusers', 'gw', 'Stored');
    expect(await storedActAs(namespace, 'gw')).toEqual({
      users: actAs.serviceUsers,
      external: actAs.externalSubjects,
    });
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'gw-key' },
      spec: { serviceUserRef: { name: 'gw' } },
    });
    await readyReason(objects, 'apikeys', 'gw-key', 'Issued');
    const secret = await eventually('token', async () => {
      const s = await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ namespace, name: 'gw-key' });
      return s.data?.token ? Buffer.from(s.data.token, 'base64').toString('utf8') : undefined;
    });
    const asAlice = { authorization: `Bearer ${secret}`, 'x-keyward-subject': `${namespace}_alice` };
    const ok = await eventually(
      'acting allowed',
      async () => {
        const res = await fetch(`${webhook.url}/verify?scope=${namespace}:read`, { headers: asAlice });
        return res.status === 200 ? res : undefined;
      },
      10_000,
    );
    expect(ok.headers.get('x-keyward-user')).toBe(`${namespace}_alice`);
    expect(ok.headers.get('x-keyward-actor')).toBe(`${namespace}_gw`);

    // The policy narrows to external subjects only: the user asks for more, so it is blocked whole.
    await applyAccessPolicy(admin, policy, {
      namespaces: [namespace],
      actAs: { externalSubjects: ['customer:*'] },
    });
    await readyReason(objects, 'serviceusers', 'gw', 'NotPermitted');
    expect(await storedActAs(namespace, 'gw')).toEqual({ users: [], external: [] });
    await eventually(
      'withdrawn',
      async () => (await fetch(`${webhook.url}/verify`, { headers: asAlice })).status === 401,
      10_000,
    );

    // The tenant narrows its spec to fit: only the external subject is stored and allowed.
    await objects.patch('serviceusers', 'gw', {
      spec: { actAs: { serviceUsers: [], externalSubjects: ['customer:eu:*'] } },
    });
    await readyReason(objects, 'serviceusers', 'gw', 'Stored');
    expect(await storedActAs(namespace, 'gw')).toEqual({ users: [], external: ['customer:eu:*'] });
    const external = await eventually(
      'external allowed',
      async () => {
        const res = await fetch(`${webhook.url}/verify`, {
          headers: { authorization: `Bearer ${secret}`, 'x-keyward-subject': 'customer:eu:7' },
        });
        return res.status === 200 ? res : undefined;
      },
      10_000,
    );
    expect(external.headers.get('x-keyward-user')).toBe('customer:eu:7');
    const again = await fetch(`${webhook.url}/verify`, { headers: asAlice });
    expect(again.status).toBe(403);
    expect(((await again.json()) as { error: string }).error).toBe('subject_not_allowed');
    await deleteAccessPolicy(admin, policy);
  }, 120_000);
});
