import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { KubernetesObject } from '@kubernetes/client-node';
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
