import { type ApiKeySpec, gracePeriodMs } from '../../api/apikey.js';

/** The pod-template annotation `kubectl rollout restart` sets; keyward restarts the same way. */
export const RESTARTED_AT_ANNOTATION = 'kubectl.kubernetes.io/restartedAt';

/**
 * How long the kubelet may take to put a changed Secret into a mounted volume: its sync period
 * (1 min by default) plus the Secret cache's propagation delay. A previous token must outlive it.
 */
const KUBELET_SECRET_REFRESH_MS = 90_000;
/** Time allowed for a restarted workload to replace its pods; rollouts of large workloads take longer. */
const ROLLOUT_ALLOWANCE_MS = 300_000;

/** status.lastRestart: the token version the restart targets were last restarted for. */
export interface RestartRecord {
  tokenVersion: string;
  at?: string;
  targets?: string[];
}

export type RestartDecision =
  /** Nothing to do: the record answers the Secret's token (or the Secret has none yet). */
  | { kind: 'none' }
  /** Record the Secret's token version without a restart: nobody can have used an older token. */
  | { kind: 'record' }
  /** The token changed less than the debounce window ago; look again at `dueAt`. */
  | { kind: 'wait'; dueAt: Date }
  /** Restart every target now; `dueAt` is the instant the restart became due. */
  | { kind: 'restart'; dueAt: Date };

export interface RestartInput {
  /** keyward.dev/token-version of the Secret as it is after this reconcile's writes, or null. */
  tokenVersion: string | null;
  last: RestartRecord | undefined;
  /** When the Secret's current token was created (the store's rotatedAt). */
  tokenCreatedAt: Date;
  hasTargets: boolean;
  debounceMs: number;
  now: Date;
}

/**
 * Whether the restart targets must be restarted. The decision reads only what survives a crash:
 * the version on the Secret (written with the token, in one request) and the version status last
 * recorded, so an operator restart, a resync or a re-apply that leaves the token alone restarts
 * nothing, and a token written just before a crash is still restarted for. Debounce is trailing:
 * each new token within the window moves the restart to `debounce` after the newest one, so a burst
 * of rotations gives one restart, for the last token.
 */
export function decideRestart(input: RestartInput): RestartDecision {
  const { tokenVersion, last } = input;
  if (tokenVersion === null) return { kind: 'none' };
  // No record: a first issue, or a key from before restartTargets existed. No consumer could have
  // started with an earlier token keyward accepts, or if one did, no change is known to answer.
  if (!last) return { kind: 'record' };
  if (last.tokenVersion === tokenVersion) return { kind: 'none' };
  if (!input.hasTargets) return { kind: 'record' };
  const dueAt = new Date(input.tokenCreatedAt.getTime() + input.debounceMs);
  return input.now < dueAt ? { kind: 'wait', dueAt } : { kind: 'restart', dueAt };
}

/**
 * The restartedAt value for a restart due at `dueAt`: RFC 3339 to the second, as kubectl writes
 * it (time.RFC3339). Derived from the token's creation, not the clock at the patch, so a restart
 * retried after a crash between the patches and the status write patches the same value again and
 * the API server sees no template change: no second rollout.
 */
export function restartedAtValue(dueAt: Date): string {
  return `${dueAt.toISOString().slice(0, 19)}Z`;
}

/**
 * A warning when the grace period is too short for consumers to pick up the new token before the
 * previous one stops verifying: volume consumers wait for the kubelet's refresh, restarted ones
 * also for the debounce and the rollout. Undefined when the grace period is long enough.
 */
export function gracePeriodWarning(spec: ApiKeySpec, debounceMs: number): string | undefined {
  const grace = gracePeriodMs(spec);
  const restarts = (spec.restartTargets?.length ?? 0) > 0;
  const needed = KUBELET_SECRET_REFRESH_MS + (restarts ? debounceMs + ROLLOUT_ALLOWANCE_MS : 0);
  if (grace >= needed) return undefined;
  const what = restarts
    ? `the kubelet's Secret refresh (${KUBELET_SECRET_REFRESH_MS / 1000}s), the restart debounce ` +
      `(${Math.round(debounceMs / 1000)}s) and a rollout (allowing ${ROLLOUT_ALLOWANCE_MS / 1000}s)`
    : `the kubelet's Secret refresh of mounted volumes (${KUBELET_SECRET_REFRESH_MS / 1000}s)`;
  return (
    `spec.rotation.gracePeriod ${spec.rotation?.gracePeriod ?? ''} is shorter than ${what}: after a rotation, ` +
    `consumers may still present the previous token when it stops verifying; use at least ${Math.ceil(needed / 60_000)}m`
  );
}
