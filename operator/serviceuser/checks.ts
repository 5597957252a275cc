import type { KubernetesObject } from '@kubernetes/client-node';
import type { Condition } from '../../api/common.js';
import { effectiveUsername, type ServiceUser } from '../../api/serviceuser.js';
import type { Parsed } from '../../api/validate.js';
import type {
  ServiceUserRecord,
  ServiceUserSpec as StoreUserSpec,
  UpsertServiceUserResult,
} from '../../store/operator-store.js';
import { actAsPatterns } from '../accesspolicy/act-as.js';
import { checkServiceUser, type Grants, permittedGroups, permittedScopes } from '../accesspolicy/grants.js';
import { type CheckFailure, type ConditionInput, findCondition, stalledCondition } from '../conditions.js';
import type { EventSpec } from '../kube/events.js';
import { FINALIZER } from '../objects.js';
import { EVENT_REASONS, REASONS } from './reasons.js';

/** What one reconcile of a ServiceUser decides from: gathered once (gather.ts), then only read. */
export interface ServiceUserFacts {
  /** The object as the informer holds it. */
  readonly object: KubernetesObject;
  readonly parsed: Parsed<ServiceUser>;
  /** What the namespace's AccessPolicies grant now; undefined while the object is being deleted. */
  readonly grants: Grants | undefined;
  /** The store's row for this object (by uid), deleted ones included; null when never stored. */
  readonly stored: ServiceUserRecord | null;
}

type Check = (facts: ServiceUserFacts) => CheckFailure | undefined;

const specParses: Check = ({ parsed }) =>
  parsed.ok ? undefined : { reason: REASONS.invalidSpec, message: parsed.errors.join('; '), stalled: true };

// Blocked, not trimmed: a user asking for more than it is granted verifies no key at all, so
// Ready=False always means "its keys do not work".
const withinGrants: Check = ({ parsed, grants }) => {
  if (!parsed.ok || !grants) return undefined;
  const user = parsed.value;
  const violation = checkServiceUser(
    {
      username: effectiveUsername(user),
      usernameFromName: user.spec.username === undefined,
      groups: user.spec.groups ?? [],
      scopes: user.spec.scopes ?? [],
      actAs: actAsPatterns(user.spec.actAs),
    },
    grants,
  );
  return violation && { reason: REASONS.notPermitted, message: violation.message, stalled: true };
};

/** The checks in order; the first failure wins. */
const CHECKS: readonly Check[] = [specParses, withinGrants];

function firstFailure(facts: ServiceUserFacts): CheckFailure | undefined {
  for (const check of CHECKS) {
    const failure = check(facts);
    if (failure) return failure;
  }
  return undefined;
}

export type ServiceUserPlan =
  /** Deleting, with our finalizer on: revoke in the store, then let go of the object. */
  | { readonly kind: 'finalize' }
  /** Nothing to do: deleting without our finalizer, or the store already retired this object. */
  | { readonly kind: 'none' }
  /** First pass: status says Reconciling, then the finalizer goes on. */
  | { readonly kind: 'addFinalizer' }
  /**
   * Write `spec` to the store (none: a user the store never held and that fails a check is not
   * created, so its name is not claimed), then the status the failure or the store's answer gives.
   */
  | { readonly kind: 'store'; readonly spec: StoreUserSpec | undefined; readonly failure?: CheckFailure };

export function planFor(facts: ServiceUserFacts): ServiceUserPlan {
  const meta = facts.object.metadata;
  const finalized = meta?.finalizers?.includes(FINALIZER) === true;
  if (meta?.deletionTimestamp) return finalized ? { kind: 'finalize' } : { kind: 'none' };
  // A late reconcile of an object the store already retired must not resurrect it.
  if (facts.stored?.deletedAt) return { kind: 'none' };
  const failure = firstFailure(facts);
  if (!failure && !finalized) return { kind: 'addFinalizer' };
  return { kind: 'store', spec: storeSpec(facts, failure), ...(failure && { failure }) };
}

/**
 * What the store should hold. A user that fails a check keeps its row but verifies no key
 * (notPermitted): whatever else is wrong with it, a spec that reduces what the user may do
 * (suspension, fewer scopes or groups) still applies; an unparsable spec keeps the stored fields.
 */
