// nginx `auth_request` to keyward against `auth_request` to an nginx location returning 200 (the
// floor of any external auth), both in front of the same upstream, alternated over rounds:
// throughput at 100 connections, added p50 latency at 4 connections, p99 at half of keyward's
// maximum rate. bench/README.md#nginx-auth says how to read it.
//
// Usage: npx tsc -p tsconfig.json && node dist/bench/nginx-auth.js [--rounds 5] [--duration 5] [--json <file>]
// Needs wrk and nginx (apt-get install -y wrk nginx-light) and taskset (util-linux).
//
// CPUs (a 2-core machine): the auth service under test — keyward, or the nginx that stands for the
// floor — runs alone on CPU 0, as in bench/webhook.ts, so the two sides differ only in what answers
// the subrequest. The front nginx (which also serves the upstream, a `return 200` server block in
// the same worker) and wrk share CPU 1, alike on both sides. Both sides use the documented recipe
// (docs/ingress/nginx.md): a keep-alive `upstream` block, `proxy_http_version 1.1`, `Connection ""`.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createDatabase, startPostgres } from '../devenv/postgres.js';
import { freePort, waitUntilReady } from '../devenv/process.js';
import { PinnedProcesses } from './lib/processes.js';
import { median, ResultWriter, spreadOf } from './lib/results.js';
import { BenchStore } from './lib/store.js';
import { startWebhook } from './lib/webhook.js';
import { pacedLua, Wrk } from './lib/wrk.js';
import { FLOOR_HEADERS, frontServer, startNginx } from './nginx-auth/config.js';
import { medianQuantiles, quantileOf, runWrk, type WrkRun } from './nginx-auth/wrk.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '5' },
    json: { type: 'string' },
  },
});
const rounds = Number(values.rounds);
const duration = Number(values.duration);
const work = await mkdtemp(join(tmpdir(), 'keyward-bench-nginx-'));
const results = new ResultWriter('nginx-auth');
const print = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/** The auth service under test, alone on its core. */
const AUTH_CPU = 0;
/** The front nginx and wrk. */
const FRONT_CPU = 1;
/** Closed-loop connections for the throughput rounds (as bench/webhook.ts). */
const THROUGHPUT_CONNECTIONS = 100;
/** The latency target is stated at this many connections: well below saturation on both sides. */
const LATENCY_CONNECTIONS = 4;
/**
 * Idle keep-alive connections the front nginx keeps per upstream. Above the number of requests in
 * flight: nginx closes a connection it cannot keep idle, and with `keepalive 32` at 100
 * connections every auth subrequest beyond the 32nd pays a TCP connect and keyward an accept —
 * measured here, that roughly doubled keyward's CPU per request. docs/ingress/nginx.md says so.
 */
const AUTH_KEEPALIVE = 256;
/** wrk pauses this long between a connection's requests in the half-load run (see halfLoad()). */
const PACED_DELAY_MS = 2;
const SCOPE = 'projects:alpha';
/** wrk's per-request timeout: latency beyond its default 2 s is still latency, not an error. */
const WRK_TIMEOUT_SECONDS = 10;

// ---- store and key -----------------------------------------------------------------------

const postgres = await startPostgres();
const storeUrl = await createDatabase(postgres.adminUrl, 'bench');
const bench = await BenchStore.open(storeUrl, {
  name: 'bench-user',
  description: 'benchmark',
  groups: ['team-a', 'ops'],
});
const key = await bench.issue();
const auth = `Authorization: Bearer ${key.token}`;

// ---- processes ---------------------------------------------------------------------------

const processes = new PinnedProcesses(work);
const wrkRunner = new Wrk(work);

const webhook = await startWebhook(processes, { name: 'keyward webhook', storeUrl, cpu: AUTH_CPU });
const keyward = webhook.proc;
const keywardPort = new URL(webhook.url).port;

const floorPort = await freePort();
const floorHeaders = FLOOR_HEADERS.map(([h, v]) => `add_header ${h} "${v}";`).join(' ');
const floor = await startNginx(
  processes,
  work,
  'floor-nginx',
  AUTH_CPU,
  `  server { listen 127.0.0.1:${floorPort}; keepalive_requests 1000000; location / { ${floorHeaders} return 200; } }`,
);

