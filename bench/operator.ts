// Operator benchmark (bench/README.md): 10,000 ApiKeys across 10 ServiceUsers applied at once, the
// time from the first create to every key Ready=True with its Secret, each key's create → Ready,
// and the operator's RSS against the number of Ready keys.
// Usage: npx tsc -p tsconfig.json && node dist/bench/operator.js [--keys 10000] [--json file]
//   [--concurrency 64] [--workers n] [--cpu-prof dir]
// Starts a private Postgres and control plane (devenv/) and the operator as a child process with
// its least-privilege RBAC, exactly as the end-to-end tests run it. Progress comes from two watches
// (ApiKeys, managed Secrets), so the benchmark's own observation costs one event per change, never
// a list of everything.
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { type KubeConfig, type KubernetesObject, Watch } from '@kubernetes/client-node';
import pg from 'pg';
import { KeywardObjects, startOperatorCluster } from '../devenv/operator.js';
import { createDatabase, startPostgres } from '../devenv/postgres.js';
import { PooledKubeConfig } from '../operator/kube/connections.js';
import { MANAGED_SECRET_SELECTOR } from '../operator/secret.js';
import { chartMallocArenaMax, chartNodeFlags, chartNodeOptions } from './lib/chart-node-options.js';
import { cpuSecondsByCommand } from './lib/processes.js';
import { ResultWriter } from './lib/results.js';

/** The issue's row: 10,000 ApiKeys Ready within 90 s, operator RSS at 10,000 within 200 MiB. */
const TARGET_KEYS = 10_000;
const TARGET_SECONDS = 90;
const TARGET_RSS_MIB = 200;
const SERVICE_USERS = 10;
/** Far beyond what the largest run takes; only stops a benchmark whose operator is stuck. */
const ALL_READY_TIMEOUT_MS = 15 * 60_000;
const RSS_SAMPLE_MS = 1_000;
const PRINT_EVERY_S = 10;
const HEAP_SNAPSHOT_SIGNAL = 'SIGUSR2';
/** A snapshot of a few hundred MiB of heap takes seconds to write; the file is complete when its size holds. */
const SNAPSHOT_POLL_MS = 500;

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: String(TARGET_KEYS) },
    /** Creates in flight at once: "applied at once", as fast as the API server takes them. */
    concurrency: { type: 'string', default: '64' },
    /** KEYWARD_WORKERS for the operator; unset runs its default. */
    workers: { type: 'string' },
    /** Writes the operator's CPU profile (node --cpu-prof) into this directory when it stops. */
    'cpu-prof': { type: 'string' },
    /**
     * Writes a heap snapshot of the operator into this directory once every key is Ready and the
     * settle time has passed (what the RSS row measures), via --heapsnapshot-signal.
     */
    'heap-snapshot': { type: 'string' },
    /** More options for the operator's node, e.g. `--heapsnapshot-signal=SIGUSR2`. */
    'node-options': { type: 'string' },
    /** Seconds from the last key Ready to the final RSS: the queue drains and V8 collects. */
    settle: { type: 'string', default: '10' },
    /** NAME=VALUE for the operator's environment (repeatable), e.g. MALLOC_ARENA_MAX=2. */
    env: { type: 'string', multiple: true },
    json: { type: 'string' },
  },
});
const total = Number(values.keys);
/** After the last key is Ready: lets the queue drain and V8 collect before the final RSS. */
const SETTLE_MS = Number(values.settle) * 1000;
/** NODE_OPTIONS (and the node flags and MALLOC_ARENA_MAX, below) as the chart runs the operator, so the benchmark measures what ships. */
const nodeOptions = [
  chartNodeOptions('operator'),
  values['cpu-prof'] === undefined ? '' : `--cpu-prof --cpu-prof-dir=${values['cpu-prof']}`,
  values['heap-snapshot'] === undefined
    ? ''
    : `--heapsnapshot-signal=${HEAP_SNAPSHOT_SIGNAL} --diagnostic-dir=${values['heap-snapshot']}`,
  values['node-options'] ?? '',
]
  .join(' ')
  .trim();
