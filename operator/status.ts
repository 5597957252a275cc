import { isDeepStrictEqual } from 'node:util';
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Condition } from '../api/common.js';
import { StoreError } from '../store/errors.js';
import {
  type ConditionInput,
  findCondition,
  PROGRESSING,
  RECONCILING_MESSAGE,
  setConditions,
} from './conditions.js';
import type { EventRecorder } from './kube/events.js';
import type { KubeWriter, Plural } from './objects.js';

/** A status as it will be stored: undefined members dropped, so comparison sees what the API would. */
function normalizeStatus<T extends object>(status: T): T {
  return JSON.parse(JSON.stringify(status)) as T;
}

/** Whether writing `next` would change the stored status; skipping equal writes avoids churn. */
export function statusChanged(current: unknown, next: object): boolean {
  return !isDeepStrictEqual(normalizeStatus(current ?? {}), normalizeStatus(next));
}

export function withoutCondition(conditions: readonly Condition[] | undefined, type: string): Condition[] {
  return (conditions ?? []).filter((c) => c.type !== type);
}

/** Condition reason and Event reason when the credential store cannot answer. */
const STORE_UNAVAILABLE = 'StoreUnavailable';
/**
 * What status and Events say about a store outage. Never the driver's text: it names the store's
 * host, port, role and database, which tenants reading their own objects have no business seeing.
 * The detail goes to the operator's log only.
 */
const STORE_UNAVAILABLE_MESSAGE = 'credential store unavailable; retrying';

/** The store could not answer; the reconcile is retried with backoff and healthy status is left alone. */
export class StoreUnavailableError extends Error {
  constructor(cause: unknown) {
    super(STORE_UNAVAILABLE_MESSAGE, { cause });
    this.name = 'StoreUnavailableError';
  }
}

/**
 * SQLSTATEs of a connection the store refused to set up: class 28 (the role or its password) and
 * 3D000 (no such database). Not transient to the driver, but to whoever reads the object it is an
 * outage like any other, and retrying is right: the fix is in the operator's configuration.
 */
function refusedConnection(code: string | undefined): boolean {
  return code !== undefined && (code.startsWith('28') || code === '3D000');
}

/** Runs a store call, turning transient failures and refused connections into StoreUnavailableError. */
export async function fromStore<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    // StoreError classifies connection loss, shutdown and deadlock as transient; anything else
    // (a constraint violation, say) is a bug to surface as it is, not an outage.
    const unavailable = err instanceof StoreError && (err.transient || refusedConnection(err.code));
    throw unavailable ? new StoreUnavailableError(err) : err;
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
  // The one place the driver's detail goes (a StoreError carries no parameters: never a token or hash).
  deps.logger.warn(
    { err, object: `${raw.metadata?.namespace}/${raw.metadata?.name}` },
    'credential store unavailable; reporting StoreAvailable=False',
  );
  const conditions = setConditions(
    existing?.conditions,
    [
      {
        type: 'StoreAvailable',
        status: 'False',
        reason: STORE_UNAVAILABLE,
        message: STORE_UNAVAILABLE_MESSAGE,
      },
    ],
    raw.metadata?.generation ?? 0,
    deps.now,
  );
  deps.events.record(raw, { type: 'Warning', reason: STORE_UNAVAILABLE, message: STORE_UNAVAILABLE_MESSAGE });
  await deps.kube.patchStatus(plural, raw, { conditions }).catch((patchErr: unknown) => {
    deps.logger.warn({ err: patchErr }, 'could not report StoreUnavailable');
  });
}

/**
 * The first pass: says the object is being worked on (`Reconciling=True`, and `Ready=False` unless
 * an earlier pass already decided Ready), then adds the finalizer. Status goes first so that no
 * stored version of a brand-new object that the operator has touched lacks status: kstatus reads
 * an object without status as Current, and Flux `wait` would pass it.
 */
export async function addFinalizerInProgress(
  deps: { kube: KubeWriter; now: Date },
  plural: Plural,
  raw: KubernetesObject,
): Promise<void> {
  const existing = (raw as { status?: { conditions?: Condition[] } }).status?.conditions;
  const generation = raw.metadata?.generation ?? 0;
  const reconciling: ConditionInput = {
    type: 'Reconciling',
    status: 'True',
    reason: PROGRESSING,
    message: RECONCILING_MESSAGE,
  };
  const updates: ConditionInput[] = findCondition(existing, 'Ready')
    ? [reconciling]
    : [{ type: 'Ready', status: 'False', reason: PROGRESSING, message: RECONCILING_MESSAGE }, reconciling];
  const updated = await deps.kube.patchStatus(plural, raw, {
    observedGeneration: generation,
    conditions: setConditions(existing, updates, generation, deps.now),
  });
  // Stale: the newer version brings the object back to the queue.
  if (!updated) return;
  await deps.kube.addFinalizer(plural, updated);
}
