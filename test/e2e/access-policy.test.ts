import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenHash } from '../../credentials/token.js';
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
import { lookupByHash } from '../../store/lookup.js';
import { migrate } from '../../store/migrate.js';
import type { RunningWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { argoHealth, condition, kstatusAll } from '../support/status.js';
import { poolFor } from '../support/store.js';
import {
  startTokenReviewWebhook,
  type TokenReviewWebhook,
  tokenOnlyKubeconfig,
} from '../support/tokenreview-webhook.js';
import { runReadyWebhook, testConfig } from '../support/webhook.js';

/**
 * The trust model as a hostile tenant meets it: a real kube-apiserver authenticating API keys
 * through the real webhook's /tokenreview, the operator running with the chart's RBAC across all
 * namespaces, and tenants holding only namespace-scoped RBAC on ServiceUsers, ApiKeys and Secrets.
 */
const run = promisify(execFile);

let cp: ControlPlane;
let admin: KubeConfig;
let webhook: RunningWebhook;
let apiserverWebhook: TokenReviewWebhook;
let operator: OperatorProcess;
let pool: pg.Pool;
let dir: string;
let anonymousKubeconfig: string;

beforeAll(async () => {
  const storeUrl = await testDatabase();
  await migrate(storeUrl);
  pool = poolFor(storeUrl);
  webhook = await runReadyWebhook(testConfig(storeUrl, { KEYWARD_TOKEN_HEADER: 'none' }));
  dir = await mkdtemp(join(tmpdir(), 'keyward-policy-e2e-'));
  // kube-apiserver calls a second replica over TLS with its client certificate; tests call
  // /verify on the plain-HTTP one, as an ingress in the cluster would.
  apiserverWebhook = await startTokenReviewWebhook(storeUrl, dir);
  cp = await startControlPlane({ authnWebhook: apiserverWebhook.authnWebhook });
  admin = cp.kubeConfig();
  await installCrds(admin);
  const system = await createTestNamespace(admin, 'keyward-system');
  operator = await startOperator({
    kubeconfigPath: await operatorKubeconfig(admin, system),
    storeUrl,
    namespace: system,
    // Every namespace: tenants in several namespaces compete for usernames.
    watchNamespace: '',
  });
  anonymousKubeconfig = await tokenOnlyKubeconfig(cp, join(dir, 'token.kubeconfig'));
});

afterAll(async () => {
  await operator?.stop();
  await cp?.stop();
  await webhook?.close();
  await apiserverWebhook?.webhook.close();
  await pool?.end();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const logs = (): string => operator.process.logTail(40);

interface Tenant {
  readonly namespace: string;
  /** The tenant's own credentials: namespace-scoped RBAC only. */
  readonly objects: KeywardObjects;
  readonly kc: KubeConfig;
}

/** A namespace and a ServiceAccount that may edit ServiceUsers and ApiKeys (and read Secrets) there only. */
async function tenant(prefix: string): Promise<Tenant> {
  const namespace = await createTestNamespace(admin, prefix);
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
  return { namespace, kc, objects: new KeywardObjects(kc, namespace) };
}

async function createUser(t: Tenant, name: string, spec: Record<string, unknown>): Promise<void> {
  await t.objects.create('serviceusers', { kind: 'ServiceUser', metadata: { name }, spec });
}

async function createKey(
  t: Tenant,
  name: string,
  user: string,
  spec: Record<string, unknown> = {},
): Promise<void> {
  await t.objects.create('apikeys', {
    kind: 'ApiKey',
    metadata: { name },
    spec: { serviceUserRef: { name: user }, ...spec },
  });
}

type Obj = Awaited<ReturnType<KeywardObjects['get']>>;

async function readyReason(
  t: Tenant,
  plural: 'serviceusers' | 'apikeys',
  name: string,
  reason: string,
): Promise<Obj> {
  return eventually(
    `${plural} ${t.namespace}/${name} Ready reason ${reason}`,
    async () => {
      const obj = await t.objects.get(plural, name);
      const current = obj.status?.observedGeneration === obj.metadata?.generation;
      return current && condition(obj, 'Ready')?.reason === reason ? obj : undefined;
    },
    30_000,
    logs,
  );
}

/** The token in the key's Secret, read with the tenant's own rights. */
async function tokenOf(t: Tenant, secretName: string): Promise<string> {
  return eventually(`token in Secret ${t.namespace}/${secretName}`, async () => {
    const secret = await t.kc
      .makeApiClient(CoreV1Api)
      .readNamespacedSecret({ namespace: t.namespace, name: secretName });
    const data = secret.data?.token;
    return data ? Buffer.from(data, 'base64').toString('utf8') : undefined;
  });
}

async function verify(token: string, scope?: string): Promise<Response> {
  const query = scope === undefined ? '' : `?scope=${encodeURIComponent(scope)}`;
  return fetch(`${webhook.url}/verify${query}`, { headers: { authorization: `Bearer ${token}` } });
}

async function verifyStatus(token: string, scope?: string): Promise<number> {
  return (await verify(token, scope)).status;
}

async function kubectl(
  args: string[],
  token: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      join(cp.binDir, 'kubectl'),
      ['--kubeconfig', anonymousKubeconfig, '--token', token, ...args],
      { timeout: 30_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function whoami(token: string): Promise<{ username: string; groups: string[] } | undefined> {
  const result = await kubectl(['auth', 'whoami', '-o', 'json'], token);
  if (result.code !== 0) return undefined;
  return (JSON.parse(result.stdout) as { status: { userInfo: { username: string; groups: string[] } } })
    .status.userInfo;
}

/** Sets (or, with null, removes) labels of a namespace, as the cluster admin. */
async function relabel(name: string, labels: Record<string, string | null>): Promise<void> {
  const core = admin.makeApiClient(CoreV1Api);
  const ns = await core.readNamespace({ name });
  const next = { ...ns.metadata?.labels };
  for (const [key, value] of Object.entries(labels)) {
    if (value === null) delete next[key];
    else next[key] = value;
  }
  ns.metadata = { ...ns.metadata, labels: next };
  await core.replaceNamespace({ name, body: ns });
}

describe('a tenant with namespace-scoped RBAC', () => {
  it('cannot write an AccessPolicy', async () => {
    const t = await tenant('policy-writer');
    const attempt = await t.kc
      .makeApiClient(CustomObjectsApi)
      .createClusterCustomObject({
        group: 'keyward.dev',
        version: 'v1alpha1',
        plural: 'accesspolicies',
        body: {
          apiVersion: 'keyward.dev/v1alpha1',
          kind: 'AccessPolicy',
          metadata: { name: `${t.namespace}-self-grant` },
          spec: { namespaces: [t.namespace], groups: ['admins'], kubernetesAuthentication: true },
        },
      })
      .then(
        () => undefined,
        (err: { code?: number }) => err.code,
      );
    expect(attempt).toBe(403);
  });

  it('cannot ask for system:masters, and asking for * gets NotPermitted: no key of it reaches Kubernetes or another team', async () => {
    const t = await tenant('team-hostile');
    // Admission refuses system: groups outright, naming the field.
    const refused = await createUser(t, 'root', {
      username: `${t.namespace}_root`,
      groups: ['system:masters'],
      scopes: ['*'],
    }).then(
      () => undefined,
      (err: { code?: number; body?: string }) => err,
    );
    expect(refused?.code).toBe(422);
    expect(String(refused?.body)).toMatch(/spec\.groups\[0\]/);

    await createUser(t, 'wide', { username: `${t.namespace}_wide`, scopes: ['*'] });
    const wide = await readyReason(t, 'serviceusers', 'wide', 'NotPermitted');
    expect(condition(wide, 'Ready')?.message).toBe(
      `spec.scopes[0] "*" is not permitted in namespace ${t.namespace} (no AccessPolicy selects it)`,
    );
    const events = await admin.makeApiClient(CoreV1Api).listNamespacedEvent({ namespace: t.namespace });
    expect(events.items.some((e) => e.involvedObject.name === 'wide' && e.reason === 'NotPermitted')).toBe(
      true,
    );
    // Nothing is stored for a user the store never held, so its keys are never issued.
    const { rows } = await pool.query('SELECT 1 FROM service_users WHERE namespace = $1', [t.namespace]);
    expect(rows).toHaveLength(0);
    await createKey(t, 'wide-key', 'wide');
    const wideKey = await readyReason(t, 'apikeys', 'wide-key', 'ServiceUserNotPermitted');
    // The user is Stalled (Failed to kstatus); its key waits for it (InProgress), Degraded in Argo CD.
    expect((await kstatusAll([wide, wideKey])).map((v) => v.status)).toEqual(['Failed', 'InProgress']);
    expect(await argoHealth('ServiceUser', wide)).toEqual({
      status: 'Degraded',
      message: condition(wide, 'Ready')?.message,
    });
    expect((await argoHealth('ApiKey', wideKey)).status).toBe('Degraded');

    // A user that starts inside the grants and then widens itself: its keys stop verifying at once.
    await createUser(t, 'greedy', { username: `${t.namespace}_greedy`, scopes: [`${t.namespace}:read`] });
    await createKey(t, 'greedy-key', 'greedy');
    await readyReason(t, 'apikeys', 'greedy-key', 'Issued');
    const token = await tokenOf(t, 'greedy-key');
    expect(await verifyStatus(token, `${t.namespace}:read`)).toBe(200);
    expect(await verifyStatus(token, 'other-team:admin')).toBe(403);
    // Not a Kubernetes credential: no policy allows it.
    const canI = await kubectl(['auth', 'can-i', '*', '*'], token);
    expect(canI.stdout.trim()).not.toBe('yes');
    expect(canI.stderr).toMatch(/Unauthorized/);

    await t.objects.patch('serviceusers', 'greedy', { spec: { scopes: ['*'], groups: ['cluster-admins'] } });
    await readyReason(t, 'serviceusers', 'greedy', 'NotPermitted');
    await eventually(
      'the widened user to stop verifying',
      async () => (await verifyStatus(token)) === 401,
      10_000,
    );
    expect(await verifyStatus(token, 'other-team:admin')).toBe(401);
    const body = await (await verify(token)).text();
    expect(body).toMatch(/AccessPolicy/);
    // Nothing beyond the grants is stored.
    const stored = await lookupByHash(pool, tokenHash(token));
    expect(stored).toMatchObject({
      userScopes: [],
      groups: [],
      notPermitted: true,
      kubernetesAuthentication: false,
    });
    await readyReason(t, 'apikeys', 'greedy-key', 'ServiceUserNotPermitted');
    expect((await kubectl(['auth', 'can-i', '*', '*'], token)).stdout.trim()).not.toBe('yes');

    // Back inside the grants: the same key verifies again.
    await t.objects.patch('serviceusers', 'greedy', {
      spec: { scopes: [`${t.namespace}:read`], groups: null },
    });
    await readyReason(t, 'serviceusers', 'greedy', 'Stored');
    await eventually(
      'verifying again',
      async () => (await verifyStatus(token, `${t.namespace}:read`)) === 200,
      10_000,
    );
  }, 120_000);
});

describe('an AccessPolicy', () => {
  it('lets keys onto Kubernetes as keyward:<username> with keyward:-prefixed groups, and its deletion takes that back', async () => {
    const t = await tenant('team-kube');
    const username = `${t.namespace}_deployer`;
    await createUser(t, 'deployer', { username });
    await createKey(t, 'deployer-key', 'deployer');
    await readyReason(t, 'apikeys', 'deployer-key', 'Issued');
    const token = await tokenOf(t, 'deployer-key');
    expect(await verifyStatus(token)).toBe(200);
    expect(await whoami(token)).toBeUndefined();

    const policy = `${t.namespace}-kube`;
    await applyAccessPolicy(admin, policy, {
      namespaces: [t.namespace],
      groups: ['deployers'],
      kubernetesAuthentication: true,
    });
    await t.objects.patch('serviceusers', 'deployer', { spec: { groups: ['deployers'] } });
    const identity = await eventually(
      'whoami with the policy',
      async () => {
        const who = await whoami(token);
        return who?.groups.includes('keyward:deployers') ? who : undefined;
      },
      30_000,
      logs,
    );
    expect(identity.username).toBe(`keyward:${username}`);
    expect(identity.groups).toEqual(expect.arrayContaining(['keyward:deployers', 'system:authenticated']));
    expect(identity.groups).not.toContain('deployers');
    expect((await kubectl(['auth', 'can-i', '*', '*'], token)).stdout.trim()).toBe('no');

    // Without the policy the group is beyond the grants: the user is NotPermitted and its key
    // authenticates nowhere (kube-apiserver keeps a success for 10 s).
    await deleteAccessPolicy(admin, policy);
    const blocked = await readyReason(t, 'serviceusers', 'deployer', 'NotPermitted');
    expect(condition(blocked, 'Ready')?.message).toMatch(
      new RegExp(`^spec\\.groups\\[0\\] "deployers" is not permitted in namespace ${t.namespace}`),
    );
    await eventually('the webhook to refuse', async () => (await verifyStatus(token)) === 401, 10_000);
    await eventually('the API server to refuse', async () => (await whoami(token)) === undefined, 20_000);
  }, 120_000);

  it('withdrawing a scope, or a namespace label, stops it verifying', async () => {
    const t = await tenant('team-scopes');
    const policy = `${t.namespace}-shared`;
    await relabel(t.namespace, { 'keyward.dev/tenant': t.namespace });
    await applyAccessPolicy(admin, policy, {
      namespaceSelector: { matchLabels: { 'keyward.dev/tenant': t.namespace } },
      scopes: ['shared:read', 'shared:write'],
    });
    await createUser(t, 'reader', { username: `${t.namespace}_reader`, scopes: ['shared:read'] });
    await createKey(t, 'reader-key', 'reader');
    await readyReason(t, 'apikeys', 'reader-key', 'Issued');
    const token = await tokenOf(t, 'reader-key');
    expect(await verifyStatus(token, 'shared:read')).toBe(200);

    await applyAccessPolicy(admin, policy, {
      namespaceSelector: { matchLabels: { 'keyward.dev/tenant': t.namespace } },
      scopes: ['shared:write'],
    });
    const withdrawn = await readyReason(t, 'serviceusers', 'reader', 'NotPermitted');
    expect(condition(withdrawn, 'Ready')?.message).toBe(
      `spec.scopes[0] "shared:read" is not permitted in namespace ${t.namespace} (AccessPolicies: ${policy})`,
    );
    await eventually('withdrawal', async () => (await verifyStatus(token, 'shared:read')) === 401, 10_000);

    await applyAccessPolicy(admin, policy, {
      namespaceSelector: { matchLabels: { 'keyward.dev/tenant': t.namespace } },
      scopes: ['shared:read'],
    });
    await readyReason(t, 'serviceusers', 'reader', 'Stored');
    await eventually('grant again', async () => (await verifyStatus(token, 'shared:read')) === 200, 10_000);

    // The label is what selects the namespace: removing it withdraws the grant too.
    await relabel(t.namespace, { 'keyward.dev/tenant': null });
    await readyReason(t, 'serviceusers', 'reader', 'NotPermitted');
    await eventually('label removal', async () => (await verifyStatus(token, 'shared:read')) === 401, 10_000);
    await deleteAccessPolicy(admin, policy);
  }, 120_000);

  it('bounds key lifetimes and key scopes; the stored expiry never exceeds the grant', async () => {
    const t = await tenant('team-lifetime');
    const policy = `${t.namespace}-short`;
    await applyAccessPolicy(admin, policy, { namespaces: [t.namespace], maxKeyLifetime: '1d' });
    await createUser(t, 'svc', { username: `${t.namespace}_svc`, scopes: [`${t.namespace}:*`] });
    await readyReason(t, 'serviceusers', 'svc', 'Stored');

    await createKey(t, 'forever', 'svc');
    const forever = await readyReason(t, 'apikeys', 'forever', 'NotPermitted');
    expect(condition(forever, 'Ready')?.message).toMatch(
      /^a key without spec\.ttl or spec\.expiresAt is not permitted: keys live at most 1d/,
    );
    await createKey(t, 'long', 'svc', { ttl: '30d' });
    const long = await readyReason(t, 'apikeys', 'long', 'NotPermitted');
    expect(condition(long, 'Ready')?.message).toMatch(
      /^spec\.ttl "30d" is not permitted: keys live at most 1d/,
    );
    // A key its policy does not permit is Stalled: Failed to kstatus, Degraded to Argo CD.
    expect((await kstatusAll([forever, long])).map((v) => v.status)).toEqual(['Failed', 'Failed']);
    expect((await argoHealth('ApiKey', long)).status).toBe('Degraded');
    await createKey(t, 'foreign', 'svc', { ttl: '1h', scopes: ['other-team:admin'] });
    const foreign = await readyReason(t, 'apikeys', 'foreign', 'NotPermitted');
    expect(condition(foreign, 'Ready')?.message).toMatch(
      /^spec\.scopes\[0\] "other-team:admin" is not permitted/,
    );
    const secrets = await t.kc.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: t.namespace });
    expect(secrets.items.map((s) => s.metadata?.name)).not.toEqual(expect.arrayContaining(['forever']));
    expect(secrets.items.map((s) => s.metadata?.name)).not.toEqual(expect.arrayContaining(['long']));

    await createKey(t, 'short', 'svc', { ttl: '12h' });
    const short = await readyReason(t, 'apikeys', 'short', 'Issued');
    const token = await tokenOf(t, 'short');
    expect(await verifyStatus(token)).toBe(200);
    // Widening the ttl later: NotPermitted, the key stops verifying, the stored expiry stays in the grant.
    await t.objects.patch('apikeys', 'short', { spec: { ttl: '90d' } });
    await readyReason(t, 'apikeys', 'short', 'NotPermitted');
    await eventually(
      'the widened key to stop verifying',
      async () => (await verifyStatus(token)) === 401,
      10_000,
    );
    const stored = await lookupByHash(pool, tokenHash(token));
    const issued = new Date(String(short.status?.rotatedAt)).getTime();
    expect(stored?.expiresAt?.getTime()).toBeLessThanOrEqual(issued + 86_400_000 + 1000);
    await deleteAccessPolicy(admin, policy);
  }, 120_000);
});

describe('usernames', () => {
  it('a name freed in one namespace cannot be claimed from another unless a policy grants it there', async () => {
    const a = await tenant('team-owner');
    const b = await tenant('team-thief');
    const owned = `${a.namespace}_bot`;
    await createUser(a, 'bot', { username: owned });
    await readyReason(a, 'serviceusers', 'bot', 'Stored');
    await a.objects.delete('serviceusers', 'bot');
    await eventually('the name to be freed', async () => {
      const { rows } = await pool.query(
        'SELECT 1 FROM service_users WHERE username = $1 AND deleted_at IS NULL',
        [owned],
      );
      return rows.length === 0 ? true : undefined;
    });
    await createUser(b, 'bot', { username: owned });
    const stolen = await readyReason(b, 'serviceusers', 'bot', 'NotPermitted');
    expect(condition(stolen, 'Ready')?.message).toBe(
      `spec.username "${owned}" is not permitted in namespace ${b.namespace} (no AccessPolicy selects it)`,
    );
    const { rows } = await pool.query(
      'SELECT 1 FROM service_users WHERE username = $1 AND deleted_at IS NULL',
      [owned],
    );
    expect(rows).toHaveLength(0);

    // A name a policy grants both namespaces: first come, first served, and free once released.
    const policy = `${a.namespace}-shared-names`;
    const shared = `shared-${a.namespace}`;
    await applyAccessPolicy(admin, policy, {
      namespaces: [a.namespace, b.namespace],
      usernames: [`${shared}*`],
    });
    await createUser(a, 'holder', { username: shared });
    await readyReason(a, 'serviceusers', 'holder', 'Stored');
    await createUser(b, 'claimant', { username: shared });
    await readyReason(b, 'serviceusers', 'claimant', 'UsernameConflict');
    await a.objects.delete('serviceusers', 'holder');
    await readyReason(b, 'serviceusers', 'claimant', 'Stored');
    await deleteAccessPolicy(admin, policy);
  }, 120_000);

  it('a rename takes effect at once; a held name keeps the old one in force', async () => {
    const t = await tenant('team-rename');
    const first = `${t.namespace}_first`;
    const second = `${t.namespace}_second`;
    await createUser(t, 'held', { username: `${t.namespace}_held` });
    await createUser(t, 'mover', { username: first });
    await createKey(t, 'mover-key', 'mover');
    await readyReason(t, 'apikeys', 'mover-key', 'Issued');
    const token = await tokenOf(t, 'mover-key');
    expect((await verify(token)).headers.get('x-keyward-user')).toBe(first);

    await t.objects.patch('serviceusers', 'mover', { spec: { username: second } });
    const renamed = await readyReason(t, 'serviceusers', 'mover', 'Stored');
    expect(renamed.status?.username).toBe(second);
    await eventually(
      'rename',
      async () => (await verify(token)).headers.get('x-keyward-user') === second,
      10_000,
    );

    await t.objects.patch('serviceusers', 'mover', { spec: { username: `${t.namespace}_held` } });
    const conflict = await readyReason(t, 'serviceusers', 'mover', 'UsernameConflict');
    expect(conflict.status?.username).toBe(second);
    expect((await verify(token)).headers.get('x-keyward-user')).toBe(second);
  }, 120_000);
});
