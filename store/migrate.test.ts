import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateCommand } from '../cli/migrate.js';
import { testDatabase } from '../test/harness/database.js';
import { defaultMigrationsDir, loadMigrations, migrate } from './migrate.js';

async function tables(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ table_name: string }>(
      // Day partitions of request_log come and go with the date; the partitioned table stays.
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'
          AND table_name !~ '^request_log_[0-9]{8}$' ORDER BY 1`,
    );
    return rows.map((r) => r.table_name);
  } finally {
    await client.end();
  }
}

describe('migrate', () => {
  const latest = loadMigrations().length;

  it('applies every migration to an empty database, then re-applies as a no-op', async () => {
    const url = await testDatabase();
    expect(await tables(url)).toEqual([]);
    const first = await migrate(url);
    expect(first).toEqual({ applied: Array.from({ length: latest }, (_, i) => i + 1), version: latest });
    expect(await tables(url)).toEqual([
      'api_key_secrets',
      'api_key_usage',
      'api_keys',
      'audit_events',
      'change_log',
      'keyward_schema_migrations',
      'leak_reports',
      'rate_limit_counters',
      'rate_limit_definitions',
      'request_log',
      'service_users',
    ]);
    expect(await migrate(url)).toEqual({ applied: [], version: latest });
  });

  it('lets concurrent runs (replicas, two `keyward migrate` jobs) all succeed, applying each migration once', async () => {
    const url = await testDatabase();
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(`ERR ${l}`) };
    const codes = await Promise.all([
      migrateCommand({ storeUrl: url }, io),
      migrateCommand({ storeUrl: url }, io),
      migrateCommand({ storeUrl: url }, io),
      migrateCommand({ storeUrl: url }, io),
    ]);
    expect(codes).toEqual([0, 0, 0, 0]);
    expect(lines.filter((l) => l.startsWith('applied'))).toHaveLength(1);
    expect(lines.filter((l) => l.startsWith('schema is up to date'))).toHaveLength(3);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const { rows } = await client.query('SELECT version FROM keyward_schema_migrations');
    await client.end();
    expect(rows).toHaveLength(latest);
  });

  it('keyward migrate reads the URL from KEYWARD_STORE_URL_FILE (how the chart mounts it), never echoing it', async () => {
    const url = await testDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'keyward-url-'));
    try {
      writeFileSync(join(dir, 'url'), `${url}\n`);
      const lines: string[] = [];
      const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(`ERR ${l}`) };
      expect(await migrateCommand({}, io, { KEYWARD_STORE_URL_FILE: join(dir, 'url') })).toBe(0);
      expect(lines).toEqual([
        expect.stringMatching(new RegExp(`^applied migrations? [0-9, ]+; schema version ${latest}$`)),
      ]);
      lines.length = 0;
      expect(await migrateCommand({}, io, { KEYWARD_STORE_URL_FILE: join(dir, 'missing') })).toBe(2);
      expect(lines).toEqual([
        `ERR keyward migrate: KEYWARD_STORE_URL_FILE: cannot read ${join(dir, 'missing')} (ENOENT)`,
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('works through a pool as well', async () => {
    const pool = new pg.Pool({ connectionString: await testDatabase() });
    try {
      expect((await migrate(pool)).version).toBe(latest);
      expect((await migrate(pool)).applied).toEqual([]);
    } finally {
      await pool.end();
    }
  });

  describe('with a migrations directory of its own', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'keyward-migrations-'));
      cpSync(defaultMigrationsDir(), dir, { recursive: true });
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('applies a new migration forward, refuses an edited one, and a database newer than itself', async () => {
      const url = await testDatabase();
      await migrate(url, { migrationsDir: dir });
      const next = String(latest + 1).padStart(4, '0');
      writeFileSync(join(dir, `${next}_extra.sql`), 'CREATE TABLE extra (id int);');
      expect(await migrate(url, { migrationsDir: dir })).toEqual({
        applied: [latest + 1],
        version: latest + 1,
      });

      await expect(migrate(url)).rejects.toThrow(/newer than this keyward/);

      writeFileSync(join(dir, `${next}_extra.sql`), 'CREATE TABLE extra (id bigint);');
      await expect(migrate(url, { migrationsDir: dir })).rejects.toThrow(/was changed after it was applied/);
    });

    it('rolls back a failing migration entirely and reports it', async () => {
      const url = await testDatabase();
      await migrate(url);
      const broken = mkdtempSync(join(tmpdir(), 'keyward-migrations-'));
      try {
        cpSync(defaultMigrationsDir(), broken, { recursive: true });
        const next = String(latest + 1).padStart(4, '0');
        writeFileSync(
          join(broken, `${next}_broken.sql`),
          'CREATE TABLE half (id int); SELECT no_such_function();',
        );
        await expect(migrate(url, { migrationsDir: broken })).rejects.toThrow(/no_such_function/);
        expect(await tables(url)).not.toContain('half');
        // The failed run released its lock: a good run goes through.
        expect(await migrate(url)).toEqual({ applied: [], version: latest });
      } finally {
        rmSync(broken, { recursive: true, force: true });
      }
    });
  });

  it('keyward migrate without a database is a usage error, and never prints the URL', async () => {
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    expect(await migrateCommand({}, io, {})).toBe(2);
    expect(lines.join('\n')).toMatch(/KEYWARD_STORE_URL/);
    lines.length = 0;
    const url = 'postgres://keyward:s3cret-password@127.0.0.1:1/none';
    expect(await migrateCommand({ storeUrl: url }, io, {})).toBe(1);
    expect(lines.join('\n')).not.toContain('s3cret-password');
  });
});
