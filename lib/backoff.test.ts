import { describe, expect, it } from 'vitest';
import { Backoff, backoffDelay } from './backoff.js';

const opts = { baseMs: 100, capMs: 1000 };

describe('backoffDelay', () => {
  it.each([
    { attempt: 0, random: 0, want: 50 },
    { attempt: 0, random: 0.5, want: 75 },
    { attempt: 1, random: 0, want: 100 },
    { attempt: 2, random: 0, want: 200 },
    { attempt: 3, random: 0.5, want: 600 },
    { attempt: 4, random: 0, want: 500 },
    { attempt: 4, random: 0.999, want: 999.5 },
    { attempt: 5000, random: 0, want: 500 },
  ])('attempt $attempt with random $random waits $want ms', ({ attempt, random, want }) => {
    expect(backoffDelay(attempt, opts, () => random)).toBeCloseTo(want, 6);
  });

  it('never exceeds the cap and never drops below half the current ceiling', () => {
    for (let attempt = 0; attempt < 80; attempt++) {
      const ceiling = Math.min(opts.capMs, opts.baseMs * 2 ** attempt);
      for (const r of [0, 0.25, 0.9999999]) {
        const d = backoffDelay(attempt, opts, () => r);
        expect(d).toBeGreaterThanOrEqual(ceiling / 2);
        expect(d).toBeLessThanOrEqual(opts.capMs);
      }
    }
  });
});

describe('Backoff', () => {
  it('grows per call and starts over after reset', () => {
    const b = new Backoff(opts, () => 0);
    expect([b.next(), b.next(), b.next()]).toEqual([50, 100, 200]);
    b.reset();
    expect(b.next()).toBe(50);
  });

  it.each([
    { baseMs: 0, capMs: 10 },
    { baseMs: 10, capMs: 5 },
    { baseMs: Number.NaN, capMs: 5 },
  ])('rejects base $baseMs / cap $capMs', (bad) => {
    expect(() => new Backoff(bad, Math.random)).toThrow(/invalid backoff/);
  });
});
