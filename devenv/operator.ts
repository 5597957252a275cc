import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
  type V1CustomResourceDefinition,
  type V1PolicyRule,
} from '@kubernetes/client-node';
import { parse } from 'yaml';
import { requestTimeout } from '../operator/objects.js';
import { migrate } from '../store/migrate.js';
import { type ControlPlane, startControlPlane } from './controlplane/controlplane.js';
import { committedCrds, installCrds } from './crds.js';
import { createTestNamespace, restrictedKubeConfig } from './kube.js';
import { freePort, ManagedProcess, onExitCleanup, waitUntilReady } from './process.js';
import { repoRoot } from './repo.js';

const root = repoRoot();

function chartRules(file: string): V1PolicyRule[] {
  const rules = (parse(readFileSync(join(root, 'charts', 'keyward', 'files', file), 'utf8')) ?? []) as Array<{
    apiGroups: string[];
    resources: string[];
    verbs: string[];
  }>;
  return rules.map((r) => ({ apiGroups: r.apiGroups, resources: r.resources, verbs: r.verbs }));
}

/**
 * A kubeconfig file for a ServiceAccount holding exactly the chart's operator RBAC: the
 * integration suites run the operator with it, never as admin, so a missing rule fails them.
 * Cluster mode by default; with `watchNamespaces`, namespace-list mode: the namespace rules as a
 * Role in each of those namespaces and no cluster-wide right beyond the cluster reads.
 */
export async function operatorKubeconfig(
  admin: KubeConfig,
  namespace: string,
  name = 'keyward-operator',
  options: { watchNamespaces?: readonly string[] } = {},
): Promise<string> {
  const clusterReads = chartRules('operator-cluster-rules.yaml');
  const kc = await restrictedKubeConfig(admin, {
    namespace,
    name,
    rules: chartRules('operator-leader-election-rules.yaml'),
    ...(options.watchNamespaces
      ? {
          clusterRules: clusterReads,
          namespaceRules: options.watchNamespaces.map((ns) => ({
            namespace: ns,
            rules: chartRules('operator-namespace-rules.yaml'),
          })),
        }
      : // Cluster mode, as the chart renders it: the namespace rules and the cluster rules in one ClusterRole.
        { clusterRules: [...chartRules('operator-namespace-rules.yaml'), ...clusterReads] }),
  });
  const dir = mkdtempSync(join(tmpdir(), 'keyward-operator-'));
  // It holds a ServiceAccount token: gone with the run.
  onExitCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'kubeconfig');
  writeFileSync(path, kc.exportConfig(), { mode: 0o600 });
  return path;
}

export interface OperatorProcess {
  process: ManagedProcess;
  metricsUrl: string;
  identity: string;
  stop(): Promise<void>;
}

export interface StartOperatorOptions {
  kubeconfigPath: string;
  storeUrl: string;
  /** Namespace of the Lease. */
  namespace: string;
  /** Namespaces the operator reconciles (test files share one API server). */
  watchNamespace: string | readonly string[];
  identity?: string;
  env?: Record<string, string>;
  /** Flags for `node` itself, before the script (V8 flags Node refuses in NODE_OPTIONS), as the chart's operator.nodeFlags. */
  nodeFlags?: readonly string[];
  /** Where operator.log goes (the caller removes it). Default: a temp dir kept for post-mortems. */
  logDir?: string;
}

/** Runs `keyward operator` from dist/ as a child process, the way the container runs it. */
export async function startOperator(opts: StartOperatorOptions): Promise<OperatorProcess> {
  const port = await freePort();
  const identity = opts.identity ?? `operator-${port}`;
  const logDir = opts.logDir ?? mkdtempSync(join(tmpdir(), 'keyward-operator-log-'));
  const proc = new ManagedProcess({
    name: `keyward operator ${identity}`,
    command: process.execPath,
    args: [...(opts.nodeFlags ?? []), join(root, 'dist', 'cli', 'main.js'), 'operator'],
    env: {
      PATH: process.env.PATH,
      KUBECONFIG: opts.kubeconfigPath,
      KEYWARD_STORE_URL: opts.storeUrl,
      KEYWARD_NAMESPACE: opts.namespace,
      KEYWARD_WATCH_NAMESPACES: [opts.watchNamespace].flat().join(','),
      KEYWARD_IDENTITY: identity,
      KEYWARD_METRICS_LISTEN: `127.0.0.1:${port}`,
      KEYWARD_LEASE_DURATION_SECONDS: '4',
      KEYWARD_LOG_LEVEL: 'debug',
      ...opts.env,
    },
    logFile: join(logDir, 'operator.log'),
  });
  const metricsUrl = `http://127.0.0.1:${port}`;
  await waitUntilReady(
    proc,
    async () => (await fetch(`${metricsUrl}/healthz`)).ok,
    30_000,
    'serving /healthz',
  );
  return { process: proc, metricsUrl, identity, stop: () => proc.stop() };
}

