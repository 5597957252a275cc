import type { KubernetesObject } from '@kubernetes/client-node';

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
