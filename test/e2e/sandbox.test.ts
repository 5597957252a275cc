import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type ControlPlane, startControlPlane } from '../../devenv/controlplane/controlplane.js';
import { eventually } from '../../devenv/poll.js';
import { repoRoot } from '../../devenv/repo.js';

const run = promisify(execFile);

/** A cold start of Postgres and a control plane takes ~10 s here; this leaves room on a busy machine. */
const READY_TIMEOUT_MS = 150_000;
/** Stopping: operator, webhook, control plane, Postgres; each piece gets SIGTERM and a grace period. */
const STOP_TIMEOUT_MS = 60_000;
/** The watchdog shell next to each child checks once a second whether its group is gone. */
const PROCESS_GONE_TIMEOUT_MS = 15_000;
const SANDBOX_TEST_TIMEOUT_MS = READY_TIMEOUT_MS + STOP_TIMEOUT_MS + PROCESS_GONE_TIMEOUT_MS + 30_000;
const STEP_LINE = /^\[\s*\d+\.\ds\] \S/;

interface Sandbox {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly exited: Promise<number | null>;
  /** Its private TMPDIR: whatever the sandbox leaves in tmpdir() lands here. */
  readonly tmp: string;
  /** HOME for the shell that runs the printed commands (kubectl writes its cache there). */
  readonly home: string;
}

const started: Sandbox[] = [];

/** `keyward sandbox` as a user runs it (`node dist/cli/main.js sandbox`), with a private TMPDIR. */
function startSandbox(args: string[], env: NodeJS.ProcessEnv = {}): Sandbox {
  const tmp = mkdtempSync(join(tmpdir(), 'sandbox-test-'));
  // Postgres runs as its own OS user when we are root: it must be able to reach its directory.
  chmodSync(tmp, 0o755);
  const child = spawn(process.execPath, [join(repoRoot(), 'dist', 'cli', 'main.js'), 'sandbox', ...args], {
    env: { ...process.env, ...env, TMPDIR: tmp },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => lines.push(line));
  createInterface({ input: child.stderr! }).on('line', (line) => lines.push(`stderr: ${line}`));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const sandbox = { child, lines, exited, tmp, home: mkdtempSync(join(tmpdir(), 'sandbox-test-home-')) };
  started.push(sandbox);
  return sandbox;
}

async function waitForReady(sandbox: Sandbox): Promise<void> {
  await eventually(
    'the sandbox to print its ready line and the commands',
    () => {
      if (sandbox.child.exitCode !== null) throw new Error(`exited ${sandbox.child.exitCode}`);
      return sandbox.lines.some((l) => l.startsWith('Ctrl+C stops everything'));
    },
    READY_TIMEOUT_MS,
    () => sandbox.lines.join('\n'),
  );
}

/** The shell lines it printed for another shell: exports, TOKEN=…, curl. */
function printedCommands(sandbox: Sandbox): string[] {
  return sandbox.lines
    .filter((l) => /^ {2}(export |TOKEN=|curl )/.test(l))
    .map((l) => l.replace(/\s+# .*$/, '').trim());
}

/** Every live process below `root` (children re-parented elsewhere are not followed). */
function descendants(root: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …: comm may contain spaces and parentheses.
      const [, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(entry), Number(ppid));
    } catch {
      // exited while we looked
    }
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const [pid, ppid] of parents) {
      if (ppid === parent) {
        found.push(pid);
        queue.push(pid);
      }
    }
  }
  return found;
}

function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Ctrl+C, then what a user would check: exit 0, no process, no file left behind. */
async function interruptAndCheckClean(sandbox: Sandbox, pids: number[]): Promise<void> {
  sandbox.child.kill('SIGINT');
  const code = await Promise.race([
    sandbox.exited,
    new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), STOP_TIMEOUT_MS)),
  ]);
  expect(code, sandbox.lines.join('\n')).toBe(0);
  expect(sandbox.lines.some((l) => /\] stopped; everything it started is gone$/.test(l))).toBe(true);
  await eventually(
    'every process the sandbox started to exit',
    () => pids.every((pid) => !isRunning(pid)),
    PROCESS_GONE_TIMEOUT_MS,
    () => `still running: ${pids.filter(isRunning).join(', ')}`,
  );
  expect(readdirSync(sandbox.tmp)).toEqual([]);
}

