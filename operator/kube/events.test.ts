import { describe, expect, it } from 'vitest';
import { EventAggregator, truncateBytes } from './events.js';

const opts = { windowMs: 6 * 60_000, burst: 3, refillMs: 5 * 60_000, maxEntries: 100 };

type Step = [atMs: number, object: string, event: string, want: 'create' | 'count' | 'drop'];

describe('EventAggregator', () => {
  it.each([
    {
      name: 'a hot loop of one event becomes one create and a series',
      steps: [
        [0, 'o', 'e', 'create'],
        [1, 'o', 'e', 'count'],
        [2, 'o', 'e', 'count'],
        [3, 'o', 'e', 'count'],
      ],
    },
    {
      name: 'the window slides with each repeat',
      steps: [
        [0, 'o', 'e', 'create'],
        [300_000, 'o', 'e', 'count'],
        [600_000, 'o', 'e', 'count'],
      ],
    },
    {
      name: 'a repeat after a quiet window starts a new Event',
      steps: [
        [0, 'o', 'e', 'create'],
        [360_000, 'o', 'e', 'create'],
      ],
    },
    {
      name: 'different events of one object share its burst',
      steps: [
        [0, 'o', 'e1', 'create'],
        [0, 'o', 'e2', 'create'],
        [0, 'o', 'e3', 'create'],
        [0, 'o', 'e4', 'drop'],
      ],
    },
    {
      name: 'repeats are counted even when the burst is spent',
      steps: [
        [0, 'o', 'e1', 'create'],
        [0, 'o', 'e2', 'create'],
        [0, 'o', 'e3', 'create'],
        [1, 'o', 'e1', 'count'],
      ],
    },
    {
      name: 'objects have their own budgets',
      steps: [
        [0, 'a', 'e1', 'create'],
        [0, 'a', 'e2', 'create'],
        [0, 'a', 'e3', 'create'],
        [0, 'b', 'e4', 'create'],
      ],
    },
    {
      name: 'the budget refills one event per interval',
      steps: [
        [0, 'o', 'e1', 'create'],
        [0, 'o', 'e2', 'create'],
        [0, 'o', 'e3', 'create'],
        [299_999, 'o', 'e4', 'drop'],
        [300_000, 'o', 'e5', 'create'],
        [300_001, 'o', 'e6', 'drop'],
        [600_000, 'o', 'e7', 'create'],
      ],
    },
    {
      name: 'a long quiet spell refills at most the burst',
      steps: [
        [0, 'o', 'e1', 'create'],
        [100 * 300_000, 'o', 'e2', 'create'],
        [100 * 300_000, 'o', 'e3', 'create'],
        [100 * 300_000, 'o', 'e4', 'create'],
        [100 * 300_000, 'o', 'e5', 'drop'],
      ],
    },
  ] as Array<{ name: string; steps: Step[] }>)('$name', ({ steps }) => {
    const agg = new EventAggregator(opts);
    expect(steps.map(([at, o, e]) => agg.observe(at, o, e).action)).toEqual(steps.map((s) => s[3]));
  });

  it('counts the series, first occurrence included', () => {
    const agg = new EventAggregator(opts);
    const first = agg.observe(0, 'o', 'e');
    for (let i = 1; i <= 999; i++) agg.observe(i, 'o', 'e');
    expect(first.action).toBe('create');
    if (first.action !== 'create') return;
    expect(first.series).toMatchObject({ count: 1000, lastMs: 999, reportedCount: 1 });
  });

  it('forgets the least recently used series beyond maxEntries', () => {
    const agg = new EventAggregator({ ...opts, burst: 100, maxEntries: 2 });
    agg.observe(0, 'o', 'a');
    agg.observe(0, 'o', 'b');
    agg.observe(1, 'o', 'a');
    agg.observe(2, 'o', 'c');
    expect(agg.observe(3, 'o', 'a').action).toBe('count');
    expect(agg.observe(3, 'o', 'b').action).toBe('create');
  });
});

describe('truncateBytes', () => {
  it.each([
    { s: 'short', max: 10, want: 'short' },
    { s: 'abcdef', max: 3, want: 'abc' },
    { s: 'ééé', max: 5, want: 'éé' },
    { s: 'a🙂b', max: 4, want: 'a' },
    { s: 'x'.repeat(2000), max: 1024, want: 'x'.repeat(1024) },
  ])('$s cut to $max bytes', ({ s, max, want }) => {
    const out = truncateBytes(s, max);
    expect(out).toBe(want);
    expect(Buffer.byteLength(out)).toBeLessThanOrEqual(max);
  });
});
