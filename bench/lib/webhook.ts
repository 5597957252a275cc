// `keyward webhook` from dist/ as a benchmark's child process, and the one request the benchmarks
// make to it outside wrk.
import { join } from 'node:path';
import { freePort, type ManagedProcess, waitUntilReady } from '../../devenv/process.js';
import { repoRoot } from '../../devenv/repo.js';
import { chartMallocArenaMax, chartNodeOptions } from './chart-node-options.js';
import type { PinnedProcesses } from './processes.js';

const READY_TIMEOUT_MS = 30_000;

export interface Webhook {
  readonly url: string;
  readonly metricsUrl: string;
  readonly proc: ManagedProcess;
}

/**
 * Starts the webhook on `cpu` (null: unpinned) against `storeUrl`, logging at warn, with the
 * chart's NODE_OPTIONS (or $KEYWARD_BENCH_WEBHOOK_NODE_OPTIONS, to compare others; nodeFlags
 * for V8 flags) and MALLOC_ARENA_MAX, and resolves once /readyz answers (store reachable,
 * listener attached).
 * `env` adds to or overrides that.
 */
export async function startWebhook(
  procs: PinnedProcesses,
  options: { name: string; storeUrl: string; cpu: number | null; env?: Record<string, string> },
): Promise<Webhook> {
  const port = await freePort();
  const metricsPort = await freePort();
  const arenas = chartMallocArenaMax('webhook');
  const proc = procs.start(
    options.name,
    options.cpu,
    [process.execPath, ...nodeFlags(), join(repoRoot(), 'dist', 'cli', 'main.js'), 'webhook'],
    {
      KEYWARD_STORE_URL: options.storeUrl,
      KEYWARD_WEBHOOK_LISTEN: `127.0.0.1:${port}`,
      KEYWARD_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
      KEYWARD_LOG_LEVEL: 'warn',
      NODE_OPTIONS: process.env.KEYWARD_BENCH_WEBHOOK_NODE_OPTIONS ?? chartNodeOptions('webhook'),
      ...(arenas !== undefined && { MALLOC_ARENA_MAX: arenas }),
      ...options.env,
    },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitUntilReady(proc, async () => (await fetch(`${url}/readyz`)).ok, READY_TIMEOUT_MS, 'ready');
  return { url, metricsUrl: `http://127.0.0.1:${metricsPort}`, proc };
}

/**
 * V8 flags NODE_OPTIONS refuses (--trace-gc, --trace-deopt …), from
 * $KEYWARD_BENCH_WEBHOOK_NODE_FLAGS, space-separated: they go on the command line, and their
 * output in the webhook's log in the run's work directory.
 */
function nodeFlags(): string[] {
  return (process.env.KEYWARD_BENCH_WEBHOOK_NODE_FLAGS ?? '').split(' ').filter((flag) => flag !== '');
}

/** One `/verify` with this token; the status only. */
export async function verifyStatus(url: string, token: string): Promise<number> {
  const res = await fetch(`${url}/verify`, { headers: { authorization: `Bearer ${token}` } });
  await res.arrayBuffer();
  return res.status;
}
