import { describe, expect, it } from 'vitest';
import { formatSummary, nearestRank, summarize } from './samples.js';

const oneTo = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

describe('nearest-rank summaries', () => {
  it('takes p99 of 200 samples as the 198th, whatever their order', () => {
    const shuffled = oneTo(200).sort((a, b) => ((a * 7919) % 200) - ((b * 7919) % 200));
    const s = summarize(shuffled);
    expect(s).toEqual({ n: 200, p50: 100, p90: 180, p99: 198, max: 200 });
  });

  it('answers with a measured sample, never between two', () => {
    expect(summarize([1, 10])).toMatchObject({ p50: 1, p90: 10, p99: 10 });
    expect(nearestRank([3], 0.5)).toBe(3);
  });

  it('has no quantile of no samples', () => {
    expect(nearestRank([], 0.99)).toBeNaN();
  });

  it('prints every figure with its unit', () => {
    expect(formatSummary(summarize([1.5, 2.25]), 'ms', 1)).toBe(
      'n 2: p50 1.5 ms, p90 2.3 ms, p99 2.3 ms, max 2.3 ms',
    );
  });
});