function storeSpec(facts: ServiceUserFacts, failure: CheckFailure | undefined): StoreUserSpec | undefined {
  const { object, parsed, grants, stored } = facts;
  const ref = {
    namespace: object.metadata?.namespace ?? '',
    name: object.metadata?.name ?? '',
    uid: object.metadata?.uid ?? '',
  };
  if (!parsed.ok) {
    if (!stored) return undefined;
    const { username, description, contact, groups, scopes, suspended } = stored;
    return { ref, username, description, contact, groups, scopes, suspended, notPermitted: true };
  }
  const user = parsed.value;
  const groups = user.spec.groups ?? [];
  const scopes = user.spec.scopes ?? [];
  const common = {
    ref,
    description: user.spec.description ?? '',
    contact: user.spec.contact ?? null,
    suspended: user.spec.suspended === true,
  };
  if (!failure) {
    return {
      ...common,
      username: effectiveUsername(user),
      groups,
      scopes,
      kubernetesAuthentication: grants?.kubernetesAuthentication ?? false,
      notPermitted: false,
    };
  }
  if (!stored || !grants) return undefined;
  return {
    ...common,
    username: stored.username,
    groups: permittedGroups(grants, groups),
    scopes: permittedScopes(grants, scopes),
    kubernetesAuthentication: false,
    notPermitted: true,
  };
}

/** The failure the store's answer to a write means, if any. */
export function storeFailure(result: UpsertServiceUserResult, username: string): CheckFailure | undefined {
  if (result.kind !== 'username_conflict') return undefined;
  const held = `username ${username} is held by ServiceUser ${result.holder.namespace}/${result.holder.name}`;
  return {
    reason: REASONS.usernameConflict,
    message: result.user ? `${held}; the user keeps the name ${result.user.username}` : held,
    // It settles by itself once the holder lets go of the name (the controller watches for that).
    stalled: false,
  };
}

/** The conditions of a pass that ended in `failure`. */
export function failureConditions(failure: CheckFailure): ConditionInput[] {
  return [
    { type: 'Ready', status: 'False', reason: failure.reason, message: failure.message },
    stalledCondition(failure),
  ];
}

/** The conditions of a pass that stored the user as its spec says. */
export function readyConditions(stored: ServiceUserRecord): ConditionInput[] {
  return [
    {
      type: 'Ready',
      status: 'True',
      reason: REASONS.stored,
      message: `service user ${stored.username} is in the credential store`,
    },
    stalledCondition(undefined),
    stored.suspended
      ? {
          type: 'Suspended',
          status: 'True',
          reason: REASONS.suspended,
          message: 'spec.suspended is true: every key of this user is rejected',
        }
      : { type: 'Suspended', status: 'False', reason: REASONS.active, message: '' },
  ];
}

/** The Events a pass records: a Warning when a failure is new, Normal ones for what the store did. */
export function eventsFor(
  conditions: readonly Condition[] | undefined,
  failure: CheckFailure | undefined,
  result: UpsertServiceUserResult | undefined,
): EventSpec[] {
  if (failure) {
    const previous = findCondition(conditions, 'Ready');
    if (previous?.reason === failure.reason && previous.message === failure.message) return [];
    return [{ type: 'Warning', reason: failure.reason, message: failure.message }];
  }
  if (result?.kind !== 'ok') return [];
  const { user } = result;
  const events: EventSpec[] = [];
  if (result.changed.includes('username')) {
    events.push({
      type: 'Normal',
      reason: EVENT_REASONS.renamed,
      message: `service user renamed to ${user.username}; its keys verify under the new name`,
    });
  }
  if (result.created) {
    events.push({
      type: 'Normal',
      reason: EVENT_REASONS.created,
      message: `service user ${user.username} stored`,
    });
  } else if (result.changed.includes('suspended')) {
    events.push(
      user.suspended
        ? { type: 'Normal', reason: EVENT_REASONS.suspended, message: 'every key of this user is rejected' }
        : { type: 'Normal', reason: EVENT_REASONS.reactivated, message: 'keys of this user verify again' },
    );
  }
  return events;
}
