// Webhook benchmarks (bench/README.md): /verify throughput on cache hits against bare Fastify in
// the same run, latency at half the measured maximum, the cost of rate limits on the hit path,
// the miss path over 10^6 keys, revocation propagation to two replicas, RSS with 100,000 cached
// entries, and the request log's cost on cache hits.
//
// Usage: npx tsc -p tsconfig.json && node dist/bench/webhook.js [--only throughput,latency,limits,miss,propagation,memory,audit]
//        [--keys 1000000] [--duration 10] [--trials 200]
// Needs wrk and nginx (apt-get install -y wrk nginx-light) and taskset (util-linux). Servers
// under test are pinned to CPU 0, wrk to CPU 1, so the generator never competes with the server.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs, promisify } from 'node:util';
import pg from 'pg';
import { generateToken } from '../credentials/token.js';
import { createDatabase, startPostgres } from '../devenv/postgres.js';
import { freePort, ManagedProcess, requireTool, waitUntilReady } from '../devenv/process.js';
import { repoRoot } from '../devenv/repo.js';
import type { KeyLookup } from '../store/lookup.js';
import { migrate } from '../store/migrate.js';
import { OperatorStore } from '../store/operator-store.js';
import { RateLimitDefinitions } from '../store/rate-limits.js';
import { RequestLimits } from '../webhook/limits.js';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    only: { type: 'string', default: 'throughput,latency,limits,miss,propagation,memory,audit' },
    keys: { type: 'string', default: '1000000' },
    duration: { type: 'string', default: '10' },
    trials: { type: 'string', default: '200' },
  },
});
const only = new Set(values.only.split(','));
const duration = Number(values.duration);
const wrkBin = requireTool('wrk', 'apt-get install -y wrk');
const taskset = requireTool('taskset', 'apt-get install -y util-linux');
const nginxBin = requireTool('nginx', 'apt-get install -y nginx-light', ['/usr/sbin']);
const work = await mkdtemp(join(tmpdir(), 'keyward-bench-'));
const print = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

// ---- store -------------------------------------------------------------------------------

const postgres = await startPostgres();
const storeUrl = await createDatabase(postgres.adminUrl, 'bench');
await migrate(storeUrl);
const pool = new pg.Pool({ connectionString: storeUrl, max: 4 });
// Idle clients see the cluster's own shutdown at the end; that is not a failure of the run.
pool.on('error', () => undefined);
const store = new OperatorStore(pool, { actor: 'bench' });

const userRef = { namespace: 'bench', name: 'bench-user', uid: 'bench-user-uid' };
await store.upsertServiceUser({
  ref: userRef,
  username: 'bench-user',
  description: 'benchmark',
  contact: null,
  groups: ['team-a', 'ops'],
  scopes: ['projects:*'],
  suspended: false,
});
let keyCounter = 0;
async function issue(): Promise<{ token: string; uid: string }> {
  keyCounter += 1;
  const generated = generateToken();
  const ref = { namespace: 'bench', name: `key-${keyCounter}`, uid: `key-uid-${keyCounter}` };
  const result = await store.issueKey({
    ref,
    serviceUserName: userRef.name,
    hash: generated.hash,
    displayPrefix: generated.displayPrefix,
    scopes: null,
    expiresAt: null,
    disabled: false,
  });
  if (result.kind !== 'ok') throw new Error(`issueKey: ${result.kind}`);
  return { token: generated.token, uid: ref.uid };
}

/** Tokens of the keys bulkKeys() loaded so far. */
const loaded: string[] = [];

/** Bulk-loads n keys of the bench user (real tokens, real hashes) and returns their tokens. */
async function bulkKeys(n: number): Promise<string[]> {
  const tokens: string[] = [];
  const batch = 20_000;
  for (let start = 0; start < n; start += batch) {
    const size = Math.min(batch, n - start);
    const generated = Array.from({ length: size }, () => generateToken());
    for (const g of generated) tokens.push(g.token);
    for (const g of generated) loaded.push(g.token);
    await pool.query(
      `WITH input AS (
         SELECT h, p, ord FROM unnest($1::bytea[], $2::text[]) WITH ORDINALITY AS t(h, p, ord)
       ), keys AS (
         INSERT INTO api_keys (key_id, service_user_id, namespace, name, uid)
         SELECT 'key_' || lpad(($3 + ord)::text, 16, '0'), u.id, u.namespace, 'k' || ($3 + ord), 'bulk-uid-' || ($3 + ord)
           FROM input, service_users u WHERE u.uid = $4
         RETURNING id, uid
       )
       INSERT INTO api_key_secrets (hash, api_key_id, display_prefix)
       SELECT input.h, keys.id, input.p FROM input JOIN keys ON keys.uid = 'bulk-uid-' || ($3 + input.ord)`,
      [generated.map((g) => g.hash), generated.map((g) => g.displayPrefix), start, userRef.uid],
    );
  }
  await pool.query('VACUUM ANALYZE');
  return tokens;
}

