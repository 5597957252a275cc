// What both revocation measurements share: webhooks from dist/ as child processes (optionally
// pinned with taskset), wrk runs that can be stopped when the measurement ends, and sample summaries.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { freePort, ManagedProcess, requireTool, waitUntilReady } from '../../devenv/process.js';
import { repoRoot } from '../../devenv/repo.js';

const WEBHOOK_START_TIMEOUT_MS = 30_000;

/** Epoch milliseconds with sub-millisecond resolution, comparable with Postgres' now(). */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Child processes of one run, all stopped at its end. */
export class Processes {
  readonly #all: ManagedProcess[] = [];
  readonly #taskset = requireTool('taskset', 'apt-get install -y util-linux');

  constructor(readonly logDir: string) {}

  /** `command args`, on `cpu` when given (taskset execs the command, so the pid is its own). */
  start(
    name: string,
    command: string,
    args: string[],
    env: Record<string, string>,
    cpu?: number,
  ): ManagedProcess {
    const proc = new ManagedProcess({
      name,
      command: cpu === undefined ? command : this.#taskset,
      args: cpu === undefined ? args : ['-c', String(cpu), command, ...args],
      env: { PATH: process.env.PATH ?? '', ...env },
      logFile: join(this.logDir, `${name.replace(/\W+/g, '-')}.log`),
    });
    this.#all.push(proc);
    return proc;
  }

  async stopAll(): Promise<void> {
    await Promise.allSettled(this.#all.map((p) => p.stop()));
  }
}

export interface Webhook {
  readonly url: string;
  readonly proc: ManagedProcess;
}

/** `keyward webhook` from dist/, ready (store reachable, listener attached) when this resolves. */
export async function startWebhook(
  processes: Processes,
  options: { name: string; storeUrl: string; cpu?: number; env?: Record<string, string> },
): Promise<Webhook> {
  const port = await freePort();
  const metricsPort = await freePort();
  const proc = processes.start(
    options.name,
    process.execPath,
    [join(repoRoot(), 'dist', 'cli', 'main.js'), 'webhook'],
    {
      KEYWARD_STORE_URL: options.storeUrl,
      KEYWARD_WEBHOOK_LISTEN: `127.0.0.1:${port}`,
      KEYWARD_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
      KEYWARD_LOG_LEVEL: 'warn',
      ...options.env,
    },
    options.cpu,
  );
  const url = `http://127.0.0.1:${port}`;
  await waitUntilReady(
    proc,
    async () => (await fetch(`${url}/readyz`)).ok,
    WEBHOOK_START_TIMEOUT_MS,
    'ready',
  );
  return { url, proc };
}

/** One `/verify` with this token; the status only. */
export async function verifyStatus(url: string, token: string): Promise<number> {
  const res = await fetch(`${url}/verify`, { headers: { authorization: `Bearer ${token}` } });
  await res.arrayBuffer();
  return res.status;
}

export interface WrkResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  non2xx: number;
  requests: number;
  seconds: number;
}

function parseWrk(stdout: string): WrkResult {
  const num = (re: RegExp): number => Number(re.exec(stdout)?.[1] ?? Number.NaN);
  const ms = (re: RegExp): number => {
    const m = re.exec(stdout);
    if (!m) return Number.NaN;
    const factor = m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1;
    return Number(m[1]) * factor;
  };
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50ms: ms(/\s50%\s+([\d.]+)(us|ms|s)/),
    p99ms: ms(/\s99%\s+([\d.]+)(us|ms|s)/),
    non2xx: num(/Non-2xx or 3xx responses:\s+(\d+)/) || 0,
    requests: num(/(\d+) requests in/),
    seconds: ms(/requests in ([\d.]+)(us|ms|s)/) / 1000,
  };
}

export interface WrkOptions {
  url: string;
  headers: string[];
  connections: number;
  /** Upper bound; stop() ends the run earlier. */
  seconds: number;
  script?: string;
  cpu: number;
}

/**
 * Starts wrk (one thread, pinned to `cpu`). wrk prints its summary on SIGINT as at the end of its
 * duration, so a load can run exactly as long as the measurement it accompanies.
 */
export function startWrk(options: WrkOptions): { stop(): Promise<WrkResult>; done: Promise<WrkResult> } {
  const wrkBin = requireTool('wrk', 'apt-get install -y wrk');
  const taskset = requireTool('taskset', 'apt-get install -y util-linux');
  const args = [
    '-c',
    String(options.cpu),
    wrkBin,
    '-t1',
    `-c${options.connections}`,
    `-d${options.seconds}s`,
  ];
  args.push('--latency');
  for (const h of options.headers) args.push('-H', h);
  if (options.script) args.push('-s', options.script);
  args.push(options.url);
  const child: ChildProcess = spawn(taskset, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<WrkResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const result = parseWrk(stdout);
      if (Number.isNaN(result.rps)) reject(new Error(`wrk exited ${code}: ${stderr || stdout}`));
      else resolve(result);
    });
  });
  return {
    done,
    async stop(): Promise<WrkResult> {
      if (child.exitCode === null) child.kill('SIGINT');
      return await done;
    },
  };
}

export async function runWrk(options: WrkOptions): Promise<WrkResult> {
  return await startWrk(options).done;
}

/** The sample at rank ⌈q·n⌉ (nearest rank), so p99 of 200 samples is the second largest. */
function quantile(samples: readonly number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1] as number;
}

export interface Summary {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export function summarize(samples: readonly number[]): Summary {
  return {
    n: samples.length,
    p50: quantile(samples, 0.5),
    p90: quantile(samples, 0.9),
    p99: quantile(samples, 0.99),
    max: Math.max(...samples),
  };
}

export function formatSummary(s: Summary, unit = 'ms', digits = 2): string {
  const f = (v: number): string => `${v.toFixed(digits)} ${unit}`;
  return `n ${s.n}: p50 ${f(s.p50)}, p90 ${f(s.p90)}, p99 ${f(s.p99)}, max ${f(s.max)}`;
}
