// Webhook benchmarks (bench/README.md), one part per file under bench/webhook/: /verify on cache
// hits against bare Fastify, bare Node and nginx with garbage tokens and the generator's headroom
// (throughput), latency at half the maximum (latency), the cost of rate limits (limits), the miss
// path over 10⁶ keys (miss), RSS against cached entries (memory), the request log's cost (audit).
// Revocation propagation is bench/revocation.ts.
//
// Usage: npx tsc -p tsconfig.json && node dist/bench/webhook.js [--only throughput,latency,limits,miss,memory,audit]
//        [--duration 8] [--rounds 5] [--audit-rounds 11] [--miss-rounds 3] [--keys 1000000] [--entries 100000] [--json file]
// Needs wrk and nginx (apt-get install -y wrk nginx-light) and taskset (util-linux). Servers
// under test are pinned to CPU 0, wrk to CPU 1, so the generator never competes with the server.
import { parseArgs } from 'node:util';
import { audit } from './webhook/audit.js';
import { Harness } from './webhook/harness.js';
import { latency } from './webhook/latency.js';
import { limits } from './webhook/limits.js';
import { memory } from './webhook/memory.js';
import { miss } from './webhook/miss.js';
import { throughput } from './webhook/throughput.js';

/** In the order they run: throughput first, as latency paces itself from its maximum. */
const PARTS = { throughput, latency, limits, miss, memory, audit } as const;

const { values } = parseArgs({
  options: {
    only: { type: 'string', default: Object.keys(PARTS).join(',') },
    duration: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '5' },
    'audit-rounds': { type: 'string', default: '11' },
    'miss-rounds': { type: 'string', default: '3' },
    keys: { type: 'string', default: '1000000' },
    entries: { type: 'string', default: '100000' },
    json: { type: 'string' },
  },
});
const only = values.only.split(',').filter(Boolean);
const unknown = only.filter((p) => !(p in PARTS));
if (unknown.length > 0) {
  throw new Error(`unknown part(s) ${unknown.join(', ')}; the parts are ${Object.keys(PARTS).join(', ')}`);
}
const positive = (name: string, text: string): number => {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${text}`);
  return n;
};

const harness = await Harness.start({
  duration: positive('duration', values.duration),
  rounds: positive('rounds', values.rounds),
  auditRounds: positive('audit-rounds', values['audit-rounds']),
  missRounds: positive('miss-rounds', values['miss-rounds']),
  keys: positive('keys', values.keys),
  entries: positive('entries', values.entries),
});
try {
  for (const [name, part] of Object.entries(PARTS)) {
    if (only.includes(name)) await part(harness);
  }
  await harness.writer.write(values.json);
} finally {
  await harness.stop();
}