/** A private control plane with keyward's CRDs and the operator reconciling one namespace. */
export interface OperatorCluster {
  readonly controlPlane: ControlPlane;
  readonly kc: KubeConfig;
  readonly namespace: string;
  readonly objects: KeywardObjects;
  readonly operator: OperatorProcess;
  stop(): Promise<void>;
}

/**
 * For suites that restart or reconfigure the API server, and for benchmarks: a control plane of
 * their own (with `crds`, default the committed ones), the store migrated, and the operator
 * running under its RBAC in a fresh namespace named after `name`.
 */
export async function startOperatorCluster(options: {
  name: string;
  storeUrl: string;
  crds?: V1CustomResourceDefinition[];
  env?: Record<string, string>;
  nodeFlags?: readonly string[];
  /** Spec of an AccessPolicy (named after the namespace) selecting the namespace, applied first. */
  accessPolicy?: Record<string, unknown>;
}): Promise<OperatorCluster> {
  const controlPlane = await startControlPlane();
  try {
    const kc = controlPlane.kubeConfig();
    await installCrds(kc, options.crds ?? committedCrds());
    const namespace = await createTestNamespace(kc, options.name);
    if (options.accessPolicy) {
      await applyAccessPolicy(kc, namespace, { ...options.accessPolicy, namespaces: [namespace] });
    }
    await migrate(options.storeUrl);
    const operator = await startOperator({
      kubeconfigPath: await operatorKubeconfig(kc, namespace),
      storeUrl: options.storeUrl,
      namespace,
      watchNamespace: namespace,
      ...(options.env ? { env: options.env } : {}),
      ...(options.nodeFlags ? { nodeFlags: options.nodeFlags } : {}),
    });
    return {
      controlPlane,
      kc,
      namespace,
      objects: new KeywardObjects(kc, namespace),
      operator,
      async stop(): Promise<void> {
        await operator.stop();
        await controlPlane.stop();
      },
    };
  } catch (err) {
    await controlPlane.stop();
    throw err;
  }
}

export type Kind = 'serviceusers' | 'apikeys';

/** Thin typed access to keyward objects, for tests and benchmarks. */
export class KeywardObjects {
  readonly #api: CustomObjectsApi;
  constructor(
    kc: KubeConfig,
    readonly namespace: string,
  ) {
    this.#api = kc.makeApiClient(CustomObjectsApi);
  }

  async create(plural: Kind, body: object): Promise<KubernetesObject> {
    return await this.#api.createNamespacedCustomObject(
      {
        group: 'keyward.dev',
        version: 'v1alpha1',
        namespace: this.namespace,
        plural,
        body: { apiVersion: 'keyward.dev/v1alpha1', ...body },
      },
      requestTimeout(10_000),
    );
  }

  async get(
    plural: Kind,
    name: string,
  ): Promise<KubernetesObject & { spec?: unknown; status?: Record<string, unknown> }> {
    return await this.#api.getNamespacedCustomObject({
      group: 'keyward.dev',
      version: 'v1alpha1',
      namespace: this.namespace,
      plural,
      name,
    });
  }

  /** JSON merge patch of the object (spec fields, labels, annotations). */
  async patch(plural: Kind, name: string, body: object): Promise<void> {
    await this.#api.patchNamespacedCustomObject(
      { group: 'keyward.dev', version: 'v1alpha1', namespace: this.namespace, plural, name, body },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch, requestTimeout(10_000)),
    );
  }

  async delete(plural: Kind, name: string): Promise<void> {
    await this.#api.deleteNamespacedCustomObject({
      group: 'keyward.dev',
      version: 'v1alpha1',
      namespace: this.namespace,
      plural,
      name,
    });
  }
}

/**
 * Creates or replaces the cluster-scoped AccessPolicy `name` (server-side apply, as an admin's
 * GitOps tool would). Test files share one API server: name policies after the test namespace.
 */
export async function applyAccessPolicy(kc: KubeConfig, name: string, spec: object): Promise<void> {
  await kc.makeApiClient(CustomObjectsApi).patchClusterCustomObject(
    {
      group: 'keyward.dev',
      version: 'v1alpha1',
      plural: 'accesspolicies',
      name,
      body: { apiVersion: 'keyward.dev/v1alpha1', kind: 'AccessPolicy', metadata: { name }, spec },
      fieldManager: 'keyward-tests',
      force: true,
    },
    setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply, requestTimeout(10_000)),
  );
}

export async function deleteAccessPolicy(kc: KubeConfig, name: string): Promise<void> {
  await kc
    .makeApiClient(CustomObjectsApi)
    .deleteClusterCustomObject(
      { group: 'keyward.dev', version: 'v1alpha1', plural: 'accesspolicies', name },
      requestTimeout(10_000),
    );
}
