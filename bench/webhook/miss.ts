// The miss path: uniformly random valid tokens over many keys (10⁶ by default), so nearly every
// request is a store lookup. Every run starts a fresh webhook, so each one begins with a cold cache
// and the rounds measure the same thing; the cache then fills as the run goes (hit share reported).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { rssMiB } from '../lib/processes.js';
import { median } from '../lib/results.js';
import { medianRow } from '../lib/rounds.js';
import type { Webhook } from '../lib/webhook.js';
import { describe, randomTokenLua, type WrkResult } from '../lib/wrk.js';
import { type Harness, WARM_UP_SECONDS } from './harness.js';
import { atRate } from './latency.js';

/** 5× the 3,686 req/s the issue measured on this machine before the miss-path work. */
const MISS_RPS_TARGET = 5 * 3_686;
const MISS_HALF_LOAD_P99_TARGET_MS = 5;
/** The key count the targets are stated for; smaller runs are reported without a verdict. */
const TARGET_KEYS = 1_000_000;

/** Successful answers per second: shed lookups answer 503 quickly and must not count as throughput. */
const okRps = (r: WrkResult): number => (r.rps * (r.requests - r.non2xx)) / Math.max(1, r.requests);

async function cacheHitShare(h: Harness, webhook: Webhook): Promise<number> {
  const metrics = await h.metrics(webhook);
  const count = (outcome: string): number =>
    Number(
      new RegExp(`keyward_webhook_cache_lookups_total\\{outcome="${outcome}"\\} (\\d+)`).exec(metrics)?.[1] ??
        0,
    );
  const hits = count('hit');
  const total = hits + count('miss') + count('stale') + count('negative_hit');
  return total === 0 ? 0 : hits / total;
}

export async function miss(h: Harness): Promise<void> {
  const n = h.sizes.keys;
  const full = n >= TARGET_KEYS;
  const started = Date.now();
  if (h.loaded.length < n) await h.bulkKeys(n - h.loaded.length);
  const loadSeconds = (Date.now() - started) / 1000;
  h.print(`## miss path: ${n.toLocaleString('en')} keys loaded in ${loadSeconds.toFixed(0)} s`);
  const file = join(h.work, 'tokens.txt');
  await writeFile(file, h.loaded.slice(0, n).join('\n'));
  const lua = randomTokenLua(file);
  const seconds = h.sizes.duration;

  const runs: { result: WrkResult; hitShare: number; rss: number }[] = [];
  for (let i = 0; i < h.sizes.missRounds; i++) {
    const webhook = await h.startWebhook(`webhook-miss-${i + 1}`);
    const result = await h.wrk.run(`${webhook.url}/verify`, { lua, seconds });
    runs.push({
      result,
      hitShare: await cacheHitShare(h, webhook),
      rss: await rssMiB(webhook.proc.child.pid!),
    });
    await webhook.proc.stop();
    const last = runs.at(-1)!;
    h.print(
      `round ${i + 1}: ${describe(result)}, cache hits ${(last.hitShare * 100).toFixed(0)} %, RSS ${last.rss.toFixed(0)} MiB`,
    );
  }
  const runsText =
    h.sizes.missRounds === 1 ? `1 run of ${seconds} s` : `${h.sizes.missRounds} runs of ${seconds} s each`;
  const conditions = `${n.toLocaleString('en')} keys, uniformly random valid tokens, 100 connections, ${runsText} on a fresh webhook (cold cache; ${Math.round(median(runs.map((r) => r.hitShare)) * 100)} % of lookups were cache hits by the end)`;
  const non2xx = runs.reduce((sum, r) => sum + r.result.non2xx, 0);
  h.writer.row(
    medianRow(
      {
        id: 'miss-rps',
        measure: `miss path, ${n.toLocaleString('en')} keys, uniformly random valid tokens`,
        target: `≥ ${MISS_RPS_TARGET.toLocaleString('en')} req/s (5× 3,686)`,
        unit: 'req/s',
        ...(full ? { met: (v: number) => v >= MISS_RPS_TARGET } : {}),
        note: `${conditions}; counting 2xx answers only (${non2xx} non-2xx in all runs).`,
      },
      runs.map((r) => okRps(r.result)),
    ),
  );
  const maxRps = median(runs.map((r) => okRps(r.result)));

  const halfRuns: WrkResult[] = [];
  let connections = 0;
  for (let i = 0; i < h.sizes.missRounds; i++) {
    const webhook = await h.startWebhook(`webhook-miss-half-${i + 1}`);
    // A cold webhook answers its first seconds several times slower (compiling, opening its pool),
    // which would make atRate's first guess of the connection count a poor one.
    await h.wrk.run(`${webhook.url}/verify`, { lua, seconds: WARM_UP_SECONDS });
    const run = await atRate(h, `${webhook.url}/verify`, maxRps / 2, {
      lua,
      responseMs: Math.max(0.5, median(runs.map((r) => r.result.p50ms)) / 4),
      seconds,
    });
    await webhook.proc.stop();
    halfRuns.push(run.result);
    connections = run.connections;
    h.print(`half load round ${i + 1}: ${connections} paced connections, ${describe(run.result)}`);
  }
  const achieved = halfRuns.map((r) => Math.round(r.rps));
  const achievedText =
    Math.min(...achieved) === Math.max(...achieved)
      ? `${achieved[0]}`
      : `${Math.min(...achieved)}–${Math.max(...achieved)}`;
  h.writer.row(
    medianRow(
      {
        id: 'miss-half-load-p99',
        measure: 'miss path p99 at half the maximum rate',
        target: `≤ ${MISS_HALF_LOAD_P99_TARGET_MS} ms`,
        unit: 'ms',
        ...(full ? { met: (v: number) => v <= MISS_HALF_LOAD_P99_TARGET_MS } : {}),
        note: `${Math.round(maxRps / 2)} req/s offered by ${connections} paced connections (achieved ${achievedText}), a fresh webhook per run warmed for ${WARM_UP_SECONDS} s at full load; wrk is closed-loop, so a stall delays the requests behind it instead of counting them late.`,
      },
      halfRuns.map((r) => r.p99ms),
    ),
  );
  h.writer.row(
    medianRow(
      {
        id: 'miss-rss',
        measure: 'webhook RSS after a miss-path run',
        target: 'reported',
        unit: 'MiB',
        note: 'RSS of each run’s webhook at its end.',
      },
      runs.map((r) => r.rss),
    ),
  );
  h.writer.series('miss-latency', {
    kind: 'quantiles',
    title: `Miss-path latency, ${n.toLocaleString('en')} keys: at saturation and at half the maximum rate (median runs)`,
    unit: 'ms',
    lines: [
      { label: 'saturation, 100 connections', points: medianBy(runs.map((r) => r.result)).quantiles },
      { label: `half load, ${Math.round(maxRps / 2)} req/s`, points: medianBy(halfRuns).quantiles },
    ],
  });
}

function medianBy(results: readonly WrkResult[]): WrkResult {
  const sorted = [...results].sort((a, b) => a.p99ms - b.p99ms);
  return sorted[(sorted.length - 1) >> 1]!;
}
