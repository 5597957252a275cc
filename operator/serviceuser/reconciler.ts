import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { rateLimitDefinitions } from '../../api/ratelimits.js';
import type { ServiceUserStatus } from '../../api/serviceuser.js';
import type { ActAsStore } from '../../store/act-as.js';
import type { OperatorStore } from '../../store/operator-store.js';
import type { RateLimitDefinitions } from '../../store/rate-limits.js';
import { actAsPatterns, NO_ACTING } from '../accesspolicy/act-as.js';
import type { Grants } from '../accesspolicy/grants.js';
import type { EventRecorder } from '../kube/events.js';
import type { SharedInformer } from '../kube/informer.js';
import type { KubeWriter } from '../objects.js';
import {
  addFinalizerInProgress,
  fromStore,
  reportStoreUnavailable,
  StoreUnavailableError,
} from '../status.js';
import { finalizeServiceUser, storeServiceUser, writeServiceUserStatus } from './actions.js';
import { eventsFor, failureConditions, planFor, readyConditions, storeFailure } from './checks.js';
import { gatherServiceUser } from './gather.js';

export interface ServiceUserReconcilerDeps {
  serviceUsers: SharedInformer<KubernetesObject>;
  kube: KubeWriter;
  store: OperatorStore;
  /** Rate limits shared by the user's keys (store/rate-limits.ts). */
  limits: RateLimitDefinitions;
  /** spec.actAs beside the user row (store/act-as.ts). */
  actAs: ActAsStore;
  events: EventRecorder;
  logger: Logger;
  /** What the namespace's AccessPolicies grant now. */
  grants: (namespace: string) => Grants;
  /**
   * Queues the ApiKeys naming this user. Called when the store creates the user: a ServiceUser
   * deleted and applied again (a GitOps prune and re-sync) gets its keys issued anew.
   */
  enqueueKeysOf?: (namespace: string, name: string) => void;
  now?: () => Date;
}

/**
 * Reconciles one ServiceUser into the store: gather (gather.ts), decide by the pure checks
 * (checks.ts), act in write order (actions.ts). AccessPolicy check, username claim (and rename),
 * suspension, deletion, key counts.
 */
export class ServiceUserReconciler {
  readonly #d: ServiceUserReconcilerDeps;
  readonly #now: () => Date;

  constructor(deps: ServiceUserReconcilerDeps) {
    this.#d = deps;
    this.#now = deps.now ?? ((): Date => new Date());
  }

  async reconcile(key: string): Promise<undefined> {
    const object = this.#d.serviceUsers.get(key);
    if (!object) return undefined;
    try {
      await this.#reconcile(object);
    } catch (err) {
      if (err instanceof StoreUnavailableError) {
        await reportStoreUnavailable({ ...this.#d, now: this.#now() }, 'serviceusers', object, err);
      }
      throw err;
    }
    return undefined;
  }

  async #reconcile(object: KubernetesObject): Promise<void> {
    const facts = await gatherServiceUser(this.#d, object);
    const plan = planFor(facts);
    switch (plan.kind) {
      case 'none':
        return;
      case 'finalize':
        return await finalizeServiceUser(this.#d, object);
      case 'addFinalizer':
        return await addFinalizerInProgress({ kube: this.#d.kube, now: this.#now() }, 'serviceusers', object);
      case 'store':
        break;
    }
    if (facts.parsed.ok) {
      // Before the user is stored: none of its keys verifies without the limits it asks for.
      const rateLimits = rateLimitDefinitions(facts.parsed.value.spec.rateLimits);
      const uid = object.metadata?.uid ?? '';
      await fromStore(() => this.#d.limits.define({ uid, kind: 'ServiceUser', rateLimits, quota: null }));
    }
    const result = plan.spec ? await storeServiceUser(this.#d, plan.spec) : undefined;
    if (result?.kind === 'deleted') return;
    const failure =
      plan.failure ?? (result && plan.spec ? storeFailure(result, plan.spec.username) : undefined);
    const stored = result?.user;
    // Beside the row, after it: a crash in between leaves no acting (a new row has none) or the
    // blocked user's, which verifies nothing anyway; the next pass writes it. A failing check stores none.
    if (stored) {
      const actAs =
        plan.failure || !facts.parsed.ok ? NO_ACTING : actAsPatterns(facts.parsed.value.spec.actAs);
      await fromStore(() => this.#d.actAs.set(stored.id, actAs));
    }
    const conditions = (object as { status?: ServiceUserStatus }).status?.conditions;
    for (const event of eventsFor(conditions, failure, result)) this.#d.events.record(object, event);
    if (result?.kind === 'ok' && result.created) {
      this.#d.enqueueKeysOf?.(object.metadata?.namespace ?? '', object.metadata?.name ?? '');
    }
    const updates = failure ? failureConditions(failure) : stored ? readyConditions(stored) : [];
    await writeServiceUserStatus(this.#d, object, stored, updates, this.#now());
  }
}
