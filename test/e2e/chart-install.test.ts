import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ApiextensionsV1Api,
  AppsV1Api,
  CoreV1Api,
  type KubeConfig,
  PolicyV1Api,
  RbacAuthorizationV1Api,
  type V1Pod,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildKeywardImage, type ImageArchive } from '../../devenv/image/image.js';
import { type NodeCluster, startNodeCluster } from '../../devenv/node/node.js';
import { KeywardObjects } from '../../devenv/operator.js';
import { eventually } from '../../devenv/poll.js';
import { startPostgres, type TestPostgres } from '../../devenv/postgres.js';
import { repoRoot } from '../../devenv/repo.js';
import { helmBinary } from '../chart/tools.js';
import {
  cli,
  megabytes,
  nodeLeftovers,
  podRssBytes,
  RESTRICTED_CONTAINER,
  RESTRICTED_NAMESPACE_LABELS,
  skipWithoutNode,
  uncompressedImageBytes,
} from '../support/node.js';
import { runDocumentedRoleSql, tableOwners } from '../support/store-roles.js';
import { startVerifyClient, type VerifyClient } from '../support/verify-client.js';

/**
 * The Helm chart installed the way a user installs it (docs/install.md): the real `helm` CLI and
 * kubectl against a real node that runs the keyward image, Postgres on the host with the roles of
 * docs/store-roles.md, then a tenant's ServiceUser and ApiKey used from a pod through the webhook
 * Service, a suspension, an upgrade and an uninstall.
 */
const skip = skipWithoutNode('test/e2e/chart-install.test.ts');

const ROOT = repoRoot();
const CHART = join(ROOT, 'charts', 'keyward');
const RELEASE = 'keyward';
const NS = 'keyward';
/** The docs' tenant namespace; examples/accesspolicy.yaml selects namespaces with this label. */
const TENANT = 'demo';
const TENANT_LABEL = 'keyward.dev/tenant=platform';
const DATABASE = 'keyward';
const START_TIMEOUT_MS = 600_000;
const STEP_TIMEOUT_MS = 300_000;
/** Below STEP_TIMEOUT_MS, so a stuck `--wait` fails with helm's message and the diagnostics. */
const HELM_TIMEOUT = '4m';
/** A suspension reaches the webhook through the store's change notifications, not a cache expiry. */
const SUSPENSION_TIMEOUT_MS = 30_000;

/** Component → the Secret holding its Postgres URL (names as in docs/install.md). */
const SECRETS = {
  migrate: 'keyward-postgres-owner',
  operator: 'keyward-postgres-operator',
  webhook: 'keyward-postgres-webhook',
} as const;
/** Component → its login role, as docs/store-roles.md names them. */
const LOGINS = {
  migrate: 'keyward_migrator',
  operator: 'keyward_operator_login',
  webhook: 'keyward_webhook_login',
} as const;

let image: ImageArchive;
let node: NodeCluster;
let pgServer: TestPostgres;
let helmHome: string;
let kc: KubeConfig;
let core: CoreV1Api;
let apps: AppsV1Api;
let helmEnv: NodeJS.ProcessEnv;
let helm: (args: string[]) => Promise<string>;
let kubectl: (args: string[]) => Promise<string>;
/** `--set` flags naming the image and the three Postgres Secrets, as the docs pass them. */
let installValues: string[];
let client: VerifyClient;

/** `spec.suspended` of the tenant's ServiceUser, set as a user would with kubectl. */
const setSuspended = (suspended: boolean): Promise<string> =>
  kubectl([
    '-n',
    TENANT,
    'patch',
    'serviceuser',
    'ci-deployer',
    '--type',
    'merge',
    '-p',
    JSON.stringify({ spec: { suspended } }),
  ]);

