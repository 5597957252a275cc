import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { nodeUnsupportedReason } from '../../devenv/node/binaries.js';
import { captureHostState, diffHostState } from '../../devenv/node/host.js';
import type { NodeCluster } from '../../devenv/node/node.js';

/**
 * Pieces shared by the suites that run on a real node (devenv/node): whether they run, the
 * restricted Pod Security profile, a CLI runner, and the figures they report (pod RSS, image size).
 */

const run = promisify(execFile);

/**
 * True when a node suite must be skipped. CI installs and builds everything a node needs
 * (.ci/run), so there (and with KEYWARD_TEST_NODE=1) a missing piece fails the suite; elsewhere
 * (not root, not Linux) it is skipped, saying why on stderr.
 */
export function skipWithoutNode(file: string): boolean {
  const unsupported = nodeUnsupportedReason();
  const required = process.env.CI === 'true' || process.env.KEYWARD_TEST_NODE === '1';
  const skip = unsupported !== undefined && !required;
  if (skip) process.stderr.write(`${file} skipped: ${unsupported}\n`);
  return skip;
}

/** Namespace labels that make the API server enforce the restricted Pod Security profile. */
export const RESTRICTED_NAMESPACE_LABELS = {
  'pod-security.kubernetes.io/enforce': 'restricted',
  'pod-security.kubernetes.io/enforce-version': 'latest',
};

/** The restricted Pod Security profile, as a container must declare it. */
export const RESTRICTED_CONTAINER = {
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  seccompProfile: { type: 'RuntimeDefault' },
};

const CLI_TIMEOUT_MS = 300_000;

/**
 * Runs a command-line tool (kubectl, helm) as a user would, resolving with its stdout; a non-zero
 * exit rejects with the command and its stderr, so a failing step says what it ran.
 */
export async function cli(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  try {
    const { stdout } = await run(command, args, {
      env: { ...process.env, ...env },
      maxBuffer: 16 * 1024 * 1024,
      timeout: CLI_TIMEOUT_MS,
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    const error = new Error(
      `${command.split('/').pop()} ${args.join(' ')} failed: ${(e.stderr || e.stdout || e.message).trim()}`,
    );
    Object.assign(error, { stderr: e.stderr ?? '' });
    throw error;
  }
}

export function megabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MB`;
}

/** Resident memory of the pod's processes (VmRSS), found through its memory cgroup (cgroup v1, cgroupfs). */
export function podRssBytes(uid: string): number {
  for (const qos of ['', 'burstable/', 'besteffort/']) {
    const dir = `/sys/fs/cgroup/memory/kubepods/${qos}pod${uid}`;
    if (!existsSync(dir)) continue;
    return cgroupPids(dir).reduce((sum, pid) => sum + vmRss(pid), 0);
  }
  return 0;
}

function cgroupPids(dir: string): number[] {
  const own = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  const children = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory());
  return [...own, ...children.flatMap((e) => cgroupPids(join(dir, e.name)))];
}

function vmRss(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Sum of the image's uncompressed layer sizes, from the archive's gzip trailers (ISIZE). */
export function uncompressedImageBytes(archive: string): number {
  const data = readFileSync(archive);
  let total = 0;
  let offset = 0;
  while (offset + 512 <= data.length) {
    const name = data
      .subarray(offset, offset + 100)
      .toString('utf8')
      .replace(/\0.*$/s, '');
    if (!name) break;
    const size =
      Number.parseInt(
        data
          .subarray(offset + 124, offset + 136)
          .toString('utf8')
          .trim(),
        8,
      ) || 0;
    const body = offset + 512;
    if (name.endsWith('.tar.gz') && size >= 4) total += data.readUInt32LE(body + size - 4);
    offset = body + Math.ceil(size / 512) * 512;
  }
  return total;
}

/**
 * What a stopped node left behind: its own teardown problems, mounts under its directories, and
 * every difference from the host as the node found it under the machine-wide lock (a capture taken
 * by the test before startNodeCluster() could see another suite's node still running). Empty when
 * the host is as it was.
 */
export async function nodeLeftovers(node: NodeCluster, stopProblems: string[]): Promise<unknown[]> {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => line.includes('/keyward-node-'));
  return [...stopProblems, ...mounts, ...diffHostState(node.hostBefore, await captureHostState())];
}
