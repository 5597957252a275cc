// Micro-benchmark: lookup-by-hash on a store holding 10^6 keys, against a bare `SELECT 1` on
// the same connection in the same run, so the figure reads as "cost above a round trip".
// Usage: node dist/bench/store-lookup.js [--keys N] [--lookups N] [--database-url URL] [--json file]
// Without --database-url it starts a private Postgres (devenv/postgres.ts) and removes it.
import { createHash, randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createDatabase, startPostgres } from '../devenv/postgres.js';
import { lookupByHash } from '../store/lookup.js';
import { migrate } from '../store/migrate.js';
import { ResultWriter } from './lib/results.js';

const USERS = 1_000;

function benchToken(i: number): string {
  return `bench-token-${i}`;
}

function hashOf(i: number): Buffer {
  return createHash('sha256').update(benchToken(i)).digest();
}

async function load(pool: pg.Pool, keys: number): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(
      `INSERT INTO service_users (namespace, name, uid, username, groups, scopes)
       SELECT 'bench', 'u' || i, 'user-uid-' || i, 'bench-u' || i, '{bench}', '{projects:*}'
         FROM generate_series(1, $1) AS i`,
      [USERS],
    );
    await client.query(
      `INSERT INTO api_keys (key_id, service_user_id, namespace, name, uid, scopes)
       SELECT 'key_' || lpad(i::text, 16, '0'), u.id, 'bench', 'k' || i, 'key-uid-' || i,
              CASE WHEN i % 2 = 0 THEN '{projects:alpha}'::text[] END
         FROM generate_series(1, $1) AS i
         JOIN service_users u ON u.name = 'u' || (1 + i % $2)`,
      [keys, USERS],
    );
    // The hash is computed by Postgres from the same text the benchmark hashes in Node.
    await client.query(
      `INSERT INTO api_key_secrets (hash, api_key_id, display_prefix)
       SELECT sha256(convert_to('bench-token-' || substr(k.name, 2), 'UTF8')), k.id, 'kw_abcd'
         FROM api_keys k`,
    );
    await client.query('COMMIT');
  } finally {
    client.release();
  }
  await pool.query('VACUUM ANALYZE');
}

interface Stats {
  p50: number;
  p90: number;
  p99: number;
  mean: number;
}

function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return {
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
  };
}

async function timed(run: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await run();
  return Number(process.hrtime.bigint() - start) / 1_000;
}

const QUANTILES = [0.5, 0.75, 0.9, 0.95, 0.99, 0.999];

function record(
  writer: ResultWriter,
  samples: Record<'select1' | 'hit' | 'miss', number[]>,
  sizes: { keys: number; lookups: number },
): void {
  const note = `${sizes.lookups.toLocaleString('en')} calls of each kind interleaved, one connection, in sequence, ${sizes.keys.toLocaleString('en')} keys; one run, so no spread.`;
  const select1 = stats(samples.select1);
  for (const [kind, words] of [
    ['hit', 'a key in the store'],
    ['miss', 'an unknown hash'],
  ] as const) {
    const s = stats(samples[kind]);
    writer.row({
      id: `store-lookup-${kind}-p50`,
      measure: `\`lookupByHash\` of ${words}, p50 above a bare \`SELECT 1\` (${Math.round(select1.p50)} µs)`,
      target: 'reported',
      value: Math.round(s.p50 - select1.p50),
      unit: 'µs',
      met: null,
      note: `${note} p99 ${Math.round(s.p99)} µs against ${Math.round(select1.p99)} µs for \`SELECT 1\`.`,
    });
  }
  writer.series('store-lookup', {
    kind: 'quantiles',
    title: 'Store lookup over loopback, one connection (µs per call)',
    unit: 'µs',
    lines: Object.entries(samples).map(([label, values]) => {
      const sorted = [...values].sort((a, b) => a - b);
      return {
        label,
        points: QUANTILES.map((q) => ({
          q,
          value: sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!,
        })),
      };
    }),
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      keys: { type: 'string', default: '1000000' },
      lookups: { type: 'string', default: '20000' },
      'database-url': { type: 'string' },
      json: { type: 'string' },
    },
  });
  const writer = new ResultWriter('store-lookup');
  const keys = Number(values.keys);
  const lookups = Number(values.lookups);
  const server = values['database-url'] ? undefined : await startPostgres();
  let url = values['database-url'] ?? '';
  try {
    if (server) {
      url = await createDatabase(server.adminUrl, 'bench');
    }
    await migrate(url);
    // One connection, as one webhook request sees it; the named statement is prepared once on it.
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    // A connection lost while idle would otherwise crash the run with the whole client object printed.
    pool.on('error', (err) => console.error(`connection lost: ${err.message}`));
    try {
      const existing = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM api_keys');
      if (existing.rows[0]?.n === 0) {
        const loadMs = await timed(() => load(pool, keys));
        console.log(`loaded ${keys} keys in ${(loadMs / 1_000_000).toFixed(1)} s`);
      } else {
        console.log(`using the ${existing.rows[0]?.n} keys already in the database`);
      }
      const hit = async (): Promise<void> => {
        const found = await lookupByHash(pool, hashOf(randomInt(1, keys + 1)));
        if (!found) throw new Error('a loaded key was not found');
      };
      const miss = async (): Promise<void> => {
        await lookupByHash(pool, hashOf(-randomInt(1, keys + 1)));
      };
      const select1 = (): Promise<unknown> => pool.query('SELECT 1');
      for (let i = 0; i < 2_000; i++) {
        await hit();
        await select1();
      }
      const samples = { select1: [] as number[], hit: [] as number[], miss: [] as number[] };
      // Interleaved, so drift in machine load hits all three alike.
      for (let i = 0; i < lookups; i++) {
        samples.select1.push(await timed(select1));
        samples.hit.push(await timed(hit));
        samples.miss.push(await timed(miss));
      }
      const rows = Object.entries(samples).map(([name, s]) => ({ name, ...stats(s) }));
      console.log(`${lookups} of each, µs per call over loopback (one connection, sequential):`);
      console.log('| query | p50 | p90 | p99 | mean |');
      console.log('|---|---:|---:|---:|---:|');
      for (const r of rows) {
        console.log(
          `| ${r.name} | ${r.p50.toFixed(0)} | ${r.p90.toFixed(0)} | ${r.p99.toFixed(0)} | ${r.mean.toFixed(0)} |`,
        );
      }
      const plan = await pool.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN SELECT 1 FROM api_key_secrets s JOIN api_keys k ON k.id = s.api_key_id
          JOIN service_users u ON u.id = k.service_user_id WHERE s.hash = $1`,
        [hashOf(1)],
      );
      console.log(`plan:\n${plan.rows.map((r) => `  ${r['QUERY PLAN']}`).join('\n')}`);
      record(writer, samples, { keys, lookups });
      await writer.write(values.json);
    } finally {
      await pool.end();
    }
  } finally {
    await server?.stop();
  }
}

await main();
