import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock, settle } from '../../test/support/fake-clock.js';
import { type QueueMetrics, WorkQueue } from './workqueue.js';

function newQueue(opts: { random?: () => number; metrics?: QueueMetrics } = {}): {
  clock: FakeClock;
  q: WorkQueue;
} {
  const clock = new FakeClock(0);
  return {
    clock,
    q: new WorkQueue({
      clock,
      random: opts.random ?? (() => 0),
      backoff: { baseMs: 100, capMs: 1000 },
      ...opts,
    }),
  };
}

/** Takes every ready key without waiting. */
async function drain(q: WorkQueue): Promise<string[]> {
  const keys: string[] = [];
  while (q.len() > 0) keys.push((await q.get())!);
  return keys;
}

describe('WorkQueue', () => {
  it('queues a key once however often it is added, in first-add order', async () => {
    const { q } = newQueue();
    for (const k of ['a', 'b', 'a', 'c', 'b', 'a']) q.add(k);
    expect(q.len()).toBe(3);
    expect(await drain(q)).toEqual(['a', 'b', 'c']);
  });

  it('holds back a key re-added while in progress and replays it once after done', async () => {
    const { q } = newQueue();
    q.add('a');
    const key = await q.get();
    q.add('a');
    q.add('a');
    expect(q.len()).toBe(0);
    q.done(key!);
    expect(q.len()).toBe(1);
    expect(await q.get()).toBe('a');
    q.done('a');
    expect(q.len()).toBe(0);
  });

  it('wakes a waiting get() when a key arrives', async () => {
    const { q } = newQueue();
    const got = q.get();
    await settle();
    q.add('x');
    expect(await got).toBe('x');
  });

  describe('addAfter', () => {
    it.each([
      { name: 'adds at once for zero delay', adds: [['a', 0]], readyAt: { a: 0 } },
      { name: 'adds after the delay', adds: [['a', 50]], readyAt: { a: 50 } },
      {
        name: 'keeps the earlier deadline',
        adds: [
          ['a', 50],
          ['a', 80],
        ],
        readyAt: { a: 50 },
      },
      {
        name: 'moves to an earlier deadline',
        adds: [
          ['a', 80],
          ['a', 30],
        ],
        readyAt: { a: 30 },
      },
      {
        name: 'orders keys by deadline',
        adds: [
          ['b', 40],
          ['a', 20],
          ['c', 60],
        ],
        readyAt: { a: 20, b: 40, c: 60 },
      },
    ] as Array<{ name: string; adds: Array<[string, number]>; readyAt: Record<string, number> }>)(
      '$name',
      async ({ adds, readyAt }) => {
        const { clock, q } = newQueue();
        for (const [key, ms] of adds) q.addAfter(key, ms);
        const seen: Record<string, number> = {};
        for (let t = 0; t <= 100; t += 10) {
          for (const key of await drain(q)) {
            seen[key] = clock.now();
            q.done(key);
          }
          await clock.advance(10);
        }
        expect(seen).toEqual(readyAt);
      },
    );

    it('does not hand a delayed key out twice once it became ready', async () => {
      const { clock, q } = newQueue();
      q.addAfter('a', 10);
      q.addAfter('a', 5);
      await clock.advance(20);
      expect(await drain(q)).toEqual(['a']);
      q.done('a');
      await clock.advance(100);
      expect(q.len()).toBe(0);
      expect(clock.pendingTimers()).toBe(0);
    });

    it('keeps a single timer for many delayed keys', async () => {
      const { clock, q } = newQueue();
      for (let i = 0; i < 1000; i++) q.addAfter(`k${i}`, 1000 - i);
      expect(clock.pendingTimers()).toBe(1);
      await clock.advance(1000);
      expect(q.len()).toBe(1000);
      expect((await q.get()) === 'k999').toBe(true);
    });
  });

  it('backs off per key exponentially until forget()', async () => {
    const { clock, q } = newQueue();
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      const from = clock.now();
      q.addRateLimited('a');
      while (q.len() === 0) await clock.advance(1);
      waits.push(clock.now() - from);
      q.done((await q.get())!);
    }
    // random() = 0: half of 100, 200, 400, 800, then the 1000 ms cap.
    expect(waits).toEqual([50, 100, 200, 400, 500, 500]);
    expect(q.numRequeues('a')).toBe(6);
    expect(q.numRequeues('b')).toBe(0);
    q.forget('a');
    expect(q.numRequeues('a')).toBe(0);
    q.addRateLimited('a');
    await clock.advance(49);
    expect(q.len()).toBe(0);
    await clock.advance(1);
    expect(q.len()).toBe(1);
  });

  it('applies jitter from the injected random source', async () => {
    const { clock, q } = newQueue({ random: () => 0.5 });
    q.addRateLimited('a');
    await clock.advance(74);
    expect(q.len()).toBe(0);
    await clock.advance(1);
    expect(q.len()).toBe(1);
  });

  describe('shutDown', () => {
    it('stops handing out keys, ignores adds, drops delayed keys and waits for work in progress', async () => {
      const { clock, q } = newQueue();
      q.add('busy');
      q.add('queued');
      q.addAfter('later', 10);
      const busy = await q.get();
      let stopped = false;
      const shut = q.shutDown().then(() => {
        stopped = true;
      });
      expect(q.len()).toBe(0);
      expect(await q.get()).toBeUndefined();
      q.add('new');
      await clock.advance(100);
      expect(q.len()).toBe(0);
      expect(clock.pendingTimers()).toBe(0);
      await settle();
      expect(stopped).toBe(false);
      q.add(busy!);
      q.done(busy!);
      await shut;
      expect(q.len()).toBe(0);
      expect(await q.get()).toBeUndefined();
      expect(q.isShuttingDown()).toBe(true);
    });

    it('releases idle workers and resolves at once when nothing is in progress', async () => {
      const { q } = newQueue();
      const idle = q.get();
      await q.shutDown();
      expect(await idle).toBeUndefined();
    });
  });

  describe('run', () => {
    it('bounds concurrency to the number of workers', async () => {
      const { clock, q } = newQueue();
      let active = 0;
      let peak = 0;
      const done: string[] = [];
      const running = q.run(3, async (key) => {
        active++;
        peak = Math.max(peak, active);
        await clock.sleep(10);
        active--;
        done.push(key);
        return undefined;
      });
      for (let i = 0; i < 10; i++) q.add(`k${i}`);
      await clock.advance(40);
      expect(done).toHaveLength(10);
      expect(peak).toBe(3);
      await q.shutDown();
      await running;
    });

    it('retries a failing key with backoff, resets it on success and honours requeueAfterMs', async () => {
      const metrics = { depth: [] as number[], latency: [] as number[], work: [] as number[], retries: 0 };
      const { clock, q } = newQueue({
        metrics: {
          depth: (n) => metrics.depth.push(n),
          queueLatency: (s) => metrics.latency.push(s),
          workDuration: (s) => metrics.work.push(s),
          retry: () => metrics.retries++,
        },
      });
      const calls: number[] = [];
      const running = q.run(1, async () => {
        calls.push(clock.now());
        await clock.sleep(1);
        if (calls.length <= 2) throw new Error('transient');
        if (calls.length === 3) return { requeueAfterMs: 1000 };
        return undefined;
      });
      q.add('a');
      await clock.advance(5000);
      // Fails at 0 and at 51 (50 ms backoff), then 102 (100 ms backoff), succeeds and asks for 1000 ms.
      expect(calls).toEqual([0, 51, 152, 1153]);
      expect(q.numRequeues('a')).toBe(0);
      expect(metrics.retries).toBe(2);
      expect(metrics.work).toEqual([0.001, 0.001, 0.001, 0.001]);
      expect(metrics.latency).toEqual([0, 0, 0, 0]);
      expect(metrics.depth.at(-1)).toBe(0);
      expect(Math.max(...metrics.depth)).toBe(1);
      await q.shutDown();
      await running;
    });

    it('never runs one key on two workers and processes every add after it happened', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.record({
              at: fc.integer({ min: 0, max: 200 }),
              key: fc.constantFrom('a', 'b', 'c', 'd'),
              delay: fc.integer({ min: 0, max: 30 }),
            }),
            { maxLength: 40 },
          ),
          fc.integer({ min: 1, max: 4 }),
          fc.array(fc.integer({ min: 0, max: 25 }), { minLength: 1, maxLength: 10 }),
          async (adds, workers, durations) => {
            const { clock, q } = newQueue();
            const inProgress = new Set<string>();
            const starts: Array<{ key: string; at: number }> = [];
            let violations = 0;
            let n = 0;
            const running = q.run(workers, async (key) => {
              if (inProgress.has(key)) violations++;
              inProgress.add(key);
              starts.push({ key, at: clock.now() });
              await clock.sleep(durations[n++ % durations.length]!);
              inProgress.delete(key);
              return undefined;
            });
            for (const { at, key, delay } of adds) {
              clock.setTimer(at, () => (delay === 0 ? q.add(key) : q.addAfter(key, delay)));
            }
            await clock.advance(2000);
            expect(violations).toBe(0);
            for (const { at, key } of adds) {
              expect(starts.some((s) => s.key === key && s.at >= at)).toBe(true);
            }
            await q.shutDown();
            await running;
          },
        ),
        { numRuns: 150 },
      );
    });
  });
});