const concurrency = Number(values.concurrency);
const print = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const results = new ResultWriter('operator');

const ready = (obj: KubernetesObject): boolean =>
  (obj as { status?: { conditions?: Array<{ type: string; status: string }> } }).status?.conditions?.some(
    (c) => c.type === 'Ready' && c.status === 'True',
  ) === true;

/**
 * Keeps a watch on `path` open for the whole run, resuming from the last resourceVersion should the
 * server end it, and calls `onObject` for every added or modified object.
 */
function follow(
  kc: KubeConfig,
  path: string,
  query: Record<string, string>,
  onObject: (obj: KubernetesObject) => void,
): { stop(): void } {
  const watcher = new Watch(kc);
  let resourceVersion = '';
  let stopped = false;
  let controller: AbortController | undefined;
  const open = async (): Promise<void> => {
    while (!stopped) {
      const ended = new Promise<void>((resolve) => {
        void watcher
          .watch(
            path,
            { ...query, resourceVersion, allowWatchBookmarks: true },
            (type, obj: KubernetesObject) => {
              resourceVersion = obj.metadata?.resourceVersion ?? resourceVersion;
              if (type === 'ADDED' || type === 'MODIFIED') onObject(obj);
            },
            () => resolve(),
          )
          .then(
            (c) => {
              controller = c;
            },
            () => resolve(),
          );
      });
      await ended;
      if (!stopped) await sleep(200);
    }
  };
  void open();
  return {
    stop(): void {
      stopped = true;
      controller?.abort();
    },
  };
}

