import type { KubernetesObject } from '@kubernetes/client-node';

/** Field managers of the GitOps controllers, as they appear in managedFields. */
const MANAGERS: Record<string, string> = {
  'argocd-controller': 'Argo CD',
  'argocd-application-controller': 'Argo CD',
  'kustomize-controller': 'Flux',
  'helm-controller': 'Flux',
};

/**
 * Which GitOps tool, if any, applies this object, from its tracking labels and annotations (Argo
 * CD: `argocd.argoproj.io/*`, or `app.kubernetes.io/instance` with its label tracking; Flux:
 * `kustomize.toolkit.fluxcd.io/*`, `helm.toolkit.fluxcd.io/*`) and from managedFields.
 */
function gitOpsManager(obj: KubernetesObject): 'Argo CD' | 'Flux' | undefined {
  const labels = Object.keys(obj.metadata?.labels ?? {});
  const annotations = Object.keys(obj.metadata?.annotations ?? {});
  const keys = [...labels, ...annotations];
  if (keys.some((k) => k.startsWith('argocd.argoproj.io/'))) return 'Argo CD';
  if (
    keys.some((k) => k.startsWith('kustomize.toolkit.fluxcd.io/') || k.startsWith('helm.toolkit.fluxcd.io/'))
  )
    return 'Flux';
  for (const field of obj.metadata?.managedFields ?? []) {
    const tool = MANAGERS[field.manager ?? ''];
    if (tool === 'Argo CD' || tool === 'Flux') return tool;
  }
  // Argo CD's default (label) tracking sets only this label; Helm sets it too, with managed-by.
  const instance = obj.metadata?.labels?.['app.kubernetes.io/instance'];
  if (instance !== undefined && obj.metadata?.labels?.['app.kubernetes.io/managed-by'] !== 'Helm')
    return 'Argo CD';
  return undefined;
}

/** Warns on stderr that `what` will be undone by the GitOps tool's next sync unless made in Git. */
export function warnIfGitOps(obj: KubernetesObject, kind: string, what: string, inGit: string): void {
  const tool = gitOpsManager(obj);
  if (tool === undefined) return;
  process.stderr.write(
    `warning: ${kind} ${obj.metadata?.namespace}/${obj.metadata?.name} is managed by ${tool}; its next sync may revert ${what}. Make the change in Git instead: ${inGit}\n`,
  );
}
