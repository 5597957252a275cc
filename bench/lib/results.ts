// The one result format every benchmark writes with `--json <file>`; `npm run bench` gathers these
// files into bench/results/<date>.json and renders the report from them. A benchmark keeps printing
// its human-readable lines as well: the JSON is for the report, the lines for whoever runs it alone.
import { writeFile } from 'node:fs/promises';

/** One row of the report's targets table: a measure, its target and what this run found. */
export interface ResultRow {
  /** Stable across runs, e.g. `hits-vs-fastify`; the report orders and links rows by it. */
  readonly id: string;
  /** What was measured, as the targets table words it. */
  readonly measure: string;
  /** The target as text (`≥ 0.95×`, `≤ 128 MiB`, `reported`). */
  readonly target: string;
  /** The headline figure (a median where there were rounds). */
  readonly value: number;
  readonly unit: string;
  /** null where the row is only reported. */
  readonly met: boolean | null;
  /** Lowest and highest of the rounds behind `value`, when there were several. */
  readonly spread?: readonly [number, number];
  /** Every round's figure, in the order measured. */
  readonly rounds?: readonly number[];
  /** One or two sentences: conditions, and why a missed target was missed. */
  readonly note?: string;
}

/** Data for one chart; `kind` chooses the drawing. */
export type Series =
  /** Throughput bars, e.g. keyward vs its baselines. */
  | {
      readonly kind: 'bars';
      readonly title: string;
      readonly unit: string;
      readonly bars: readonly { label: string; value: number; spread?: readonly [number, number] }[];
    }
  /** Latency distributions: each line's quantiles (q in 0..1, value in the unit). */
  | {
      readonly kind: 'quantiles';
      readonly title: string;
      readonly unit: string;
      readonly lines: readonly { label: string; points: readonly { q: number; value: number }[] }[];
    }
  /** A histogram of raw samples (e.g. revocation propagation in ms). */
  | {
      readonly kind: 'histogram';
      readonly title: string;
      readonly unit: string;
      readonly samples: readonly number[];
    }
  /** y against x, e.g. RSS against cached entries. */
  | {
      readonly kind: 'xy';
      readonly title: string;
      readonly xUnit: string;
      readonly yUnit: string;
      readonly lines: readonly { label: string; points: readonly { x: number; y: number }[] }[];
    };

export interface BenchResult {
  /** The benchmark's name, e.g. `webhook`, `operator`. */
  readonly bench: string;
  readonly startedAt: string;
  readonly seconds: number;
  readonly rows: readonly ResultRow[];
  readonly series: Readonly<Record<string, Series>>;
}

/** Median of a non-empty list (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function spreadOf(values: readonly number[]): readonly [number, number] {
  return [Math.min(...values), Math.max(...values)];
}

/** Collects rows and series while a benchmark runs and writes them once at its end. */
export class ResultWriter {
  readonly #bench: string;
  readonly #started = Date.now();
  readonly #rows: ResultRow[] = [];
  readonly #series: Record<string, Series> = {};

  constructor(bench: string) {
    this.#bench = bench;
  }

  row(row: ResultRow): void {
    this.#rows.push(row);
  }

  series(id: string, series: Series): void {
    this.#series[id] = series;
  }

  /** Writes the file when `path` is given (the `--json` flag); a run without it only prints. */
  async write(path: string | undefined): Promise<void> {
    if (path === undefined) return;
    const result: BenchResult = {
      bench: this.#bench,
      startedAt: new Date(this.#started).toISOString(),
      seconds: Math.round((Date.now() - this.#started) / 1000),
      rows: this.#rows,
      series: this.#series,
    };
    await writeFile(path, `${JSON.stringify(result, null, 2)}\n`);
  }
}
