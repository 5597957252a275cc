import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig, type KubernetesObject, KubernetesObjectApi } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import {
  type ControlPlane,
  controlPlaneBinaries,
  startControlPlane,
} from '../devenv/controlplane/controlplane.js';
import { installCrds } from '../devenv/crds.js';
import { type OperatorProcess, startOperator } from '../devenv/operator.js';
import { eventually } from '../devenv/poll.js';
import { createDatabase, startPostgres, type TestPostgres } from '../devenv/postgres.js';
import { onExitCleanup, onSignalStop } from '../devenv/process.js';
import { repoRoot } from '../devenv/repo.js';
import { migrate } from '../store/migrate.js';
import { loadConfig } from '../webhook/config.js';
import { type RunningWebhook, runWebhook } from '../webhook/server.js';

export interface SandboxOptions {
  /** Use this kube-context of the current kubeconfig instead of a private control plane. */
  readonly context?: string;
  readonly namespace: string;
}

/** How long the example ApiKey may take to become Ready once the operator runs. */
const EXAMPLE_READY_TIMEOUT_MS = 60_000;

/**
 * `keyward sandbox` (`npm run sandbox`): everything keyward needs on one machine, for trying it
 * out from a checkout, from devenv/ (the local environment the tests and benchmarks use too). A
 * private Postgres and (unless --context) a private control plane whose binaries
 * devenv/controlplane/build.sh builds once into the cache and reuses, the CRDs, the operator and
 * the webhook, then examples/ applied. Prints each step with the time since start, then how to
 * reach it, and runs until Ctrl+C (SIGINT/SIGTERM): then it stops everything it started, removes
 * its files (the kubeconfig it wrote included) and exits 0.
 */
export async function sandboxCommand(options: SandboxOptions): Promise<void> {
  const started = performance.now();
  const say = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  const step = (line: string): void => {
    say(`[${((performance.now() - started) / 1000).toFixed(1).padStart(4)}s] ${line}`);
  };
  const cleanups: Array<() => Promise<void>> = [];
  let stopping: Promise<void> | undefined;
  // Once only: a signal may arrive while a failed start is being cleaned up.
  const stopAll = (): Promise<void> => {
    stopping ??= stopEverything();
    return stopping;
  };
  const stopEverything = async (): Promise<void> => {
    step('stopping ...');
    const problems: string[] = [];
    for (const stop of cleanups.reverse()) {
      await stop().catch((err: unknown) => problems.push(err instanceof Error ? err.message : String(err)));
    }
    if (problems.length > 0) {
      step(`stopped, with problems:\n  ${problems.join('\n  ')}`);
      throw new Error('the sandbox did not stop cleanly');
    }
    step('stopped; everything it started is gone');
  };
  // Ctrl+C is how the sandbox ends: at any step, stop what has started and exit 0.
  onSignalStop(stopAll, { exitCode: 0 });

  // The sandbox's own files: the operator's log and, with --context, the kubeconfig it hands on.
  const dir = mkdtempSync(join(tmpdir(), 'keyward-sandbox-'));
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  const unregisterDir = onExitCleanup(removeDir);
  cleanups.push(async () => {
    removeDir();
    unregisterDir();
  });

  try {
    await startAndServe(options, dir, step, say, cleanups);
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }
}

