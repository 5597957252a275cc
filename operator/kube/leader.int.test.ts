import { CoordinationV1Api, type KubeConfig, V1MicroTime } from '@kubernetes/client-node';
import pino from 'pino';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestNamespace } from '../../devenv/kube.js';
import { eventually } from '../../devenv/poll.js';
import { testKubeConfig } from '../../test/harness/kube.js';
import { LeaderElector, type LeaderElectorOptions, leaseRecordOf } from './leader.js';

// Integration tests against the run's real kube-apiserver (test/harness/global-setup.ts). Timings
// are shrunk (2 s lease) so hand-overs happen within a test's patience.

const LEASE = 'keyward-operator';
const timings = { leaseDurationSeconds: 2, renewDeadlineMs: 1500, retryPeriodMs: 200 };

interface Candidate {
  id: string;
  elector: LeaderElector;
  running: Promise<void>;
  /** What the callbacks saw. */
  log: { startedAt: number[]; termSignals: AbortSignal[]; stoppedLeading: number };
}

describe('LeaderElector against the API server', () => {
  let kc: KubeConfig;
  let leases: CoordinationV1Api;
  let ns: string;
  const candidates: Candidate[] = [];

  const candidate = (id: string, opts: Partial<LeaderElectorOptions> = {}): Candidate => {
    const log: Candidate['log'] = { startedAt: [], termSignals: [], stoppedLeading: 0 };
    const elector = new LeaderElector(kc, {
      namespace: ns,
      name: LEASE,
      identity: id,
      ...timings,
      logger: pino({ level: 'silent' }),
      onStartedLeading: (signal) => {
        log.startedAt.push(Date.now());
        log.termSignals.push(signal);
      },
      onStoppedLeading: () => {
        log.stoppedLeading++;
      },
      ...opts,
    });
    const c = { id, elector, running: elector.run(), log };
    candidates.push(c);
    return c;
  };
  const readLease = async (): Promise<ReturnType<typeof leaseRecordOf>> =>
    leaseRecordOf(await leases.readNamespacedLease({ namespace: ns, name: LEASE }));
  const leaders = (): string[] => candidates.filter((c) => c.elector.isLeader()).map((c) => c.id);

  beforeAll(() => {
    kc = testKubeConfig();
    leases = kc.makeApiClient(CoordinationV1Api);
  });

  beforeEach(async () => {
    ns = await createTestNamespace(kc, 'kube-leader');
  });

  afterEach(async () => {
    await Promise.all(candidates.splice(0).map((c) => c.elector.stop()));
  });

  it('lets exactly one of two candidates lead, and the lease names it', async () => {
    const a = candidate('a');
    const b = candidate('b');
    await eventually('a leader', () => leaders().length === 1);
    // Sample through several renewals: never two leaders, never a change of leader.
    const first = leaders()[0];
    const until = Date.now() + 3 * timings.leaseDurationSeconds * 1000;
    while (Date.now() < until) {
      expect(leaders()).toEqual([first]);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const lease = await readLease();
    expect(lease.holder).toBe(first);
    expect(lease.transitions).toBe(0);
    expect(Date.now() - lease.renewTimeMs!).toBeLessThan(1000);
    expect(a.log.startedAt.length + b.log.startedAt.length).toBe(1);
    expect(a.log.stoppedLeading + b.log.stoppedLeading).toBe(0);
  });

  it('hands over at once when the leader releases the lease on stop', async () => {
    // A long lease, so a take-over within seconds can only come from the release.
    const long = { leaseDurationSeconds: 30 };
    const a = candidate('a', long);
    await eventually('a leads', () => a.elector.isLeader());
    const b = candidate('b', long);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(b.elector.isLeader()).toBe(false);

    const stoppedAt = Date.now();
    await a.elector.stop();
    expect(a.log.termSignals[0]?.aborted).toBe(true);
    expect(a.log.stoppedLeading).toBe(0);
    await eventually('b takes over', () => b.elector.isLeader(), 5_000);
    expect(b.log.startedAt[0]! - stoppedAt).toBeLessThan(5_000);
    const lease = await readLease();
    expect(lease.holder).toBe('b');
    expect(lease.leaseDurationSeconds).toBe(30);
    expect(lease.transitions).toBe(1);
  });

  it('hands over after expiry when the leader vanishes without releasing', async () => {
    const a = candidate('a', { releaseOnStop: false });
    await eventually('a leads', () => a.elector.isLeader());
    const b = candidate('b');
    await a.elector.stop();
    const lastRenewal = (await readLease()).renewTimeMs!;
    expect((await readLease()).holder).toBe('a');

    await eventually('b takes over', () => b.elector.isLeader(), 10_000);
    const tookOverAfter = b.log.startedAt[0]! - lastRenewal;
    expect(tookOverAfter).toBeGreaterThan(timings.leaseDurationSeconds * 1000);
    // Next standby poll after expiry; generous so a loaded machine does not fail it.
    expect(tookOverAfter).toBeLessThan(timings.leaseDurationSeconds * 1000 + 3000);
    expect((await readLease()).holder).toBe('b');
  });

  it('steps down and calls onStoppedLeading when someone else takes the lease', async () => {
    const a = candidate('a');
    await eventually('a leads', () => a.elector.isLeader());
    const current = await leases.readNamespacedLease({ namespace: ns, name: LEASE });
    await leases.replaceNamespacedLease({
      namespace: ns,
      name: LEASE,
      body: {
        ...current,
        spec: {
          ...current.spec,
          holderIdentity: 'intruder',
          leaseDurationSeconds: 30,
          renewTime: new V1MicroTime(),
        },
      },
    });
    await a.running;
    expect(a.elector.isLeader()).toBe(false);
    expect(a.log.stoppedLeading).toBe(1);
    expect(a.log.termSignals[0]?.aborted).toBe(true);
    expect((await readLease()).holder).toBe('intruder');
  });

  it('waits as a standby while another holder keeps the lease fresh', async () => {
    await leases.createNamespacedLease({
      namespace: ns,
      body: {
        metadata: { name: LEASE },
        spec: { holderIdentity: 'elsewhere', leaseDurationSeconds: 60, renewTime: new V1MicroTime() },
      },
    });
    const a = candidate('a');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(a.elector.isLeader()).toBe(false);
    expect(a.log.startedAt).toEqual([]);
    await a.elector.stop();
    expect((await readLease()).holder).toBe('elsewhere');
  });
});
