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
import type pg from 'pg';
import { generateToken } from '../../credentials/token.js';
import { createDatabase, startPostgres, type TestPostgres } from '../../devenv/postgres.js';
import { PinnedProcesses } from '../lib/processes.js';
import { ResultWriter } from '../lib/results.js';
import { BenchStore } from '../lib/store.js';
import { GENERATOR_CPU, SERVER_CPU, taskset } from '../lib/tools.js';
import { startWebhook, type Webhook } from '../lib/webhook.js';
import { Wrk } from '../lib/wrk.js';

export interface Sizes {
  /** Seconds per measured wrk run. */
  readonly duration: number;
  /** Rounds of every side-by-side comparison. */
  readonly rounds: number;
  /**
   * Rounds of the request log's cost: its target (5 %) is within the spread of five rounds
   * (two identical servers differ by up to 4 % in one round), so it gets more.
   */
  readonly auditRounds: number;
  /** Runs at full and at half load of the miss path (each on a fresh webhook). */
  readonly missRounds: number;
  /** Keys in the store for the miss path. */
  readonly keys: number;
  /** Cached entries at the memory part's last step. */
  readonly entries: number;
}

/** Short runs before measuring, so the JIT and the cache are warm in every side alike. */
export const WARM_UP_SECONDS = 3;
/** Far more entries than any part caches, so eviction never decides a figure. */
const CACHE_MAX_ENTRIES = '200000';
/** Rows per bulk INSERT: one statement's parameters stay well below a megabyte per array. */
const BULK_BATCH = 20_000;
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
  readonly bench: BenchStore;
  readonly pool: pg.Pool;
  /** Tokens of the keys bulkKeys() loaded so far. */
  readonly loaded: string[] = [];
  /** Median cache-hit req/s, once the throughput part has measured it. */
  maxHitRps = 0;
  #shared: Webhook | undefined;

  private constructor(
    sizes: Sizes,
    work: string,
    postgres: TestPostgres,
    storeUrl: string,
    bench: BenchStore,
  ) {
    this.sizes = sizes;
    this.work = work;
    this.procs = new PinnedProcesses(work);
    this.wrk = new Wrk(work);
    this.postgres = postgres;
    this.storeUrl = storeUrl;
    this.bench = bench;
    this.pool = bench.pool;
  }

  static async start(sizes: Sizes): Promise<Harness> {
    const work = await mkdtemp(join(tmpdir(), 'keyward-bench-'));
    const postgres = await startPostgres();
    await pinPostgres(postgres, GENERATOR_CPU);
    const storeUrl = await createDatabase(postgres.adminUrl, 'bench');
    const bench = await BenchStore.open(storeUrl, {
      name: 'bench-user',
      description: 'benchmark',
      groups: ['team-a', 'ops'],
    });
    return new Harness(sizes, work, postgres, storeUrl, bench);
  }

  print(line: string): void {
    process.stdout.write(`${line}\n`);
  }

  /** Issues one key of the bench user through the store API, as the operator does. */
  issue(): Promise<{ token: string; uid: string }> {
    return this.bench.issue();
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
        [generated.map((g) => g.hash), generated.map((g) => g.displayPrefix), start, this.bench.user.uid],
      );
    }
    await this.pool.query('VACUUM ANALYZE');
    return tokens;
  }

  /** Starts `keyward webhook` from dist/ on the server CPU and waits for /readyz. */
  startWebhook(name: string, env: Record<string, string> = {}, cpu = SERVER_CPU): Promise<Webhook> {
    return startWebhook(this.procs, {
      name,
      storeUrl: this.storeUrl,
      cpu,
      env: { KEYWARD_CACHE_MAX_ENTRIES: CACHE_MAX_ENTRIES, ...env },
    });
  }

  /** The webhook with production defaults that the hit-path parts share. */
  async webhook(): Promise<Webhook> {
    this.#shared ??= await this.startWebhook('webhook');
    return this.#shared;
  }

  /**
   * Stops every server the parts before started (the shared webhook too; webhook() starts it
   * again): a part that splits the server CPU between servers of its own then has it to itself.
   */
  async quiesce(): Promise<void> {
    await this.procs.stopAll();
    this.#shared = undefined;
  }

  async metrics(webhook: Webhook): Promise<string> {
    return await (await fetch(`${webhook.metricsUrl}/metrics`)).text();
  }

  async stop(): Promise<void> {
    await this.procs.stopAll();
    await this.bench.end();
    await this.postgres.stop();
  }
}
