import { describe, expect, it } from 'vitest';
import { type LookupPriority, LookupQueue, type Release } from './lookup-queue.js';

function setup(maxConcurrent: number, maxQueued: number, maxWaitMs = 1000) {
  const clock = { now: 0 };
  const shed: LookupPriority[] = [];
  const queue = new LookupQueue({
    maxConcurrent,
    maxQueued,
    maxWaitMs,
    now: () => clock.now,
    onShed: (p) => shed.push(p),
  });
  return { queue, clock, shed };
}

describe('LookupQueue', () => {
  it('runs up to maxConcurrent at once and hands slots on in order, known before unknown', async () => {
    const { queue } = setup(2, 10);
    const a = (await queue.acquire('unknown'))!;
    const b = (await queue.acquire('unknown'))!;
    expect(queue.inFlight).toBe(2);
    const order: string[] = [];
    const c = queue.acquire('unknown').then((r) => {
      order.push('c');
      return r;
    });
    const d = queue.acquire('known').then((r) => {
      order.push('d');
      return r;
    });
    expect(queue.queued).toBe(2);
    a();
    a(); // a second release of one slot is ignored
    await d;
    expect(order).toEqual(['d']);
    expect(queue.inFlight).toBe(2);
    b();
    expect(await c).toBeTypeOf('function');
    expect(order).toEqual(['d', 'c']);
    expect(queue.queued).toBe(0);
  });

  it('sheds unknown lookups when full, and lets known ones displace them', async () => {
    const { queue, shed } = setup(1, 2);
    const running = (await queue.acquire('unknown'))!;
    const u1 = queue.acquire('unknown');
    const u2 = queue.acquire('unknown');
    expect(await queue.acquire('unknown')).toBeNull();
    const k1 = queue.acquire('known');
    expect(await u2).toBeNull();
    const k2 = queue.acquire('known');
    expect(await u1).toBeNull();
    // Full of known lookups: a third known one is shed itself.
    expect(await queue.acquire('known')).toBeNull();
    expect(shed).toEqual(['unknown', 'unknown', 'unknown', 'known']);
    expect(queue.queued).toBe(2);
    running();
    const first = (await k1) as Release;
    first();
    expect(await k2).toBeTypeOf('function');
  });

  it('sheds lookups from limited clients before any other', async () => {
    const { queue, shed } = setup(1, 2);
    const running = (await queue.acquire('known'))!;
    const suspect = queue.acquire('suspect');
    const unknown = queue.acquire('unknown');
    const other = queue.acquire('unknown');
    expect(await suspect).toBeNull();
    expect(await queue.acquire('suspect')).toBeNull();
    expect(shed).toEqual(['suspect', 'suspect']);
    running();
    const next = (await unknown) as Release;
    next();
    expect(await other).toBeTypeOf('function');
  });

  it('sheds a waiter that waited longer than maxWaitMs when its turn comes', async () => {
    const { queue, clock, shed } = setup(1, 5, 100);
    const running = (await queue.acquire('known'))!;
    const old = queue.acquire('unknown');
    clock.now = 50;
    const young = queue.acquire('unknown');
    clock.now = 120;
    running();
    expect(await old).toBeNull();
    expect(await young).toBeTypeOf('function');
    expect(shed).toEqual(['unknown']);
  });
});

describe('LookupQueue batches', () => {
  function batched(maxConcurrent: number, maxQueued: number, maxSize: number, maxWaitMs = 1000) {
    const clock = { now: 0 };
    const shed: LookupPriority[] = [];
    const runs: string[][] = [];
    const finish: Array<() => void> = [];
    const dropped: string[] = [];
    const deferred: Array<() => void> = [];
    const queue = new LookupQueue<string>({
      maxConcurrent,
      maxQueued,
      maxWaitMs,
      now: () => clock.now,
      onShed: (p) => shed.push(p),
      defer: (run) => deferred.push(run),
      batch: {
        maxSize,
        run: (items) => {
          runs.push(items);
          return new Promise<void>((resolve) => finish.push(resolve));
        },
        shed: (item) => dropped.push(item),
      },
    });
    const turn = (): void => {
      for (const run of deferred.splice(0)) run();
    };
    return { queue, clock, shed, runs, finish, dropped, turn };
  }

  it('collects what arrives in one turn into one round trip, then hands the rest on in batches, known first', async () => {
    const { queue, runs, finish, turn } = batched(1, 100, 3);
    queue.submit('unknown', 'u1');
    queue.submit('unknown', 'u2');
    expect(runs).toEqual([]); // never synchronously: the rest of this turn may still join
    turn();
    expect(runs).toEqual([['u1', 'u2']]);
    expect(queue.inFlight).toBe(1);
    for (const item of ['u3', 'u4', 'u5']) queue.submit('unknown', item);
    queue.submit('suspect', 's1');
    queue.submit('known', 'k1');
    turn(); // the only slot is busy: they wait
    expect(runs).toHaveLength(1);
    expect(queue.queued).toBe(5);
    finish.shift()!();
    await Promise.resolve();
    await Promise.resolve();
    expect(runs[1]).toEqual(['k1', 'u3', 'u4']);
    finish.shift()!();
    await Promise.resolve();
    await Promise.resolve();
    expect(runs[2]).toEqual(['u5', 's1']);
    expect(queue.queued).toBe(0);
  });

  it('shares its slots and its bound with acquire(), shedding the least valuable when full', async () => {
    const { queue, runs, dropped, shed, turn } = batched(1, 2, 10);
    const held = (await queue.acquire('known'))!;
    queue.submit('unknown', 'u1');
    queue.submit('suspect', 's1');
    queue.submit('unknown', 'u2'); // full: displaces the suspect one
    expect(dropped).toEqual(['s1']);
    queue.submit('unknown', 'u3'); // full of unknown ones: shed itself
    expect(dropped).toEqual(['s1', 'u3']);
    const known = queue.acquire('known'); // displaces the newest unknown
    expect(dropped).toEqual(['s1', 'u3', 'u2']);
    expect(shed).toEqual(['suspect', 'unknown', 'unknown']);
    turn();
    expect(runs).toEqual([]);
    held();
    // The acquire() waiter is the best one; the batch item waits for the slot after it.
    const release = (await known)!;
    expect(runs).toEqual([]);
    release();
    expect(runs).toEqual([['u1']]);
  });

  it('sheds batch items that waited longer than maxWaitMs instead of looking them up', async () => {
    const { queue, clock, runs, dropped, finish, turn } = batched(1, 10, 10, 100);
    queue.submit('unknown', 'first');
    turn();
    queue.submit('unknown', 'old');
    clock.now = 50;
    queue.submit('known', 'young');
    clock.now = 120;
    finish.shift()!();
    await Promise.resolve();
    await Promise.resolve();
    expect(dropped).toEqual(['old']);
    expect(runs).toEqual([['first'], ['young']]);
  });
});
