// What every part of the webhook benchmark shares: a private Postgres with the keyward schema (on
// the generator CPU beside wrk, away from the server under test), the bench user and its keys
// (real tokens, real hashes, issued through the operator's store API or bulk-loaded),
// `keyward webhook` processes from dist/ pinned to the server CPU, wrk, and the result writer the
// parts add their rows and series to.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { generateToken } from '../../credentials/token.js';
import { createDatabase, startPostgres, type TestPostgres } from '../../devenv/postgres.js';
import { freePort, type ManagedProcess, waitUntilReady } from '../../devenv/process.js';
import { repoRoot } from '../../devenv/repo.js';
import { migrate } from '../../store/migrate.js';
import { OperatorStore } from '../../store/operator-store.js';
import { PinnedProcesses } from '../lib/processes.js';
import { ResultWriter } from '../lib/results.js';
import { GENERATOR_CPU, SERVER_CPU, taskset } from '../lib/tools.js';
import { Wrk } from '../lib/wrk.js';

export interface Sizes {
  /** Seconds per measured wrk run. */
  readonly duration: number;
  /** Rounds of every side-by-side comparison. */
  readonly rounds: number;
  /** Runs at full and at half load of the miss path (each on a fresh webhook). */
  readonly missRounds: number;
  /** Keys in the store for the miss path. */
  readonly keys: number;
  /** Cached entries at the memory part's last step. */
  readonly entries: number;
}

export interface Webhook {
  readonly url: string;
  readonly metricsUrl: string;
  readonly proc: ManagedProcess;
}

/** Short runs before measuring, so the JIT and the cache are warm in every side alike. */
export const WARM_UP_SECONDS = 3;
/** Far more entries than any part caches, so eviction never decides a figure. */
const CACHE_MAX_ENTRIES = '200000';
const READY_TIMEOUT_MS = 30_000;
/** Rows per bulk INSERT: one statement's parameters stay well below a megabyte per array. */
const BULK_BATCH = 20_000;
const userRef = { namespace: 'bench', name: 'bench-user', uid: 'bench-user-uid' };
const run = promisify(execFile);

/**
 * Moves every process of the cluster, and so the backends it forks from then on, to `cpu`. The
 * store's work (lookups, request-log inserts) runs on another machine in a real cluster; on the
 * server CPU it would be counted as the webhook's.
 */
async function pinPostgres(postgres: TestPostgres, cpu: number): Promise<void> {
  const postmaster = (await readFile(join(postgres.dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]!;
  const { stdout } = await run('pgrep', ['-P', postmaster]).catch(() => ({ stdout: '' }));
  for (const pid of [postmaster, ...stdout.split('\n').filter(Boolean)]) {
    await run(taskset(), ['-a', '-cp', String(cpu), pid]).catch(() => undefined);
  }
}

export class Harness {
  readonly sizes: Sizes;
  readonly work: string;
  readonly procs: PinnedProcesses;
  readonly wrk: Wrk;
  readonly writer = new ResultWriter('webhook');
  readonly postgres: TestPostgres;
  readonly storeUrl: string;
  readonly pool: pg.Pool;
  readonly store: OperatorStore;
  /** Tokens of the keys bulkKeys() loaded so far. */
  readonly loaded: string[] = [];
  /** Median cache-hit req/s, once the throughput part has measured it. */
  maxHitRps = 0;
  #keyCounter = 0;
  #shared: Webhook | undefined;

  private constructor(sizes: Sizes, work: string, postgres: TestPostgres, storeUrl: string) {
    this.sizes = sizes;
    this.work = work;
    this.procs = new PinnedProcesses(work);
    this.wrk = new Wrk(work);
    this.postgres = postgres;
    this.storeUrl = storeUrl;
    this.pool = new pg.Pool({ connectionString: storeUrl, max: 4 });
    // Idle clients see the cluster's own shutdown at the end; that is not a failure of the run.
    this.pool.on('error', () => undefined);
    this.store = new OperatorStore(this.pool, { actor: 'bench' });
  }

  static async start(sizes: Sizes): Promise<Harness> {
    const work = await mkdtemp(join(tmpdir(), 'keyward-bench-'));
    const postgres = await startPostgres();
    await pinPostgres(postgres, GENERATOR_CPU);
    const storeUrl = await createDatabase(postgres.adminUrl, 'bench');
    await migrate(storeUrl);
    const harness = new Harness(sizes, work, postgres, storeUrl);
    await harness.store.upsertServiceUser({
      ref: userRef,
      username: 'bench-user',
      description: 'benchmark',
      contact: null,
      groups: ['team-a', 'ops'],
      scopes: ['projects:*'],
      suspended: false,
    });
    return harness;
  }

  print(line: string): void {
    process.stdout.write(`${line}\n`);
  }

  /** Issues one key of the bench user through the store API, as the operator does. */
  async issue(): Promise<{ token: string; uid: string }> {
    this.#keyCounter += 1;
    const generated = generateToken();
    const n = this.#keyCounter;
    const ref = { namespace: 'bench', name: `key-${n}`, uid: `key-uid-${n}` };
    const result = await this.store.issueKey({
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

  /** Bulk-loads n more keys of the bench user in batches and returns their tokens. */
  async bulkKeys(n: number): Promise<string[]> {
    const tokens: string[] = [];
    for (let done = 0; done < n; done += BULK_BATCH) {
      const start = this.loaded.length;
      const generated = Array.from({ length: Math.min(BULK_BATCH, n - done) }, () => generateToken());
      for (const g of generated) tokens.push(g.token);
      for (const g of generated) this.loaded.push(g.token);
      await this.pool.query(
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
    await this.pool.query('VACUUM ANALYZE');
    return tokens;
  }

  /** Starts `keyward webhook` from dist/ on the server CPU and waits for /readyz. */
  async startWebhook(name: string, env: Record<string, string> = {}, cpu = SERVER_CPU): Promise<Webhook> {
    const port = await freePort();
    const metricsPort = await freePort();
    const proc = this.procs.start(
      name,
      cpu,
      [process.execPath, join(repoRoot(), 'dist', 'cli', 'main.js'), 'webhook'],
      {
        KEYWARD_STORE_URL: this.storeUrl,
        KEYWARD_WEBHOOK_LISTEN: `127.0.0.1:${port}`,
        KEYWARD_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
        KEYWARD_LOG_LEVEL: 'warn',
        KEYWARD_CACHE_MAX_ENTRIES: CACHE_MAX_ENTRIES,
        ...env,
      },
    );
    const url = `http://127.0.0.1:${port}`;
    await waitUntilReady(proc, async () => (await fetch(`${url}/readyz`)).ok, READY_TIMEOUT_MS, 'ready');
    return { url, metricsUrl: `http://127.0.0.1:${metricsPort}`, proc };
  }

  /** The webhook with production defaults that the hit-path parts share. */
  async webhook(): Promise<Webhook> {
    this.#shared ??= await this.startWebhook('webhook');
    return this.#shared;
  }

  async metrics(webhook: Webhook): Promise<string> {
    return await (await fetch(`${webhook.metricsUrl}/metrics`)).text();
  }

  async stop(): Promise<void> {
    await this.procs.stopAll();
    await this.pool.end();
    await this.postgres.stop();
  }
}
