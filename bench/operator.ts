// Operator benchmark (bench/README.md): time from applying 1,000 ApiKeys across 10 ServiceUsers to
// all Ready=True with their Secrets written, then operator RSS once 10,000 ApiKeys are Ready.
// Usage: npx tsc -p tsconfig.json && node dist/bench/operator.js [--keys 1000] [--total 10000]
// Starts a private Postgres and control plane (devenv/) and the operator as a child process
// with its least-privilege RBAC, exactly as the end-to-end tests run it.
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { startOperatorCluster } from '../devenv/operator.js';
import { eventually } from '../devenv/poll.js';
import { createDatabase, startPostgres } from '../devenv/postgres.js';

/** Far beyond what the largest run takes; only stops a benchmark whose operator is stuck. */
const ALL_READY_TIMEOUT_MS = 15 * 60_000;

const { values } = parseArgs({
  options: { keys: { type: 'string', default: '1000' }, total: { type: 'string', default: '10000' } },
});
const first = Number(values.keys);
const total = Number(values.total);
const print = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

const postgres = await startPostgres();
const cluster = await startOperatorCluster({
  name: 'bench',
  storeUrl: await createDatabase(postgres.adminUrl, 'keyward'),
  env: { KEYWARD_LOG_LEVEL: 'warn', KEYWARD_LEASE_DURATION_SECONDS: '15' },
  accessPolicy: { usernames: ['user-*'], scopes: ['projects:*'] },
});
try {
  const { kc, namespace: ns, objects, operator } = cluster;
  const rssMiB = async (): Promise<number> =>
    Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${operator.process.child.pid}/status`, 'utf8'))?.[1]) /
    1024;

  for (let u = 0; u < 10; u++) {
    await objects.create('serviceusers', {
      kind: 'ServiceUser',
      metadata: { name: `user-${u}` },
      spec: { scopes: ['projects:*'], maxKeys: 2000 },
    });
  }
  const custom = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const readyCount = async (): Promise<{ ready: number; secrets: number }> => {
    const keys = (await custom.listNamespacedCustomObject({
      group: 'keyward.dev',
      version: 'v1alpha1',
      namespace: ns,
      plural: 'apikeys',
    })) as { items: Array<{ status?: { conditions?: Array<{ type: string; status: string }> } }> };
    const ready = keys.items.filter((k) =>
      k.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
    ).length;
    const secrets = (
      await core.listNamespacedSecret({
        namespace: ns,
        labelSelector: 'app.kubernetes.io/managed-by=keyward',
      })
    ).items.length;
    return { ready, secrets };
  };
  const apply = async (from: number, to: number): Promise<void> => {
    let next = from;
    const worker = async (): Promise<void> => {
      while (next < to) {
        const i = next++;
        await objects.create('apikeys', {
          kind: 'ApiKey',
          metadata: { name: `key-${i}` },
          spec: { serviceUserRef: { name: `user-${i % 10}` }, scopes: ['projects:alpha'] },
        });
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
  };
  const waitAll = async (n: number): Promise<void> => {
    await eventually(
      `${n} ApiKeys Ready with their Secrets`,
      async () => {
        const { ready, secrets } = await readyCount();
        return ready >= n && secrets >= n;
      },
      ALL_READY_TIMEOUT_MS,
    );
  };

  const baseline = await rssMiB();
  const started = performance.now();
  await apply(0, first);
  const applied = performance.now();
  await waitAll(first);
  const done = performance.now();
  print(`## ${first} ApiKeys across 10 ServiceUsers`);
  print(
    `applied in ${((applied - started) / 1000).toFixed(1)} s (16 concurrent creates); all Ready with Secrets ${((done - started) / 1000).toFixed(1)} s after the first create (${Math.round(first / ((done - started) / 1000))} keys/s)`,
  );
  print(`operator RSS: ${baseline.toFixed(0)} MiB idle, ${(await rssMiB()).toFixed(0)} MiB at ${first} keys`);

  if (total > first) {
    const t0 = performance.now();
    await apply(first, total);
    await waitAll(total);
    const t1 = performance.now();
    await sleep(5000);
    global.gc?.();
    print(
      `## ${total} ApiKeys: the other ${total - first} Ready in ${((t1 - t0) / 1000).toFixed(1)} s; operator RSS ${(await rssMiB()).toFixed(0)} MiB`,
    );
  }
} finally {
  await cluster.stop();
  await postgres.stop();
}
