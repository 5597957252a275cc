import type { KubernetesObject, V1Secret } from '@kubernetes/client-node';
import { userUpdateConcernsKeys } from '../changes.js';
import { type Controller, keysInNamespaces, self, watch } from '../kube/controller.js';
import type { SharedInformer } from '../kube/informer.js';
import { objectKey } from '../kube/object.js';
import type { WorkQueue } from '../kube/workqueue.js';
import { API_KEY_LABEL, keysNamingSecret } from '../secret.js';
import type { ApiKeyReconciler } from './reconciler.js';

export interface ApiKeyControllerDeps {
  apiKeys: SharedInformer<KubernetesObject>;
  serviceUsers: SharedInformer<KubernetesObject>;
  /** The managed Secrets only (MANAGED_SECRET_SELECTOR). */
  secrets: SharedInformer<V1Secret>;
  queue: WorkQueue;
  reconciler: Pick<ApiKeyReconciler, 'reconcile'>;
}

export interface ApiKeyController extends Controller {
  /** Queues the ApiKeys naming ServiceUser `name` in `namespace`. */
  enqueueKeysOf(namespace: string, name: string): void;
}

/** The ServiceUser an ApiKey names (spec.serviceUserRef.name), read without parsing the spec. */
export function serviceUserOf(apiKey: KubernetesObject): string | undefined {
  return (apiKey as { spec?: { serviceUserRef?: { name?: string } } }).spec?.serviceUserRef?.name;
}

/**
 * The ApiKey controller and what it watches: ApiKeys themselves; their ServiceUsers (suspension,
 * scopes and existence of the user decide its keys' conditions); their Secrets (a changed or lost
 * Secret is repaired, a freed name may settle another key's SecretConflict).
 */
export function apiKeyController(d: ApiKeyControllerDeps): ApiKeyController {
  const keysOf = (namespace: string, name: string): string[] =>
    d.apiKeys
      .list()
      .filter((k) => k.metadata?.namespace === namespace && serviceUserOf(k) === name)
      .map(objectKey);

  watch(d.apiKeys, d.queue, self);
  watch(d.serviceUsers, d.queue, (user, _change, old) =>
    old && !userUpdateConcernsKeys(old, user)
      ? []
      : keysOf(user.metadata?.namespace ?? '', user.metadata?.name ?? ''),
  );
  watch(d.secrets, d.queue, (secret, change) => {
    const keyName = secret.metadata?.labels?.[API_KEY_LABEL];
    const keys = keyName ? [`${secret.metadata?.namespace}/${keyName}`] : [];
    return change === 'deleted' ? [...keys, ...keysNamingSecret(d.apiKeys.list(), secret)] : keys;
  });

  return {
    name: 'apikey',
    queue: d.queue,
    reconcile: (key) => d.reconciler.reconcile(key),
    enqueueNamespaces: (namespaces) => {
      for (const key of keysInNamespaces(d.apiKeys, namespaces)) d.queue.add(key);
    },
    enqueueKeysOf: (namespace, name) => {
      for (const key of keysOf(namespace, name)) d.queue.add(key);
    },
  };
}
