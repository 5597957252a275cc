// wrk runs as nginx-auth reads them: bench/lib/wrk.ts pinned to the front CPU, latency in µs at a
// fixed set of quantiles, and the CPU time the server under test spent per request meanwhile.
import { cpuSeconds } from '../lib/processes.js';
import { median } from '../lib/results.js';
import type { Wrk, WrkOptions } from '../lib/wrk.js';

/** The quantiles every run reports (q in 0..1). */
const QUANTILES = [0.5, 0.75, 0.9, 0.95, 0.99, 0.999] as const;
type Quantile = (typeof QUANTILES)[number];

export interface WrkRun {
  readonly rps: number;
  /** Latency in µs, by QUANTILES. */
  readonly quantiles: readonly number[];
  readonly requests: number;
  readonly non2xx: number;
  readonly socketErrors: number;
  /** CPU time (user + system) of the watched process per request, µs. */
  readonly cpuUsPerRequest: number;
}

/** wrk's histogram is in whole µs; the shared result holds it in ms. */
const US_PER_MS = 1000;
/** Tells 0.999 from 0.9999 while absorbing the float error of percent ÷ 100. */
const Q_EPSILON = 1e-9;

/** One run of `wrk`, with the CPU time of `watchPid` (the server under test) over it. */
export async function runWrk(wrk: Wrk, url: string, options: WrkOptions, watchPid: number): Promise<WrkRun> {
  const before = await cpuSeconds(watchPid);
  const result = await wrk.run(url, options);
  const cpu = (await cpuSeconds(watchPid)) - before;
  const quantiles = QUANTILES.map((q) => {
    const point = result.quantiles.find((p) => Math.abs(p.q - q) < Q_EPSILON);
    if (!point) throw new Error(`wrk reported no p${q * 100}`);
    return Math.round(point.value * US_PER_MS);
  });
  return {
    rps: result.rps,
    quantiles,
    requests: result.requests,
    non2xx: result.non2xx,
    socketErrors: result.socketErrors,
    cpuUsPerRequest: (cpu * 1e6) / result.requests,
  };
}

/** One quantile of a run, µs. */
export function quantileOf(run: WrkRun, q: Quantile): number {
  return run.quantiles[QUANTILES.indexOf(q)]!;
}

/** Per quantile, the median over runs: one line of a `quantiles` chart. */
export function medianQuantiles(runs: readonly WrkRun[]): { q: number; value: number }[] {
  return QUANTILES.map((q) => ({ q, value: median(runs.map((r) => quantileOf(r, q))) }));
}