const appPort = await freePort();
const viaKeyward = await freePort();
const viaFloor = await freePort();
const viaKeywardUnkept = await freePort();
const front = await startNginx(
  processes,
  work,
  'front-nginx',
  FRONT_CPU,
  `  upstream keyward { server 127.0.0.1:${keywardPort}; keepalive ${AUTH_KEEPALIVE}; }
  upstream floor { server 127.0.0.1:${floorPort}; keepalive ${AUTH_KEEPALIVE}; }
  upstream app { server 127.0.0.1:${appPort}; keepalive ${AUTH_KEEPALIVE}; }
  keepalive_requests 1000000;
  server { listen 127.0.0.1:${appPort}; location / { return 200 "ok"; } }
${frontServer(viaKeyward, 'keyward', `/verify?scope=${SCOPE}`)}
${frontServer(viaFloor, 'floor', '/')}
${frontServer(viaKeywardUnkept, `127.0.0.1:${keywardPort}`, `/verify?scope=${SCOPE}`, false)}`,
);
const sides = {
  keyward: `http://127.0.0.1:${viaKeyward}/`,
  floor: `http://127.0.0.1:${viaFloor}/`,
  /** keyward without keep-alive: reported, to show what the recipe's keep-alive is worth. */
  unkept: `http://127.0.0.1:${viaKeywardUnkept}/`,
};
type Side = keyof typeof sides;
for (const proc of [floor, front]) {
  await waitUntilReady(
    proc,
    async () => (await fetch(sides.floor, { headers: { authorization: 'x' } })).ok,
    15_000,
  );
}
for (const [side, url] of Object.entries(sides)) {
  const response = await fetch(url, { headers: { authorization: auth.slice('Authorization: '.length) } });
  if (response.status !== 200) throw new Error(`${side}: ${response.status} through nginx`);
}
// Without a token keyward refuses: the keyward side really asks keyward.
if ((await fetch(sides.keyward)).status !== 401)
  throw new Error('keyward side: a request without a token passed');

// ---- wrk ---------------------------------------------------------------------------------

async function wrk(
  side: Side,
  options: { connections: number; seconds: number; delayMs?: number },
): Promise<WrkRun> {
  const { delayMs, ...rest } = options;
  const result = await runWrk(
    wrkRunner,
    sides[side],
    {
      ...rest,
      cpu: FRONT_CPU,
      headers: [auth],
      timeoutSeconds: WRK_TIMEOUT_SECONDS,
      ...(delayMs === undefined ? {} : { lua: pacedLua(delayMs) }),
    },
    (side === 'floor' ? floor : keyward).child.pid!,
  );
  // Every request must pass auth: a refusal would be a broken setup, not a slow one.
  if (result.non2xx > 0) throw new Error(`${side}: ${result.non2xx} non-2xx answers`);
  if (result.socketErrors > 0) print(`(${side}: ${result.socketErrors} wrk socket errors)`);
  return result;
}

/** Each round runs every side back to back, the order rotated every round. */
async function alternate<S extends Side>(
  measured: readonly S[],
  options: { connections: number; seconds: number; delayMs?: number },
): Promise<Record<S, WrkRun>[]> {
  const out = [];
  for (let i = 0; i < rounds; i++) {
    const order = measured.map((_, j) => measured[(i + j) % measured.length]!);
    const round: Partial<Record<S, WrkRun>> = {};
    for (const side of order) round[side] = await wrk(side, options);
    out.push(round as Record<S, WrkRun>);
  }
  return out;
}

const at = quantileOf;
const int = (n: number): string => Math.round(n).toLocaleString('en');

// ---- benchmarks --------------------------------------------------------------------------

