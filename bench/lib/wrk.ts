// wrk (Debian's, closed-loop) pinned to the generator CPU, with a Lua `done()` that prints the
// latency distribution as JSON, so every run yields quantiles for the report's charts and not only
// the four percentiles of `--latency`. A run can be stopped early: on SIGINT wrk ends as at the end
// of its duration (summary and `done()` included), so a load can last exactly as long as the
// measurement it accompanies.
import { type ChildProcess, execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GENERATOR_CPU, taskset, wrkBin } from './tools.js';

/** The quantiles (in percent) every run reports; 99.99 only means something in runs of 10⁴+ requests. */
const PERCENTILES = [50, 75, 90, 95, 99, 99.9, 99.99];
const MARK = 'KEYWARD_WRK ';
const DONE = `
done = function(summary, latency, requests)
  local parts = {}
  for _, q in ipairs({${PERCENTILES.join(', ')}}) do
    parts[#parts + 1] = string.format("[%g,%.0f]", q, latency:percentile(q))
  end
  io.write(string.format("${MARK}{\\"requests\\":%.0f,\\"durationUs\\":%.0f,\\"maxUs\\":%.0f,\\"percentilesUs\\":[%s]}\\n",
    summary.requests, summary.duration, latency.max, table.concat(parts, ",")))
end
`;

export interface WrkResult {
  readonly rps: number;
  readonly requests: number;
  readonly non2xx: number;
  readonly socketErrors: number;
  readonly p50ms: number;
  readonly p99ms: number;
  /** q in 0..1, value in ms. */
  readonly quantiles: readonly { q: number; value: number }[];
}

export interface WrkOptions {
  readonly headers?: readonly string[];
  /** Lua defining request()/delay(); the reporting done() is appended. */
  readonly lua?: string;
  readonly connections?: number;
  /** Upper bound when the run is stopped early (WrkRun.stop). */
  readonly seconds: number;
  /** The CPU wrk is pinned to; GENERATOR_CPU unless a benchmark loads servers on both. */
  readonly cpu?: number;
  /** wrk's per-request timeout (its default is 2 s); slower answers count as timeouts, not latency. */
  readonly timeoutSeconds?: number;
}

/** A wrk run under way. */
export interface WrkRun {
  /** Resolves when wrk ends, at its duration or after stop(). */
  readonly done: Promise<WrkResult>;
  /** Ends the run now (SIGINT) and resolves with what wrk measured until then. */
  stop(): Promise<WrkResult>;
}

export class Wrk {
  readonly #work: string;
  #scripts = 0;

  constructor(work: string) {
    this.#work = work;
  }

  async run(url: string, options: WrkOptions): Promise<WrkResult> {
    return await (await this.start(url, options)).done;
  }

  async start(url: string, options: WrkOptions): Promise<WrkRun> {
    this.#scripts += 1;
    const script = join(this.#work, `wrk-${this.#scripts}.lua`);
    await writeFile(script, `${options.lua ?? ''}\n${DONE}`);
    const args = [
      '-c',
      String(options.cpu ?? GENERATOR_CPU),
      wrkBin(),
      '-t1',
      `-c${options.connections ?? 100}`,
    ];
    args.push(`-d${options.seconds}s`, '-s', script);
    if (options.timeoutSeconds !== undefined) args.push('--timeout', `${options.timeoutSeconds}s`);
    for (const h of options.headers ?? []) args.push('-H', h);
    args.push(url);
    // taskset execs wrk, so the child's pid is wrk's own and SIGINT reaches it.
    let child: ChildProcess | undefined;
    const done = new Promise<WrkResult>((resolve, reject) => {
      child = execFile(taskset(), args, { maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
        try {
          resolve(parse(stdout));
        } catch (err) {
          reject(new Error(`${(err as Error).message}\n${error?.message ?? ''}\n${stderr}`));
        }
      });
    });
    return {
      done,
      async stop(): Promise<WrkResult> {
        if (child?.exitCode === null && child.signalCode === null) child.kill('SIGINT');
        return await done;
      },
    };
  }
}

function parse(stdout: string): WrkResult {
  const num = (re: RegExp): number => Number(re.exec(stdout)?.[1] ?? 0);
  const line = stdout.split('\n').find((l) => l.startsWith(MARK));
  if (!line) throw new Error(`wrk printed no distribution:\n${stdout}`);
  const done = JSON.parse(line.slice(MARK.length)) as {
    requests: number;
    durationUs: number;
    percentilesUs: [number, number][];
  };
  const quantiles = done.percentilesUs.map(([p, us]) => ({ q: p / 100, value: us / 1000 }));
  const at = (q: number): number => quantiles.find((x) => x.q === q)?.value ?? Number.NaN;
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/
    .exec(stdout)
    ?.slice(1)
    .reduce((sum, n) => sum + Number(n), 0);
  return {
    rps: done.requests / (done.durationUs / 1e6),
    requests: done.requests,
    non2xx: num(/Non-2xx or 3xx responses:\s+(\d+)/),
    socketErrors: socketErrors ?? 0,
    p50ms: at(0.5),
    p99ms: at(0.99),
    quantiles,
  };
}

export const describe = (r: WrkResult): string =>
  `${Math.round(r.rps).toLocaleString('en')} req/s, p50 ${r.p50ms.toFixed(2)} ms, p99 ${r.p99ms.toFixed(2)} ms, non-2xx ${r.non2xx}` +
  (r.socketErrors > 0 ? `, socket errors ${r.socketErrors}` : '');

/**
 * Lua that paces each connection with a pause after every response: wrk is closed-loop, so a
 * fixed offered rate is connections ÷ (pause + response time).
 */
export const pacedLua = (delayMs: number): string => `function delay() return ${delayMs} end\n`;

/** Lua whose every request carries a token drawn uniformly (fixed seed) from a file of tokens. */
export const randomTokenLua = (tokenFile: string): string => `
local tokens = {}
for line in io.lines("${tokenFile}") do tokens[#tokens + 1] = line end
math.randomseed(42)
request = function()
  return wrk.format("GET", "/verify", { ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] })
end
`;

/**
 * Lua whose every request carries `token` and another original path (X-Original-URI, as nginx's
 * auth_request recipe sets it): decisions no two alike, as a request log sees a varied workload.
 */
export const distinctPathLua = (token: string): string => `
local n = 0
local thread_id = tostring(math.random(1e9))
request = function()
  n = n + 1
  return wrk.format("GET", "/verify", {
    ["Authorization"] = "Bearer ${token}",
    ["X-Original-URI"] = "/items/" .. thread_id .. "/" .. n,
  })
end
`;
