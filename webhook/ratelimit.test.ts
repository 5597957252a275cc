import { describe, expect, it } from 'vitest';
import { FailureLimiter } from './ratelimit.js';

describe('FailureLimiter', () => {
  it('allows a burst of failures, then blocks until one refills', () => {
    let now = 0;
    const limiter = new FailureLimiter({ limit: 3, windowMs: 60_000, now: () => now });
    for (let i = 0; i < 3; i++) {
      expect(limiter.blockedFor('10.0.0.1')).toBe(0);
      limiter.recordFailure('10.0.0.1');
    }
    expect(limiter.blockedFor('10.0.0.1')).toBe(20_000);
    expect(limiter.blockedFor('10.0.0.2')).toBe(0);
    now = 15_000;
    expect(limiter.blockedFor('10.0.0.1')).toBe(5_000);
    now = 20_000;
    expect(limiter.blockedFor('10.0.0.1')).toBe(0);
    limiter.recordFailure('10.0.0.1');
    expect(limiter.blockedFor('10.0.0.1')).toBe(20_000);
  });

  it('is off with limit 0', () => {
    const limiter = new FailureLimiter({ limit: 0, windowMs: 1000, now: () => 0 });
    for (let i = 0; i < 100; i++) limiter.recordFailure('a');
    expect(limiter.blockedFor('a')).toBe(0);
    expect(limiter.enabled).toBe(false);
  });

  it('forgets the oldest clients beyond maxClients', () => {
    const limiter = new FailureLimiter({ limit: 1, windowMs: 60_000, maxClients: 2, now: () => 0 });
    limiter.recordFailure('a');
    limiter.recordFailure('b');
    limiter.recordFailure('c');
    expect(limiter.blockedFor('a')).toBe(0);
    expect(limiter.blockedFor('c')).toBeGreaterThan(0);
  });
});
