import { execFile } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort, ManagedProcess, requireTool, waitUntilReady } from './process.js';

const execFileAsync = promisify(execFile);
const INSTALL_HINT = 'apt-get install -y postgresql';

/** A private PostgreSQL cluster for one test run (or one benchmark), thrown away by stop(). */
export interface TestPostgres {
  /** Superuser URL (trust auth on loopback, no password). */
  readonly adminUrl: string;
  readonly port: number;
  readonly dataDir: string;
  /** Fast shutdown, then removes the cluster's files. */
  stop(): Promise<void>;
  /** Fast shutdown (`pg_ctl stop -m fast`): clients lose their connections, data is kept. */
  pause(): Promise<void>;
  /** Starts the cluster again on the same port after pause(). */
  resume(): Promise<void>;
}

interface OsUser {
  uid: number;
  gid: number;
}

/** Debian's binaries live outside PATH, under one directory per major version; newest first. */
function debianBinDirs(): string[] {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => join(root, v, 'bin'));
}

/** Path of a PostgreSQL client or server program (pg_dump, psql…), or a fast failure naming the install. */
export function postgresTool(name: string): string {
  return requireTool(name, INSTALL_HINT, debianBinDirs());
}

/** initdb and postgres refuse to run as root, so a root caller runs them as the `postgres` user. */
async function serverUser(): Promise<OsUser | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const id = async (flag: string): Promise<number> => {
    try {
      const { stdout } = await execFileAsync('id', [flag, 'postgres']);
      return Number(stdout.trim());
    } catch {
      throw new Error(
        `running as root, and there is no 'postgres' OS user to run the server as; install it with: ${INSTALL_HINT}`,
      );
    }
  };
  return { uid: await id('-u'), gid: await id('-g') };
}

