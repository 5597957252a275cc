import {
  CustomObjectsApi,
  KubeConfig,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { requestTimeout } from '../../operator/objects.js';
import { UsageError } from './errors.js';

/** Options every command that talks to the cluster takes, as kubectl spells them. */
export interface KubeOptions {
  readonly kubeconfig?: string;
  readonly context?: string;
  readonly namespace?: string;
  readonly allNamespaces?: boolean;
}

export interface KubeTarget {
  readonly kc: KubeConfig;
  /** undefined with -A. */
  readonly namespace: string | undefined;
  readonly api: CustomObjectsApi;
}

const GROUP = 'keyward.dev';
const VERSION = 'v1alpha1';
const TIMEOUT_MS = 15_000;

/** The current kube-context (or --context) of $KUBECONFIG (or --kubeconfig), as kubectl picks it. */
export function kubeTarget(options: KubeOptions): KubeTarget {
  const kc = new KubeConfig();
  if (options.kubeconfig !== undefined) kc.loadFromFile(options.kubeconfig);
  else kc.loadFromDefault();
  if (options.context !== undefined) {
    if (!kc.getContextObject(options.context))
      throw new Error(`no context ${options.context} in the kubeconfig`);
    kc.setCurrentContext(options.context);
  }
  const contextNamespace = kc.getContextObject(kc.getCurrentContext())?.namespace;
  const namespace = options.allNamespaces ? undefined : (options.namespace ?? contextNamespace ?? 'default');
  return { kc, namespace, api: kc.makeApiClient(CustomObjectsApi) };
}

export type Plural = 'serviceusers' | 'apikeys';

export interface KeywardObject extends KubernetesObject {
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

export async function listObjects(
  target: KubeTarget,
  plural: Plural,
  labelSelector?: string,
): Promise<KeywardObject[]> {
  const common = {
    group: GROUP,
    version: VERSION,
    plural,
    ...(labelSelector !== undefined ? { labelSelector } : {}),
  };
  const list = (
    target.namespace === undefined
      ? await target.api.listClusterCustomObject(common, requestTimeout(TIMEOUT_MS))
      : await target.api.listNamespacedCustomObject(
          { ...common, namespace: target.namespace },
          requestTimeout(TIMEOUT_MS),
        )
  ) as { items: KeywardObject[] };
  return list.items;
}

export async function getObject(target: KubeTarget, plural: Plural, name: string): Promise<KeywardObject> {
  return (await target.api.getNamespacedCustomObject(
    { group: GROUP, version: VERSION, plural, namespace: namespaceOf(target), name },
    requestTimeout(TIMEOUT_MS),
  )) as KeywardObject;
}

/** JSON merge patch: only the fields named change, as `kubectl patch --type merge`. */
export async function mergePatch(
  target: KubeTarget,
  obj: KeywardObject,
  plural: Plural,
  body: object,
): Promise<void> {
  await target.api.patchNamespacedCustomObject(
    {
      group: GROUP,
      version: VERSION,
      plural,
      namespace: obj.metadata?.namespace ?? namespaceOf(target),
      name: obj.metadata?.name ?? '',
      body,
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch, requestTimeout(TIMEOUT_MS)),
  );
}

export function namespaceOf(target: KubeTarget): string {
  if (target.namespace === undefined) throw new UsageError('this command needs one namespace, not -A');
  return target.namespace;
}

/** `reason` of the condition of this type, with its status. */
export function conditionOf(
  obj: KeywardObject,
  type: string,
): { status: string; reason: string; message: string } | undefined {
  const conditions = (obj.status?.conditions ?? []) as Array<{
    type: string;
    status: string;
    reason: string;
    message: string;
  }>;
  return conditions.find((c) => c.type === type);
}
