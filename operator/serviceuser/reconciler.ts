import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { rateLimitDefinitions } from '../../api/ratelimits.js';
import { effectiveUsername, type ServiceUserStatus } from '../../api/serviceuser.js';
import { parseServiceUser } from '../../api/validate.js';
import type { OperatorStore, ServiceUserRecord } from '../../store/operator-store.js';
import type { RateLimitDefinitions } from '../../store/rate-limits.js';
import {
  checkServiceUser,
  type Grants,
  NOT_PERMITTED,
  permittedGroups,
  permittedScopes,
} from '../accesspolicy/grants.js';
import { type ConditionInput, PROGRESSING, setConditions } from '../conditions.js';
import { FAILPOINTS, failpoint } from '../failpoints.js';
import type { EventRecorder } from '../kube/events.js';
import type { SharedInformer } from '../kube/informer.js';
import { FINALIZER, type KubeWriter } from '../objects.js';
import {
  addFinalizerInProgress,
  fromStore,
  reportStoreUnavailable,
  StoreUnavailableError,
  statusChanged,
  withoutCondition,
} from '../status.js';

export interface ServiceUserReconcilerDeps {
  serviceUsers: SharedInformer<KubernetesObject>;
  kube: KubeWriter;
  store: OperatorStore;
  /** Rate limits shared by the user's keys (store/rate-limits.ts). */
  limits: RateLimitDefinitions;
  events: EventRecorder;
  logger: Logger;
  /** What the namespace's AccessPolicies grant now. */
  grants: (namespace: string) => Grants;
  now?: () => Date;
}

