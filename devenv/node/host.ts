import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync, rmdirSync, statSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { eventually } from '../poll.js';

const run = promisify(execFile);

/**
 * Kernel settings the node changes: ip_forward and bridge netfilter (pods reach Services and the
 * host), and what the kubelet and kube-proxy set on start (overcommit, panic, keys, conntrack).
 * Each is put back as it was.
 */
const SYSCTLS = [
  'net/ipv4/ip_forward',
  'net/ipv4/conf/all/route_localnet',
  'net/bridge/bridge-nf-call-iptables',
  'net/bridge/bridge-nf-call-ip6tables',
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
  'net/netfilter/nf_conntrack_max',
  'net/netfilter/nf_conntrack_tcp_timeout_established',
  'net/netfilter/nf_conntrack_tcp_timeout_close_wait',
] as const;

/**
 * Host directories the kubelet, containerd's shims and CNI hard-code whatever their configured
 * roots (device plugins, container log links, shim sockets, CNI result cache). Removed at teardown
 * only when the node created them.
 */
const HARD_CODED_PATHS = [
  '/var/lib/kubelet',
  '/var/log/containers',
  '/var/log/pods',
  '/var/lib/cni',
  '/run/containerd',
  '/run/netns',
  '/etc/cni',
  '/opt/cni',
] as const;

const IPTABLES = ['iptables', 'ip6tables'] as const;
const CGROUP_ROOT = '/sys/fs/cgroup';
/** The cgroup (under every v1 hierarchy) the kubelet puts pods in with the cgroupfs driver. */
const KUBEPODS = 'kubepods';

/** What the node may change on the host, captured before it starts and compared after it stops. */
export interface HostState {
  sysctls: Record<string, string>;
  /** `iptables:nat` → chain names. */
  chains: Record<string, string[]>;
  /** Network interface names. */
  links: string[];
  /** kubepods cgroup directories that exist. */
  cgroups: string[];
  /** Which of the hard-coded host paths exist. */
  paths: string[];
}

export async function captureHostState(): Promise<HostState> {
  const sysctls: Record<string, string> = {};
  for (const name of SYSCTLS) {
    const value = await readFile(join('/proc/sys', name), 'utf8').catch(() => undefined);
    if (value !== undefined) sysctls[name] = value.trim();
  }
  const chains: Record<string, string[]> = {};
  for (const tool of IPTABLES) {
    for (const [table, save] of Object.entries(await iptablesSave(tool))) {
      chains[`${tool}:${table}`] = [...save.chains].sort();
    }
  }
  return {
    sysctls,
    chains,
    links: readdirSync('/sys/class/net').sort(),
    cgroups: kubepodsCgroups(),
    paths: HARD_CODED_PATHS.filter((p) => existsSync(p)),
  };
}

/** The differences between two captures, one line each (empty when the host is as it was). */
export function diffHostState(before: HostState, after: HostState): string[] {
  const diffs: string[] = [];
  for (const [name, value] of Object.entries(after.sysctls)) {
    if (before.sysctls[name] !== value) diffs.push(`sysctl ${name}: ${before.sysctls[name]} → ${value}`);
  }
  for (const [key, chains] of Object.entries(after.chains)) {
    const old = new Set(before.chains[key] ?? []);
    for (const chain of chains) if (!old.has(chain)) diffs.push(`${key} chain ${chain} added`);
  }
  const added = (a: string[], b: string[]): string[] => b.filter((x) => !a.includes(x));
  for (const link of added(before.links, after.links)) diffs.push(`network interface ${link} added`);
  for (const cg of added(before.cgroups, after.cgroups)) diffs.push(`cgroup ${cg} added`);
  for (const p of added(before.paths, after.paths)) diffs.push(`path ${p} added`);
  return diffs;
}

/** Mount points at or under `dir` (deepest first), from this process' mount table. */
export function mountsUnder(dir: string): string[] {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) =>
      p.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8))),
    )
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Unmounts everything under `dirs` (lazily when busy), deepest first. */
export async function unmountUnder(dirs: string[]): Promise<void> {
  for (const dir of dirs) {
    for (const point of mountsUnder(dir)) {
      await run('umount', [point]).catch(() => run('umount', ['-l', point]).catch(() => undefined));
    }
  }
}

export async function writeSysctl(name: string, value: string): Promise<void> {
  await writeFile(join('/proc/sys', name), value);
}

/**
 * Puts the host back as `before` found it: sysctls, iptables chains nobody had before (and the
 * rules jumping to them), network interfaces, kubepods cgroups and hard-coded paths the node
 * created. Call after every node process has exited.
 */