describe.skipIf(skip)('helm install of charts/keyward on a real node', () => {
  beforeAll(async () => {
    const helmPath = helmBinary();
    image = await buildKeywardImage();
    node = await startNodeCluster({ images: [image.archive] });
    pgServer = await startPostgres({ network: { address: node.hostAddress, cidr: node.podSubnet } });
    // Helm keeps its caches and repository config away from the machine's home directory.
    helmHome = await mkdtemp(join(tmpdir(), 'keyward-helm-'));
    helmEnv = {
      KUBECONFIG: node.kubeconfigPath,
      HELM_CACHE_HOME: join(helmHome, 'cache'),
      HELM_CONFIG_HOME: join(helmHome, 'config'),
      HELM_DATA_HOME: join(helmHome, 'data'),
    };
    helm = (args) => cli(helmPath, args, helmEnv);
    kubectl = (args) => cli(join(node.binDir, 'kubectl'), args, helmEnv);
    kc = node.kubeConfig();
    core = kc.makeApiClient(CoreV1Api);
    apps = kc.makeApiClient(AppsV1Api);
    const colon = image.image.lastIndexOf(':');
    installValues = [
      '--set-string',
      `image.repository=${image.image.slice(0, colon)}`,
      '--set-string',
      `image.tag=${image.image.slice(colon + 1)}`,
      '--set',
      'image.pullPolicy=Never',
      ...Object.entries(SECRETS).flatMap(([component, secret]) => [
        '--set',
        `postgres.${component}.existingSecret=${secret}`,
      ]),
    ];
  }, START_TIMEOUT_MS);

  afterAll(async () => {
    // Normally already stopped by the last test; after a failure, still leave nothing behind.
    await node?.stop();
    await pgServer?.stop();
    if (helmHome) await rm(helmHome, { recursive: true, force: true });
  }, 180_000);

  it('creates the store roles with the SQL of docs/store-roles.md, and a Secret per component', async () => {
    const passwords = await runDocumentedRoleSql(pgServer.adminUrl, join(ROOT, 'docs', 'store-roles.md'));
    expect(Object.keys(passwords).sort()).toEqual(Object.values(LOGINS).sort());

    await kubectl(['create', 'namespace', NS]);
    await kubectl([
      'label',
      'namespace',
      NS,
      ...Object.entries(RESTRICTED_NAMESPACE_LABELS).map(([k, v]) => `${k}=${v}`),
    ]);
    for (const [component, secret] of Object.entries(SECRETS)) {
      const login = LOGINS[component as keyof typeof LOGINS];
      const url = `postgres://${login}:${passwords[login]}@${node.hostAddress}:${pgServer.port}/${DATABASE}`;
      await kubectl(['-n', NS, 'create', 'secret', 'generic', secret, `--from-literal=url=${url}`]);
    }
    // The namespace really enforces the profile: a pod without the restricted settings is refused.
    const refused = await core
      .createNamespacedPod({
        namespace: NS,
        dryRun: 'All',
        body: {
          metadata: { name: 'unrestricted' },
          spec: { containers: [{ name: 'c', image: image.image, imagePullPolicy: 'Never' }] },
        },
      })
      .then(
        () => 'admitted',
        (err: Error & { body?: string }) => (JSON.parse(err.body ?? '{}') as { message?: string }).message,
      );
    expect(refused).toContain('violates PodSecurity "restricted:latest"');
  });

  it('refuses a value of the wrong type with the schema message and installs nothing', async () => {
    const failure = await helm([
      'install',
      RELEASE,
      CHART,
      '-n',
      NS,
      ...installValues,
      '--set',
      'webhook.replicas=two',
    ]).then(
      () => 'installed',
      (err: Error & { stderr?: string }) => err.stderr ?? err.message,
    );
    expect(failure).toContain("at '/webhook/replicas': got string, want integer");
    expect((await helm(['list', '-n', NS, '--all', '-q'])).trim()).toBe('');
  });

  it(
    'helm install --wait: the migrate hook succeeds, then operator and webhook are Ready under the restricted profile',
    async () => {
      const t0 = performance.now();
      await helm([
        'install',
        RELEASE,
        CHART,
        '-n',
        NS,
        '--create-namespace',
        ...installValues,
        '--wait',
        '--timeout',
        HELM_TIMEOUT,
      ]).catch(withDiagnostics);
      const installMs = performance.now() - t0;

      const status = JSON.parse(await helm(['status', RELEASE, '-n', NS, '-o', 'json'])) as HelmStatus;
      expect(status.info.status).toBe('deployed');
      expect(migrateHook(status)?.last_run?.phase).toBe('Succeeded');
      // The Job migrated as the owner role: the schema belongs to keyward_migrator, not to a component.
      expect(await tableOwners(pgServer.adminUrl, DATABASE, ['api_keys', 'service_users'])).toEqual({
        api_keys: LOGINS.migrate,
        service_users: LOGINS.migrate,
      });

      const operator = await apps.readNamespacedDeployment({ name: 'keyward-operator', namespace: NS });
      const webhook = await apps.readNamespacedDeployment({ name: 'keyward-webhook', namespace: NS });
      expect(operator.status?.readyReplicas).toBe(1);
      expect(webhook.spec?.replicas).toBe(2);
      expect(webhook.status?.readyReplicas).toBe(2);

      const pods = await releasePods();
      expect(pods.map(component).sort()).toEqual(['operator', 'webhook', 'webhook']);
      for (const pod of pods) expectRestricted(pod);
      for (const pod of pods.filter((p) => component(p) === 'webhook')) {
        // The webhook never calls the Kubernetes API: no token is mounted.
        expect(pod.spec?.automountServiceAccountToken).toBe(false);
        expect(pod.spec?.volumes?.map((v) => v.name)).not.toContainEqual(
          expect.stringMatching(/^kube-api-access/),
        );
      }

      const pdb = await kc
        .makeApiClient(PolicyV1Api)
        .readNamespacedPodDisruptionBudget({ name: 'keyward-webhook', namespace: NS });
      expect(pdb.spec?.minAvailable).toBe(1);
      await eventually('the PodDisruptionBudget to count both webhooks healthy', async () => {
        const s = (
          await kc
            .makeApiClient(PolicyV1Api)
            .readNamespacedPodDisruptionBudget({ name: 'keyward-webhook', namespace: NS })
        ).status;
        return s?.currentHealthy === 2 && s.disruptionsAllowed === 1 ? true : undefined;
      });

      const rss = pods.map((p) => [p.metadata?.name ?? '', podRssBytes(p.metadata?.uid ?? '')] as const);
      for (const [, bytes] of rss) expect(bytes).toBeGreaterThan(0);
      process.stderr.write(
        `chart-install figures: helm install --wait ${(installMs / 1000).toFixed(1)}s; node Ready after ` +
          `${(node.readyAfterMs / 1000).toFixed(1)}s; image ${image.image} archive ${megabytes(statSync(image.archive).size)} ` +
          `(uncompressed ${megabytes(uncompressedImageBytes(image.archive))}); pod RSS ` +
          `${rss.map(([name, bytes]) => `${name} ${megabytes(bytes)}`).join(', ')}; node ` +
          `${Object.entries(node.memory())
            .map(([name, bytes]) => `${name} ${megabytes(bytes)}`)
            .join(', ')}\n` +
          `kubectl get pods -A -o wide:\n${await kubectl(['get', 'pods', '-A', '-o', 'wide'])}`,
      );
    },
    STEP_TIMEOUT_MS,
  );

  it(
    "a tenant's ServiceUser and ApiKey give a Secret; a pod mounting it gets 200 from the webhook Service, 401 once suspended",
    async () => {
      // docs/install.md §3, as written.
      await kubectl(['create', 'namespace', TENANT]);
      await kubectl(['label', 'namespace', TENANT, TENANT_LABEL]);
      await kubectl(['-n', TENANT, 'apply', '-f', join(ROOT, 'examples')]);
      await kubectl(['-n', TENANT, 'wait', '--for=condition=Ready', 'apikey/ci-beta', '--timeout', '60s']);
      const secret = await core.readNamespacedSecret({ name: 'ci-beta', namespace: TENANT });
      expect(Buffer.from(secret.data?.token ?? '', 'base64').toString()).toMatch(/^kw_/);

      client = await startVerifyClient({
        core,
        kubectl,
        namespace: TENANT,
        image: image.image,
        secretName: 'ci-beta',
      });
      expect(await verifyFromPod()).toEqual({ status: 200, user: 'ci-deployer' });
      expect(await verifyFromPod({ token: 'kw_not_a_real_token' })).toEqual({ status: 401, user: null });

      await setSuspended(true);
      await eventually(
        'the suspended user to get 401',
        async () => ((await verifyFromPod()).status === 401 ? true : undefined),
        SUSPENSION_TIMEOUT_MS,
      );
      await setSuspended(false);
      await eventually(
        'the reinstated user to get 200 again',
        async () => ((await verifyFromPod()).status === 200 ? true : undefined),
        SUSPENSION_TIMEOUT_MS,
      );
    },
    STEP_TIMEOUT_MS,
  );

  it(
    'helm upgrade --reuse-values rolls the webhook out with the new values, and keys still verify',
    async () => {
      const oldPods = new Set(
        (await releasePods()).filter((p) => component(p) === 'webhook').map((p) => p.metadata?.name),
      );
      // Verification keeps answering through the rollout (maxUnavailable 0, the shutdown delay).
      let rolling = true;
      const during: Array<number | string> = [];
      const probing = (async () => {
        while (rolling)
          during.push(
            await verifyFromPod().then(
              (r) => r.status,
              (err: Error) => err.message,
            ),
          );
      })();
      try {
        await helm([
          'upgrade',
          RELEASE,
          CHART,
          '-n',
          NS,
          '--reuse-values',
          '--set',
          'webhook.replicas=3',
          '--set',
          'webhook.resources.requests.memory=96Mi',
          '--wait',
          '--timeout',
          HELM_TIMEOUT,
        ]).catch(withDiagnostics);
      } finally {
        rolling = false;
        await probing;
      }
      process.stderr.write(
        `chart-install figures: ${during.length} verifications during the upgrade's rollout\n`,
      );
      expect(during.length).toBeGreaterThan(0);
      expect(during.filter((s) => s !== 200)).toEqual([]);
      const status = JSON.parse(await helm(['status', RELEASE, '-n', NS, '-o', 'json'])) as HelmStatus;
      expect(status.version).toBe(2);
      expect(status.info.status).toBe('deployed');
      // The pre-upgrade hook ran again (the image and the Secrets came from --reuse-values).
      expect(migrateHook(status)?.last_run?.phase).toBe('Succeeded');

      const webhook = await apps.readNamespacedDeployment({ name: 'keyward-webhook', namespace: NS });
      expect(webhook.status).toMatchObject({ replicas: 3, readyReplicas: 3, updatedReplicas: 3 });
      const webhooks = await eventually('the old webhook pods to be gone', async () => {
        const current = (await releasePods()).filter((p) => component(p) === 'webhook');
        return current.length === 3 ? current : undefined;
      });
      for (const pod of webhooks) {
        expect(oldPods.has(pod.metadata?.name)).toBe(false);
        expect(pod.spec?.containers[0]?.resources?.requests?.memory).toBe('96Mi');
        expect(pod.spec?.containers[0]?.image).toBe(image.image);
        expectRestricted(pod);
      }
      expect(await verifyFromPod()).toEqual({ status: 200, user: 'ci-deployer' });
    },
    STEP_TIMEOUT_MS,
  );

  it(
    'helm uninstall removes the workloads and RBAC, and keeps the CRDs, ServiceUsers, ApiKeys and Secrets',
    async () => {
      const selector = `app.kubernetes.io/instance=${RELEASE}`;
      const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
      // The operator's ClusterRole and the tenant roles aggregated into admin/edit/view.
      const installedRoles = (await rbac.listClusterRole({ labelSelector: selector })).items;
      expect(installedRoles.map((r) => r.metadata?.name)).toContain('keyward-edit');
      await helm(['uninstall', RELEASE, '-n', NS, '--wait', '--timeout', '2m']);
      expect((await helm(['list', '-n', NS, '--all', '-q'])).trim()).toBe('');
      await eventually(
        'the release pods to be gone',
        async () => ((await releasePods({ includeTerminating: true })).length === 0 ? true : undefined),
        60_000,
      );
      expect((await apps.listNamespacedDeployment({ namespace: NS })).items).toEqual([]);
      expect((await core.listNamespacedService({ namespace: NS })).items).toEqual([]);
      expect((await rbac.listClusterRole({ labelSelector: selector })).items).toEqual([]);
      expect((await rbac.listClusterRoleBinding({ labelSelector: selector })).items).toEqual([]);

      const crds = kc.makeApiClient(ApiextensionsV1Api);
      for (const name of ['serviceusers.keyward.dev', 'apikeys.keyward.dev', 'accesspolicies.keyward.dev']) {
        const crd = await crds.readCustomResourceDefinition({ name });
        expect(crd.metadata?.annotations?.['helm.sh/resource-policy']).toBe('keep');
        expect(crd.metadata?.deletionTimestamp).toBeUndefined();
      }
      const objects = new KeywardObjects(kc, TENANT);
      expect((await objects.get('serviceusers', 'ci-deployer')).metadata?.name).toBe('ci-deployer');
      expect((await objects.get('apikeys', 'ci-beta')).metadata?.name).toBe('ci-beta');
      await core.readNamespacedSecret({ name: 'ci-beta', namespace: TENANT });
    },
    STEP_TIMEOUT_MS,
  );

  it('stops without leaving mounts, interfaces, iptables chains, cgroups or sysctl changes behind', async () => {
    const problems = await node.stop();
    await pgServer.stop();
    await rm(helmHome, { recursive: true, force: true });
    expect(await nodeLeftovers(node, problems)).toEqual([]);
  }, 180_000);
});

