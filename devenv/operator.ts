import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
  type V1CustomResourceDefinition,
  type V1PolicyRule,
} from '@kubernetes/client-node';
import pg from 'pg';
import { parse } from 'yaml';
import { tokenHash } from '../credentials/token.js';
import { requestTimeout } from '../operator/objects.js';
import { type KeyLookup, lookupByHash } from '../store/lookup.js';
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
}

/** Runs `keyward operator` from dist/ as a child process, the way the container runs it. */
export async function startOperator(opts: StartOperatorOptions): Promise<OperatorProcess> {
  const port = await freePort();
  const identity = opts.identity ?? `operator-${port}`;
  const logDir = mkdtempSync(join(tmpdir(), 'keyward-operator-log-'));
  const proc = new ManagedProcess({
    name: `keyward operator ${identity}`,
    command: process.execPath,
    args: [join(root, 'dist', 'cli', 'main.js'), 'operator'],
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

/** Polls until `check` returns a value (not undefined), or fails with the last value seen. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  diagnostics?: () => string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    await sleep(100);
  }
  const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${detail}${diagnostics ? `\n${diagnostics()}` : ''}`,
  );
}

export type Kind = 'serviceusers' | 'apikeys';

/** Thin typed access to keyward objects for tests. */
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

/** The condition of the given type, if present. */
export function condition(
  obj: { status?: Record<string, unknown> },
  type: string,
): { status: string; reason: string; message: string; observedGeneration?: number } | undefined {
  const conditions = (obj.status?.conditions ?? []) as Array<{
    type: string;
    status: string;
    reason: string;
    message: string;
  }>;
  return conditions.find((c) => c.type === type);
}

/**
 * kstatus's rules for a custom resource, as Flux `wait` and Argo CD apply them: InProgress while
 * status.observedGeneration lags metadata.generation or Reconciling is True, Failed when Stalled is
 * True, otherwise Ready decides (False → InProgress), Current when nothing holds it back.
 */
export function kstatus(
  obj: KubernetesObject & { status?: Record<string, unknown> },
): 'Current' | 'InProgress' | 'Failed' {
  const observed = obj.status?.observedGeneration;
  if (observed === undefined || observed !== obj.metadata?.generation) return 'InProgress';
  if (condition(obj, 'Reconciling')?.status === 'True') return 'InProgress';
  if (condition(obj, 'Stalled')?.status === 'True') return 'Failed';
  const ready = condition(obj, 'Ready');
  if (ready && ready.status !== 'True') return 'InProgress';
  return 'Current';
}

/**
 * Whether the store would let this token through right now, applying the validity rules of
 * DESIGN.md §5 to the store's own lookup (secret current or in grace, key live, user active, both
 * within their AccessPolicies).
 */
export async function tokenVerifies(
  pool: pg.Pool,
  token: string,
  now = new Date(),
): Promise<KeyLookup | undefined> {
  const found = await lookupByHash(pool, tokenHash(token));
  if (!found) return undefined;
  const secretValid = found.secret.current || found.secret.notAfter > now;
  const live =
    !found.revokedAt && !found.disabled && !found.suspended && !found.userDeleted && !found.notPermitted;
  const unexpired = !found.expiresAt || found.expiresAt > now;
  return secretValid && live && unexpired ? found : undefined;
}

export function poolFor(url: string): pg.Pool {
  return new pg.Pool({ connectionString: url, max: 4 });
}
