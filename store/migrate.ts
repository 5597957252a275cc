import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { StoreError } from './errors.js';

/** One SQL file of store/migrations, `NNNN_name.sql`. */
interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
}

export interface MigrateResult {
  /** Versions applied by this run, in order; empty when the schema was already current. */
  readonly applied: number[];
  /** Schema version after the run. */
  readonly version: number;
}

const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;
// Every keyward process that migrates takes this session lock, so replicas started together
// (or two `keyward migrate` Jobs) apply each migration exactly once, one after the other.
const LOCK_SQL = `SELECT pg_advisory_lock(hashtextextended('keyward:migrate', 0))`;
const UNLOCK_SQL = `SELECT pg_advisory_unlock(hashtextextended('keyward:migrate', 0))`;

/**
 * The migrations directory: beside this module when run from source, and at the same place in
 * the repository (store/migrations) when run from the compiled dist/store/.
 */
export function defaultMigrationsDir(): string {
  const candidates = [
    fileURLToPath(new URL('./migrations/', import.meta.url)),
    fileURLToPath(new URL('../../store/migrations/', import.meta.url)),
  ];
  const found = candidates.find((dir) => existsSync(dir));
  if (!found) throw new Error(`store migrations not found (looked in ${candidates.join(', ')})`);
  return found;
}

export function loadMigrations(dir: string = defaultMigrationsDir()): Migration[] {
  const migrations = readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .map((file): Migration => {
      const match = FILE_PATTERN.exec(file);
      if (!match) throw new Error(`migration file ${file} is not named NNNN_name.sql`);
      const sql = readFileSync(join(dir, file), 'utf8');
      return {
        version: Number(match[1]),
        name: match[2]!,
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
      };
    })
    .sort((a, b) => a.version - b.version);
  migrations.forEach((m, i) => {
    if (m.version !== i + 1)
      throw new Error(`migrations must be numbered 1, 2, 3… without gaps; found ${m.version}`);
  });
  return migrations;
}

/**
 * Brings the schema up to date: forward-only, each migration in its own transaction, recorded in
 * keyward_schema_migrations, all under a session advisory lock. Re-running is a no-op. Refuses a
 * database whose recorded migrations differ from these files or that is newer than this build.
 */
export async function migrate(
  target: string | pg.Pool,
  options: { migrationsDir?: string } = {},
): Promise<MigrateResult> {
  const migrations = loadMigrations(options.migrationsDir);
  let client: pg.ClientBase;
  let done: (err?: Error) => Promise<void>;
  try {
    if (typeof target === 'string') {
      const own = new pg.Client({ connectionString: target });
      // A lost connection also fails the pending query; without a listener it would crash the process.
      own.on('error', () => undefined);
      done = () => own.end().catch(() => undefined);
      await own.connect();
      client = own;
    } else {
      const pooled = await target.connect();
      const onError = (): void => undefined;
      pooled.on('error', onError);
      done = async (err) => {
        pooled.off('error', onError);
        pooled.release(err);
      };
      client = pooled;
    }
  } catch (err) {
    throw StoreError.from('migrate: connect', err);
  }
  let failure: Error | undefined;
  try {
    await client.query(LOCK_SQL);
    const result = await applyPending(client, migrations);
    await client.query(UNLOCK_SQL);
    return result;
  } catch (err) {
    failure = err instanceof Error ? err : new Error(String(err));
    throw err instanceof pg.DatabaseError ? StoreError.from('migrate', err) : err;
  } finally {
    // A failed run's connection still holds the lock: destroy it rather than pool it.
    await done(failure);
  }
}

async function applyPending(client: pg.ClientBase, migrations: Migration[]): Promise<MigrateResult> {
  await client.query(`
    CREATE TABLE IF NOT EXISTS keyward_schema_migrations (
      version    integer PRIMARY KEY,
      name       text NOT NULL,
      checksum   text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
  const { rows } = await client.query<{ version: number; checksum: string }>(
    'SELECT version, checksum FROM keyward_schema_migrations ORDER BY version',
  );
  const known = new Map(migrations.map((m) => [m.version, m]));
  for (const row of rows) {
    const migration = known.get(row.version);
    if (!migration) {
      throw new Error(
        `the database has schema version ${row.version}, newer than this keyward (${migrations.length}); upgrade keyward`,
      );
    }
    if (migration.checksum !== row.checksum) {
      throw new Error(
        `migration ${row.version} (${migration.name}) was changed after it was applied; restore it`,
      );
    }
  }
  const done = new Set(rows.map((r) => r.version));
  const applied: number[] = [];
  for (const migration of migrations) {
    if (done.has(migration.version)) continue;
    await client.query('BEGIN');
    try {
      await client.query(migration.sql);
      await client.query(
        'INSERT INTO keyward_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)',
        [migration.version, migration.name, migration.checksum],
      );
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
    applied.push(migration.version);
  }
  return { applied, version: migrations.at(-1)?.version ?? 0 };
}
