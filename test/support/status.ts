import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { CustomObjectsApi, type KubeConfig, type KubernetesObject, Watch } from '@kubernetes/client-node';
import { runBuildScript } from '../../devenv/process.js';
import { repoRoot } from '../../devenv/repo.js';

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

/** What a status checker says about one object. */
export interface Verdict {
  status: string;
  message: string;
}

/** kstatus's statuses (sigs.k8s.io/cli-utils/pkg/kstatus/status). */
export type KstatusStatus = 'Current' | 'InProgress' | 'Failed' | 'Terminating' | 'NotFound' | 'Unknown';

let tools: Promise<string> | undefined;

/** devenv/kstatus's bin directory, built on first use (cached outside the repository). */
function toolsDir(): Promise<string> {
  tools ??= runBuildScript(join(repoRoot(), 'devenv/kstatus/build.sh')).then((r) => r.stdout.trim());
  return tools;
}

async function runTool(tool: string, args: string[], input: unknown): Promise<Verdict[]> {
  const bin = join(await toolsDir(), tool);
  return await new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(JSON.parse(stdout) as Verdict[]);
      else reject(new Error(`${tool} failed (exit ${code}): ${stderr.trim()}`));
    });
    child.stdin.end(JSON.stringify(input));
  });
}

/**
 * What the real kstatus library (what Flux `wait` and cli-utils' appliers use) computes for each
 * object, in order: one process for the whole batch.
 */
export async function kstatusAll(
  objects: readonly KubernetesObject[],
): Promise<Array<{ status: KstatusStatus; message: string }>> {
  if (objects.length === 0) return [];
  return (await runTool('kstatus', [], objects)) as Array<{ status: KstatusStatus; message: string }>;
}

/** The real kstatus status of one object. */
export async function kstatus(obj: KubernetesObject): Promise<KstatusStatus> {
  const [verdict] = await kstatusAll([obj]);
  if (!verdict) throw new Error('kstatus returned no verdict');
  return verdict.status;
}

/** The shipped Argo CD health check of a kind (charts/keyward/health/keyward.dev/<Kind>/health.lua). */
export function healthScript(kind: 'ApiKey' | 'ServiceUser'): string {
  return join(repoRoot(), 'charts/keyward/health/keyward.dev', kind, 'health.lua');
}

/** What Argo CD's health check says about each object, evaluated by gopher-lua as Argo CD does. */
export async function argoHealthAll(
  kind: 'ApiKey' | 'ServiceUser',
  objects: readonly unknown[],
): Promise<Verdict[]> {
  if (objects.length === 0) return [];
  return await runTool('luahealth', [healthScript(kind)], objects);
}

/** Argo CD's health verdict for one object of the kind. */
export async function argoHealth(kind: 'ApiKey' | 'ServiceUser', obj: unknown): Promise<Verdict> {
  const [verdict] = await argoHealthAll(kind, [obj]);
  if (!verdict) throw new Error('luahealth returned no verdict');
  return verdict;
}

type Observed = KubernetesObject & { status?: Record<string, unknown> };

/**
 * Every version of one keyward object the API server stores from now until `done` says stop, seen
 * through a watch from the list's resourceVersion, so no write in between is missed (what a GitOps
 * tool polling at an unlucky moment could see). Call it before creating the object.
 */
export async function watchVersions(
  kc: KubeConfig,
  namespace: string,
  plural: 'apikeys' | 'serviceusers',
  name: string,
  done: (obj: Observed) => boolean,
  timeoutMs = 30_000,
): Promise<{ versions: Promise<Observed[]> }> {
  const list = await kc
    .makeApiClient(CustomObjectsApi)
    .listNamespacedCustomObject({ group: 'keyward.dev', version: 'v1alpha1', namespace, plural });
  const resourceVersion = (list as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion;
  const seen: Observed[] = [];
  let finish: (versions: Observed[]) => void = () => {};
  let fail: (err: unknown) => void = () => {};
  const versions = new Promise<Observed[]>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  let finished = false;
  const timer = setTimeout(() => {
    finished = true;
    controller.abort();
    const last = JSON.stringify(seen.at(-1)?.status ?? null);
    fail(
      new Error(
        `${plural}/${name}: not done after ${timeoutMs} ms (${seen.length} versions; last status ${last})`,
      ),
    );
  }, timeoutMs);
  const controller = await new Watch(kc).watch(
    `/apis/keyward.dev/v1alpha1/namespaces/${namespace}/${plural}`,
    { fieldSelector: `metadata.name=${name}`, resourceVersion },
    (type: string, obj: Observed) => {
      if (finished || (type !== 'ADDED' && type !== 'MODIFIED')) return;
      seen.push(obj);
      if (done(obj)) {
        finished = true;
        clearTimeout(timer);
        controller.abort();
        finish(seen);
      }
    },
    (err: unknown) => {
      if (!finished) fail(err ?? new Error(`the watch on ${plural}/${name} ended early`));
    },
  );
  return { versions };
}
