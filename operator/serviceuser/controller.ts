import type { KubernetesObject } from '@kubernetes/client-node';
import { serviceUserOf } from '../apikey/controller.js';
import { keyUpdateConcernsUser } from '../changes.js';
import { findCondition } from '../conditions.js';
import { type Controller, keysInNamespaces, self, watch } from '../kube/controller.js';
import type { SharedInformer } from '../kube/informer.js';
import { objectKey } from '../kube/object.js';
import type { OwnStatusWrites } from '../kube/own-writes.js';
import type { WorkQueue } from '../kube/workqueue.js';
import { REASONS } from './reasons.js';
import type { ServiceUserReconciler } from './reconciler.js';

/**
 * Changes of a user's keys within this long give one pass of the user: its status counts lag by at
 * most this much, and thousands of keys applied at once cost a pass per user per interval instead
 * of one per key event.
 */
const KEY_COUNT_COALESCE_MS = 1_000;

export interface ServiceUserControllerDeps {
  serviceUsers: SharedInformer<KubernetesObject>;
  apiKeys: SharedInformer<KubernetesObject>;
  queue: WorkQueue;
  reconciler: Pick<ServiceUserReconciler, 'reconcile'>;
  /** The status writes of the reconciler's KubeWriter, whose echoes are not queued again. */
  ownWrites?: OwnStatusWrites;
}

/**
 * The ServiceUser controller and what it watches: ServiceUsers themselves (a deleted one frees its
 * username, which may settle another user's UsernameConflict); ApiKeys (a user's key counts
 * change with its keys).
 */
export function serviceUserController(d: ServiceUserControllerDeps): Controller {
  d.ownWrites?.onStale((key) => d.queue.add(key));
  watch(d.serviceUsers, d.queue, (user, change, old) => {
    if (change === 'deleted') {
      d.ownWrites?.forget(user);
      return [objectKey(user), ...usersInConflict(d.serviceUsers)];
    }
    return old && d.ownWrites?.isEcho(old, user) ? [] : self(user);
  });
  const countsMayChange = (key: KubernetesObject): void => {
    const user = serviceUserOf(key);
    if (user) d.queue.addAfter(`${key.metadata?.namespace}/${user}`, KEY_COUNT_COALESCE_MS);
  };
  d.apiKeys.addEventHandler({
    onAdd: countsMayChange,
    onUpdate: (old, key) => {
      if (keyUpdateConcernsUser(old, key)) countsMayChange(key);
    },
    onDelete: countsMayChange,
  });
  return {
    name: 'serviceuser',
    queue: d.queue,
    reconcile: (key) => {
      d.ownWrites?.passStarts(key);
      return d.reconciler.reconcile(key);
    },
    enqueueNamespaces: (namespaces) => {
      for (const key of keysInNamespaces(d.serviceUsers, namespaces)) d.queue.add(key);
    },
  };
}

function usersInConflict(serviceUsers: SharedInformer<KubernetesObject>): string[] {
  return serviceUsers
    .list()
    .filter((u) => {
      const conditions = (u as { status?: { conditions?: Parameters<typeof findCondition>[0] } }).status
        ?.conditions;
      return findCondition(conditions, 'Ready')?.reason === REASONS.usernameConflict;
    })
    .map(objectKey);
}
