// The request log's cost on /verify cache hits (issue 13): the same load against three webhooks on
// the server CPU, rounds alternating: request log off, to the store, to the store and a JSON lines
// file. Postgres runs on the generator CPU (see Harness.start), so inserting the rows, the store's
// work, is not counted as the webhook's.
import { join } from 'node:path';
import { cpuSeconds } from '../lib/processes.js';
import { median } from '../lib/results.js';
import { alternate, medianRow } from '../lib/rounds.js';
import { GENERATOR_CPU, SERVER_CPU } from '../lib/tools.js';
import type { Webhook } from '../lib/webhook.js';
import { describe, distinctPathLua, type WrkResult } from '../lib/wrk.js';
import { type Harness, WARM_UP_SECONDS } from './harness.js';

/** Issue 13: the request log may cost at most this share of cache-hit throughput. */
const LOG_COST_TARGET_PERCENT = 5;

export async function audit(h: Harness): Promise<void> {
  const key = await h.issue();
  const headers = [`Authorization: Bearer ${key.token}`];
  const variants: Record<string, Record<string, string>> = {
    off: { KEYWARD_REQUEST_LOG_STORE: 'false' },
    store: {},
    'store+json': { KEYWARD_REQUEST_LOG_JSON: join(h.work, 'requests.jsonl') },
  };
  const servers: Record<string, Webhook> = {};
  for (const [name, env] of Object.entries(variants)) {
    servers[name] = await h.startWebhook(`webhook-log-${name}`, env);
    await h.wrk.run(`${servers[name].url}/verify`, { headers, seconds: WARM_UP_SECONDS });
  }
  const seconds = h.sizes.duration;
  const measure = (name: string, lua?: string) => async () => {
    const server = servers[name]!;
    const pid = server.proc.child.pid!;
    const before = await cpuSeconds(pid);
    const result = await h.wrk.run(`${server.url}/verify`, lua ? { lua, seconds } : { headers, seconds });
    const cpuUs = (((await cpuSeconds(pid)) - before) / result.requests) * 1e6;
    return { result, cpuUs };
  };
  h.print(
    '## request log cost on /verify cache hits, 100 keep-alive connections, server on CPU 0, wrk and Postgres on CPU 1',
  );
  const r = await alternate(
    h.sizes.rounds,
    Object.fromEntries(Object.keys(variants).map((name) => [name, measure(name)])),
    (round, x) =>
      h.print(
        `round ${round}: ${Object.entries(x)
          .map(([name, v]) => `${name} ${describe(v.result)}, ${v.cpuUs.toFixed(1)} CPU-µs/req`)
          .join(' | ')}`,
      ),
  );
  const off = r.off!;
  const bars: { label: string; value: number; spread: readonly [number, number] }[] = [];
  for (const name of Object.keys(variants)) {
    const rps = r[name]!.map((x) => x.result.rps);
    bars.push({
      label: `log ${name}`,
      value: Math.round(median(rps)),
      spread: [Math.min(...rps), Math.max(...rps)],
    });
    h.writer.row(
      medianRow(
        {
          id: `reqlog-${name}-cpu-us`,
          measure: `webhook CPU per cache hit, request log ${name}`,
          target: 'reported',
          unit: 'CPU-µs/req',
          note: 'The webhook’s utime + stime from /proc over each round, divided by its requests.',
        },
        r[name]!.map((x) => x.cpuUs),
      ),
    );
    if (name === 'off') continue;
    const metrics = await h.metrics(servers[name]!);
    const sum = (re: RegExp): number => [...metrics.matchAll(re)].reduce((s, m) => s + Number(m[1]), 0);
    const written = sum(/keyward_webhook_request_log_written_total\{sink="store"\} (\d+)/g);
    const dropped = sum(/keyward_webhook_request_log_dropped_total\{[^}]*\} (\d+)/g);
    const fewer = r[name]!.map((x, i) => (1 - x.result.rps / off[i]!.result.rps) * 100);
    const isTarget = name === 'store';
    h.writer.row(
      medianRow(
        {
          id: `reqlog-${name}-cost`,
          measure: `request log ${name === 'store' ? 'to the store (the default)' : 'to the store and a JSON lines file'}: fewer req/s on cache hits than with the log off`,
          target: isTarget ? `≤ ${LOG_COST_TARGET_PERCENT} %` : 'reported',
          unit: '%',
          ...(isTarget ? { met: (v: number) => v <= LOG_COST_TARGET_PERCENT } : {}),
          note: `${h.sizes.rounds} alternating rounds of ${seconds} s, Postgres on CPU ${GENERATOR_CPU} beside wrk, webhooks on CPU ${SERVER_CPU}; ${written.toLocaleString('en')} decisions written, ${dropped} dropped.`,
        },
        fewer,
      ),
    );
  }
  await distinctDecisions(h, (name) => measure(name, distinctPathLua(key.token)));
  h.writer.series('reqlog', {
    kind: 'bars',
    title: 'Cache hits with the request log off, to the store, to the store and a file',
    unit: 'req/s',
    bars,
  });
}

/**
 * The worst case for the log: every decision differs (another path each time), so none share a
 * row and each is a new set of fields. Off and store, alternating, with the same script.
 */
async function distinctDecisions(
  h: Harness,
  measure: (name: string) => () => Promise<{ result: WrkResult; cpuUs: number }>,
): Promise<void> {
  h.print('## the same, every request with another original path (X-Original-URI): no two decisions alike');
  const r = await alternate(h.sizes.rounds, { off: measure('off'), store: measure('store') }, (round, x) =>
    h.print(
      `round ${round}: ${Object.entries(x)
        .map(([name, v]) => `${name} ${describe(v.result)}, ${v.cpuUs.toFixed(1)} CPU-µs/req`)
        .join(' | ')}`,
    ),
  );
  const fewer = r.store!.map((x, i) => (1 - x.result.rps / r.off![i]!.result.rps) * 100);
  h.writer.row(
    medianRow(
      {
        id: 'reqlog-distinct-cost',
        measure:
          'request log to the store, every request another path (no two decisions alike): fewer req/s on cache hits than with the log off',
        target: 'reported',
        unit: '%',
        note: `${h.sizes.rounds} alternating rounds of ${h.sizes.duration} s; each decision is a row of its own and a new set of fields for the recorder. Store CPU-µs/req ${median(r.store!.map((x) => x.cpuUs)).toFixed(1)} vs off ${median(r.off!.map((x) => x.cpuUs)).toFixed(1)}.`,
      },
      fewer,
    ),
  );
}