afterEach(() => {
  for (const sandbox of started.splice(0)) {
    if (sandbox.child.exitCode === null) sandbox.child.kill('SIGKILL');
    rmSync(sandbox.tmp, { recursive: true, force: true });
    rmSync(sandbox.home, { recursive: true, force: true });
  }
});

describe('keyward sandbox', () => {
  it(
    'prints timed steps, a curl that gets 200, and on Ctrl+C stops everything and leaves nothing',
    async () => {
      const sandbox = startSandbox(['--namespace', 'sandbox-e2e']);
      await waitForReady(sandbox);

      const ready = sandbox.lines.findIndex((l) => / ready: ApiKey \S+ is Ready/.test(l));
      expect(ready, sandbox.lines.join('\n')).toBeGreaterThan(0);
      const steps = sandbox.lines.slice(0, ready + 1);
      expect(
        steps.every((l) => STEP_LINE.test(l)),
        steps.join('\n'),
      ).toBe(true);
      expect(steps.some((l) => /\] control plane ready at https:\/\/127\.0\.0\.1:\d+ in /.test(l))).toBe(
        true,
      );
      // The run's global setup built the control plane already: this run reuses the cache.
      expect(
        steps.some((l) => /\] control plane binaries reused from \S+/.test(l)),
        steps.join('\n'),
      ).toBe(true);
      expect(steps.some((l) => /\] Postgres ready/.test(l))).toBe(true);
      expect(steps.some((l) => /\] operator ready \(pid \d+\)$/.test(l))).toBe(true);

      const commands = printedCommands(sandbox);
      expect(commands.map((c) => c.split(/[ =]/)[0])).toEqual(['export', 'export', 'TOKEN', 'curl']);
      const kubeconfig = /^export KUBECONFIG=(\S+)$/.exec(commands[0]!)?.[1];
      expect(kubeconfig && existsSync(kubeconfig)).toBe(true);
      // Exactly what a user pastes into another shell, with nothing of ours on PATH.
      const shell = await run('bash', ['-euo', 'pipefail', '-c', commands.join('\n')], {
        env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: sandbox.home },
      });
      expect(shell.stdout).toMatch(/^HTTP\/1\.1 200 /);

      const operatorPid = Number(/operator ready \(pid (\d+)\)/.exec(sandbox.lines.join('\n'))?.[1]);
      const pids = descendants(sandbox.child.pid!);
      // etcd, kube-apiserver, kube-controller-manager, Postgres (and its backends), the operator.
      expect(pids).toContain(operatorPid);
      expect(pids.length).toBeGreaterThanOrEqual(5);

      await interruptAndCheckClean(sandbox, pids);
      expect(existsSync(kubeconfig!)).toBe(false);
    },
    SANDBOX_TEST_TIMEOUT_MS,
  );

  describe('with --context', () => {
    let controlPlane: ControlPlane | undefined;
    afterAll(async () => {
      await controlPlane?.stop();
    });

    it(
      'runs against that context and removes the kubeconfig it wrote for the operator',
      async () => {
        // A control plane of its own: the sandbox applies examples/ (a cluster-scoped AccessPolicy
        // among them), which must not meet other files' objects on the run's shared one.
        controlPlane = await startControlPlane();
        const context = controlPlane.kubeConfig().getCurrentContext();
        const sandbox = startSandbox(['--context', context, '--namespace', 'sandbox-ctx'], {
          KUBECONFIG: controlPlane.kubeconfigPath,
        });
        await waitForReady(sandbox);
        expect(sandbox.lines.some((l) => new RegExp(`\\] using context ${context}$`).test(l))).toBe(true);

        const commands = printedCommands(sandbox);
        const kubeconfig = /^export KUBECONFIG=(\S+)$/.exec(commands[0]!)?.[1];
        expect(kubeconfig?.startsWith(sandbox.tmp)).toBe(true);
        expect(readFileSync(kubeconfig!, 'utf8')).toContain(controlPlane.server);
        // With --context the user has a kubectl of their own; this one is the control plane's.
        const shell = await run('bash', ['-euo', 'pipefail', '-c', commands.join('\n')], {
          env: { PATH: `${controlPlane.binDir}:/usr/local/bin:/usr/bin:/bin`, HOME: sandbox.home },
        });
        expect(shell.stdout).toMatch(/^HTTP\/1\.1 200 /);

        const pids = descendants(sandbox.child.pid!);
        await interruptAndCheckClean(sandbox, pids);
        expect(existsSync(kubeconfig!)).toBe(false);
      },
      SANDBOX_TEST_TIMEOUT_MS,
    );
  });
});
