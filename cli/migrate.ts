import { migrate } from '../store/migrate.js';
import { storeUrlFromEnv } from '../store/url.js';

export interface MigrateCommandOptions {
  /** Postgres URL; falls back to KEYWARD_STORE_URL, then to the file KEYWARD_STORE_URL_FILE names. */
  readonly storeUrl?: string;
}

export interface CommandOutput {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

const stdio: CommandOutput = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/**
 * `keyward migrate`: applies pending store migrations and returns the process exit code (0 done
 * or nothing to do, 1 failed, 2 usage). Safe to run from several places at once. The URL is
 * never printed: it may carry a password.
 */
export async function migrateCommand(
  options: MigrateCommandOptions,
  io: CommandOutput = stdio,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  let url: string | undefined;
  try {
    url = options.storeUrl ?? storeUrlFromEnv(env);
  } catch (err) {
    io.err(`keyward migrate: ${(err as Error).message}`);
    return 2;
  }
  if (!url) {
    io.err(
      'keyward migrate: no database: pass --store-url or set KEYWARD_STORE_URL (or KEYWARD_STORE_URL_FILE)',
    );
    return 2;
  }
  try {
    const result = await migrate(url);
    io.out(
      result.applied.length === 0
        ? `schema is up to date (version ${result.version})`
        : `applied migration${result.applied.length > 1 ? 's' : ''} ${result.applied.join(', ')}; schema version ${result.version}`,
    );
    return 0;
  } catch (err) {
    io.err(`keyward migrate: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
