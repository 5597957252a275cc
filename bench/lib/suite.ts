// The file `npm run bench` writes (bench/results/<date>.json): the machine, and for every benchmark
// how it was run and the BenchResult it wrote (bench/lib/results.ts), or why there is none.
import type { BenchResult } from './results.js';

export interface Machine {
  readonly cores: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly postgres: string;
  readonly nginx: string;
  readonly wrk: string;
  /** 1-minute load average when the suite started and when it ended: a quiet machine shows ≈ 0 before. */
  readonly loadAverage: { readonly start: number; readonly end: number };
  /** The commit measured, with `+dirty` if the work tree had changes. */
  readonly commit: string;
}

type BenchStatus =
  /** Ran and wrote its result. */
  | 'ok'
  /** dist/bench/<name>.js does not exist in this build. */
  | 'missing'
  /** Exited non-zero, or wrote no result. */
  | 'failed';

export interface SuiteEntry {
  readonly name: string;
  /** The size flags the runner gave it. */
  readonly args: readonly string[];
  /** What the runner allowed for it on a quiet machine. */
  readonly budgetMinutes: number;
  readonly status: BenchStatus;
  readonly seconds: number;
  readonly result?: BenchResult;
  /** For a failed benchmark: its exit and the last lines it printed. */
  readonly error?: string;
}

export interface SuiteResult {
  /** YYYY-MM-DD, the results' file name. */
  readonly date: string;
  readonly startedAt: string;
  readonly seconds: number;
  /** `quick` for the reduced sizes that only prove the plumbing (`--quick`). */
  readonly preset: 'full' | 'quick';
  readonly machine: Machine;
  readonly benchmarks: readonly SuiteEntry[];
}
