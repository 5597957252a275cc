import { KubeConfig, V1MicroTime } from '@kubernetes/client-node';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import {
  decide,
  LeaderElector,
  type LeaseRecord,
  leaseRecordOf,
  nextLease,
  releasedLease,
} from './leader.js';

const T = Date.UTC(2025, 0, 1);
const held = (holder: string, renewedAgoMs: number, durationSeconds = 15): LeaseRecord => ({
  holder,
  leaseDurationSeconds: durationSeconds,
  renewTimeMs: T - renewedAgoMs,
  acquireTimeMs: T - 60_000,
  transitions: 3,
});

describe('decide', () => {
  it.each([
    { name: 'no lease: create it', lease: undefined, want: { type: 'create' } },
    { name: 'we hold it: renew', lease: held('me', 1000), want: { type: 'renew' } },
    { name: 'we hold it even if it lapsed: renew', lease: held('me', 60_000), want: { type: 'renew' } },
    { name: 'released (empty holder): acquire', lease: held('', 0), want: { type: 'acquire' } },
    {
      name: 'another holder, fresh: wait until it expires',
      lease: held('other', 1000),
      want: { type: 'wait', holder: 'other', expiresAtMs: T + 14_000 },
    },
    {
      name: 'another holder, exactly at expiry: still wait',
      lease: held('other', 15_000),
      want: { type: 'wait', holder: 'other', expiresAtMs: T },
    },
    {
      name: 'another holder, 1 ms past expiry: acquire',
      lease: held('other', 15_001),
      want: { type: 'acquire' },
    },
    {
      name: 'honours the lease’s own duration',
      lease: held('other', 20_000, 30),
      want: { type: 'wait', holder: 'other', expiresAtMs: T + 10_000 },
    },
    {
      name: 'no renewTime: counts from acquireTime',
      lease: { ...held('other', 0), renewTimeMs: undefined },
      want: { type: 'acquire' },
    },
    {
      name: 'no times at all: acquire',
      lease: { ...held('other', 0), renewTimeMs: undefined, acquireTimeMs: undefined },
      want: { type: 'acquire' },
    },
  ])('$name', ({ lease, want }) => {
    expect(decide(lease, T, 'me')).toEqual(want);
  });
});

describe('nextLease', () => {
  it.each([
    {
      name: 'create starts at zero transitions',
      lease: undefined,
      action: 'create',
      want: { holder: 'me', leaseDurationSeconds: 15, renewTimeMs: T, acquireTimeMs: T, transitions: 0 },
    },
    {
      name: 'renew keeps acquireTime and transitions',
      lease: held('me', 2000),
      action: 'renew',
      want: {
        holder: 'me',
        leaseDurationSeconds: 15,
        renewTimeMs: T,
        acquireTimeMs: T - 60_000,
        transitions: 3,
      },
    },
    {
      name: 'acquire counts a transition and resets acquireTime',
      lease: held('other', 20_000),
      action: 'acquire',
      want: { holder: 'me', leaseDurationSeconds: 15, renewTimeMs: T, acquireTimeMs: T, transitions: 4 },
    },
    {
      name: 'acquire writes our duration over the old one',
      lease: held('', 0, 1),
      action: 'acquire',
      want: { holder: 'me', leaseDurationSeconds: 15, renewTimeMs: T, acquireTimeMs: T, transitions: 4 },
    },
  ] as Array<{
    name: string;
    lease: LeaseRecord | undefined;
    action: 'create' | 'renew' | 'acquire';
    want: LeaseRecord;
  }>)('$name', ({ lease, action, want }) => {
    expect(nextLease(lease, action, T, 'me', 15)).toEqual(want);
  });
});

describe('releasedLease', () => {
  it('empties the holder so the next poll of any standby acquires it', () => {
    const released = releasedLease(held('me', 1000), T);
    expect(released).toEqual({
      holder: '',
      leaseDurationSeconds: 1,
      renewTimeMs: T,
      acquireTimeMs: T,
      transitions: 3,
    });
    expect(decide(released, T, 'standby')).toEqual({ type: 'acquire' });
  });
});

describe('leaseRecordOf', () => {
  it('reads times whether the client hands back strings or dates', () => {
    const iso = '2025-01-01T00:00:00.000000Z';
    const fromWire = leaseRecordOf({
      spec: {
        holderIdentity: 'a',
        leaseDurationSeconds: 15,
        renewTime: iso as unknown as V1MicroTime,
        acquireTime: new V1MicroTime(T - 1000),
        leaseTransitions: 2,
      },
    });
    expect(fromWire).toEqual({
      holder: 'a',
      leaseDurationSeconds: 15,
      renewTimeMs: T,
      acquireTimeMs: T - 1000,
      transitions: 2,
    });
  });

  it('treats a missing spec as an unheld, never renewed lease', () => {
    expect(leaseRecordOf({})).toEqual({
      holder: '',
      leaseDurationSeconds: 0,
      renewTimeMs: undefined,
      acquireTimeMs: undefined,
      transitions: 0,
    });
  });

  it('writes MicroTime with the six fractional digits the API server requires', () => {
    expect(JSON.stringify({ t: new V1MicroTime(T + 123) })).toBe('{"t":"2025-01-01T00:00:00.123000Z"}');
  });
});

describe('LeaderElector options', () => {
  it.each([
    { leaseDurationSeconds: 10, renewDeadlineMs: 10_000, retryPeriodMs: 2000 },
    { leaseDurationSeconds: 15, renewDeadlineMs: 2000, retryPeriodMs: 2000 },
  ])('rejects timings that would let two leaders overlap: %o', (timings) => {
    expect(
      () =>
        new LeaderElector(new KubeConfig(), {
          namespace: 'ns',
          name: 'lease',
          identity: 'me',
          ...timings,
          onStartedLeading: () => {},
          onStoppedLeading: () => {},
          logger: pino({ level: 'silent' }),
        }),
    ).toThrow(/retryPeriod < renewDeadline < leaseDuration/);
  });
});