interface HelmStatus {
  version: number;
  info: { status: string };
  hooks?: Array<{ name: string; kind: string; last_run?: { phase?: string } }>;
}

function migrateHook(status: HelmStatus): NonNullable<HelmStatus['hooks']>[number] | undefined {
  return status.hooks?.find((h) => h.kind === 'Job' && h.name === `${RELEASE}-migrate`);
}

/** Rethrows a failed helm command with what it left to look at: every pod, and the release's logs. */
async function withDiagnostics(err: Error): Promise<never> {
  const show = (args: string[]): Promise<string> => kubectl(args).catch((e: Error) => e.message);
  const diagnostics = [
    await show(['get', 'pods,jobs', '-A', '-o', 'wide']),
    await show([
      '-n',
      NS,
      'logs',
      '-l',
      `app.kubernetes.io/instance=${RELEASE}`,
      '--all-containers',
      '--prefix',
      '--tail=20',
    ]),
  ].join('\n');
  throw new Error(`${err.message}\n${diagnostics}`);
}

function component(pod: V1Pod): string {
  return pod.metadata?.labels?.['app.kubernetes.io/component'] ?? '';
}

/** The release's operator and webhook pods (not the finished migrate Job's), running or not. */
async function releasePods(opts: { includeTerminating?: boolean } = {}): Promise<V1Pod[]> {
  const pods = await core.listNamespacedPod({
    namespace: NS,
    labelSelector: `app.kubernetes.io/instance=${RELEASE},app.kubernetes.io/component in (operator,webhook)`,
  });
  return pods.items.filter((p) => opts.includeTerminating || !p.metadata?.deletionTimestamp);
}

