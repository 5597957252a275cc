import { CoordinationV1Api, type KubeConfig, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { type Clock, type Random, realClock } from './clock.js';
import { statusCodeOf } from './errors.js';

/** The part of a coordination.k8s.io/v1 Lease that election decides on. */
export interface LeaseRecord {
  /** '' when nobody holds it (released). */
  holder: string;
  leaseDurationSeconds: number;
  renewTimeMs: number | undefined;
  acquireTimeMs: number | undefined;
  transitions: number;
}

export type LeaderAction =
  | { type: 'create' }
  | { type: 'renew' }
  /** Take over a lease that was released or has expired. */
  | { type: 'acquire' }
  | { type: 'wait'; holder: string; expiresAtMs: number };

/**
 * What identity should do about lease (undefined: it does not exist) at nowMs. A lease expires when
 * renewTime + leaseDurationSeconds < now, so candidates rely on clocks agreeing to well within the
 * lease duration, as node leases do.
 */
export function decide(lease: LeaseRecord | undefined, nowMs: number, identity: string): LeaderAction {
  if (!lease) return { type: 'create' };
  if (lease.holder === identity) return { type: 'renew' };
  if (lease.holder === '') return { type: 'acquire' };
  const expiresAtMs = (lease.renewTimeMs ?? lease.acquireTimeMs ?? 0) + lease.leaseDurationSeconds * 1000;
  if (expiresAtMs < nowMs) return { type: 'acquire' };
  return { type: 'wait', holder: lease.holder, expiresAtMs };
}

/** The record identity writes to carry out action. */
export function nextLease(
  lease: LeaseRecord | undefined,
  action: 'create' | 'renew' | 'acquire',
  nowMs: number,
  identity: string,
  leaseDurationSeconds: number,
): LeaseRecord {
  const renewing = action === 'renew' && lease !== undefined;
  return {
    holder: identity,
    leaseDurationSeconds,
    renewTimeMs: nowMs,
    acquireTimeMs: renewing ? (lease.acquireTimeMs ?? nowMs) : nowMs,
    transitions: (lease?.transitions ?? 0) + (action === 'acquire' ? 1 : 0),
  };
}

/** The record a stepping-down leader writes so a standby takes over on its next poll. */
export function releasedLease(lease: LeaseRecord, nowMs: number): LeaseRecord {
  return { ...lease, holder: '', leaseDurationSeconds: 1, renewTimeMs: nowMs, acquireTimeMs: nowMs };
}

export function leaseRecordOf(lease: V1Lease): LeaseRecord {
  const spec = lease.spec ?? {};
  return {
    holder: spec.holderIdentity ?? '',
    leaseDurationSeconds: spec.leaseDurationSeconds ?? 0,
    renewTimeMs: millis(spec.renewTime),
    acquireTimeMs: millis(spec.acquireTime),
    transitions: spec.leaseTransitions ?? 0,
  };
}

// The generated client types MicroTime as Date but hands back the wire string, since its
// deserializer does not know the type.
function millis(t: Date | string | undefined): number | undefined {
  if (t === undefined) return undefined;
  const ms = new Date(t).getTime();
  return Number.isNaN(ms) ? undefined : ms;
}

function leaseSpec(r: LeaseRecord): NonNullable<V1Lease['spec']> {
  // V1MicroTime serializes with the microsecond precision the API server insists on.
  return {
    holderIdentity: r.holder,
    leaseDurationSeconds: r.leaseDurationSeconds,
    renewTime: r.renewTimeMs === undefined ? undefined : new V1MicroTime(r.renewTimeMs),
    acquireTime: r.acquireTimeMs === undefined ? undefined : new V1MicroTime(r.acquireTimeMs),
    leaseTransitions: r.transitions,
  };
}

export interface LeaderElectorOptions {
  namespace: string;
  /** Lease name, e.g. 'keyward-operator'. */
  name: string;
  /** Unique per process (pod name plus a random suffix), never reused by a restart. */
  identity: string;
  /** How long a lease is valid after its last renewal. Default 15. */
  leaseDurationSeconds?: number;
  /** The leader gives up if it could not renew for this long; must be below the lease duration. Default 10 s. */
  renewDeadlineMs?: number;
  /** Interval of renewals and of standby polls. Default 2 s. */
  retryPeriodMs?: number;
  /** Write an empty holder on stop() so a standby takes over at once. Default true. */
  releaseOnStop?: boolean;
  /** Called once on becoming leader; signal aborts when leadership ends for any reason. */
  onStartedLeading(signal: AbortSignal): void;
  /** Called when leadership is lost (not on stop()); the operator should exit. */
  onStoppedLeading(): void;
  clock?: Clock;
  random?: Random;
  logger: Logger;
}

type Attempt = 'held' | 'other' | 'error';

/** Lease-based leader election for one term: run() acquires, leads, and returns when it ends. */
export class LeaderElector {
  readonly #api: CoordinationV1Api;
  readonly #o: Required<Omit<LeaderElectorOptions, 'clock' | 'random'>>;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #stop = new AbortController();
  #leading = false;
  #observedHolder: string | undefined;
  #run: Promise<void> | undefined;

  constructor(kc: KubeConfig, opts: LeaderElectorOptions) {
    this.#o = {
      leaseDurationSeconds: 15,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
      releaseOnStop: true,
      ...opts,
      logger: opts.logger.child({ lease: `${opts.namespace}/${opts.name}`, identity: opts.identity }),
    };
    const { leaseDurationSeconds, renewDeadlineMs, retryPeriodMs } = this.#o;
    if (!(retryPeriodMs < renewDeadlineMs && renewDeadlineMs < leaseDurationSeconds * 1000)) {
      throw new Error('leader election needs retryPeriod < renewDeadline < leaseDuration');
    }
    this.#api = kc.makeApiClient(CoordinationV1Api);
    this.#clock = opts.clock ?? realClock;
    this.#random = opts.random ?? Math.random;
  }

  isLeader(): boolean {
    return this.#leading;
  }

  /**
   * Waits to acquire the lease, leads until leadership is lost or stop() is called, then returns.
   * A stopped elector cannot run again; create a new one.
   */
  run(): Promise<void> {
    this.#run ??= this.#term();
    return this.#run;
  }

  /** Ends the term, releasing the lease if held (unless releaseOnStop is false). */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#run;
  }

  async #term(): Promise<void> {
    const stopped = this.#stop.signal;
    const log = this.#o.logger;
    while (!stopped.aborted && (await this.#attempt(this.#o.renewDeadlineMs)) !== 'held') {
      await this.#clock.sleep(this.#o.retryPeriodMs * (1 + 0.2 * this.#random()), stopped);
    }
    if (stopped.aborted) return;

    this.#leading = true;
    const term = new AbortController();
    log.info('became leader');
    this.#o.onStartedLeading(term.signal);
    let lastRenewMs = this.#clock.now();
    while (!stopped.aborted) {
      await this.#clock.sleep(this.#o.retryPeriodMs, stopped);
      if (stopped.aborted) break;
      const left = lastRenewMs + this.#o.renewDeadlineMs - this.#clock.now();
      const result = left > 0 ? await this.#attempt(left) : 'error';
      if (result === 'held') {
        lastRenewMs = this.#clock.now();
      } else if (result === 'other' || this.#clock.now() - lastRenewMs >= this.#o.renewDeadlineMs) {
        break;
      }
    }
    this.#leading = false;
    term.abort();
    if (stopped.aborted) {
      if (this.#o.releaseOnStop) await this.#release();
      return;
    }
    log.warn('lost leadership');
    this.#o.onStoppedLeading();
  }

  /**
   * One read-decide-write round. The write carries the resourceVersion that was read, so of two
   * candidates racing, the second gets 409; it reads again and finds the winner.
   */
  async #attempt(timeoutMs: number): Promise<Attempt> {
    for (let round = 0; round < 2; round++) {
      const result = await this.#withTimeout(this.#round(), timeoutMs);
      if (result !== 'conflict') return result;
    }
    return 'other';
  }

  async #round(): Promise<Attempt | 'conflict'> {
    const { namespace, name, identity, leaseDurationSeconds, logger } = this.#o;
    let current: V1Lease | undefined;
    try {
      current = await this.#api.readNamespacedLease({ namespace, name });
    } catch (err) {
      if (statusCodeOf(err) !== 404) {
        logger.warn({ err }, 'reading lease failed');
        return 'error';
      }
    }
    const record = current ? leaseRecordOf(current) : undefined;
    if (record && record.holder !== this.#observedHolder) {
      this.#observedHolder = record.holder;
      logger.info({ holder: record.holder }, 'lease holder changed');
    }
    const now = this.#clock.now();
    const action = decide(record, now, identity);
    if (action.type === 'wait') return 'other';
    const spec = leaseSpec(nextLease(record, action.type, now, identity, leaseDurationSeconds));
    try {
      if (current) {
        await this.#api.replaceNamespacedLease({ namespace, name, body: { ...current, spec } });
      } else {
        await this.#api.createNamespacedLease({
          namespace,
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec },
        });
      }
      return 'held';
    } catch (err) {
      if (statusCodeOf(err) === 409) return 'conflict';
      logger.warn({ err }, `${action.type} lease failed`);
      return 'error';
    }
  }

  async #release(): Promise<void> {
    const { namespace, name, identity, logger } = this.#o;
    try {
      const current = await this.#api.readNamespacedLease({ namespace, name });
      const record = leaseRecordOf(current);
      if (record.holder !== identity) return;
      const spec = leaseSpec(releasedLease(record, this.#clock.now()));
      await this.#api.replaceNamespacedLease({ namespace, name, body: { ...current, spec } });
      logger.info('released lease');
    } catch (err) {
      // A standby still takes over once the lease expires.
      logger.warn({ err }, 'releasing lease failed');
    }
  }

  /** Bounds a round that hangs (API server unreachable) so the renew deadline is kept. */
  #withTimeout<R>(work: Promise<R>, ms: number): Promise<R | 'error'> {
    return new Promise((resolve) => {
      const timer = this.#clock.setTimer(ms, () => {
        this.#o.logger.warn({ ms }, 'lease request timed out');
        resolve('error');
      });
      work.then(
        (r) => {
          timer.cancel();
          resolve(r);
        },
        () => {
          timer.cancel();
          resolve('error');
        },
      );
    });
  }
}
