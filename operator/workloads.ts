import {
  AppsV1Api,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1DaemonSet,
  type V1Deployment,
  type V1StatefulSet,
} from '@kubernetes/client-node';
import type { RestartKind, RestartTarget } from '../api/apikey.js';
import { selectorMatches } from './accesspolicy/grants.js';
import { RESTARTED_AT_ANNOTATION } from './apikey/restarts.js';
import { statusCodeOf } from './kube/errors.js';
import { FIELD_MANAGER, requestTimeout } from './objects.js';

type Workload = V1Deployment | V1StatefulSet | V1DaemonSet;

/** A workload a restart target resolved to. */
export interface ResolvedWorkload {
  kind: RestartKind;
  name: string;
  /** The restartedAt pod-template annotation it carries now, if any. */
  restartedAt?: string;
}

interface TargetProblem {
  kind: 'NotFound' | 'Paused';
  /** Names the target. */
  message: string;
}

export interface Resolution {
  workloads: ResolvedWorkload[];
  /** One per target that resolved to nothing restartable. */
  problems: TargetProblem[];
}

export function workloadName(w: ResolvedWorkload): string {
  return `${w.kind}/${w.name}`;
}

function describeSelector(target: RestartTarget): string {
  const labels = Object.entries(target.selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  const expressions = (target.selector?.matchExpressions ?? []).map(
    (e) => `${e.key} ${e.operator}${e.values ? ` (${e.values.join(',')})` : ''}`,
  );
  return [...labels, ...expressions].join(', ');
}

/**
 * Finds and restarts an ApiKey's restart targets (apps/v1 Deployments, StatefulSets, DaemonSets in
 * its namespace). Read on demand, not through informers: targets are looked at when a restart is
 * due or the spec changed, which does not justify caching every workload of the cluster.
 */
export class WorkloadRestarter {
  readonly #apps: AppsV1Api;

  constructor(kc: KubeConfig) {
    this.#apps = kc.makeApiClient(AppsV1Api);
  }

  async resolve(namespace: string, targets: readonly RestartTarget[]): Promise<Resolution> {
    const found = new Map<string, ResolvedWorkload>();
    const problems: TargetProblem[] = [];
    for (const target of targets) {
      const matched = target.name
        ? await this.#read(target.kind, namespace, target.name).then((w) => (w ? [w] : []))
        : (await this.#list(target.kind, namespace)).filter((w) =>
            selectorMatches(target.selector ?? {}, w.metadata?.labels ?? {}),
          );
      if (matched.length === 0) {
        problems.push({
          kind: 'NotFound',
          message: target.name
            ? `${target.kind} ${target.name} not found`
            : `no ${target.kind} matches selector ${describeSelector(target)}`,
        });
        continue;
      }
      for (const w of matched) {
        const name = w.metadata?.name ?? '';
        // kubectl rollout restart refuses these too: the new template would not roll out.
        if ((w as V1Deployment).spec?.paused) {
          problems.push({ kind: 'Paused', message: `${target.kind} ${name} is paused` });
          continue;
        }
        const restartedAt = w.spec?.template?.metadata?.annotations?.[RESTARTED_AT_ANNOTATION];
        found.set(`${target.kind}/${name}`, {
          kind: target.kind,
          name,
          ...(restartedAt !== undefined && { restartedAt }),
        });
      }
    }
    return { workloads: [...found.values()], problems };
  }

  /**
   * One rolling restart, as `kubectl rollout restart` does it: a strategic merge patch of the
   * restartedAt pod-template annotation. False when the workload is gone.
   */
  async restart(namespace: string, workload: ResolvedWorkload, restartedAt: string): Promise<boolean> {
    const request = {
      namespace,
      name: workload.name,
      body: { spec: { template: { metadata: { annotations: { [RESTARTED_AT_ANNOTATION]: restartedAt } } } } },
      fieldManager: FIELD_MANAGER,
    };
    const options = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch, requestTimeout());
    try {
      if (workload.kind === 'Deployment') await this.#apps.patchNamespacedDeployment(request, options);
      else if (workload.kind === 'StatefulSet') await this.#apps.patchNamespacedStatefulSet(request, options);
      else await this.#apps.patchNamespacedDaemonSet(request, options);
      return true;
    } catch (err) {
      if (statusCodeOf(err) === 404) return false;
      throw err;
    }
  }

  async #read(kind: RestartKind, namespace: string, name: string): Promise<Workload | undefined> {
    const request = { namespace, name };
    try {
      if (kind === 'Deployment') return await this.#apps.readNamespacedDeployment(request, requestTimeout());
      if (kind === 'StatefulSet')
        return await this.#apps.readNamespacedStatefulSet(request, requestTimeout());
      return await this.#apps.readNamespacedDaemonSet(request, requestTimeout());
    } catch (err) {
      if (statusCodeOf(err) === 404) return undefined;
      throw err;
    }
  }

  async #list(kind: RestartKind, namespace: string): Promise<Workload[]> {
    const request = { namespace };
    if (kind === 'Deployment')
      return (await this.#apps.listNamespacedDeployment(request, requestTimeout())).items;
    if (kind === 'StatefulSet')
      return (await this.#apps.listNamespacedStatefulSet(request, requestTimeout())).items;
    return (await this.#apps.listNamespacedDaemonSet(request, requestTimeout())).items;
  }
}
