import { describe, expect, it } from 'vitest';
import type { LimitDefinition } from '../api/ratelimits.js';
import type { KeyLimits, KeyLookup } from '../store/lookup.js';
import type { CounterDelta } from '../store/rate-limits.js';
import { type LimitCheck, RequestLimits, rateLimitedMessage } from './limits.js';

const KEY_ID = '00000000-0000-4000-8000-000000000001';
const USER_ID = '00000000-0000-4000-8000-000000000002';
const START = Date.UTC(2026, 0, 1, 12, 0, 0);

function keyWith(limits: Partial<KeyLimits>): KeyLookup {
  return {
    apiKeyId: KEY_ID,
    userId: USER_ID,
    limits: { key: [], user: [], quota: null, ...limits },
  } as unknown as KeyLookup;
}

const perMinute = (limit: number, name = 'burst'): LimitDefinition => ({ name, limit, periodMs: 60_000 });

function setup(startMs = START): { limits: RequestLimits; clock: { now: number }; soon: () => number } {
  const clock = { now: startMs };
  let soon = 0;
  const limits = new RequestLimits({ now: () => clock.now, syncSoon: () => void soon++ });
  return { limits, clock, soon: () => soon };
}

function admitMany(limits: RequestLimits, key: KeyLookup, n: number): LimitCheck[] {
  return Array.from({ length: n }, () => limits.admit(key) as LimitCheck);
}

describe('RequestLimits', () => {
  it('does nothing for a key without limits', () => {
    const { limits } = setup();
    expect(limits.admit(keyWith({}))).toBeUndefined();
    expect(limits.admit({ apiKeyId: KEY_ID, userId: USER_ID } as unknown as KeyLookup)).toBeUndefined();
    expect(limits.size).toBe(0);
  });

  it('admits up to the limit in a window, then refuses until the window ends', () => {
    const { limits, clock } = setup(START + 15_000);
    const key = keyWith({ key: [perMinute(3)] });
    const checks = admitMany(limits, key, 4);
    expect(checks.map((c) => c.allowed)).toEqual([true, true, true, false]);
    expect(checks[0]?.policyHeader).toBe('"key:burst";q=3;w=60');
    expect(checks[0]?.stateHeader).toBe('"key:burst";r=2;t=45');
    expect(checks[2]?.stateHeader).toBe('"key:burst";r=0;t=45');
    expect(checks[3]).toMatchObject({ refusedBy: 'key:burst', retryAfterSeconds: 45 });
    expect(rateLimitedMessage(checks[3] as LimitCheck)).toBe('The API key is over its rate limit key:burst.');
    clock.now = START + 59_999;
    expect(limits.admit(key)?.allowed).toBe(false);
    clock.now = START + 60_000;
    expect(limits.admit(key)?.allowed).toBe(true);
  });

  it('shares a user limit between the keys of the user, and a refusal counts against nothing', () => {
    const { limits } = setup();
    const user = [perMinute(2, 'shared')];
    const first = keyWith({ user, key: [perMinute(10)] });
    const second = { ...keyWith({ user }), apiKeyId: '00000000-0000-4000-8000-000000000003' } as KeyLookup;
    expect(limits.admit(first)?.allowed).toBe(true);
    expect(limits.admit(second)?.allowed).toBe(true);
    const refused = limits.admit(first);
    expect(refused).toMatchObject({ allowed: false, refusedBy: 'user:shared' });
    expect(refused?.policyHeader).toBe('"key:burst";q=10;w=60, "user:shared";q=2;w=60');
    expect(refused?.stateHeader).toBe('"user:shared";r=0;t=60');
    // The refused request did not use the key's own limit: 1 of 10 used, 9 left.
    const other = keyWith({ key: [perMinute(10)] });
    expect(limits.admit(other)?.stateHeader).toBe('"key:burst";r=8;t=60');
  });

  it('ignores a stored limit whose name could not go into a header', () => {
    const { limits } = setup();
    const key = keyWith({ key: [perMinute(1, 'bad\r\nset-cookie: x'), perMinute(5)] });
    expect(limits.admit(key)?.policyHeader).toBe('"key:burst";q=5;w=60');
  });

  it('the RateLimit field names the policy closest to running out', () => {
    const { limits } = setup();
    const key = keyWith({
      key: [perMinute(100), perMinute(5, 'small')],
      quota: { name: 'quota', limit: 50, periodMs: null },
    });
    expect(limits.admit(key)?.stateHeader).toBe('"key:small";r=4;t=60');
  });

  it('a quota without refill has no window and no Retry-After', () => {
    const { limits, clock } = setup();
    const key = keyWith({ quota: { name: 'quota', limit: 2, periodMs: null } });
    expect(admitMany(limits, key, 2).every((c) => c.allowed)).toBe(true);
    clock.now += 365 * 86_400_000;
    const refused = limits.admit(key) as LimitCheck;
    expect(refused).toMatchObject({ allowed: false, refusedBy: 'quota', retryAfterSeconds: undefined });
    expect(refused.policyHeader).toBe('"quota";q=2');
    expect(refused.stateHeader).toBe('"quota";r=0');
    expect(rateLimitedMessage(refused)).toBe('The API key has used up its quota.');
  });

  it('counts what the other replicas reported: the store total plus its own since', () => {
    const { limits, soon } = setup();
    const key = keyWith({ key: [perMinute(10)] });
    admitMany(limits, key, 2);
    expect(soon()).toBeGreaterThan(0);
    const sent = limits.takeDeltas();
    expect(sent).toEqual([{ subject: KEY_ID, name: 'key:burst', windowStart: START, delta: 2 }]);
    // Admitted while the sync is under way: counted, and not sent twice.
    admitMany(limits, key, 1);
    // Another replica admitted 6: the store's total is 2 + 6.
    limits.settle(sent, [{ subject: KEY_ID, name: 'key:burst', windowStart: START, count: 8 }]);
    const checks = admitMany(limits, key, 2);
    expect(checks.map((c) => c.allowed)).toEqual([true, false]);
    expect(limits.takeDeltas()).toEqual([
      { subject: KEY_ID, name: 'key:burst', windowStart: START, delta: 2 },
    ]);
  });

  it('a failed sync puts its counts back for the next one', () => {
    const { limits } = setup();
    const key = keyWith({ key: [perMinute(10)] });
    admitMany(limits, key, 3);
    const sent: CounterDelta[] = limits.takeDeltas();
    limits.restore(sent);
    expect(limits.takeDeltas()).toEqual([
      { subject: KEY_ID, name: 'key:burst', windowStart: START, delta: 3 },
    ]);
  });

  it('asks for an early sync when a limit runs low, and forgets windows that are over', () => {
    const { limits, clock, soon } = setup();
    const key = keyWith({ key: [perMinute(100)] });
    limits.admit(key);
    limits.settle(limits.takeDeltas(), [
      { subject: KEY_ID, name: 'key:burst', windowStart: START, count: 1 },
    ]);
    const before = soon();
    admitMany(limits, key, 20);
    expect(soon()).toBe(before);
    admitMany(limits, key, 5);
    expect(soon()).toBeGreaterThan(before);
    clock.now = START + 60_000;
    expect(limits.takeDeltas()).toEqual([]);
    expect(limits.size).toBe(0);
  });
});