/** `apiserver_request_total` summed by verb, resource and subresource. */
async function apiRequests(kc: KubeConfig): Promise<Map<string, number>> {
  const cluster = kc.getCurrentCluster();
  const opts: https.RequestOptions = { method: 'GET', headers: {} };
  await kc.applyToHTTPSOptions(opts);
  const text = await new Promise<string>((resolve, reject) => {
    const req = https.request(`${cluster?.server}/metrics`, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  const counts = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const label = (name: string): string => new RegExp(`[{,]${name}="([^"]*)"`).exec(line)?.[1] ?? '';
    const key = `${label('verb')} ${label('resource')}${label('subresource') ? `/${label('subresource')}` : ''}`;
    counts.set(key, (counts.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return counts;
}

/** The operator's memory as V8 sees it and its ApiKey reconciles, from its own /metrics. */
async function operatorMetrics(
  metricsUrl: string,
): Promise<{ used: number; total: number; external: number; reconciles: number; reconcileSeconds: number }> {
  const text = await (await fetch(`${metricsUrl}/metrics`)).text();
  const value = (series: string): number => {
    const at = text.indexOf(`\n${series} `);
    return at < 0 ? Number.NaN : Number(text.slice(at + series.length + 2, text.indexOf('\n', at + 1)));
  };
  const mib = (metric: string): number => value(metric) / 2 ** 20;
  return {
    used: mib('nodejs_heap_size_used_bytes'),
    total: mib('nodejs_heap_size_total_bytes'),
    external: mib('nodejs_external_memory_bytes'),
    reconciles: value('keyward_operator_reconcile_duration_seconds_count{controller="apikey"}'),
    reconcileSeconds: value('keyward_operator_reconcile_duration_seconds_sum{controller="apikey"}'),
  };
}

/** Signals the operator to write a heap snapshot into `dir` and waits until the file is complete. */
async function heapSnapshot(pid: number | undefined, dir: string): Promise<string> {
  const before = new Set(await readdir(dir).catch(() => []));
  if (pid === undefined) throw new Error('the operator has no pid');
  // The mappings as they are before the snapshot inflates the heap: where the RSS beyond V8's heap lives.
  await writeFile(`${dir}/smaps.${pid}`, await readFile(`/proc/${pid}/smaps`, 'utf8'));
  process.kill(pid, HEAP_SNAPSHOT_SIGNAL);
  let last = -1;
  for (;;) {
    await sleep(SNAPSHOT_POLL_MS);
    const file = (await readdir(dir).catch(() => [])).find(
      (f) => f.endsWith('.heapsnapshot') && !before.has(f),
    );
    if (file === undefined) continue;
    const size = (await stat(`${dir}/${file}`)).size;
    if (size > 0 && size === last) return `${dir}/${file}`;
    last = size;
  }
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

if (values['heap-snapshot'] !== undefined) await mkdir(values['heap-snapshot'], { recursive: true });
const postgres = await startPostgres();
const storeUrl = await createDatabase(postgres.adminUrl, 'keyward');
const arenas = chartMallocArenaMax('operator');
const cluster = await startOperatorCluster({
  name: 'bench',
  storeUrl,
  env: {
    KEYWARD_LOG_LEVEL: 'warn',
    KEYWARD_LEASE_DURATION_SECONDS: '15',
    ...(values.workers !== undefined && { KEYWARD_WORKERS: values.workers }),
    ...(nodeOptions && { NODE_OPTIONS: nodeOptions }),
    ...(arenas !== undefined && { MALLOC_ARENA_MAX: arenas }),
    ...Object.fromEntries(
      (values.env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]),
    ),
  },
  nodeFlags: chartNodeFlags(),
  accessPolicy: { usernames: ['user-*'], scopes: ['projects:*'] },
});
const db = new pg.Client({ connectionString: storeUrl });
await db.connect();
try {
  const { kc, namespace: ns, operator } = cluster;
  // The creates over kept-alive connections, as kubectl and Argo CD send them: a TLS handshake per
  // create would be the benchmark's cost charged to the API server.
  const pooled = new PooledKubeConfig();
  pooled.loadFromString(kc.exportConfig());
  const objects = new KeywardObjects(pooled, ns);
  const pid = operator.process.child.pid;
  const rssMiB = async (): Promise<number> =>
    Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
  /** utime + stime of the operator in seconds (clock ticks of 10 ms). */
  const cpuSeconds = async (): Promise<number> => {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  };
  const commits = async (): Promise<number> =>
    Number(
      (
        await db.query<{ n: string }>(
          'SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()',
        )
      ).rows[0]?.n,
    );

  const perUser = Math.ceil(total / SERVICE_USERS);
  for (let u = 0; u < SERVICE_USERS; u++) {
    await objects.create('serviceusers', {
      kind: 'ServiceUser',
      metadata: { name: `user-${u}` },
      spec: { scopes: ['projects:*'], maxKeys: Math.min(10_000, perUser) },
    });
  }
  // Lets the ServiceUsers settle so the keys' figures are the keys' own.
  await sleep(3_000);

  const createdAt = new Map<string, number>();
  const readyAt = new Map<string, number>();
  const secretAt = new Map<string, number>();
  const doneAt = new Map<string, number>();
  let allDone: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => {
    allDone = resolve;
  });
  const settle = (name: string): void => {
    const r = readyAt.get(name);
    const s = secretAt.get(name);
    if (r === undefined || s === undefined || doneAt.has(name)) return;
    doneAt.set(name, Math.max(r, s));
    if (doneAt.size === total) allDone();
  };
  const watches = [
    follow(kc, `/apis/keyward.dev/v1alpha1/namespaces/${ns}/apikeys`, {}, (key) => {
      const name = key.metadata?.name ?? '';
      if (readyAt.has(name) || !ready(key)) return;
      readyAt.set(name, performance.now());
      settle(name);
    }),
    follow(kc, `/api/v1/namespaces/${ns}/secrets`, { labelSelector: MANAGED_SECRET_SELECTOR }, (secret) => {
      const name = secret.metadata?.labels?.['keyward.dev/api-key'] ?? '';
      if (secretAt.has(name)) return;
      secretAt.set(name, performance.now());
      settle(name);
    }),
  ];

  const idleRss = await rssMiB();
  const cpu0 = await cpuSeconds();
  const tree0 = await cpuSecondsByCommand();
  const self0 = process.cpuUsage();
  const commits0 = await commits();
  const requests0 = await apiRequests(kc);
  const rss: Array<{ x: number; y: number }> = [{ x: 0, y: idleRss }];
  const progress: Array<{ x: number; y: number }> = [];
  const started = performance.now();
  let sampling = true;
  const sampler = (async (): Promise<void> => {
    while (sampling) {
      await sleep(RSS_SAMPLE_MS);
      rss.push({ x: doneAt.size, y: await rssMiB() });
      const at = Math.round((performance.now() - started) / 100) / 10;
      progress.push({ x: at, y: doneAt.size });
      if (Math.round(at) % PRINT_EVERY_S === 0)
        process.stderr.write(
          `${at} s: ${createdAt.size} created, ${readyAt.size} Ready, ${secretAt.size} Secrets, ${doneAt.size} both\n`,
        );
    }
  })();

  let next = 0;
  const creator = async (): Promise<void> => {
    while (next < total) {
      const name = `key-${next}`;
      const user = `user-${next % SERVICE_USERS}`;
      next++;
      createdAt.set(name, performance.now());
      await objects.create('apikeys', {
        kind: 'ApiKey',
        metadata: { name },
        spec: { serviceUserRef: { name: user }, scopes: ['projects:alpha'] },
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, creator));
  const applied = performance.now();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    finished,
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`only ${doneAt.size} of ${total} ApiKeys Ready with Secrets`)),
        ALL_READY_TIMEOUT_MS,
      );
    }),
  ]);
  clearTimeout(timer);
  const done = performance.now();
  const cpu1 = await cpuSeconds();
  const tree1 = await cpuSecondsByCommand();
  const self1 = process.cpuUsage(self0);
  const commits1 = await commits();
  const requests1 = await apiRequests(kc);
  await sleep(SETTLE_MS);
  const finalRss = await rssMiB();
  const heap = await operatorMetrics(operator.metricsUrl);
  sampling = false;
  await sampler;
  if (values['heap-snapshot'] !== undefined)
    print(`heap snapshot: ${await heapSnapshot(pid, values['heap-snapshot'])}`);
  rss.push({ x: total, y: finalRss });
  for (const w of watches) w.stop();

  const latencies = [...doneAt].map(([name, at]) => at - (createdAt.get(name) ?? at)).sort((a, b) => a - b);
  const seconds = (done - started) / 1000;
  const p50 = quantile(latencies, 0.5);
  const p99 = quantile(latencies, 0.99);
  const cpuPerKeyMs = ((cpu1 - cpu0) * 1000) / total;
  // The operator is the one `node` below the benchmark; the benchmark's own CPU is its watches and creates.
  const perProcess = [...tree1]
    .map(
      ([comm, s]) =>
        [comm === 'node' ? 'operator' : comm, ((s - (tree0.get(comm) ?? 0)) * 1000) / total] as const,
    )
    .concat([['benchmark', (self1.user + self1.system) / 1000 / total]])
    .filter(([, ms]) => ms >= 0.01)
    .sort((a, b) => b[1] - a[1]);
  const calls = [...requests1]
    .map(([k, n]) => [k, n - (requests0.get(k) ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1]);

  print(`## ${total} ApiKeys across ${SERVICE_USERS} ServiceUsers, ${concurrency} concurrent creates`);
  print(
    `created in ${((applied - started) / 1000).toFixed(1)} s (${Math.round(total / ((applied - started) / 1000))} creates/s)`,
  );
  print(
    `all Ready with Secrets ${seconds.toFixed(1)} s after the first create (${Math.round(total / seconds)} keys/s)`,
  );
  print(
    `per key, create → Ready with Secret: p50 ${(p50 / 1000).toFixed(2)} s, p99 ${(p99 / 1000).toFixed(2)} s`,
  );
  print(
    `operator RSS: ${idleRss.toFixed(0)} MiB idle, ${finalRss.toFixed(0)} MiB at ${total} keys (${SETTLE_MS / 1000} s after the last; V8 heap ${heap.used.toFixed(0)} MiB used of ${heap.total.toFixed(0)}, external ${heap.external.toFixed(0)} MiB)`,
  );
  print(
    `operator CPU: ${(cpu1 - cpu0).toFixed(1)} s (${cpuPerKeyMs.toFixed(2)} ms per key); store commits per key: ${((commits1 - commits0) / total).toFixed(2)}`,
  );
  print(
    `CPU per key by process: ${perProcess.map(([comm, ms]) => `${comm} ${ms.toFixed(2)} ms`).join(', ')}`,
  );
  print(
    `ApiKey reconciles: ${(heap.reconciles / total).toFixed(2)} per key, ${((heap.reconcileSeconds / heap.reconciles) * 1000).toFixed(1)} ms mean`,
  );
  print('API server requests per key (all clients: operator, benchmark, garbage collector):');
  for (const [k, n] of calls) print(`  ${k.padEnd(34)} ${(n / total).toFixed(2)}`);

  const atTarget = total >= TARGET_KEYS;
  const reduced = atTarget ? '' : ` Reduced run (${total} keys): the target applies to ${TARGET_KEYS}.`;
  results.row({
    id: 'operator-all-ready',
    measure: `${total.toLocaleString('en')} ApiKeys applied at once → all Ready with Secrets (control plane on the same machine)`,
    target: `≤ ${TARGET_SECONDS} s`,
    value: Math.round(seconds * 10) / 10,
    unit: 's',
    met: atTarget ? seconds <= TARGET_SECONDS : null,
    note: `${concurrency} concurrent creates, which took ${((applied - started) / 1000).toFixed(1)} s; operator CPU ${cpuPerKeyMs.toFixed(2)} ms per key.${reduced}`,
  });
  results.row({
    id: 'operator-key-p50',
    measure: 'per key, create → Ready with Secret, p50',
    target: 'reported',
    value: Math.round(p50) / 1000,
    unit: 's',
    met: null,
  });
  results.row({
    id: 'operator-key-p99',
    measure: 'per key, create → Ready with Secret, p99',
    target: 'reported',
    value: Math.round(p99) / 1000,
    unit: 's',
    met: null,
  });
  results.row({
    id: 'operator-rss',
    measure: `operator RSS at ${total.toLocaleString('en')} ApiKeys`,
    target: `≤ ${TARGET_RSS_MIB} MiB`,
    value: Math.round(finalRss),
    unit: 'MiB',
    met: atTarget ? finalRss <= TARGET_RSS_MIB : null,
    note: `${SETTLE_MS / 1000} s after the last key was Ready; ${Math.round(idleRss)} MiB idle; V8 heap ${Math.round(heap.used)} MiB used of ${Math.round(heap.total)} MiB.${reduced}`,
  });
  results.series('operator-key-latency', {
    kind: 'histogram',
    title: 'ApiKey create → Ready with Secret',
    unit: 's',
    samples: latencies.map((ms) => Math.round(ms) / 1000),
  });
  results.series('operator-rss', {
    kind: 'xy',
    title: 'Operator RSS against Ready ApiKeys',
    xUnit: 'ApiKeys',
    yUnit: 'MiB',
    lines: [{ label: 'RSS', points: rss.map((p) => ({ x: p.x, y: Math.round(p.y) })) }],
  });
  results.series('operator-progress', {
    kind: 'xy',
    title: 'ApiKeys Ready with Secrets against time from the first create',
    xUnit: 's',
    yUnit: 'ApiKeys',
    lines: [{ label: 'Ready', points: progress }],
  });
  results.series('operator-cpu-per-key', {
    kind: 'bars',
    title: 'CPU time per ApiKey by process, first create → all Ready (ms)',
    unit: 'ms/key',
    bars: perProcess.map(([comm, ms]) => ({ label: comm, value: Math.round(ms * 100) / 100 })),
  });
  results.series('operator-api-calls', {
    kind: 'bars',
    title: 'API server requests per ApiKey, by verb and resource (all clients)',
    unit: 'requests/key',
    bars: calls.slice(0, 12).map(([k, n]) => ({ label: k, value: Math.round((n / total) * 100) / 100 })),
  });
  await results.write(values.json);
} finally {
  await db.end();
  await cluster.stop();
  await postgres.stop();
}