export async function restoreHostState(before: HostState, ownLinks: string[]): Promise<string[]> {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(before.sysctls)) {
    const now = await readFile(join('/proc/sys', name), 'utf8').catch(() => undefined);
    if (now !== undefined && now.trim() !== value) {
      await writeSysctl(name, value).catch((err: Error) => problems.push(`sysctl ${name}: ${err.message}`));
    }
  }
  for (const tool of IPTABLES) {
    await removeNewChains(tool, before).catch((err: Error) => problems.push(`${tool}: ${err.message}`));
  }
  const links = readdirSync('/sys/class/net');
  for (const link of links) {
    if (before.links.includes(link)) continue;
    // Our bridge, and any veth whose pod end was not torn down by CNI DEL.
    if (ownLinks.includes(link) || link.startsWith('veth')) {
      await run('ip', ['link', 'delete', link]).catch((err: Error) =>
        problems.push(`ip link delete ${link}: ${err.message}`),
      );
    }
  }
  for (const cg of kubepodsCgroups()) {
    if (!before.cgroups.includes(cg)) {
      await removeCgroupTree(cg).catch((err: Error) => problems.push(`cgroup ${cg}: ${err.message}`));
    }
  }
  for (const p of HARD_CODED_PATHS) {
    if (!before.paths.includes(p) && existsSync(p)) {
      await unmountUnder([p]);
      await rm(p, { recursive: true, force: true }).catch((err: Error) =>
        problems.push(`rm ${p}: ${err.message}`),
      );
    }
  }
  return problems;
}

interface TableSave {
  chains: Set<string>;
  lines: string[];
}

async function iptablesSave(tool: (typeof IPTABLES)[number]): Promise<Record<string, TableSave>> {
  let stdout: string;
  try {
    ({ stdout } = await run(`${tool}-save`, [], { maxBuffer: 64 * 1024 * 1024 }));
  } catch {
    return {};
  }
  const tables: Record<string, TableSave> = {};
  let current: TableSave | undefined;
  for (const line of stdout.split('\n')) {
    if (line.startsWith('*')) {
      current = { chains: new Set(), lines: [] };
      tables[line.slice(1)] = current;
    }
    if (!current) continue;
    current.lines.push(line);
    if (line.startsWith(':')) current.chains.add(line.slice(1).split(' ')[0] ?? '');
  }
  return tables;
}

/** Rewrites each table without the chains `before` did not have and the rules that use them. */
async function removeNewChains(tool: (typeof IPTABLES)[number], before: HostState): Promise<void> {
  for (const [table, save] of Object.entries(await iptablesSave(tool))) {
    const old = new Set(before.chains[`${tool}:${table}`] ?? []);
    const added = [...save.chains].filter((c) => !old.has(c));
    if (added.length === 0) continue;
    const isAdded = new Set(added);
    const kept = save.lines.filter((line) => {
      if (line.startsWith(':')) return !isAdded.has(line.slice(1).split(' ')[0] ?? '');
      if (!line.startsWith('-A ')) return true;
      const words = line.split(' ');
      if (isAdded.has(words[1] ?? '')) return false;
      const target = words.findIndex((w) => w === '-j' || w === '-g');
      return target < 0 || !isAdded.has(words[target + 1] ?? '');
    });
    await new Promise<void>((resolve, reject) => {
      const child = execFile(`${tool}-restore`, ['-w'], (err) => (err ? reject(err) : resolve()));
      child.stdin?.end(`${kept.join('\n')}\n`);
    });
  }
}

function kubepodsCgroups(): string[] {
  if (!existsSync(CGROUP_ROOT)) return [];
  const found = new Set<string>();
  for (const name of readdirSync(CGROUP_ROOT)) {
    const dir = join(CGROUP_ROOT, name, KUBEPODS);
    try {
      if (statSync(dir).isDirectory()) found.add(realpathSync(dir));
    } catch {
      // no kubepods in this hierarchy
    }
  }
  return [...found].sort();
}

/** How long the tasks of a stopped node's cgroups may take to leave them. */
const CGROUP_DRAIN_TIMEOUT_MS = 5_000;

/** cgroup directories go away with rmdir once empty, children first; tasks may take a moment to leave. */
async function removeCgroupTree(dir: string): Promise<void> {
  await eventually(
    `cgroup ${dir} to empty`,
    () => {
      removeCgroupDirs(dir);
      return true;
    },
    CGROUP_DRAIN_TIMEOUT_MS,
  );
}

function removeCgroupDirs(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) removeCgroupDirs(join(dir, entry.name));
  }
  rmdirSync(dir);
}
