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
