import { isDeepStrictEqual } from 'node:util';
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Condition } from '../api/common.js';
import { StoreError } from '../store/errors.js';
import { setConditions } from './conditions.js';
import type { EventRecorder } from './kube/events.js';
import type { KubeWriter, Plural } from './objects.js';

/** A status as it will be stored: undefined members dropped, so comparison sees what the API would. */
export function normalizeStatus<T extends object>(status: T): T {
  return JSON.parse(JSON.stringify(status)) as T;
}

/** Whether writing `next` would change the stored status; skipping equal writes avoids churn. */
export function statusChanged(current: unknown, next: object): boolean {
  return !isDeepStrictEqual(normalizeStatus(current ?? {}), normalizeStatus(next));
}

export function withoutCondition(conditions: readonly Condition[] | undefined, type: string): Condition[] {
  return (conditions ?? []).filter((c) => c.type !== type);
}

/** The store could not answer; the reconcile is retried with backoff and healthy status is left alone. */
export class StoreUnavailableError extends Error {
  constructor(cause: unknown) {
    super(`credential store unavailable: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
    this.name = 'StoreUnavailableError';
  }
}

/** Runs a store call, turning transient failures into StoreUnavailableError. */
export async function fromStore<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    // StoreError classifies connection loss, shutdown and deadlock as transient; anything else
    // (a constraint violation, say) is a bug to surface as it is, not an outage.
    throw err instanceof StoreError && err.transient ? new StoreUnavailableError(err) : err;
  }
}

/**
 * Adds StoreAvailable=False (once) and a Warning Event, leaving Ready as it was: a key that
 * verified before the outage still verifies from the webhook's cache, so it must not flap.
 */
export async function reportStoreUnavailable(
  deps: { kube: KubeWriter; events: EventRecorder; logger: Logger; now: Date },
  plural: Plural,
  raw: KubernetesObject,
  err: StoreUnavailableError,
): Promise<void> {
  const existing = (raw as { status?: { conditions?: Condition[] } }).status;
  if (existing?.conditions?.some((c) => c.type === 'StoreAvailable' && c.status === 'False')) return;
  const conditions = setConditions(
    existing?.conditions,
    [{ type: 'StoreAvailable', status: 'False', reason: 'StoreUnavailable', message: err.message }],
    raw.metadata?.generation ?? 0,
    deps.now,
  );
  deps.events.record(raw, { type: 'Warning', reason: 'StoreUnavailable', message: err.message });
  await deps.kube.patchStatus(plural, raw, { conditions }).catch((patchErr: unknown) => {
    deps.logger.warn({ err: patchErr }, 'could not report StoreUnavailable');
  });
}
