import type { KubernetesObject } from '@kubernetes/client-node';
import type { ServiceUserStatus } from '../../api/serviceuser.js';
import type {
  OperatorStore,
  ServiceUserRecord,
  ServiceUserSpec as StoreUserSpec,
  UpsertServiceUserResult,
} from '../../store/operator-store.js';
import type { RateLimitDefinitions } from '../../store/rate-limits.js';
import { type ConditionInput, setConditions } from '../conditions.js';
import { FAILPOINTS, failpoint } from '../failpoints.js';
import type { EventRecorder } from '../kube/events.js';
import type { KubeWriter } from '../objects.js';
import { fromStore, statusChanged, withoutCondition } from '../status.js';
import { EVENT_REASONS } from './reasons.js';

export interface ActionDeps {
  kube: KubeWriter;
  store: OperatorStore;
  limits: RateLimitDefinitions;
  events: EventRecorder;
}

/** Deletion, in write order: the store revokes the user and its keys, then the finalizer goes. */
export async function finalizeServiceUser(d: ActionDeps, object: KubernetesObject): Promise<void> {
  await fromStore(() => d.store.deleteServiceUser(object.metadata?.uid ?? ''));
  await fromStore(() => d.limits.forget(object.metadata?.uid ?? '', 'ServiceUser'));
  failpoint(FAILPOINTS.userRevokeAfterStore);
  d.events.record(object, {
    type: 'Normal',
    reason: EVENT_REASONS.deleted,
    message: 'service user deleted; all its keys are revoked',
  });
  await d.kube.removeFinalizer('serviceusers', object);
}

export async function storeServiceUser(d: ActionDeps, spec: StoreUserSpec): Promise<UpsertServiceUserResult> {
  return await fromStore(() => d.store.upsertServiceUser(spec));
}

/**
 * Writes the status a pass decided: its conditions, and the username, store id and key counts as
 * the store holds them (or as last written, when the store does not hold the user).
 */
export async function writeServiceUserStatus(
  d: ActionDeps,
  object: KubernetesObject,
  stored: ServiceUserRecord | undefined,
  updates: ConditionInput[],
  now: Date,
): Promise<void> {
  const existing = (object as { status?: ServiceUserStatus }).status;
  const generation = object.metadata?.generation ?? 0;
  const counts = stored ? await fromStore(() => d.store.countKeys(stored.ref.uid)) : undefined;
  const status: ServiceUserStatus = {
    observedGeneration: generation,
    // Every pass past the finalizer decides Ready: nothing is left in flight.
    conditions: setConditions(
      withoutCondition(withoutCondition(existing?.conditions, 'StoreAvailable'), 'Reconciling'),
      updates,
      generation,
      now,
    ),
    username: stored?.username ?? existing?.username,
    userId: stored?.id ?? existing?.userId,
    keys: counts?.total ?? existing?.keys,
    activeKeys: counts?.active ?? existing?.activeKeys,
  };
  if (!statusChanged(existing, status)) return;
  await d.kube.patchStatus('serviceusers', object, status);
}