/** Starts each piece (registering how to stop it), prints how to reach them, then never returns. */
async function startAndServe(
  options: SandboxOptions,
  dir: string,
  step: (line: string) => void,
  say: (line: string) => void,
  cleanups: Array<() => Promise<void>>,
): Promise<never> {
  step('starting Postgres and the control plane ...');
  // allSettled: when one start fails, the other still finishes, so its stop is registered too.
  const [pgResult, kubeResult] = await Promise.allSettled([
    startPostgres().then((p: TestPostgres) => {
      cleanups.push(() => p.stop());
      step(`Postgres ready (port ${p.port})`);
      return p;
    }),
    clusterFor(options.context, dir, step).then((c) => {
      if (c.controlPlane) cleanups.push(() => c.controlPlane!.stop());
      else step(`using context ${options.context}`);
      return c;
    }),
  ]);
  if (pgResult.status === 'rejected') throw pgResult.reason;
  if (kubeResult.status === 'rejected') throw kubeResult.reason;
  const postgres = pgResult.value;
  const kube = kubeResult.value;
  const storeUrl = await createDatabase(postgres.adminUrl, 'keyward');
  await migrate(storeUrl);
  step('store migrated');
  await installCrds(kube.kc);
  await ensureNamespace(kube.kc, options.namespace);
  step(`CRDs installed, namespace ${options.namespace} ready`);

  const operator: OperatorProcess = await startOperator({
    kubeconfigPath: kube.kubeconfigPath,
    storeUrl,
    namespace: options.namespace,
    watchNamespace: options.namespace,
    env: { KEYWARD_LOG_LEVEL: 'info' },
    logDir: dir,
  });
  cleanups.push(() => operator.stop());
  step(`operator ready (pid ${operator.process.pid})`);
  const webhook: RunningWebhook = await runWebhook({
    config: loadConfig({
      KEYWARD_STORE_URL: storeUrl,
      KEYWARD_WEBHOOK_LISTEN: '127.0.0.1:0',
      KEYWARD_METRICS_LISTEN: '127.0.0.1:0',
      KEYWARD_LOG_LEVEL: 'warn',
    }),
    handleSignals: false,
  });
  cleanups.push(() => webhook.close());
  step(`webhook ready (${webhook.url})`);

  const applied = await applyExamples(kube.kc, options.namespace);
  step(`applied ${applied.join(', ')}`);
  const key = await readyKeyWithToken(kube.kc, options.namespace);
  // Proves the printed command works before printing it.
  const check = await fetch(`${webhook.url}/verify?scope=${encodeURIComponent(key.scope)}`, {
    headers: { authorization: `Bearer ${key.token}` },
  });
  if (check.status !== 200) throw new Error(`the webhook refused the example key (${check.status})`);

  const kubectl = 'kubectl';
  const ns = options.namespace;
  step(`ready: ApiKey ${key.name} is Ready and its token verifies. In another shell:`);
  say('');
  say(`  export KUBECONFIG=${kube.kubeconfigPath}`);
  if (kube.controlPlane) say(`  export PATH=${kube.controlPlane.binDir}:$PATH   # the sandbox's kubectl`);
  say(`  ${kubectl} -n ${ns} get serviceusers,apikeys`);
  say(
    `  TOKEN=$(${kubectl} -n ${ns} get secret ${key.secretName} -o jsonpath='{.data.${key.tokenKey}}' | base64 -d)`,
  );
  say(`  curl -i -H "Authorization: Bearer $TOKEN" '${webhook.url}/verify?scope=${key.scope}'`);
  say('');
  say(
    `  rotate it:  ${kubectl} -n ${ns} annotate apikey ${key.name} keyward.dev/rotate=$(date +%s) --overwrite`,
  );
  say(
    `  suspend:    ${kubectl} -n ${ns} patch serviceuser ${key.user} --type merge -p '{"spec":{"suspended":true}}'`,
  );
  say(`  operator log: ${operator.process.logFile}`);
  say('');
  say('Ctrl+C stops everything and removes its files.');
  // Runs until the signal handler has stopped everything and exits the process.
  return await new Promise<never>(() => undefined);
}

interface Cluster {
  readonly kc: KubeConfig;
  readonly kubeconfigPath: string;
  readonly controlPlane?: ControlPlane;
}

async function clusterFor(
  context: string | undefined,
  dir: string,
  step: (line: string) => void,
): Promise<Cluster> {
  if (context === undefined) {
    const binaries = await controlPlaneBinaries();
    step(
      binaries.built.length > 0
        ? `control plane binaries built: ${binaries.built.join(', ')} (cached in ${binaries.binDir} for the next run)`
        : `control plane binaries reused from ${binaries.binDir}`,
    );
    const controlPlane = await startControlPlane({ report: step });
    return { kc: controlPlane.kubeConfig(), kubeconfigPath: controlPlane.kubeconfigPath, controlPlane };
  }
  const kc = new KubeConfig();
  kc.loadFromDefault();
  if (!kc.getContexts().some((c) => c.name === context)) {
    throw new Error(`no kube-context named ${context} in the current kubeconfig`);
  }
  kc.setCurrentContext(context);
  // The operator runs as a child process: hand it this one context, not the whole file.
  const kubeconfigPath = join(dir, 'kubeconfig');
  writeFileSync(kubeconfigPath, kc.exportConfig(), { mode: 0o600 });
  return { kc, kubeconfigPath };
}