// ---- processes ---------------------------------------------------------------------------

const processes: ManagedProcess[] = [];
async function pinned(
  name: string,
  cpu: number,
  args: string[],
  env: Record<string, string>,
): Promise<ManagedProcess> {
  const proc = new ManagedProcess({
    name,
    command: taskset,
    args: ['-c', String(cpu), ...args],
    env: { PATH: process.env.PATH ?? '', ...env },
    logFile: join(work, `${name.replace(/\W+/g, '-')}.log`),
  });
  processes.push(proc);
  return proc;
}

async function startWebhook(
  name: string,
  cpu: number,
  env: Record<string, string> = {},
): Promise<{ url: string; metricsUrl: string; proc: ManagedProcess }> {
  const port = await freePort();
  const metricsPort = await freePort();
  const proc = await pinned(
    name,
    cpu,
    [process.execPath, join(repoRoot(), 'dist', 'cli', 'main.js'), 'webhook'],
    {
      KEYWARD_STORE_URL: storeUrl,
      KEYWARD_WEBHOOK_LISTEN: `127.0.0.1:${port}`,
      KEYWARD_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
      KEYWARD_LOG_LEVEL: 'warn',
      KEYWARD_CACHE_MAX_ENTRIES: '200000',
      ...env,
    },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitUntilReady(proc, async () => (await fetch(`${url}/readyz`)).ok, 30_000, 'ready');
  return { url, metricsUrl: `http://127.0.0.1:${metricsPort}`, proc };
}

async function startBareFastify(): Promise<string> {
  const port = await freePort();
  const proc = await pinned(
    'bare fastify',
    0,
    [process.execPath, join(repoRoot(), 'dist', 'bench', 'bare-fastify.js')],
    {
      PORT: String(port),
    },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitUntilReady(proc, async () => (await fetch(`${url}/verify`)).status === 401, 30_000, 'listening');
  return url;
}

async function startNginxReturn200(): Promise<string> {
  const port = await freePort();
  const conf = join(work, 'nginx.conf');
  await writeFile(
    conf,
    `worker_processes 1; master_process off; pid ${work}/nginx.pid; error_log ${work}/nginx-error.log;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path ${work}/nb; proxy_temp_path ${work}/np; fastcgi_temp_path ${work}/nf;
  uwsgi_temp_path ${work}/nu; scgi_temp_path ${work}/ns;
  server { listen 127.0.0.1:${port}; location / { return 200; } } }
`,
  );
  const proc = await pinned('nginx', 0, [nginxBin, '-p', work, '-c', conf, '-g', 'daemon off;'], {});
  const url = `http://127.0.0.1:${port}`;
  await waitUntilReady(proc, async () => (await fetch(`${url}/`)).ok, 15_000, 'serving');
  return url;
}

// ---- wrk ---------------------------------------------------------------------------------

interface WrkResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  non2xx: number;
  requests: number;
}

async function wrk(
  url: string,
  options: { headers?: string[]; script?: string; connections?: number; seconds?: number },
): Promise<WrkResult> {
  const args = [
    '-c',
    '1',
    wrkBin,
    '-t1',
    `-c${options.connections ?? 100}`,
    `-d${options.seconds ?? duration}s`,
    '--latency',
  ];
  for (const h of options.headers ?? []) args.push('-H', h);
  if (options.script) args.push('-s', options.script);
  args.push(url);
  const { stdout } = await run(taskset, args, { maxBuffer: 1 << 20 });
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
  };
}

const fmt = (r: WrkResult): string =>
  `${Math.round(r.rps).toLocaleString('en')} req/s, p50 ${r.p50ms.toFixed(2)} ms, p99 ${r.p99ms.toFixed(2)} ms, non-2xx ${r.non2xx}`;

