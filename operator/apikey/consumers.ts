import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { type ApiKey, secretNameOf } from '../../api/apikey.js';
import type { ConditionInput } from '../conditions.js';
import type { EventRecorder } from '../kube/events.js';
import { type Resolution, type WorkloadRestarter, workloadName } from '../workloads.js';
import { decideRestart, gracePeriodWarning, type RestartRecord, restartedAtValue } from './restarts.js';

const RESTART_TARGETS_READY = 'RestartTargetsReady';
const GRACE_PERIOD_SUFFICIENT = 'GracePeriodSufficient';
const TARGET_NOT_FOUND = 'RestartTargetNotFound';
const TARGET_PAUSED = 'RestartTargetPaused';
/** How often a key with a missing restart target looks for it again (workloads are not watched). */
const RESTART_TARGET_RECHECK_MS = 60_000;

export interface ConsumersDeps {
  restarter: WorkloadRestarter;
  events: EventRecorder;
  logger: Logger;
  debounceMs: number;
}

export interface ConsumersInput {
  raw: KubernetesObject;
  apiKey: ApiKey;
  /** keyward.dev/token-version of the Secret after this reconcile's writes. */
  tokenVersion: string | null;
  /** When the Secret's current token was created (store). */
  tokenCreatedAt: Date;
  now: Date;
}

export interface ConsumersResult {
  /** Undefined keeps what status had. */
  lastRestart?: RestartRecord;
  conditions: ConditionInput[];
  /** Condition types that no longer apply. */
  drop: string[];
  /** When to look again (a debounced restart, a missing target). */
  wakeAt?: Date;
}

/**
 * The consumers of the key's Secret: restarts of spec.restartTargets after the token changed
 * (decided by decideRestart from state that survives crashes), the RestartTargetsReady condition,
 * and the warning about a grace period too short for consumers to follow a rotation.
 */
export async function reconcileConsumers(
  deps: ConsumersDeps,
  input: ConsumersInput,
): Promise<ConsumersResult> {
  const { apiKey, now } = input;
  const namespace = apiKey.metadata.namespace ?? '';
  const targets = apiKey.spec.restartTargets ?? [];
  const status = apiKey.status;
  const graceWarning = gracePeriodWarning(apiKey.spec, deps.debounceMs);
  const result: ConsumersResult = {
    conditions: [
      graceWarning
        ? {
            type: GRACE_PERIOD_SUFFICIENT,
            status: 'False',
            reason: 'GracePeriodTooShort',
            message: graceWarning,
          }
        : { type: GRACE_PERIOD_SUFFICIENT, status: 'True', reason: 'GracePeriodSufficient', message: '' },
    ],
    drop: targets.length === 0 ? [RESTART_TARGETS_READY] : [],
  };
  const decision = decideRestart({
    tokenVersion: input.tokenVersion,
    last: status?.lastRestart,
    tokenCreatedAt: input.tokenCreatedAt,
    hasTargets: targets.length > 0,
    debounceMs: deps.debounceMs,
    now,
  });
  if (decision.kind === 'record' && input.tokenVersion !== null)
    result.lastRestart = { tokenVersion: input.tokenVersion };
  if (decision.kind === 'wait') result.wakeAt = decision.dueAt;
  if (targets.length === 0) return result;

  const previous = status?.conditions?.find((c) => c.type === RESTART_TARGETS_READY);
  const specChanged = status?.observedGeneration !== apiKey.metadata.generation;
  // Workloads are read only when it matters, not on every resync.
  const look = decision.kind === 'restart' || specChanged || previous?.status !== 'True';
  if (!look) return result;
  const resolution = await deps.restarter.resolve(namespace, targets);

  if (decision.kind === 'restart' && input.tokenVersion !== null) {
    const restarted = await restart(deps, input, resolution, restartedAtValue(decision.dueAt));
    result.lastRestart = { tokenVersion: input.tokenVersion, at: now.toISOString(), targets: restarted };
  }
  result.conditions.push(targetsCondition(resolution));
  if (resolution.problems.length > 0) result.wakeAt = earliest(result.wakeAt, now, RESTART_TARGET_RECHECK_MS);
  return result;
}

/** Restarts every resolved workload; returns the names of those restarted (now or by an earlier try). */
async function restart(
  deps: ConsumersDeps,
  input: ConsumersInput,
  resolution: Resolution,
  restartedAt: string,
): Promise<string[]> {
  const namespace = input.apiKey.metadata.namespace ?? '';
  const restarted: string[] = [];
  const patched: string[] = [];
  for (const workload of resolution.workloads) {
    // Same value as an earlier attempt that crashed before recording it: that restart happened.
    if (workload.restartedAt === restartedAt) {
      restarted.push(workloadName(workload));
      continue;
    }
    if (await deps.restarter.restart(namespace, workload, restartedAt)) {
      restarted.push(workloadName(workload));
      patched.push(workloadName(workload));
    } else {
      resolution.problems.push({ kind: 'NotFound', message: `${workload.kind} ${workload.name} not found` });
    }
  }
  const secretName = secretNameOf(input.apiKey);
  deps.logger.info(
    {
      apiKey: `${namespace}/${input.apiKey.metadata.name}`,
      targets: patched,
      tokenVersion: input.tokenVersion,
    },
    'restarted consumers',
  );
  if (patched.length > 0) {
    const skipped = resolution.problems.length > 0 ? `; not restarted: ${problemList(resolution)}` : '';
    deps.events.record(input.raw, {
      type: 'Normal',
      reason: 'Restarted',
      message: `restarted ${patched.join(', ')} after the token in Secret ${secretName} changed${skipped}`,
    });
  }
  return restarted;
}

function targetsCondition(resolution: Resolution): ConditionInput {
  if (resolution.problems.length === 0) {
    return {
      type: RESTART_TARGETS_READY,
      status: 'True',
      reason: 'RestartTargetsFound',
      message: `restarted after a token change: ${resolution.workloads.map(workloadName).join(', ')}`,
    };
  }
  const missing = resolution.problems.some((p) => p.kind === 'NotFound');
  const others =
    resolution.workloads.length > 0
      ? `; the others are restarted: ${resolution.workloads.map(workloadName).join(', ')}`
      : '';
  return {
    type: RESTART_TARGETS_READY,
    status: 'False',
    reason: missing ? TARGET_NOT_FOUND : TARGET_PAUSED,
    message: `${problemList(resolution)}${others}`,
  };
}

function problemList(resolution: Resolution): string {
  return resolution.problems.map((p) => p.message).join('; ');
}

function earliest(current: Date | undefined, now: Date, afterMs: number): Date {
  const candidate = new Date(now.getTime() + afterMs);
  return current && current < candidate ? current : candidate;
}
