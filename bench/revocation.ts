// Revocation benchmarks (bench/README.md): (1) a store commit revoking a key → two webhook replicas
// answer 401, while wrk offers them half of their measured maximum; (2) end to end, deleting an
// ApiKey or suspending its ServiceUser through the API server → the webhook answers 401.
//
// Usage: npx tsc -p tsconfig.json && node dist/bench/revocation.js [--only store,e2e]
//        [--trials 200] [--e2e-trials 100] [--duration 5] [--json <file>]
// Needs wrk and taskset (apt-get install -y wrk util-linux), the cached control plane (devenv/).
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createDatabase, startPostgres } from '../devenv/postgres.js';
import { PinnedProcesses } from './lib/processes.js';
import { ResultWriter } from './lib/results.js';
import { formatSummary, summarize } from './lib/samples.js';
import { measureEndToEnd, type Trial } from './revocation/end-to-end.js';
import { measureStoreRevocation } from './revocation/store-under-load.js';

const STORE_TARGET_P99_MS = 10;
const END_TO_END_TARGET_P99_MS = 1000;

const { values } = parseArgs({
  options: {
    only: { type: 'string', default: 'store,e2e' },
    trials: { type: 'string', default: '200' },
    'e2e-trials': { type: 'string', default: '100' },
    duration: { type: 'string', default: '5' },
    json: { type: 'string' },
  },
});
const PARTS = ['store', 'e2e'];
const only = new Set(values.only.split(','));
for (const part of only) {
  if (!PARTS.includes(part)) throw new Error(`--only ${part}: the parts are ${PARTS.join(', ')}`);
}
const started = performance.now();
const print = (line: string): void => {
  process.stdout.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${line}\n`);
};
const results = new ResultWriter('revocation');
const work = await mkdtemp(join(tmpdir(), 'keyward-bench-revocation-'));
const processes = new PinnedProcesses(work);
const postgres = await startPostgres();
print(`logs in ${work}`);

try {
  if (only.has('store')) {
    const r = await measureStoreRevocation({
      storeUrl: await createDatabase(postgres.adminUrl, 'revocation_store'),
      processes,
      trials: Number(values.trials),
      seconds: Number(values.duration),
      print,
    });
    const idle = summarize(r.unloaded);
    const loaded = summarize(r.loaded);
    const notifyIdle = summarize(r.notifyIdle);
    const notifyLoaded = summarize(r.notifyLoaded);
    print('## revocation, store commit → both replicas (CPU 0, CPU 1) answer 401');
    print(`idle replicas:          ${formatSummary(idle)}`);
    print(`  the NOTIFY alone, at a bare LISTEN client: ${formatSummary(notifyIdle)}`);
    print(
      `at ${Math.round(r.achievedRps)} req/s offered: ${formatSummary(loaded)} (target p99 ≤ ${STORE_TARGET_P99_MS} ms)`,
    );
    print(`  the NOTIFY alone, at a bare LISTEN client: ${formatSummary(notifyLoaded)}`);
    const floor = (s: typeof idle): string =>
      `the NOTIFY alone reached a bare LISTEN client in the benchmark process at p50 ${s.p50.toFixed(2)} / p99 ${s.p99.toFixed(2)} ms`;
    const load = `wrk offered ${Math.round(r.achievedRps).toLocaleString('en')} req/s of cache hits (${((r.achievedRps / r.maxRps) * 100).toFixed(0)} % of the ${Math.round(r.maxRps).toLocaleString('en')} req/s maximum measured just before)`;
    results.row({
      id: 'revocation-store-under-load',
      measure: 'revocation, store commit → 2 replicas answer 401, while serving 50 % of max load',
      target: `p99 ≤ ${STORE_TARGET_P99_MS} ms`,
      value: loaded.p99,
      unit: 'ms',
      met: loaded.p99 <= STORE_TARGET_P99_MS,
      note: `${loaded.n} trials while ${load}; p50 ${loaded.p50.toFixed(2)} ms, max ${loaded.max.toFixed(2)} ms; ${floor(notifyLoaded)}. Includes the poll's /verify in flight when the NOTIFY lands and the one answered 401.`,
    });
    results.row({
      id: 'revocation-store-idle',
      measure: 'revocation, store commit → 2 replicas answer 401, replicas idle',
      target: 'reported',
      value: idle.p99,
      unit: 'ms',
      met: null,
      note: `${idle.n} trials; p50 ${idle.p50.toFixed(2)} ms, max ${idle.max.toFixed(2)} ms; ${floor(notifyIdle)}.`,
    });
    results.series('revocation-store-under-load', {
      kind: 'histogram',
      title: 'Revocation, store commit → both replicas answer 401, at half of max load',
      unit: 'ms',
      samples: r.loaded,
    });
    results.series('revocation-store-idle', {
      kind: 'histogram',
      title: 'Revocation, store commit → both replicas answer 401, idle replicas',
      unit: 'ms',
      samples: r.unloaded,
    });
  }

  if (only.has('e2e')) {
    const r = await measureEndToEnd({
      storeUrl: await createDatabase(postgres.adminUrl, 'revocation_e2e'),
      processes,
      trials: Number(values['e2e-trials']),
      print,
    });
    print('## revocation end to end, API call returned → webhook answers 401 (polled every 5 ms)');
    const kinds: Array<{ id: string; label: string; trials: Trial[] }> = [
      { id: 'delete', label: 'ApiKey deleted', trials: r.deletes },
      { id: 'suspend', label: 'ServiceUser suspended', trials: r.suspends },
    ];
    for (const k of kinds) {
      const total = summarize(k.trials.map((t) => t.total));
      const toStore = summarize(k.trials.map((t) => t.toStore));
      const fromStore = summarize(k.trials.map((t) => t.storeTo401));
      print(`${k.label}: ${formatSummary(total)} (target p99 ≤ ${END_TO_END_TARGET_P99_MS} ms)`);
      print(`  API return → store transaction start: ${formatSummary(toStore)}`);
      print(`  store transaction start → 401:        ${formatSummary(fromStore)}`);
      results.row({
        id: `revocation-end-to-end-${k.id}`,
        measure: `revocation end to end, ${k.label} through the API server → webhook answers 401`,
        target: `p99 ≤ ${END_TO_END_TARGET_P99_MS / 1000} s`,
        value: total.p99,
        unit: 'ms',
        met: total.p99 <= END_TO_END_TARGET_P99_MS,
        note: `${total.n} trials; p50 ${total.p50.toFixed(1)} ms, max ${total.max.toFixed(1)} ms; API return → store transaction p50 ${toStore.p50.toFixed(1)} / p99 ${toStore.p99.toFixed(1)} ms, then → 401 p50 ${fromStore.p50.toFixed(1)} / p99 ${fromStore.p99.toFixed(1)} ms. Polled every 5 ms.`,
      });
      results.series(`revocation-end-to-end-${k.id}`, {
        kind: 'histogram',
        title: `Revocation end to end, ${k.label} → 401`,
        unit: 'ms',
        samples: k.trials.map((t) => t.total),
      });
    }
    const all = summarize([...r.deletes, ...r.suspends].map((t) => t.total));
    results.row({
      id: 'revocation-end-to-end',
      measure: 'revocation end to end, `kubectl` delete/suspend → 401',
      target: `p99 ≤ ${END_TO_END_TARGET_P99_MS / 1000} s`,
      value: all.p99,
      unit: 'ms',
      met: all.p99 <= END_TO_END_TARGET_P99_MS,
      note: `${r.deletes.length} ApiKey deletes and ${r.suspends.length} ServiceUser suspensions together; p50 ${all.p50.toFixed(1)} ms, max ${all.max.toFixed(1)} ms. Per kind: rows revocation-end-to-end-delete and -suspend.`,
    });
    print(
      `operator mean reconcile: ${Object.entries(r.reconcileMeanMs)
        .map(([c, ms]) => `${c} ${ms.toFixed(1)} ms`)
        .join(', ')}; operator log: ${r.operatorLog}`,
    );
  }
  await results.write(values.json);
} finally {
  await processes.stopAll();
  await postgres.stop();
}
