import type { KubernetesObject, V1Secret } from '@kubernetes/client-node';
import type { Condition } from '../../api/common.js';
import { userUpdateConcernsKeys } from '../changes.js';
import { findCondition } from '../conditions.js';
import { type Controller, keysInNamespaces, self, watch } from '../kube/controller.js';
import type { SharedInformer } from '../kube/informer.js';
import { objectKey } from '../kube/object.js';
import type { OwnStatusWrites } from '../kube/own-writes.js';
import type { WorkQueue } from '../kube/workqueue.js';
import { API_KEY_LABEL, keysNamingSecret } from '../secret.js';
import type { WriteMemory } from './memory.js';
import { MAX_KEYS_EXCEEDED } from './reasons.js';
import type { ApiKeyReconciler } from './reconciler.js';

export interface ApiKeyControllerDeps {
  apiKeys: SharedInformer<KubernetesObject>;
  serviceUsers: SharedInformer<KubernetesObject>;
  /** The managed Secrets only (MANAGED_SECRET_SELECTOR). */
  secrets: SharedInformer<V1Secret>;
  queue: WorkQueue;
  reconciler: Pick<ApiKeyReconciler, 'reconcile'>;
  /** The status writes of the reconciler's KubeWriter, whose echoes are not queued again. */
  ownWrites?: OwnStatusWrites;
  /** The reconciler's memory of the Secrets it wrote; their echoes are not queued again. */
  memory?: WriteMemory;
}

export interface ApiKeyController extends Controller {
  /** Queues the ApiKeys naming ServiceUser `name` in `namespace`. */
  enqueueKeysOf(namespace: string, name: string): void;
}

/** The ServiceUser an ApiKey names (spec.serviceUserRef.name), read without parsing the spec. */
export function serviceUserOf(apiKey: KubernetesObject): string | undefined {
  return (apiKey as { spec?: { serviceUserRef?: { name?: string } } }).spec?.serviceUserRef?.name;
}

function readyReason(obj: KubernetesObject | undefined): string | undefined {
  return findCondition(
    (obj as { status?: { conditions?: Condition[] } } | undefined)?.status?.conditions,
    'Ready',
  )?.reason;
}

/** The Secret as this process wrote (or last read) it for the ApiKey controlling it. */
function isOwnEcho(memory: WriteMemory | undefined, secret: V1Secret): boolean {
  const owner = secret.metadata?.ownerReferences?.find((r) => r.controller)?.uid;
  return memory !== undefined && owner !== undefined && memory.isKnownVersion(owner, secret);
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

  d.ownWrites?.onStale((key) => d.queue.add(key));
  watch(d.apiKeys, d.queue, (key, change, old) => {
    if (change === 'deleted') d.ownWrites?.forget(key);
    return old && d.ownWrites?.isEcho(old, key) ? [] : self(key);
  });
  // A key refused for its user's maxKeys is queued when the user's count shows a free slot, not
  // only when the count goes down: a key revoked before the user's status ever counted it frees a
  // slot that no status shows as a drop.
  const waitingForSlot = (user: KubernetesObject): string[] => {
    const { spec, status } = user as { spec?: { maxKeys?: number }; status?: { keys?: number } };
    if (spec?.maxKeys === undefined || status?.keys === undefined || status.keys >= spec.maxKeys) return [];
    return keysOf(user.metadata?.namespace ?? '', user.metadata?.name ?? '').filter(
      (key) => readyReason(d.apiKeys.get(key)) === MAX_KEYS_EXCEEDED,
    );
  };
  watch(d.serviceUsers, d.queue, (user, _change, old) =>
    old && !userUpdateConcernsKeys(old, user)
      ? waitingForSlot(user)
      : keysOf(user.metadata?.namespace ?? '', user.metadata?.name ?? ''),
  );
  watch(d.secrets, d.queue, (secret, change) => {
    if (change !== 'deleted' && isOwnEcho(d.memory, secret)) return [];
    const keyName = secret.metadata?.labels?.[API_KEY_LABEL];
    const keys = keyName ? [`${secret.metadata?.namespace}/${keyName}`] : [];
    return change === 'deleted' ? [...keys, ...keysNamingSecret(d.apiKeys.list(), secret)] : keys;
  });

  return {
    name: 'apikey',
    queue: d.queue,
    reconcile: (key) => {
      d.ownWrites?.passStarts(key);
      return d.reconciler.reconcile(key);
    },
    enqueueNamespaces: (namespaces) => {
      for (const key of keysInNamespaces(d.apiKeys, namespaces)) d.queue.add(key);
    },
    enqueueKeysOf: (namespace, name) => {
      for (const key of keysOf(namespace, name)) d.queue.add(key);
    },
  };
}
