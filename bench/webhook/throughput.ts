// /verify on cache hits against its baselines (bare Fastify, bare Node `http`, nginx `return 200`),
// garbage tokens against cache hits, and the load generator's headroom, all in one set of
// alternating rounds so the machine's drift hits every side alike.
import { startBareFastify, startBareNode, startNginxReturn200 } from '../lib/baselines.js';
import { cpuSeconds } from '../lib/processes.js';
import { median } from '../lib/results.js';
import { alternate, medianRow, ratioRow } from '../lib/rounds.js';
import { describe, type WrkResult } from '../lib/wrk.js';
import { type Harness, WARM_UP_SECONDS } from './harness.js';

/** The issue's bar: keyward's hit path within 5 % of a bare Fastify route with the same headers. */
const HITS_VS_FASTIFY_TARGET = 0.95;
/** wrk drives nginx at least this much faster than the fastest Node server, or it may be the limit. */
const GENERATOR_HEADROOM_TARGET = 1.2;

const count = (n: number): string => Math.round(n).toLocaleString('en');

/** A token of the right shape whose checksum fails: the cheapest thing an attacker can send. */
function garbageToken(valid: string): string {
  const last = valid.at(-1) === 'A' ? 'B' : 'A';
  return `${valid.slice(0, -1)}${last}`;
}

