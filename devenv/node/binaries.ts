import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireTool } from '../process.js';

/** Directories of the node's binaries, as devenv/node/build.sh prints them. */
export interface NodeBinaries {
  kubelet: string;
  kubeScheduler: string;
  kubeProxy: string;
  containerd: string;
  ctr: string;
  /** Directory with containerd-shim-runc-v2 (containerd finds the shim on PATH). */
  shimDir: string;
  cniBinDir: string;
  crictl: string;
  pauseImage: string;
  runc: string;
  iptables: string;
}

const APT = 'apt-get install -y runc iptables conntrack iproute2';
const PARTS = ['kube', 'containerd', 'cni', 'crictl', 'tools'] as const;

/** The script beside this module, found from the sources and from the compiled dist/devenv/node. */
function buildScript(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  if (dir.includes('/dist/')) dir = dir.replace(/\/dist\//, '/');
  return join(dir, 'build.sh');
}

/** Runs a build script; resolves with its stdout, shows its progress on stderr. */
export async function runBuildScript(script: string, args: string[] = []): Promise<string> {
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
      if (code === 0) resolve(stdout);
      else
        reject(
          new Error(`${script} failed (exit ${code}):\n${stderr.trim().split('\n').slice(-30).join('\n')}`),
        );
    });
  });
}

/** key=value lines of a build script's output. */
export function parseParts(stdout: string): Record<string, string> {
  const parts: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) parts[line.slice(0, eq)] = line.slice(eq + 1).trim();
  }
  return parts;
}

/**
 * Builds (once, cached) and locates everything the node runs, or fails at once naming what is
 * missing and how to install it: Debian's runc, iptables, conntrack and ip come from apt.
 */
export async function nodeBinaries(): Promise<NodeBinaries> {
  const runc = requireTool('runc', APT, ['/usr/sbin', '/sbin']);
  const iptables = requireTool('iptables', APT, ['/usr/sbin', '/sbin']);
  requireTool('conntrack', APT, ['/usr/sbin', '/sbin']);
  requireTool('ip', APT, ['/usr/sbin', '/sbin', '/bin']);
  const parts = parseParts(await runBuildScript(buildScript()));
  for (const part of PARTS) {
    if (!parts[part]) throw new Error(`${buildScript()} printed no ${part}= line`);
  }
  const at = (part: (typeof PARTS)[number], name: string): string =>
    requireTool(join(parts[part]!, name), `rebuild with bash ${buildScript()}`);
  return {
    kubelet: at('kube', 'kubelet'),
    kubeScheduler: at('kube', 'kube-scheduler'),
    kubeProxy: at('kube', 'kube-proxy'),
    containerd: at('containerd', 'containerd'),
    ctr: at('containerd', 'ctr'),
    shimDir: dirname(at('containerd', 'containerd-shim-runc-v2')),
    cniBinDir: dirname(at('cni', 'bridge')),
    crictl: at('crictl', 'crictl'),
    pauseImage: join(parts.tools!, 'pause-image.tar'),
    runc,
    iptables,
  };
}

/** Whether this process can run a node at all: root, on Linux. */
export function nodeUnsupportedReason(): string | undefined {
  if (process.platform !== 'linux') return `a local node needs Linux, not ${process.platform}`;
  if (process.getuid?.() !== 0)
    return 'a local node needs root (kubelet, containerd and CNI manage mounts, cgroups and networks)';
  return undefined;
}
