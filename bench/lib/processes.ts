// Child processes of a benchmark, each pinned to one CPU with taskset (or left to the scheduler,
// like the control plane it works beside), logged into the run's work directory and stopped
// together at the end; plus what /proc says about them.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ManagedProcess } from '../../devenv/process.js';
import { taskset } from './tools.js';

export class PinnedProcesses {
  readonly work: string;
  readonly #all: ManagedProcess[] = [];

  constructor(work: string) {
    this.work = work;
  }

  /** `args[0] args…` on `cpu`, or unpinned for null (taskset execs the command: the pid is its own). */
  start(
    name: string,
    cpu: number | null,
    args: readonly string[],
    env: Record<string, string>,
  ): ManagedProcess {
    const [command, ...rest] = cpu === null ? args : [taskset(), '-c', String(cpu), ...args];
    if (command === undefined) throw new Error(`${name}: no command`);
    const proc = new ManagedProcess({
      name,
      command,
      args: rest,
      env: { PATH: process.env.PATH ?? '', ...env },
      logFile: join(this.work, `${name.replace(/\W+/g, '-')}.log`),
    });
    this.#all.push(proc);
    return proc;
  }

  async stopAll(): Promise<void> {
    await Promise.allSettled(this.#all.map((p) => p.stop()));
  }
}

/** Resident set size of a process, from /proc/<pid>/status. */
export async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN) / 1024;
}

/** Clock ticks per second of /proc/<pid>/stat on Linux (USER_HZ). */
const USER_HZ = 100;

/**
 * CPU time (user + system) a process has used so far. On a loaded machine throughput swings with
 * the neighbours; a server's own CPU time per request moves far less.
 */
export async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
}

/**
 * CPU time (user + system) of every live process below `root` (not root itself), summed by
 * command name (`/proc/<pid>/stat`'s comm: `kube-apiserver`, `etcd`, `postgres`, `node` …). Read
 * before and after a phase, the difference says which process the phase cost, which on a loaded
 * machine is steadier than its wall-clock time. A process that exited in between is not counted.
 */
export async function cpuSecondsByCommand(root: number = process.pid): Promise<Map<string, number>> {
  const stats: Array<{ pid: number; ppid: number; comm: string; seconds: number }> = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const text = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const close = text.lastIndexOf(')');
    if (close < 0) continue;
    const comm = text.slice(text.indexOf('(') + 1, close);
    const fields = text.slice(close + 2).split(' ');
    stats.push({
      pid: Number(entry),
      ppid: Number(fields[1]),
      comm,
      seconds: (Number(fields[11]) + Number(fields[12])) / USER_HZ,
    });
  }
  const parent = new Map(stats.map((s) => [s.pid, s.ppid]));
  const below = (pid: number): boolean => {
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p)) if (p === root) return true;
    return false;
  };
  const sums = new Map<string, number>();
  for (const s of stats) if (below(s.pid)) sums.set(s.comm, (sums.get(s.comm) ?? 0) + s.seconds);
  return sums;
}