export async function throughput(h: Harness): Promise<void> {
  const key = await h.issue();
  const auth = [`Authorization: Bearer ${key.token}`];
  const garbage = [`Authorization: Bearer ${garbageToken(key.token)}`];
  const webhook = await h.webhook();
  // Garbage goes to a webhook without the failed-attempt limit: with it, one client address gets
  // 429 after 30 tries and the figure would be the 429 path, not parse-and-refuse.
  const unlimited = await h.startWebhook('webhook-no-failure-limit', { KEYWARD_FAILED_ATTEMPTS_LIMIT: '0' });
  const fastify = await startBareFastify(h.procs);
  const node = await startBareNode(h.procs);
  const nginx = await startNginxReturn200(h.procs);
  const seconds = h.sizes.duration;
  const targets: Record<string, { url: string; headers: string[]; pid?: number }> = {
    keyward: { url: webhook.url, headers: auth, pid: webhook.proc.child.pid! },
    fastify: { url: fastify.url, headers: auth, pid: fastify.pid },
    node: { url: node.url, headers: auth, pid: node.pid },
    nginx: { url: nginx, headers: auth },
    garbage: { url: unlimited.url, headers: garbage, pid: unlimited.proc.child.pid! },
  };
  // Each Node server's CPU time (utime + stime) per request of each round: on a loaded machine
  // req/s swing with the neighbours, a server's own CPU per request far less.
  const cpuUs: Record<string, number[]> = {};
  const sides: Record<string, () => Promise<WrkResult>> = {};
  for (const [name, t] of Object.entries(targets)) {
    await h.wrk.run(`${t.url}/verify`, { headers: t.headers, seconds: WARM_UP_SECONDS });
    sides[name] = async () => {
      const before = t.pid === undefined ? 0 : await cpuSeconds(t.pid);
      const result = await h.wrk.run(`${t.url}/verify`, { headers: t.headers, seconds });
      if (t.pid !== undefined) {
        const us = (((await cpuSeconds(t.pid)) - before) / result.requests) * 1e6;
        cpuUs[name] ??= [];
        cpuUs[name].push(us);
      }
      return result;
    };
  }
  h.print(
    `## /verify cache hits vs baselines, 100 keep-alive connections, ${h.sizes.rounds} rounds of ${seconds} s, server on CPU 0, wrk on CPU 1`,
  );
  const r = await alternate(h.sizes.rounds, sides, (round, results) => {
    const parts = Object.entries(results).map(([name, x]) => `${name} ${describe(x)}`);
    h.print(`round ${round}: ${parts.join(' | ')}`);
  });
  const rps = (name: string): number[] => r[name]!.map((x) => x.rps);
  const condition = `100 keep-alive connections, no pipelining, ${h.sizes.rounds} alternating rounds of ${seconds} s; keyward with its defaults (request log to the store), Postgres on CPU 1 beside wrk.`;
  const hits = ratioRow(
    {
      id: 'hits-vs-fastify',
      measure: '`/verify` cache hits vs bare Fastify route with the same headers',
      target: `≥ ${HITS_VS_FASTIFY_TARGET}×`,
      atLeast: HITS_VS_FASTIFY_TARGET,
      note: `${condition} Medians ${count(median(rps('keyward')))} vs ${count(median(rps('fastify')))} req/s.`,
    },
    rps('keyward'),
    rps('fastify'),
  );
  h.writer.row(hits);
  h.writer.row(
    ratioRow(
      {
        id: 'hits-vs-node',
        measure: '`/verify` cache hits vs bare Node `http`',
        target: 'reported',
        note: condition,
      },
      rps('keyward'),
      rps('node'),
    ),
  );
  h.writer.row(
    ratioRow(
      {
        id: 'hits-vs-nginx',
        measure: '`/verify` cache hits vs nginx `return 200`',
        target: 'reported',
        note: condition,
      },
      rps('keyward'),
      rps('nginx'),
    ),
  );
  const garbageRow = ratioRow(
    {
      id: 'garbage-vs-hits',
      measure: 'garbage tokens (checksum fails) vs the cache-hit rate',
      target: '≥ 1×',
      atLeast: 1,
      note: `${condition} The failed-attempt limit is off for the garbage side (with it one address gets 429 after 30 tries).`,
    },
    rps('garbage'),
    rps('keyward'),
  );
  h.writer.row(garbageRow);
  const cpuNote =
    'The server’s utime + stime from /proc over each round, divided by its requests; the same rounds as the req/s rows.';
  for (const [name, measure] of [
    ['keyward', 'webhook CPU per `/verify` cache hit'],
    ['fastify', 'bare Fastify CPU per request (same headers)'],
    ['garbage', 'webhook CPU per garbage token'],
  ] as const) {
    h.writer.row(
      medianRow(
        { id: `${name}-cpu-us`, measure, target: 'reported', unit: 'CPU-µs/req', note: cpuNote },
        cpuUs[name]!,
      ),
    );
  }
  h.writer.row(
    ratioRow(
      {
        id: 'hits-cpu-vs-fastify',
        measure: 'webhook CPU per cache hit ÷ bare Fastify CPU per request',
        target: 'reported',
        note: `${cpuNote} The ≥ ${HITS_VS_FASTIFY_TARGET}× throughput target needs this near 1/${HITS_VS_FASTIFY_TARGET} ≈ ${(1 / HITS_VS_FASTIFY_TARGET).toFixed(2)}× on a saturated CPU.`,
      },
      cpuUs.keyward!,
      cpuUs.fastify!,
    ),
  );
  const fastestNode = rps('keyward').map((w, i) => Math.max(w, rps('fastify')[i]!, rps('node')[i]!));
  h.writer.row(
    ratioRow(
      {
        id: 'generator-headroom',
        measure:
          'load generator headroom: wrk against nginx `return 200` ÷ the fastest Node server, same wrk',
        target: `≥ ${GENERATOR_HEADROOM_TARGET}×`,
        atLeast: GENERATOR_HEADROOM_TARGET,
        note: 'With nginx on the same CPU as the servers under test; above 1× the generator is not what limits the Node figures.',
      },
      rps('nginx'),
      fastestNode,
    ),
  );
  h.writer.row(
    medianRow(
      {
        id: 'hits-rps',
        measure: '`/verify` cache hits, req/s',
        target: 'reported',
        unit: 'req/s',
        note: condition,
      },
      rps('keyward'),
    ),
  );
  h.maxHitRps = median(rps('keyward'));
  h.writer.series('throughput', {
    kind: 'bars',
    title: '/verify cache hits and baselines (median of rounds, bar = spread)',
    unit: 'req/s',
    bars: [
      ['keyward', 'keyward, cache hit'],
      ['garbage', 'keyward, garbage token'],
      ['fastify', 'bare Fastify'],
      ['node', 'bare Node http'],
      ['nginx', 'nginx return 200'],
    ].map(([name, label]) => {
      const values = rps(name!);
      return {
        label: label!,
        value: Math.round(median(values)),
        spread: [Math.min(...values), Math.max(...values)],
      };
    }),
  });
  h.writer.series('throughput-latency', {
    kind: 'quantiles',
    title: 'Latency at saturation, 100 connections (the median round of each side)',
    unit: 'ms',
    lines: Object.keys(sides).map((name) => ({ label: name, points: medianRound(r[name]!).quantiles })),
  });
  h.print(
    `median ratios: hits/fastify ${hits.value} (${hits.spread?.join('–')}), garbage/hits ${garbageRow.value}`,
  );
}

/** The round whose req/s is the median, so its latency distribution is a typical one. */
function medianRound(results: readonly WrkResult[]): WrkResult {
  const sorted = [...results].sort((a, b) => a.rps - b.rps);
  return sorted[(sorted.length - 1) >> 1]!;
}