/** Prefixes a command so that it runs as `user`; setpriv execs in place, keeping the process group. */
function asUser(user: OsUser | undefined, command: string, args: string[]): [string, string[]] {
  if (!user) return [command, args];
  const setpriv = requireTool('setpriv', 'apt-get install -y util-linux');
  return [
    setpriv,
    [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--reset-env', '--', command, ...args],
  ];
}

/** True once the server answering on `url` is the one serving `dataDir` (not another on that port). */
async function servesDataDir(url: string, dataDir: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    const { rows } = await client.query<{ dir: string }>(`SELECT current_setting('data_directory') AS dir`);
    return rows[0]?.dir === dataDir;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Creates a cluster in a fresh temp directory (trust auth on loopback, fsync off, its socket in
 * that directory) and starts it on a free port. The server runs as a ManagedProcess rather than
 * through `pg_ctl start`, because pg_ctl detaches the postmaster into its own session, which would
 * let it outlive a test runner that is killed. `binDir` pins the PostgreSQL binaries; by default
 * they are taken from PATH or the newest /usr/lib/postgresql/<version>/bin.
 */
export interface PostgresOptions {
  port?: number;
  binDir?: string;
  /**
   * Also listen on `address` and accept password (SCRAM) logins from `cidr`, e.g. the local node's
   * CNI bridge gateway and pod subnet, so pods reach this server. Loopback stays trust-only.
   */
  network?: { address: string; cidr: string };
  /**
   * Make this cluster a streaming replica (hot standby) of `primary` instead of a new one: its
   * data directory is a `pg_basebackup -R` of the primary (standby.signal and primary_conninfo).
   * The primary needs nothing more than initdb's defaults: wal_level=replica and a loopback
   * `replication` entry in pg_hba.conf, both present since PostgreSQL 10.
   */
  replicaOf?: Pick<TestPostgres, 'port'>;
}

export async function startPostgres(opts: PostgresOptions = {}): Promise<TestPostgres> {
  const tool = (name: string): string =>
    opts.binDir
      ? requireTool(join(opts.binDir, name), INSTALL_HINT)
      : requireTool(name, INSTALL_HINT, debianBinDirs());
  const initdb = tool('initdb');
  const postgres = tool('postgres');
  const user = await serverUser();

  const root = mkdtempSync(join(tmpdir(), 'keyward-pg-'));
  const dataDir = join(root, 'data');
  if (user) chownSync(root, user.uid, user.gid);
  const removeRoot = (): void => {
    try {
      rmSync(root, { recursive: true, force: true });
    } catch {
      // best effort on the way out: a server still dying may be writing into it
    }
  };
  // An interrupted run (Ctrl-C, a killed vitest) leaves no cluster directory behind either.
  process.once('exit', removeRoot);
  const cleanupRoot = (): void => {
    process.off('exit', removeRoot);
    rmSync(root, { recursive: true, force: true });
  };

  try {
    const [cmd, args] = opts.replicaOf
      ? asUser(user, tool('pg_basebackup'), [
          '-D',
          dataDir,
          '-h',
          '127.0.0.1',
          '-p',
          String(opts.replicaOf.port),
          '-U',
          'postgres',
          '-X',
          'stream',
          '-R',
          '--no-sync',
          '--checkpoint=fast',
        ])
      : asUser(user, initdb, [
          '-D',
          dataDir,
          '-U',
          'postgres',
          '--auth=trust',
          '--encoding=UTF8',
          '--locale=C',
          '--no-sync',
        ]);
    await execFileAsync(cmd, args, { cwd: root });
    if (opts.network) {
      appendFileSync(join(dataDir, 'pg_hba.conf'), `host all all ${opts.network.cidr} scram-sha-256\n`);
    }
  } catch (err) {
    const output = err && typeof err === 'object' && 'stderr' in err ? String(err.stderr) : String(err);
    cleanupRoot();
    throw new Error(`${opts.replicaOf ? 'pg_basebackup' : 'initdb'} failed:\n${output}`);
  }

  const port = opts.port ?? (await freePort());
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let server: ManagedProcess | undefined;
  let starts = 0;

  const start = async (): Promise<void> => {
    starts += 1;
    const [cmd, args] = asUser(user, postgres, [
      '-D',
      dataDir,
      '-p',
      String(port),
      '-c',
      `listen_addresses=${['127.0.0.1', ...(opts.network ? [opts.network.address] : [])].join(',')}`,
      '-c',
      `unix_socket_directories=${root}`,
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
      '-c',
      'max_connections=300',
      '-c',
      'log_min_messages=warning',
    ]);
    const proc = new ManagedProcess({
      name: 'postgres',
      command: cmd,
      args,
      cwd: root,
      logFile: join(root, `postgres-${starts}.log`),
    });
    server = proc;
    await waitUntilReady(
      proc,
      () => servesDataDir(adminUrl, dataDir),
      30_000,
      `accepting connections on port ${port}`,
    );
  };

  const shutdown = async (): Promise<void> => {
    const proc = server;
    server = undefined;
    if (!proc || proc.hasExited) return;
    // SIGINT to the postmaster is postgres' "fast" shutdown: it disconnects clients instead of
    // waiting for them (SIGTERM, ManagedProcess' default, would wait for every pool to close).
    try {
      process.kill(proc.pid, 'SIGINT');
    } catch {
      // already gone
    }
    const timer = setTimeout(() => proc.killGroup('SIGKILL'), 15_000);
    await proc.exited;
    clearTimeout(timer);
  };

  try {
    await start();
  } catch (err) {
    await shutdown();
    cleanupRoot();
    throw err;
  }

  return {
    adminUrl,
    port,
    dataDir,
    async stop(): Promise<void> {
      await shutdown();
      cleanupRoot();
    },
    pause: shutdown,
    async resume(): Promise<void> {
      if (server && !server.hasExited) return;
      await start();
    },
  };
}

/** Creates database `name` in the cluster behind `adminUrl` and returns its URL. */
export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
