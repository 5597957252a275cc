import type { Condition } from '../api/common.js';

/**
 * The reason of `Reconciling=True` (work in flight) and of `Stalled=False`, the same for every kind:
 * kstatus, Flux `wait` and the shipped Argo CD health check key on these conditions' status, and one
 * reason keeps both kinds readable alike. `Stalled=True` carries the failure's own reason.
 */
export const PROGRESSING = 'Progressing';

/** Ready=False and Stalled=True reason of a spec the operator cannot parse, the same for every kind. */
export const INVALID_SPEC = 'InvalidSpec';

/**
 * What a failed check of a reconcile's chain says (the first failure wins): Ready=False with this
 * reason and message, and whether only a change to an object moves it on (`stalled`: Stalled=True
 * with the same reason, which kstatus reports as Failed and Argo CD as Degraded) or it settles by
 * itself once another object moves (Stalled=False).
 */
export interface CheckFailure {
  readonly reason: string;
  readonly message: string;
  readonly stalled: boolean;
}

/** The Stalled condition after a pass that ended in `failure`, or in none. */
export function stalledCondition(failure: CheckFailure | undefined): ConditionInput {
  return failure?.stalled
    ? { type: 'Stalled', status: 'True', reason: failure.reason, message: failure.message }
    : { type: 'Stalled', status: 'False', reason: PROGRESSING, message: '' };
}

/** Ready=False until the first full reconcile has run (the pass that only adds the finalizer). */
export const RECONCILING_MESSAGE = 'the operator has started reconciling this object';

/**
 * Stalled and Reconciling for a pass, the same for both kinds: Stalled=True carries the failure's
 * own reason; `inFlight` (work the operator is still doing or waiting for) gives Reconciling=True,
 * and its absence a list of condition types to drop (Reconciling is removed, not set False).
 */
export function progressConditions(
  failure: CheckFailure | undefined,
  inFlight: string | undefined,
): { set: ConditionInput[]; drop: string[] } {
  const stalled: ConditionInput = failure?.stalled
    ? { type: 'Stalled', status: 'True', reason: failure.reason, message: failure.message }
    : { type: 'Stalled', status: 'False', reason: PROGRESSING, message: '' };
  if (inFlight === undefined) return { set: [stalled], drop: ['Reconciling'] };
  return {
    set: [stalled, { type: 'Reconciling', status: 'True', reason: PROGRESSING, message: inFlight }],
    drop: [],
  };
}

export interface ConditionInput {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/**
 * Sets conditions the way kstatus and `kubectl wait` expect: every condition carries the
 * generation it was computed from, and lastTransitionTime moves only when the status flips, so a
 * re-reconcile with nothing new writes an identical status (no churn under GitOps re-sync).
 */
export function setConditions(
  existing: readonly Condition[] | undefined,
  updates: readonly ConditionInput[],
  generation: number,
  now: Date,
): Condition[] {
  const byType = new Map((existing ?? []).map((c) => [c.type, c]));
  for (const update of updates) {
    const previous = byType.get(update.type);
    byType.set(update.type, {
      type: update.type,
      status: update.status,
      reason: update.reason,
      message: update.message,
      lastTransitionTime:
        previous && previous.status === update.status ? previous.lastTransitionTime : now.toISOString(),
      observedGeneration: generation,
    });
  }
  return [...byType.values()].sort(
    (a, b) => conditionOrder(a.type) - conditionOrder(b.type) || a.type.localeCompare(b.type),
  );
}

const ORDER = ['Ready', 'Stalled', 'Reconciling'];
function conditionOrder(type: string): number {
  const index = ORDER.indexOf(type);
  return index === -1 ? ORDER.length : index;
}

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}
