// Latency at a fixed offered rate: half of the measured maximum, where a service should run with
// room to spare. wrk is closed-loop, so the rate is set by pacing its connections (see atRate).
import { medianRow } from '../lib/rounds.js';
import { describe, pacedLua, type WrkResult } from '../lib/wrk.js';
import { type Harness, WARM_UP_SECONDS } from './harness.js';

/** Pause per request per connection; long against a response, so the rate depends little on it. */
const PACE_MS = 3;
/** A paced run outside this share of its target (either way) is rerun with rescaled connections. */
const RATE_TOLERANCE = 0.1;
/** Runs of one paced measurement at most: the first guess and two rescalings. */
const MAX_PACED_RUNS = 3;

/**
 * Runs wrk at about `rate` req/s: each connection makes one request per (pause + response time),
 * so that many connections are opened. A run off the target by more than RATE_TOLERANCE (responses
 * slower or faster than guessed: a cold webhook's first run is slower than its second) is rerun
 * with the connection count scaled by the miss; the run nearest the rate is the one reported, so
 * the latency is measured as close to the rate asked for as three runs get.
 */
export async function atRate(
  h: Harness,
  url: string,
  rate: number,
  options: { headers?: string[]; lua?: string; responseMs: number; seconds: number },
): Promise<{ result: WrkResult; connections: number }> {
  const lua = `${options.lua ?? ''}\n${pacedLua(PACE_MS)}`;
  let connections = Math.max(1, Math.round((rate * (PACE_MS + options.responseMs)) / 1000));
  const off = (r: WrkResult): number => Math.abs(r.rps / rate - 1);
  let result = await h.wrk.run(url, { ...options, lua, connections });
  let best = { result, connections };
  for (let runs = 1; runs < MAX_PACED_RUNS && off(result) > RATE_TOLERANCE; runs++) {
    const scaled = Math.max(1, Math.round((connections * rate) / Math.max(1, result.rps)));
    // A rescale that rounds back to the same count still moves one connection toward the target.
    connections = scaled === connections ? connections + (result.rps < rate ? 1 : -1) : scaled;
    if (connections < 1) break;
    result = await h.wrk.run(url, { ...options, lua, connections });
    if (off(result) < off(best.result)) best = { result, connections };
  }
  // The run nearest the rate: a webhook still warming up can overshoot on the last one.
  return best;
}

export async function latency(h: Harness): Promise<void> {
  const key = await h.issue();
  const headers = [`Authorization: Bearer ${key.token}`];
  const webhook = await h.webhook();
  if (h.maxHitRps === 0) {
    h.maxHitRps = (await h.wrk.run(`${webhook.url}/verify`, { headers, seconds: WARM_UP_SECONDS * 2 })).rps;
  }
  const rate = h.maxHitRps / 2;
  const rounds: WrkResult[] = [];
  let connections = 0;
  for (let i = 0; i < h.sizes.rounds; i++) {
    const run = await atRate(h, `${webhook.url}/verify`, rate, {
      headers,
      responseMs: 0.3,
      seconds: h.sizes.duration,
    });
    rounds.push(run.result);
    connections = run.connections;
  }
  h.print(`## /verify latency at half the maximum, ${Math.round(rate)} req/s offered (cache hits)`);
  for (const [i, r] of rounds.entries()) h.print(`round ${i + 1}: ${describe(r)}`);
  const achieved = rounds.map((r) => Math.round(r.rps).toLocaleString('en'));
  const note = `${connections} connections each pausing ${PACE_MS} ms after every response, aiming at ${Math.round(rate).toLocaleString('en')} req/s (half of ${Math.round(h.maxHitRps).toLocaleString('en')}); achieved ${achieved.join(', ')} req/s in the ${rounds.length} rounds.`;
  h.writer.row(
    medianRow(
      {
        id: 'hits-half-load-p50',
        measure: 'cache hits at half the maximum rate, p50',
        target: 'reported',
        unit: 'ms',
        note,
      },
      rounds.map((r) => r.p50ms),
    ),
  );
  h.writer.row(
    medianRow(
      {
        id: 'hits-half-load-p99',
        measure: 'cache hits at half the maximum rate, p99',
        target: 'reported',
        unit: 'ms',
        note,
      },
      rounds.map((r) => r.p99ms),
    ),
  );
  h.writer.series('hits-half-load-latency', {
    kind: 'quantiles',
    title: `Cache-hit latency at half the maximum rate (${Math.round(rate)} req/s), every round`,
    unit: 'ms',
    lines: rounds.map((r, i) => ({ label: `round ${i + 1}`, points: r.quantiles })),
  });
}
