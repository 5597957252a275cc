import { afterEach, describe, expect, it, vi } from 'vitest';
import { FakeClock } from '../../test/support/fake-clock.js';
import { realClock } from './clock.js';

describe('FakeClock', () => {
  it('fires due timers in deadline order, ties in creation order, and skips cancelled ones', async () => {
    const clock = new FakeClock(0);
    const fired: string[] = [];
    clock.setTimer(30, () => fired.push('c'));
    clock.setTimer(10, () => fired.push('a'));
    clock.setTimer(10, () => fired.push('b'));
    clock.setTimer(20, () => fired.push('cancelled')).cancel();
    clock.setTimer(31, () => fired.push('late'));
    await clock.advance(30);
    expect(fired).toEqual(['a', 'b', 'c']);
    expect(clock.now()).toBe(30);
    expect(clock.pendingTimers()).toBe(1);
  });

  it('lets promise chains started by one timer schedule further timers within the same advance', async () => {
    const clock = new FakeClock(0);
    const seen: number[] = [];
    const loop = async (): Promise<void> => {
      for (let i = 0; i < 3; i++) {
        await clock.sleep(10);
        await Promise.resolve();
        seen.push(clock.now());
      }
    };
    const done = loop();
    await clock.advance(25);
    expect(seen).toEqual([10, 20]);
    await clock.advance(5);
    await done;
    expect(seen).toEqual([10, 20, 30]);
  });

  it('ends sleep early on abort and leaves no timer behind', async () => {
    const clock = new FakeClock(0);
    const ac = new AbortController();
    const slept = clock.sleep(1000, ac.signal);
    ac.abort();
    await slept;
    expect(clock.now()).toBe(0);
    expect(clock.pendingTimers()).toBe(0);
    await clock.sleep(1000, ac.signal);
  });
});

describe('realClock', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('waits out delays longer than setTimeout supports instead of firing at once', () => {
    vi.useFakeTimers();
    const fn = vi.fn();
    const year = 365 * 24 * 3600 * 1000;
    realClock.setTimer(year, fn);
    vi.advanceTimersByTime(year - 1);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledOnce();
  });

  it('cancels a chained timer', () => {
    vi.useFakeTimers();
    const fn = vi.fn();
    const timer = realClock.setTimer(2 ** 32, fn);
    vi.advanceTimersByTime(2 ** 31);
    timer.cancel();
    vi.advanceTimersByTime(2 ** 32);
    expect(fn).not.toHaveBeenCalled();
  });
});