/**
 * Reconciles one ServiceUser into the store: AccessPolicy check, username claim (and rename),
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
    const raw = this.#d.serviceUsers.get(key);
    if (!raw) return undefined;
    try {
      await this.#reconcile(raw);
    } catch (err) {
      if (err instanceof StoreUnavailableError) {
        await reportStoreUnavailable({ ...this.#d, now: this.#now() }, 'serviceusers', raw, err);
      }
      throw err;
    }
    return undefined;
  }

  async #reconcile(raw: KubernetesObject): Promise<void> {
    const uid = raw.metadata?.uid ?? '';
    if (raw.metadata?.deletionTimestamp) {
      if (!raw.metadata.finalizers?.includes(FINALIZER)) return;
      await fromStore(() => this.#d.store.deleteServiceUser(uid));
      await fromStore(() => this.#d.limits.forget(uid, 'ServiceUser'));
      failpoint(FAILPOINTS.userRevokeAfterStore);
      this.#d.events.record(raw, {
        type: 'Normal',
        reason: 'Deleted',
        message: 'service user deleted; all its keys are revoked',
      });
      await this.#d.kube.removeFinalizer('serviceusers', raw);
      return;
    }
    const parsed = parseServiceUser(raw);
    if (!parsed.ok) {
      await this.#writeStatus(raw, undefined, [
        { type: 'Ready', status: 'False', reason: 'InvalidSpec', message: parsed.errors.join('; ') },
        { type: 'Stalled', status: 'True', reason: 'InvalidSpec', message: parsed.errors.join('; ') },
      ]);
      return;
    }
    const user = parsed.value;
    if (!user.metadata.finalizers?.includes(FINALIZER)) {
      await addFinalizerInProgress({ kube: this.#d.kube, now: this.#now() }, 'serviceusers', raw);
      return;
    }
    // Before the user is stored: none of its keys verifies without the limits it asks for.
    const rateLimits = rateLimitDefinitions(user.spec.rateLimits);
    await fromStore(() => this.#d.limits.define({ uid, kind: 'ServiceUser', rateLimits, quota: null }));
    const username = effectiveUsername(user);
    const namespace = user.metadata.namespace ?? '';
    const grants = this.#d.grants(namespace);
    const groups = user.spec.groups ?? [];
    const scopes = user.spec.scopes ?? [];
    const violation = checkServiceUser(
      { username, usernameFromName: user.spec.username === undefined, groups, scopes },
      grants,
    );
    const previous = (raw as { status?: ServiceUserStatus }).status?.conditions?.find(
      (c) => c.type === 'Ready',
    );
    let stored: ServiceUserRecord | undefined;
    if (violation) {
      // Blocked, not trimmed: a user asking for more than it is granted verifies no key at all,
      // so Ready=False always means "its keys do not work". The store keeps only the granted
      // part of its spec, and a user it never held is not created (its name is not claimed).
      const existing = await fromStore(() => this.#d.store.getServiceUser(uid));
      if (existing && !existing.deletedAt) {
        const result = await fromStore(() =>
          this.#d.store.upsertServiceUser({
            ref: { namespace, name: user.metadata.name, uid },
            username: existing.username,
            description: user.spec.description ?? '',
            contact: user.spec.contact ?? null,
            groups: permittedGroups(grants, groups),
            scopes: permittedScopes(grants, scopes),
            suspended: user.spec.suspended === true,
            kubernetesAuthentication: false,
            notPermitted: true,
          }),
        );
        if (result.kind === 'deleted') return;
        stored = result.user;
      }
      if (previous?.reason !== NOT_PERMITTED || previous.message !== violation.message) {
        this.#d.events.record(raw, { type: 'Warning', reason: NOT_PERMITTED, message: violation.message });
      }
      await this.#writeStatus(raw, stored, [
        { type: 'Ready', status: 'False', reason: NOT_PERMITTED, message: violation.message },
        { type: 'Stalled', status: 'True', reason: NOT_PERMITTED, message: violation.message },
      ]);
      return;
    }
    const result = await fromStore(() =>
      this.#d.store.upsertServiceUser({
        ref: { namespace, name: user.metadata.name, uid },
        username,
        description: user.spec.description ?? '',
        contact: user.spec.contact ?? null,
        groups,
        scopes,
        suspended: user.spec.suspended === true,
        kubernetesAuthentication: grants.kubernetesAuthentication,
        notPermitted: false,
      }),
    );
    if (result.kind === 'deleted') return;
    if (result.kind === 'username_conflict') {
      const renaming = result.user !== undefined;
      const message = renaming
        ? `username ${username} is held by ServiceUser ${result.holder.namespace}/${result.holder.name}; ` +
          `the user keeps the name ${result.user?.username}`
        : `username ${username} is held by ServiceUser ${result.holder.namespace}/${result.holder.name}`;
      if (previous?.reason !== 'UsernameConflict')
        this.#d.events.record(raw, { type: 'Warning', reason: 'UsernameConflict', message });
      await this.#writeStatus(raw, result.user, [
        { type: 'Ready', status: 'False', reason: 'UsernameConflict', message },
        { type: 'Stalled', status: 'False', reason: PROGRESSING, message: '' },
      ]);
      return;
    }
    stored = result.user;
    if (result.changed.includes('username')) {
      this.#d.events.record(raw, {
        type: 'Normal',
        reason: 'Renamed',
        message: `service user renamed to ${username}; its keys verify under the new name`,
      });
    }
    if (result.created) {
      this.#d.events.record(raw, {
        type: 'Normal',
        reason: 'Created',
        message: `service user ${username} stored`,
      });
    } else if (result.changed.includes('suspended')) {
      this.#d.events.record(raw, {
        type: 'Normal',
        reason: stored.suspended ? 'Suspended' : 'Reactivated',
        message: stored.suspended ? 'every key of this user is rejected' : 'keys of this user verify again',
      });
    }
    await this.#writeStatus(raw, stored, [
      {
        type: 'Ready',
        status: 'True',
        reason: 'Stored',
        message: `service user ${username} is in the credential store`,
      },
      { type: 'Stalled', status: 'False', reason: PROGRESSING, message: '' },
      {
        type: 'Suspended',
        status: stored.suspended ? 'True' : 'False',
        reason: stored.suspended ? 'Suspended' : 'Active',
        message: stored.suspended ? 'spec.suspended is true: every key of this user is rejected' : '',
      },
    ]);
  }

  async #writeStatus(
    raw: KubernetesObject,
    stored: ServiceUserRecord | undefined,
    updates: ConditionInput[],
  ): Promise<void> {
    const existing = (raw as { status?: ServiceUserStatus }).status;
    const generation = raw.metadata?.generation ?? 0;
    const counts = stored ? await fromStore(() => this.#d.store.countKeys(stored.ref.uid)) : undefined;
    const status: ServiceUserStatus = {
      observedGeneration: generation,
      // Every pass past the finalizer decides Ready: nothing is left in flight.
      conditions: setConditions(
        withoutCondition(withoutCondition(existing?.conditions, 'StoreAvailable'), 'Reconciling'),
        updates,
        generation,
        this.#now(),
      ),
      username: stored?.username ?? existing?.username,
      userId: stored?.id ?? existing?.userId,
      keys: counts?.total ?? existing?.keys,
      activeKeys: counts?.active ?? existing?.activeKeys,
    };
    if (!statusChanged(existing, status)) return;
    await this.#d.kube.patchStatus('serviceusers', raw, status);
  }
}
