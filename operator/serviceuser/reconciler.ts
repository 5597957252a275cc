import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { effectiveUsername, type ServiceUserStatus } from '../../api/serviceuser.js';
import { immutableFieldChanges, parseServiceUser } from '../../api/validate.js';
import type { OperatorStore, ServiceUserRecord } from '../../store/operator-store.js';
import { type ConditionInput, setConditions } from '../conditions.js';
import type { EventRecorder } from '../kube/events.js';
import type { SharedInformer } from '../kube/informer.js';
import { FINALIZER, type KubeWriter } from '../objects.js';
import {
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
  events: EventRecorder;
  logger: Logger;
  now?: () => Date;
}

/** Reconciles one ServiceUser into the store: username claim, suspension, deletion, key counts. */
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
      await this.#d.kube.addFinalizer('serviceusers', raw);
      return;
    }
    const username = effectiveUsername(user);
    const result = await fromStore(() =>
      this.#d.store.upsertServiceUser({
        ref: { namespace: user.metadata.namespace ?? '', name: user.metadata.name, uid },
        username,
        description: user.spec.description ?? '',
        contact: user.spec.contact ?? null,
        groups: user.spec.groups ?? [],
        scopes: user.spec.scopes ?? [],
        suspended: user.spec.suspended === true,
      }),
    );
    if (result.kind === 'deleted') return;
    if (result.kind === 'username_immutable') {
      // The CRD's CEL rule forbids this; it only happens to objects admitted before that rule.
      const [change] = immutableFieldChanges(
        'ServiceUser',
        { spec: { username: result.recorded } },
        { spec: { username } },
      );
      const message = `${change}: the store holds username ${result.recorded}; re-create the ServiceUser to change it`;
      await this.#writeStatus(raw, undefined, [
        { type: 'Ready', status: 'False', reason: 'InvalidSpec', message },
        { type: 'Stalled', status: 'True', reason: 'InvalidSpec', message },
      ]);
      return;
    }
    if (result.kind === 'username_conflict') {
      const message = `username ${username} is held by ServiceUser ${result.holder.namespace}/${result.holder.name}`;
      const previous = (raw as { status?: ServiceUserStatus }).status?.conditions?.find(
        (c) => c.type === 'Ready',
      );
      if (previous?.reason !== 'UsernameConflict')
        this.#d.events.record(raw, { type: 'Warning', reason: 'UsernameConflict', message });
      await this.#writeStatus(raw, undefined, [
        { type: 'Ready', status: 'False', reason: 'UsernameConflict', message },
        { type: 'Stalled', status: 'False', reason: 'WaitingForUsername', message: '' },
      ]);
      return;
    }
    const stored = result.user;
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
      { type: 'Stalled', status: 'False', reason: 'Stored', message: '' },
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
      conditions: setConditions(
        withoutCondition(existing?.conditions, 'StoreAvailable'),
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