try {
  // Warm-up: JIT on both sides, keyward's cache, nginx's keep-alive pools.
  await wrk('keyward', { connections: THROUGHPUT_CONNECTIONS, seconds: 3 });
  await wrk('floor', { connections: THROUGHPUT_CONNECTIONS, seconds: 3 });

  print(
    `## throughput: ${THROUGHPUT_CONNECTIONS} keep-alive connections through nginx; auth service on CPU ${AUTH_CPU}, nginx + wrk on CPU ${FRONT_CPU}`,
  );
  const throughput = await alternate(['keyward', 'floor', 'unkept'], {
    connections: THROUGHPUT_CONNECTIONS,
    seconds: duration,
  });
  for (const [i, r] of throughput.entries()) {
    print(
      `round ${i + 1}: keyward ${int(r.keyward.rps)} req/s (${r.keyward.cpuUsPerRequest.toFixed(1)} CPU-µs/req in keyward) | floor ${int(r.floor.rps)} req/s (${r.floor.cpuUsPerRequest.toFixed(1)} CPU-µs/req in the floor's nginx) | ratio ${(r.keyward.rps / r.floor.rps).toFixed(3)} | keyward without keep-alive ${int(r.unkept.rps)} req/s (${r.unkept.cpuUsPerRequest.toFixed(1)} CPU-µs/req)`,
    );
  }
  const ratios = throughput.map((r) => r.keyward.rps / r.floor.rps);
  const keywardRps = throughput.map((r) => r.keyward.rps);
  const floorRps = throughput.map((r) => r.floor.rps);
  const keywardCpu = median(throughput.map((r) => r.keyward.cpuUsPerRequest));
  print(
    `median ratio ${median(ratios).toFixed(3)} (${spreadOf(ratios)
      .map((x) => x.toFixed(3))
      .join('–')})`,
  );
  results.row({
    id: 'nginx-auth-throughput',
    measure: 'nginx auth_request to keyward vs auth_request to an nginx location returning 200, throughput',
    target: '≥ 0.7×',
    value: median(ratios),
    unit: '×',
    met: median(ratios) >= 0.7,
    spread: spreadOf(ratios),
    rounds: ratios,
    note: `${THROUGHPUT_CONNECTIONS} connections, keep-alive upstream to both; keyward ${int(median(keywardRps))} req/s vs floor ${int(median(floorRps))} req/s (medians); keyward spent ${keywardCpu.toFixed(1)} CPU-µs per request on CPU ${AUTH_CPU}, nginx and wrk shared CPU ${FRONT_CPU}.`,
  });
  const unkept = throughput.map((r) => r.unkept.rps / r.floor.rps);
  const unkeptCpu = median(throughput.map((r) => r.unkept.cpuUsPerRequest));
  print(
    `without keep-alive to keyward: median ratio ${median(unkept).toFixed(3)}, ${unkeptCpu.toFixed(1)} CPU-µs/req in keyward (${keywardCpu.toFixed(1)} with it)`,
  );
  results.row({
    id: 'nginx-auth-throughput-no-keepalive',
    measure: 'same, with a new connection to keyward per subrequest (no upstream keepalive)',
    target: 'reported',
    value: median(unkept),
    unit: '×',
    met: null,
    spread: spreadOf(unkept),
    rounds: unkept,
    note: `keyward spent ${unkeptCpu.toFixed(1)} CPU-µs per request without keep-alive against ${keywardCpu.toFixed(1)} with it: what docs/ingress/nginx.md#keep-alive-to-the-webhook is worth.`,
  });
  results.series('nginx-auth-throughput', {
    kind: 'bars',
    title: `Requests through nginx auth_request, ${THROUGHPUT_CONNECTIONS} connections`,
    unit: 'req/s',
    bars: [
      { label: 'auth_request → keyward', value: median(keywardRps), spread: spreadOf(keywardRps) },
      { label: 'auth_request → nginx return 200', value: median(floorRps), spread: spreadOf(floorRps) },
      {
        label: 'auth_request → keyward, no keep-alive',
        value: median(throughput.map((r) => r.unkept.rps)),
        spread: spreadOf(throughput.map((r) => r.unkept.rps)),
      },
    ],
  });

  print(`## latency at ${LATENCY_CONNECTIONS} connections (µs)`);
  const low = await alternate(['keyward', 'floor'], { connections: LATENCY_CONNECTIONS, seconds: duration });
  for (const [i, r] of low.entries()) {
    print(
      `round ${i + 1}: keyward p50 ${at(r.keyward, 0.5)} p99 ${at(r.keyward, 0.99)} | floor p50 ${at(r.floor, 0.5)} p99 ${at(r.floor, 0.99)} | added p50 ${at(r.keyward, 0.5) - at(r.floor, 0.5)}`,
    );
  }
  const added = low.map((r) => at(r.keyward, 0.5) - at(r.floor, 0.5));
  results.row({
    id: 'nginx-auth-p50-added',
    measure: 'nginx auth_request to keyward, added p50 latency at 4 connections',
    target: '≤ 100 µs',
    value: median(added),
    unit: 'µs',
    met: median(added) <= 100,
    spread: spreadOf(added),
    rounds: added,
    note: `p50 through nginx with keyward ${median(low.map((r) => at(r.keyward, 0.5)))} µs vs ${median(low.map((r) => at(r.floor, 0.5)))} µs with the floor (medians of the rounds).`,
  });
  results.series('nginx-auth-latency-4', {
    kind: 'quantiles',
    title: `Latency through nginx auth_request, ${LATENCY_CONNECTIONS} connections`,
    unit: 'µs',
    lines: [
      { label: 'auth_request → keyward', points: medianQuantiles(low.map((r) => r.keyward)) },
      { label: 'auth_request → nginx return 200', points: medianQuantiles(low.map((r) => r.floor)) },
    ],
  });

  // Half load: half of keyward's maximum, offered to both sides alike. wrk is closed-loop; a pause
  // per request paces it, so each connection makes one request per (pause + response time).
  const rate = median(keywardRps) / 2;
  const responseMs = median(low.map((r) => at(r.keyward, 0.5))) / 1000;
  const connections = Math.max(1, Math.round((rate * (PACED_DELAY_MS + responseMs)) / 1000));
  print(
    `## p99 at half load: ${int(rate)} req/s offered, ${connections} connections pausing ${PACED_DELAY_MS} ms (µs)`,
  );
  const half = await alternate(['keyward', 'floor'], {
    connections,
    seconds: Math.max(duration, 5),
    delayMs: PACED_DELAY_MS,
  });
  for (const [i, r] of half.entries()) {
    print(
      `round ${i + 1}: keyward ${int(r.keyward.rps)} req/s p50 ${at(r.keyward, 0.5)} p99 ${at(r.keyward, 0.99)} | floor ${int(r.floor.rps)} req/s p50 ${at(r.floor, 0.5)} p99 ${at(r.floor, 0.99)} | p99 ratio ${(at(r.keyward, 0.99) / at(r.floor, 0.99)).toFixed(2)}`,
    );
  }
  const p99Ratios = half.map((r) => at(r.keyward, 0.99) / at(r.floor, 0.99));
  results.row({
    id: 'nginx-auth-p99-half-load',
    measure: 'nginx auth_request to keyward vs the floor, p99 at half load',
    target: '≤ 1.25×',
    value: median(p99Ratios),
    unit: '×',
    met: median(p99Ratios) <= 1.25,
    spread: spreadOf(p99Ratios),
    rounds: p99Ratios,
    note: `${int(rate)} req/s offered to both sides (half of keyward's median maximum); p99 ${median(half.map((r) => at(r.keyward, 0.99)))} µs with keyward vs ${median(half.map((r) => at(r.floor, 0.99)))} µs with the floor.`,
  });
  results.series('nginx-auth-latency-half-load', {
    kind: 'quantiles',
    title: `Latency through nginx auth_request at ${int(rate)} req/s`,
    unit: 'µs',
    lines: [
      { label: 'auth_request → keyward', points: medianQuantiles(half.map((r) => r.keyward)) },
      { label: 'auth_request → nginx return 200', points: medianQuantiles(half.map((r) => r.floor)) },
    ],
  });
  await results.write(values.json);
} finally {
  await processes.stopAll();
  await bench.end();
  await postgres.stop();
  await rm(work, { recursive: true, force: true });
}
