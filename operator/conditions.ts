import type { Condition } from '../api/common.js';

/**
 * The reason of `Reconciling=True` (work in flight) and of `Stalled=False`, the same for every kind:
 * kstatus, Flux `wait` and the shipped Argo CD health check key on these conditions' status, and one
 * reason keeps both kinds readable alike. `Stalled=True` carries the failure's own reason.
 */
export const PROGRESSING = 'Progressing';

/** Ready=False until the first full reconcile has run (the pass that only adds the finalizer). */
export const RECONCILING_MESSAGE = 'the operator has started reconciling this object';

/**
 * What one check of a reconciler's chain found wrong (the first failure wins): the Ready=False
 * reason and message, and whether only a change to the object or another one moves it on
 * (Stalled=True, which kstatus reports as Failed and Argo CD as Degraded).
 */
export interface CheckFailure {
  reason: string;
  message: string;
  stalled: boolean;
}

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
