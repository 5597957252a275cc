import { execFile, execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ControlPlane } from '../controlplane/controlplane.js';
import type { ManagedProcess } from '../process.js';
import type { NodeBinaries } from './binaries.js';
import { NODE_BRIDGE, type NodePaths } from './configs.js';
import { type HostState, mountsUnder, restoreHostState, unmountUnder } from './host.js';

const run = promisify(execFile);
const BRIDGE = NODE_BRIDGE;

export interface TeardownInput {
  bins: NodeBinaries;
  paths: NodePaths;
  before: HostState;
  processes: ManagedProcess[];
  controlPlane: ControlPlane | undefined;
}

/** REAL-NODE.md's order: proxy, kubelet, sandboxes (CNI DEL), containerd, control plane, host. */
export async function teardown(t: TeardownInput): Promise<string[]> {
  const problems: string[] = [];
  const byName = (name: string): ManagedProcess | undefined => t.processes.find((p) => p.name === name);
  await byName('kube-proxy')?.stop();
  await run(t.bins.kubeProxy, ['--cleanup'], { timeout: 30_000 }).catch(() => undefined);
  await byName('kube-scheduler')?.stop();
  await byName('kubelet')?.stop();
  const containerd = byName('containerd');
  if (containerd && !containerd.hasExited) {
    // Stops every sandbox and runs CNI DEL; a PID 1 ignoring SIGTERM would otherwise hold its grace period.
    await run(
      t.bins.crictl,
      [
        '--runtime-endpoint',
        `unix://${t.paths.containerdSocket}`,
        '--timeout',
        '60s',
        'rmp',
        '--force',
        '--all',
      ],
      { timeout: 90_000 },
    ).catch((err: Error) => problems.push(`crictl rmp: ${err.message}`));
  }
  for (const pid of shimPids(t.paths)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await containerd?.stop();
  await t.controlPlane?.stop();
  await unmountUnder([t.paths.dir]);
  problems.push(...(await restoreHostState(t.before, [BRIDGE])));
  return problems;
}

/** containerd-shim-runc-v2 processes of this node (they daemonize out of containerd's process group). */
function shimPids(paths: NodePaths): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes('containerd-shim') && cmdline.includes(paths.containerdSocket))
        pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

function rssBytes(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export function nodeMemory(processes: ManagedProcess[], paths: NodePaths): Record<string, number> {
  const memory: Record<string, number> = {};
  for (const p of processes) if (!p.hasExited) memory[p.name] = rssBytes(p.pid);
  for (const pid of shimPids(paths)) memory[`containerd-shim-runc-v2[${pid}]`] = rssBytes(pid);
  return memory;
}

/**
 * Synchronous best effort when the process is leaving without stop(): the exit hook SIGKILLs the
 * node's own processes, but pods run under daemonized shims, so kill those and the pods' processes,
 * then undo what a later start would trip over.
 */
export function emergencyCleanup(paths: NodePaths, before: HostState, releaseLock: () => void): void {
  const quiet = { stdio: 'ignore' as const };
  const kill = (pid: number): void => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  };
  shimPids(paths).forEach(kill);
  // Only when the pod cgroups are ours: another kubelet's pods are not this node's to kill.
  if (before.cgroups.length === 0) podPids().forEach(kill);
  try {
    execFileSync('ip', ['link', 'delete', BRIDGE], quiet);
  } catch {
    // not there
  }
  for (const [name, value] of Object.entries(before.sysctls)) {
    try {
      writeFileSync(join('/proc/sys', name), value);
    } catch {
      // best effort
    }
  }
  for (const point of mountsUnder(paths.dir)) {
    try {
      execFileSync('umount', ['-l', point], quiet);
    } catch {
      // best effort
    }
  }
  rmSync(paths.dir, { recursive: true, force: true });
  releaseLock();
}

/** Processes in the kubelet's pod cgroups (the pids hierarchy lists every task). */
function podPids(): number[] {
  const pids: number[] = [];
  const walk = (dir: string): void => {
    try {
      pids.push(...readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number));
      for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(join(dir, e.name));
    } catch {
      // gone
    }
  };
  walk('/sys/fs/cgroup/pids/kubepods');
  return pids;
}