/** The label examples/accesspolicy.yaml selects namespaces by. */
const TENANT_LABEL = { 'keyward.dev/tenant': 'platform' };

/** Creates the namespace, or labels an existing one, so the example AccessPolicy selects it. */
async function ensureNamespace(kc: KubeConfig, name: string): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  try {
    await core.createNamespace({ body: { metadata: { name, labels: TENANT_LABEL } } });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
    await KubernetesObjectApi.makeApiClient(kc).patch(
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: TENANT_LABEL } },
      undefined,
      undefined,
      'keyward-sandbox',
      true,
      'application/apply-patch+yaml',
    );
  }
}

/** Apply order: the cluster admin's policies, then users, then their keys. */
const KIND_ORDER = ['AccessPolicy', 'ServiceUser', 'ApiKey'];

/** Applies every manifest in examples/ (AccessPolicies, then ServiceUsers, then ApiKeys); returns kind/name of each. */
async function applyExamples(kc: KubeConfig, namespace: string): Promise<string[]> {
  const dir = join(repoRoot(), 'examples');
  const objects = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .flatMap((f) =>
      parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => d.toJS() as KubernetesObject),
    )
    .filter((o) => o?.kind)
    .sort((a, b) => KIND_ORDER.indexOf(a.kind ?? '') - KIND_ORDER.indexOf(b.kind ?? ''));
  const api = KubernetesObjectApi.makeApiClient(kc);
  const applied: string[] = [];
  for (const object of objects) {
    // AccessPolicies are cluster-scoped.
    const body =
      object.kind === 'AccessPolicy' ? object : { ...object, metadata: { ...object.metadata, namespace } };
    await api.patch(body, undefined, undefined, 'keyward-sandbox', true, 'application/apply-patch+yaml');
    applied.push(`${object.kind}/${object.metadata?.name}`);
  }
  return applied;
}

interface ExampleKey {
  readonly name: string;
  readonly user: string;
  readonly secretName: string;
  readonly tokenKey: string;
  readonly scope: string;
  readonly token: string;
}

interface ApiKeyView extends KubernetesObject {
  spec: { serviceUserRef: { name: string }; scopes?: string[]; secret?: { tokenKey?: string } };
  status?: { secretName?: string; conditions?: Array<{ type: string; status: string }> };
}

/** The first example ApiKey that becomes Ready, with its token read from its Secret. */
async function readyKeyWithToken(kc: KubeConfig, namespace: string): Promise<ExampleKey> {
  const api = KubernetesObjectApi.makeApiClient(kc);
  const core = kc.makeApiClient(CoreV1Api);
  return await eventually(
    'an example ApiKey to become Ready',
    async () => {
      const list = await api.list<ApiKeyView>('keyward.dev/v1alpha1', 'ApiKey', namespace);
      const ready = list.items.find(
        (k) =>
          k.status?.secretName && k.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
      );
      if (!ready?.status?.secretName) return undefined;
      const tokenKey = ready.spec.secret?.tokenKey ?? 'token';
      const secret = await core.readNamespacedSecret({ name: ready.status.secretName, namespace });
      const data = secret.data?.[tokenKey];
      if (!data) return undefined;
      return {
        name: ready.metadata?.name ?? '',
        user: ready.spec.serviceUserRef.name,
        secretName: ready.status.secretName,
        tokenKey,
        scope: ready.spec.scopes?.[0] ?? '',
        token: Buffer.from(data, 'base64').toString('utf8'),
      };
    },
    EXAMPLE_READY_TIMEOUT_MS,
  );
}
