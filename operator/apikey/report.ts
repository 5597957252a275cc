import type { KubernetesObject } from '@kubernetes/client-node';
import { type ApiKey, type ApiKeyStatus, secretNameOf } from '../../api/apikey.js';
import type { ApiKeyState } from '../../store/operator-store.js';
import { type CheckFailure, type ConditionInput, progressConditions, setConditions } from '../conditions.js';
import type { KubeWriter } from '../objects.js';
import { statusChanged } from '../status.js';
import { rememberRequest } from './policy.js';
import * as R from './reasons.js';

/** What one pass says about the key in its status. */
export interface KeyReport {
  /** Undefined: Ready=True with `readyMessage`. */
  failure: CheckFailure | undefined;
  readyMessage?: string;
  /** Work still in flight (Reconciling=True with this message); unset removes Reconciling. */
  inFlight?: string;
  extra?: ConditionInput[];
  /** The rotate request the Secret's token answers; unset keeps what status had. */
  rotationRequest?: string | null;
  /** Unset keeps what status had. */
  lastRestart?: ApiKeyStatus['lastRestart'];
  /** Condition types to remove. */
  drop?: string[];
  /** status.quota; null clears it, unset keeps what status had. */
  quota?: ApiKeyStatus['quota'] | null;
}

/** The flags a key's state always shows, blocked or not: what a user checks first. */
export function stateFlags(
  state: ApiKeyState | null,
  expired: boolean,
  suspended: boolean,
): ConditionInput[] {
  if (!state || state.revokedAt) return [];
  return [
    flag('Expired', expired, R.EXPIRED, 'NotExpired'),
    flag('Disabled', state.disabled, R.DISABLED, 'Enabled'),
    flag('Suspended', suspended, 'UserSuspended', 'UserActive'),
  ];
}

function flag(type: string, on: boolean, onReason: string, offReason: string): ConditionInput {
  return { type, status: on ? 'True' : 'False', reason: on ? onReason : offReason, message: '' };
}

/** Writes the status when it changed; a write based on a stale object is dropped (409). */
export async function writeKeyStatus(
  deps: { kube: KubeWriter; now: Date },
  raw: KubernetesObject,
  state: ApiKeyState | null | undefined,
  report: KeyReport,
): Promise<void> {
  const existing = (raw as { status?: ApiKeyStatus }).status;
  const generation = raw.metadata?.generation ?? 0;
  const ready: ConditionInput = report.failure
    ? { type: 'Ready', status: 'False', reason: report.failure.reason, message: report.failure.message }
    : { type: 'Ready', status: 'True', reason: R.ISSUED, message: report.readyMessage ?? '' };
  const progress = progressConditions(report.failure, report.inFlight);
  const updates = [ready, ...progress.set, ...(report.extra ?? [])];
  const drop = [...(report.drop ?? []), ...progress.drop];
  const kept = (existing?.conditions ?? []).filter(
    (c) => c.type !== 'StoreAvailable' && !drop.includes(c.type),
  );
  const conditions = setConditions(kept, updates, generation, deps.now);
  const issued = state && !state.revokedAt;
  const status: ApiKeyStatus = {
    observedGeneration: generation,
    conditions,
    keyId: state?.keyId,
    tokenPrefix: issued ? (state.tokenPrefix ?? undefined) : undefined,
    secretName: issued ? secretNameOf(raw as ApiKey) : undefined,
    issuedAt: state?.issuedAt.toISOString(),
    rotatedAt: (state?.rotatedAt ?? state?.issuedAt)?.toISOString(),
    expiresAt: state?.expiresAt?.toISOString(),
    previousValidUntil: state?.previousValidUntil?.toISOString(),
    lastUsedAt: state?.lastUsedAt?.toISOString(),
    lastRotationRequest:
      report.rotationRequest === undefined
        ? existing?.lastRotationRequest
        : (report.rotationRequest ?? undefined),
    rotationRequests: nonEmpty(
      report.rotationRequest === undefined
        ? existing?.rotationRequests
        : rememberRequest(answered(existing), report.rotationRequest),
    ),
    lastRestart: report.lastRestart ?? existing?.lastRestart,
    quota: report.quota === undefined ? existing?.quota : (report.quota ?? undefined),
  };
  if (!statusChanged(existing, status)) return;
  // Merge patch: explicit nulls clear fields that no longer apply (e.g. previousValidUntil).
  await deps.kube.patchStatus('apikeys', raw, withNulls(status, existing));
}

function answered(status: ApiKeyStatus | undefined): string[] {
  return status?.rotationRequests ?? rememberRequest([], status?.lastRotationRequest ?? null);
}

function nonEmpty<T>(list: T[] | undefined): T[] | undefined {
  return list && list.length > 0 ? list : undefined;
}

/** `next`, plus null for every top-level field `previous` had and `next` lacks (merge-patch deletion). */
function withNulls(next: object, previous: object | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = JSON.parse(JSON.stringify(next));
  for (const key of Object.keys(previous ?? {})) {
    if (!(key in out)) out[key] = null;
  }
  return out;
}
