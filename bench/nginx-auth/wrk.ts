// wrk (Debian) as a benchmark runs it: pinned to a CPU, latency quantiles from wrk's own
// histogram (a Lua done() hook; wrk's text output has only four), an optional pause per request to
// pace it below saturation, and the CPU time a server process spent per request meanwhile.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { median } from '../lib/results.js';

const run = promisify(execFile);

/** The quantiles every run reports (q in 0..1). */
export const QUANTILES = [0.5, 0.75, 0.9, 0.95, 0.99, 0.999] as const;
export type Quantile = (typeof QUANTILES)[number];

export interface WrkRun {
  readonly rps: number;
  /** Latency in µs, by QUANTILES. */
  readonly quantiles: readonly number[];
  readonly requests: number;
  readonly non2xx: number;
  /** wrk's "Socket errors" line, when there was one. */
  readonly socketErrors: string | undefined;
  /** CPU time (user + system) of the watched process per request, µs. */
  readonly cpuUsPerRequest: number;
}

export interface WrkOptions {
  readonly wrk: string;
  readonly taskset: string;
  readonly cpu: number;
  readonly url: string;
  readonly headers: readonly string[];
  readonly connections: number;
  readonly seconds: number;
  /** Pause per request per connection (ms): wrk is closed-loop, this paces it. */
  readonly delayMs?: number;
  /** The process whose CPU time per request is reported (the server under test). */
  readonly watchPid: number;
  /** Where the Lua script is written. */
  readonly workDir: string;
}

/** Linux reports utime and stime in USER_HZ ticks, 100 per second. */
const TICK_US = 10_000;

/** utime + stime of a process, in clock ticks. */
function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

export async function runWrk(options: WrkOptions): Promise<WrkRun> {
  const script = join(options.workDir, `wrk-${options.delayMs ?? 0}.lua`);
  const lines = [
    'done = function(summary, latency, requests)',
    '  io.write("QUANTILES")',
    `  for _, q in ipairs({${QUANTILES.join(', ')}}) do io.write(" " .. latency:percentile(q * 100)) end`,
    '  io.write("\\n")',
    'end',
  ];
  if (options.delayMs !== undefined) lines.push(`function delay() return ${options.delayMs} end`);
  await writeFile(script, `${lines.join('\n')}\n`);
  const args = ['-c', String(options.cpu), options.wrk, '-t1', `-c${options.connections}`];
  // Latency beyond wrk's default 2 s timeout is still latency: count it, not an error.
  args.push(`-d${options.seconds}s`, '--timeout', '10s', '-s', script);
  for (const h of options.headers) args.push('-H', h);
  args.push(options.url);
  const before = cpuTicks(options.watchPid);
  const { stdout } = await run(options.taskset, args, { maxBuffer: 1 << 20 });
  const ticks = cpuTicks(options.watchPid) - before;
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1]);
  const quantiles = /QUANTILES((?: [\d.]+)+)/.exec(stdout)?.[1]?.trim().split(' ').map(Number);
  if (!quantiles || quantiles.length !== QUANTILES.length)
    throw new Error(`no quantiles from wrk:\n${stdout}`);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]),
    quantiles,
    requests,
    non2xx: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0),
    socketErrors: /Socket errors: (.*)/.exec(stdout)?.[1],
    cpuUsPerRequest: (ticks * TICK_US) / requests,
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
