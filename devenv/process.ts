import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, createWriteStream, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';
import { eventually } from './poll.js';

/** A free TCP port on loopback, as the kernel hands it out. */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port from the kernel'));
      });
    });
  });
}

/**
 * Resolves a tool on PATH (or an absolute path), or fails at once with the command that installs
 * it: a missing tool must never surface as a start-up timeout.
 */
export function requireTool(name: string, install: string, extraDirs: string[] = []): string {
  const dirs = [...extraDirs, ...(process.env.PATH ?? '').split(delimiter)];
  const candidates = name.includes('/') ? [name] : dirs.filter(Boolean).map((d) => join(d, name));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // try the next directory
    }
  }
  const looked = name.includes('/') ? name : `${name} in ${dirs.filter(Boolean).join(', ')}`;
  throw new Error(`${name} not found (looked for ${looked}); install it with: ${install}`);
}

const running = new Set<ManagedProcess>();
const exitCleanups = new Set<() => void>();
/** Stops to run on a signal; a defined exit code makes the signal the process's normal end. */
const signalStops = new Map<() => Promise<unknown>, number | undefined>();
/** How long a graceful stop on Ctrl+C may take before the process exits anyway. */
const SIGNAL_STOP_TIMEOUT_MS = 60_000;
let exitHookInstalled = false;

const signalExitCodes = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous kill on every way out of this Node process; the watchdog shell covers SIGKILL.
  process.on('exit', () => {
    for (const p of running) p.killGroup('SIGKILL');
    for (const cleanup of exitCleanups) {
      try {
        cleanup();
      } catch {
        // best effort: the process is leaving anyway
      }
    }
  });
  for (const [signal, code] of Object.entries(signalExitCodes)) {
    process.once(signal, () => {
      if (signalStops.size === 0) process.exit(code);
      setTimeout(() => process.exit(code), SIGNAL_STOP_TIMEOUT_MS).unref();
      const stops = [...signalStops];
      void Promise.allSettled(stops.map(([stop]) => stop())).then((results) => {
        const owner = stops.findIndex(([, exitCode]) => exitCode !== undefined);
        if (owner < 0) process.exit(code);
        process.exit(results[owner]?.status === 'fulfilled' ? stops[owner]![1] : 1);
      });
    });
  }
  // A forked worker (vitest's `forks` pool) whose parent was interrupted gets no signal and would
  // run its current test to the end; once the parent is gone nothing waits for that work.
  if (process.send) {
    process.once('disconnect', () => {
      if (running.size > 0 || exitCleanups.size > 0) process.exit(signalExitCodes.SIGHUP);
    });
  }
}

/**
 * Runs `cleanup` (synchronous, e.g. removing a temp dir) if this process exits or is interrupted
 * before the returned function is called to unregister it.
 */
export function onExitCleanup(cleanup: () => void): () => void {
  installExitHook();
  exitCleanups.add(cleanup);
  return () => {
    exitCleanups.delete(cleanup);
  };
}

/**
 * Runs `stop` (asynchronous, e.g. a local node's teardown) when this process gets SIGINT, SIGTERM
 * or SIGHUP, before it exits; the synchronous exit cleanups still run after it. The process exits
 * with the signal's code, or with `exitCode` for a command whose normal end is Ctrl+C (1 if its
 * stop fails).
 */
export function onSignalStop(stop: () => Promise<unknown>, options: { exitCode?: number } = {}): () => void {
  installExitHook();
  signalStops.set(stop, options.exitCode);
  return () => {
    signalStops.delete(stop);
  };
}

export interface StartOptions {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** File that receives stdout and stderr; its tail goes into every start-up error. */
  logFile: string;
}

/** A child process in its own process group, killed with this process however it ends. */
export class ManagedProcess {
  readonly name: string;
  readonly logFile: string;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined = undefined;

  constructor(options: StartOptions) {
    installExitHook();
    this.name = options.name;
    this.logFile = options.logFile;
    const log = createWriteStream(options.logFile, { flags: 'a' });
    this.child = spawn(options.command, options.args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Both streams go to one file: the first to end must not end it under the other's writes.
    this.child.stdout?.pipe(log, { end: false });
    this.child.stderr?.pipe(log, { end: false });
    this.child.on('close', () => log.end());
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        running.delete(this);
        resolve(this.exitCode);
      });
      this.child.on('error', (err) => {
        if (!log.writableEnded) log.write(`\nspawn error: ${err.message}\n`);
        this.exitCode = -1;
        running.delete(this);
        resolve(-1);
      });
    });
    running.add(this);
    if (this.child.pid) {
      // Kills the group if this Node process dies without running its exit hooks (SIGKILL). It
      // ends as soon as the group is gone, so it never signals a recycled process group id.
      const group = this.child.pid;
      const watchdog = spawn(
        'sh',
        [
          '-c',
          `while kill -0 ${process.pid} 2>/dev/null && kill -0 -${group} 2>/dev/null; do sleep 1; done; ` +
            `kill -KILL -${group} 2>/dev/null`,
        ],
        { detached: true, stdio: 'ignore' },
      );
      watchdog.unref();
    }
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get hasExited(): boolean {
    return this.exitCode !== undefined;
  }

  logTail(lines = 40): string {
    try {
      const text = readFileSync(this.logFile, 'utf8').trimEnd().split('\n');
      return text.slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  killGroup(signal: NodeJS.Signals): void {
    if (this.hasExited || !this.child.pid) return;
    try {
      process.kill(-this.child.pid, signal);
    } catch {
      // already gone
    }
  }

  /** SIGTERM, then SIGKILL after the grace period. Resolves once the process has exited. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.hasExited) return;
    this.killGroup('SIGTERM');
    const timer = setTimeout(() => this.killGroup('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** An error that carries the component's log tail, for failed starts. */
  failure(message: string): Error {
    return new Error(`${this.name}: ${message}\n--- last lines of ${this.logFile} ---\n${this.logTail()}`);
  }
}

/**
 * Polls `ready` until it resolves true. Fails early with the log tail when the process exits,
 * and with the log tail on timeout.
 */
export async function waitUntilReady(
  proc: ManagedProcess,
  ready: () => Promise<boolean>,
  timeoutMs: number,
  what = 'ready',
): Promise<void> {
  let outcome: 'ready' | 'exited';
  try {
    outcome = await eventually(
      what,
      async () => (proc.hasExited ? 'exited' : (await ready()) && 'ready'),
      timeoutMs,
    );
  } catch (err) {
    throw proc.failure((err as Error).message);
  }
  if (outcome === 'exited') throw proc.failure(`exited before it was ${what}`);
}

/**
 * Runs one of devenv's build scripts (cached Go builds); resolves with its output, shows its
 * progress on stderr, and rejects with the tail of that progress when it fails.
 */
export async function runBuildScript(
  script: string,
  args: string[] = [],
): Promise<{ stdout: string; stderr: string }> {
  const bash = requireTool('bash', 'apt-get install -y bash');
  return await new Promise((resolve, reject) => {
    const child = spawn(bash, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    // A cold build takes minutes: show its progress while keeping it for the error message.
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      process.stderr.write(chunk);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve({ stdout, stderr });
      else
        reject(
          new Error(`${script} failed (exit ${code}):\n${stderr.trim().split('\n').slice(-30).join('\n')}`),
        );
    });
  });
}
