import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireTool, runBuildScript } from '../process.js';

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
  const parts = parseParts((await runBuildScript(buildScript())).stdout);
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
