// Timed samples: the clock they are taken with and their nearest-rank quantiles, so a p99 is always
// a measured sample (p99 of 200 samples is the 198th, with two above it), never an interpolation.

/** Epoch milliseconds with sub-millisecond resolution, comparable with Postgres' now(). */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The smallest sample with at least q of all samples at or below it; NaN when there are none. */
export function nearestRank(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length))) - 1] ?? Number.NaN;
}

export interface Summary {
  readonly n: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: nearestRank(sorted, 0.5),
    p90: nearestRank(sorted, 0.9),
    p99: nearestRank(sorted, 0.99),
    max: sorted.at(-1) ?? Number.NaN,
  };
}

export function formatSummary(s: Summary, unit = 'ms', digits = 2): string {
  const f = (v: number): string => `${v.toFixed(digits)} ${unit}`;
  return `n ${s.n}: p50 ${f(s.p50)}, p90 ${f(s.p90)}, p99 ${f(s.p99)}, max ${f(s.max)}`;
}