function quantile(samples: number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

// ---- benchmarks --------------------------------------------------------------------------

try {
  const key = await issue();
  const auth = [`Authorization: Bearer ${key.token}`];
  let maxRps = 0;
  let primary: { url: string; proc: ManagedProcess } | undefined;
  const webhook = async (): Promise<{ url: string; proc: ManagedProcess }> => {
    primary ??= await startWebhook('webhook', 0);
    return primary;
  };

  if (only.has('throughput') || only.has('latency')) {
    const { url } = await webhook();
    const bare = await startBareFastify();
    const nginx = await startNginxReturn200();
    await wrk(`${url}/verify`, { headers: auth, seconds: 3 }); // warm-up: JIT and cache
    await wrk(`${bare}/verify`, { headers: auth, seconds: 3 });
    const rounds = [];
    for (let i = 0; i < 3; i++) {
      rounds.push({
        webhook: await wrk(`${url}/verify`, { headers: auth }),
        bare: await wrk(`${bare}/verify`, { headers: auth }),
      });
    }
    const headroom = await wrk(`${nginx}/`, { headers: auth });
    print('## /verify throughput, cache hits, 100 keep-alive connections, server on CPU 0, wrk on CPU 1');
    for (const [i, r] of rounds.entries()) {
      print(
        `round ${i + 1}: webhook ${fmt(r.webhook)} | bare Fastify ${fmt(r.bare)} | ratio ${(r.webhook.rps / r.bare.rps).toFixed(3)}`,
      );
    }
    const w = rounds.map((r) => r.webhook.rps);
    const b = rounds.map((r) => r.bare.rps);
    const median = (xs: number[]): number => quantile(xs, 0.5);
    maxRps = median(w);
    print(
      `median: webhook ${Math.round(median(w))} req/s, bare ${Math.round(median(b))} req/s, ratio ${(median(w) / median(b)).toFixed(3)}`,
    );
    print(`generator headroom: the same wrk against nginx "return 200" on CPU 0: ${fmt(headroom)}`);
  }

  if (only.has('latency')) {
    const { url } = await webhook();
    if (maxRps === 0) maxRps = (await wrk(`${url}/verify`, { headers: auth, seconds: 5 })).rps;
    // wrk is closed-loop; a 3 ms pause per request per connection paces it. Each connection then
    // makes one request per (3 ms + response time ≈ 0.3 ms), so this many connections offer about
    // half of the measured maximum.
    const rate = maxRps / 2;
    const delayMs = 3;
    const connections = Math.max(1, Math.round((rate * (delayMs + 0.3)) / 1000));
    const script = join(work, 'paced.lua');
    await writeFile(script, `function delay() return ${delayMs} end\n`);
    const r = await wrk(`${url}/verify`, {
      headers: auth,
      script,
      connections,
      seconds: Math.max(duration, 15),
    });
    print('## /verify latency at a fixed offered rate (cache hits)');
    print(
      `target ${Math.round(rate)} req/s = half of ${Math.round(maxRps)}; ${connections} connections each pausing ${delayMs} ms; achieved ${fmt(r)}`,
    );
  }

  if (only.has('limits')) {
    const { url } = await webhook();
    // Two rate limits and a quota, never reached: every request pays for counting, none is refused.
    const limited = await issue();
    await new RateLimitDefinitions(pool).define({
      uid: limited.uid,
      kind: 'ApiKey',
      rateLimits: [
        { name: 'burst', limit: 1_000_000_000, periodMs: 60_000 },
        { name: 'daily', limit: 1_000_000_000, periodMs: 86_400_000 },
      ],
      quota: { name: 'quota', limit: 1_000_000_000, periodMs: null },
    });
    const limitedAuth = [`Authorization: Bearer ${limited.token}`];
    await wrk(`${url}/verify`, { headers: auth, seconds: 3 }); // warm-up: JIT and cache
    await wrk(`${url}/verify`, { headers: limitedAuth, seconds: 3 });
    const rounds = [];
    for (let i = 0; i < 3; i++) {
      rounds.push({
        plain: await wrk(`${url}/verify`, { headers: auth }),
        limited: await wrk(`${url}/verify`, { headers: limitedAuth }),
      });
    }
    print(
      '## rate limits on the hit path: a key with 2 rate limits and a quota vs a key without, same webhook',
    );
    for (const [i, r] of rounds.entries()) {
      print(
        `round ${i + 1}: no limits ${fmt(r.plain)} | limited ${fmt(r.limited)} | ratio ${(r.limited.rps / r.plain.rps).toFixed(3)}`,
      );
    }
    const median = (xs: number[]): number => quantile(xs, 0.5);
    // The same work in-process, without HTTP: what admit() itself costs per request.
    const limits = new RequestLimits({ now: Date.now, syncSoon: () => undefined });
    const lookup = (withLimits: boolean): KeyLookup =>
      ({
        apiKeyId: '00000000-0000-4000-8000-000000000001',
        userId: '00000000-0000-4000-8000-000000000002',
        limits: withLimits
          ? {
              key: [
                { name: 'burst', limit: 1e9, periodMs: 60_000 },
                { name: 'daily', limit: 1e9, periodMs: 86_400_000 },
              ],
              user: [],
              quota: { name: 'quota', limit: 1e9, periodMs: null },
            }
          : { key: [], user: [], quota: null },
      }) as unknown as KeyLookup;
    for (const withLimits of [false, true]) {
      const key = lookup(withLimits);
      const calls = 1_000_000;
      for (let i = 0; i < 100_000; i++) limits.admit(key);
      const started = process.hrtime.bigint();
      for (let i = 0; i < calls; i++) limits.admit(key);
      const ns = Number(process.hrtime.bigint() - started) / calls;
      print(
        `admit() in-process, ${withLimits ? '2 rate limits and a quota' : 'no limits'}: ${ns.toFixed(0)} ns per call`,
      );
    }
    const plain = median(rounds.map((r) => r.plain.rps));
    const withLimits = median(rounds.map((r) => r.limited.rps));
    print(
      `median: no limits ${Math.round(plain)} req/s, limited ${Math.round(withLimits)} req/s, ratio ${(withLimits / plain).toFixed(3)}`,
    );
  }

  if (only.has('miss')) {
    const { url, proc } = await webhook();
    const n = Number(values.keys);
    const started = Date.now();
    const tokens = await bulkKeys(n);
    print(
      `## miss path: ${n.toLocaleString('en')} keys loaded in ${((Date.now() - started) / 1000).toFixed(0)} s`,
    );
    const file = join(work, 'tokens.txt');
    await writeFile(file, tokens.join('\n'));
    const script = join(work, 'random-token.lua');
    await writeFile(
      script,
      `local tokens = {}
for line in io.lines("${file}") do tokens[#tokens + 1] = line end
math.randomseed(42)
request = function()
  return wrk.format("GET", "/verify", { ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] })
end
`,
    );
    const r = await wrk(`${url}/verify`, { script });
    const rss = Number(
      /VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${proc.child.pid}/status`, 'utf8'))?.[1] ?? 0,
    );
    print(
      `uniformly random valid tokens over ${n.toLocaleString('en')} keys (almost all misses at first; the cache holds 200,000): ${fmt(r)}`,
    );
    print(`webhook RSS afterwards: ${Math.round(rss / 1024)} MiB`);
  }

  if (only.has('memory')) {
    const { url, metricsUrl, proc } = await startWebhook('webhook-memory', 0);
    const rssMiB = async (): Promise<number> =>
      Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${proc.child.pid}/status`, 'utf8'))?.[1] ?? 0) /
      1024;
    if (loaded.length < 100_000) await bulkKeys(100_000 - loaded.length);
    const sample = loaded.slice(0, 100_000);
    const before = await rssMiB();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < sample.length) {
        const token = sample[next++]!;
        const res = await fetch(`${url}/verify`, { headers: { authorization: `Bearer ${token}` } });
        await res.arrayBuffer();
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    const metrics = await (await fetch(`${metricsUrl}/metrics`)).text();
    const entries = /keyward_webhook_cache_entries\{cache="positive"\} (\d+)/.exec(metrics)?.[1];
    const heapMiB = Number(/keyward_webhook_nodejs_heap_size_used_bytes (\d+)/.exec(metrics)?.[1]) / 2 ** 20;
    print(
      `## memory: RSS ${before.toFixed(0)} MiB with an empty cache, ${(await rssMiB()).toFixed(0)} MiB with ${entries} cached entries (V8 heap used ${heapMiB.toFixed(0)} MiB)`,
    );
  }

  if (only.has('audit')) {
    // The same cache-hit load against three webhooks on CPU 0, one at a time, rounds interleaved so
    // that machine load hits them alike: request log off, to the store, to the store and a JSON
    // lines file. Postgres (every process of the cluster, and the backends it forks from now on)
    // moves to CPU 1 beside wrk: inserting the rows is the store's work, which in a cluster runs
    // on another machine, and on CPU 0 it would be counted as the webhook's.
    const postmaster = (await readFile(join(postgres.dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]!;
    const pinPostgres = async (cpus: string): Promise<void> => {
      const { stdout } = await run('pgrep', ['-P', postmaster]).catch(() => ({ stdout: '' }));
      for (const pid of [postmaster, ...stdout.split('\n').filter(Boolean)]) {
        await run(taskset, ['-a', '-cp', cpus, pid]).catch(() => undefined);
      }
    };
    await pinPostgres('1');
    const jsonFile = join(work, 'requests.jsonl');
    const variants: Array<{ name: string; env: Record<string, string> }> = [
      { name: 'off', env: { KEYWARD_REQUEST_LOG_STORE: 'false' } },
      { name: 'store', env: {} },
      { name: 'store+json', env: { KEYWARD_REQUEST_LOG_JSON: jsonFile } },
    ];
    const servers = [];
    for (const v of variants)
      servers.push({ ...v, ...(await startWebhook(`webhook-log-${v.name}`, 0, v.env)) });
    for (const server of servers) await wrk(`${server.url}/verify`, { headers: auth, seconds: 3 });
    // Throughput on a loaded machine swings with the neighbours; the server's own CPU time per
    // request (utime + stime from /proc) is what the log adds, and moves far less.
    const cpuSeconds = async (pid: number): Promise<number> => {
      const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100;
    };
    const rps: Record<string, number[]> = Object.fromEntries(variants.map((v) => [v.name, []]));
    const cpuUs: Record<string, number[]> = Object.fromEntries(variants.map((v) => [v.name, []]));
    print(
      '## request log cost on /verify cache hits, 100 keep-alive connections, server on CPU 0, wrk and Postgres on CPU 1',
    );
    for (let i = 0; i < 5; i++) {
      const line: string[] = [];
      for (const server of servers) {
        const before = await cpuSeconds(server.proc.child.pid!);
        const r = await wrk(`${server.url}/verify`, { headers: auth });
        const perRequest = ((await cpuSeconds(server.proc.child.pid!)) - before) / r.requests;
        rps[server.name]!.push(r.rps);
        cpuUs[server.name]!.push(perRequest * 1e6);
        line.push(`${server.name} ${fmt(r)}, ${(perRequest * 1e6).toFixed(1)} CPU-µs/req`);
      }
      print(`round ${i + 1}: ${line.join(' | ')}`);
    }
    const median = (xs: number[]): number => quantile(xs, 0.5);
    const off = median(rps.off!);
    const offCpu = median(cpuUs.off!);
    for (const server of servers.slice(1)) {
      const metrics = await (await fetch(`${server.metricsUrl}/metrics`)).text();
      const count = (re: RegExp): number =>
        [...metrics.matchAll(re)].reduce((sum, m) => sum + Number(m[1]), 0);
      const written = count(/keyward_webhook_request_log_written_total\{sink="store"\} (\d+)/g);
      const dropped = count(/keyward_webhook_request_log_dropped_total\{[^}]*\} (\d+)/g);
      const on = median(rps[server.name]!);
      const onCpu = median(cpuUs[server.name]!);
      print(
        `${server.name}: median ${Math.round(on)} req/s vs ${Math.round(off)} off (${((1 - on / off) * 100).toFixed(1)} % fewer); ` +
          `median ${onCpu.toFixed(1)} vs ${offCpu.toFixed(1)} CPU-µs/req, so ${((1 - offCpu / onCpu) * 100).toFixed(1)} % less throughput when CPU-bound; ` +
          `${written.toLocaleString('en')} rows in the store, ${dropped} dropped`,
      );
    }
    await pinPostgres('0,1');
  }

  if (only.has('propagation')) {
    // The poll below fails on purpose until the revoke lands; the failed-attempt limit would
    // answer 429 to this one client address after 30 of them.
    const unlimited = { KEYWARD_FAILED_ATTEMPTS_LIMIT: '0' };
    const a = await startWebhook('webhook-a', 0, unlimited);
    const b = await startWebhook('webhook-b', 1, unlimited);
    const trials = Number(values.trials);
    const samples: number[] = [];
    for (let i = 0; i < trials; i++) {
      const k = await issue();
      const headers = { authorization: `Bearer ${k.token}` };
      for (const r of [a, b]) {
        const res = await fetch(`${r.url}/verify`, { headers });
        if (res.status !== 200) throw new Error(`warm-up got ${res.status}`);
      }
      await store.revokeKey(k.uid);
      const committed = performance.now();
      const refusedAt = await Promise.all(
        [a, b].map(async (r) => {
          for (;;) {
            const res = await fetch(`${r.url}/verify`, { headers });
            if (res.status === 401) return performance.now();
          }
        }),
      );
      samples.push(Math.max(...refusedAt) - committed);
      await sleep(5);
    }
    print(
      `## revocation propagation, ${trials} trials, 2 replicas, from the revoke's commit to both answering 401`,
    );
    print(
      `p50 ${quantile(samples, 0.5).toFixed(2)} ms, p99 ${quantile(samples, 0.99).toFixed(2)} ms, max ${Math.max(...samples).toFixed(2)} ms`,
    );
  }
} finally {
  await Promise.allSettled(processes.map((p) => p.stop()));
  await pool.end();
  await postgres.stop();
}