/** The pod, as the API server admitted and runs it, meets the restricted profile and is Ready. */
function expectRestricted(pod: V1Pod): void {
  const name = pod.metadata?.name;
  expect(pod.spec?.securityContext, name).toMatchObject({
    runAsNonRoot: true,
    seccompProfile: { type: 'RuntimeDefault' },
  });
  expect(pod.spec?.enableServiceLinks, name).toBe(false);
  const containers = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  expect(containers.length, name).toBeGreaterThan(0);
  for (const c of containers) {
    const { seccompProfile: _fromPod, ...restricted } = RESTRICTED_CONTAINER;
    expect(c.securityContext, `${name}/${c.name}`).toMatchObject(restricted);
  }
  for (const s of pod.status?.containerStatuses ?? []) {
    expect(s.ready, `${name}/${s.name} ready`).toBe(true);
    expect(s.restartCount, `${name}/${s.name} restarts`).toBe(0);
  }
}

/** GET /verify?scope=projects:beta on the webhook Service, from inside the client pod. */
async function verifyFromPod(
  opts: { token?: string } = {},
): Promise<{ status: number; user: string | null }> {
  const service = await core.readNamespacedService({ name: 'keyward-webhook', namespace: NS });
  const port = service.spec?.ports?.find((p) => p.name === 'http')?.port;
  return await client.verify(
    `http://${service.spec?.clusterIP}:${port}/verify?scope=projects:beta`,
    opts.token,
  );
}
