import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import {
  type ControlPlane,
  type ControlPlaneOptions,
  startControlPlane,
} from '../controlplane/controlplane.js';
import { issueCertificate } from '../pki.js';
import { freePort, ManagedProcess, onExitCleanup, onSignalStop, waitUntilReady } from '../process.js';
import { type NodeBinaries, nodeBinaries, nodeUnsupportedReason } from './binaries.js';
import {
  certKubeconfig,
  cniConfig,
  containerdConfig,
  kubeletConfig,
  kubeProxyConfig,
  NODE_BRIDGE,
  type NodeNetwork,
  type NodePaths,
} from './configs.js';
import { captureHostState, type HostState, writeSysctl } from './host.js';
import { acquireLock } from './lock.js';
import { emergencyCleanup, nodeMemory, teardown } from './teardown.js';

const run = promisify(execFile);

export interface NodeClusterOptions {
  /** Image archives (docker-archive or OCI) to load into the node's containerd before it is returned. */
  images?: string[];
  /** Where component logs go; kept after stop(). Default: inside the temp dir, removed on stop(). */
  logDir?: string;
  /** Pod subnet; its first address becomes the bridge gateway and the host address. */
  podSubnet?: string;
  /** Passed to the control plane: kube-apiserver authenticates unknown bearer tokens through it. */
  authnWebhook?: ControlPlaneOptions['authnWebhook'];
}

export interface NodeCluster {
  /** Admin kubeconfig (client certificate in `system:masters`). */
  kubeconfigPath: string;
  /** `https://<hostAddress>:<port>` */
  server: string;
  caFile: string;
  /** Directory with kubectl (and the control-plane binaries). */
  binDir: string;
  nodeName: string;
  /** The CNI bridge gateway: the host as pods see it. Host services pods must reach listen here. */
  hostAddress: string;
  podSubnet: string;
  /**
   * From the start (after the cached builds) until Node Ready and the `default` ServiceAccount
   * exist; loading `images` may take a few seconds more before startNodeCluster() resolves.
   */
  readyAfterMs: number;
  /**
   * The host as this node found it, captured once it held the machine-wide lock (so not while
   * another node ran): what stop() restores and what a caller compares the host with afterwards.
   */
  hostBefore: HostState;
  kubeConfig(): KubeConfig;
  /** Imports an image archive into containerd's `k8s.io` namespace (the kubelet's). */
  loadImage(archive: string): Promise<void>;
  /** Resident memory in bytes of each node process (kubelet, containerd, shims…), by name and pid. */
  memory(): Record<string, number>;
  /** Stops everything and puts the host back as it was; resolves with anything it could not undo. */
  stop(): Promise<string[]>;
}

const NODE_NAME = 'keyward-node';
const DEFAULT_POD_SUBNET = '10.244.0.0/24';
const READY_TIMEOUT_MS = 120_000;
const DIR_PREFIX = 'keyward-node-';

/**
 * Starts a single-node cluster: the control plane in node mode (devenv/controlplane/controlplane.ts)
 * plus containerd (with Debian's runc and the CNI bridge), kubelet, kube-scheduler and kube-proxy,
 * loads `images` and resolves once the node is Ready and the `default` ServiceAccount exists.
 * Needs root on Linux. stop() removes every process, mount, interface, iptables chain, cgroup and
 * directory the node created and restores the sysctls it changed.
 */
export async function startNodeCluster(opts: NodeClusterOptions = {}): Promise<NodeCluster> {
  const unsupported = nodeUnsupportedReason();
  if (unsupported) throw new Error(unsupported);
  const bins = await nodeBinaries();
  const releaseLock = await acquireLock();
  const before = await captureHostState();
  const t0 = performance.now();
  const dir = await mkdtemp(join(tmpdir(), DIR_PREFIX));
  const logDir = opts.logDir ?? join(dir, 'logs');
  const podSubnet = opts.podSubnet ?? DEFAULT_POD_SUBNET;
  const net: NodeNetwork = { bridge: NODE_BRIDGE, podSubnet, hostAddress: firstHost(podSubnet) };
  const paths: NodePaths = {
    dir,
    containerdSocket: join(dir, 'containerd.sock'),
    containerdRoot: join(dir, 'containerd', 'root'),
    containerdState: join(dir, 'containerd', 'state'),
    runcRoot: join(dir, 'runc'),
    cniConfDir: join(dir, 'cni', 'net.d'),
    cniBinDir: bins.cniBinDir,
    cniIpamDir: join(dir, 'cni', 'ipam'),
    kubeletRoot: join(dir, 'kubelet'),
    podLogs: join(dir, 'pod-logs'),
  };
  const processes: ManagedProcess[] = [];
  let controlPlane: ControlPlane | undefined;
  // Killed hard (the exit hook already SIGKILLs the processes): undo what a later run would trip on.
  const unregisterEmergency = onExitCleanup(() => emergencyCleanup(paths, before, releaseLock));

  let stopping: Promise<string[]> | undefined;
  const stop = (): Promise<string[]> => {
    stopping ??= (async () => {
      const problems = await teardown({ bins, paths, before, processes, controlPlane });
      await rm(dir, { recursive: true, force: true }).catch((err: Error) =>
        problems.push(`rm ${dir}: ${err.message}`),
      );
      unregisterEmergency();
      unregisterSignalStop();
      releaseLock();
      return problems;
    })();
    return stopping;
  };
  // Ctrl+C: the full teardown, not just the synchronous emergency one.
  const unregisterSignalStop = onSignalStop(stop);

  try {
    await Promise.all([
      mkdir(logDir, { recursive: true }),
      mkdir(paths.cniConfDir, { recursive: true }),
      mkdir(join(dir, 'pki')),
    ]);
    await createBridge(net);
    await writeSysctl('net/ipv4/ip_forward', '1');
    // Pod → ClusterIP → pod on the same bridge: the reply must pass conntrack to be un-DNATed.
    await writeSysctl('net/bridge/bridge-nf-call-iptables', '1').catch(() => undefined);
    await writeFile(join(paths.cniConfDir, '10-keyward.conflist'), cniConfig(paths, net));

    const [cp, containerd] = await Promise.all([
      startControlPlane({
        node: { address: net.hostAddress },
        logDir,
        ...(opts.authnWebhook ? { authnWebhook: opts.authnWebhook } : {}),
      }),
      startContainerd(bins, paths, logDir),
    ]);
    controlPlane = cp;
    processes.push(containerd);
    const tControlPlane = performance.now();
    await importImage(bins, paths, bins.pauseImage);
    // The caller's images load while the kubelet registers; they must be there before we return.
    const imagesLoaded = Promise.all((opts.images ?? []).map((archive) => importImage(bins, paths, archive)));
    imagesLoaded.catch(() => undefined);

    const pki = join(dir, 'pki');
    const [kubeletClient, kubeletServing, schedulerClient, proxyClient] = await Promise.all([
      issueCertificate(pki, cp.ca, {
        name: 'kubelet',
        commonName: `system:node:${NODE_NAME}`,
        organizations: ['system:nodes'],
        usage: 'client',
      }),
      issueCertificate(pki, cp.ca, {
        name: 'kubelet-serving',
        commonName: NODE_NAME,
        usage: 'server',
        subjectAltNames: [`IP:${net.hostAddress}`, `DNS:${NODE_NAME}`],
      }),
      issueCertificate(pki, cp.ca, {
        name: 'kube-scheduler',
        commonName: 'system:kube-scheduler',
        usage: 'client',
      }),
      issueCertificate(pki, cp.ca, { name: 'kube-proxy', commonName: 'system:kube-proxy', usage: 'client' }),
    ]);
    const kubeconfig = async (
      name: string,
      user: string,
      cert: { cert: string; key: string },
    ): Promise<string> => {
      const file = join(dir, `${name}.kubeconfig`);
      await writeFile(file, certKubeconfig(cp.server, cp.caFile, user, cert.cert, cert.key));
      return file;
    };
    const [kubeletKc, schedulerKc, proxyKc] = await Promise.all([
      kubeconfig('kubelet', `system:node:${NODE_NAME}`, kubeletClient),
      kubeconfig('kube-scheduler', 'system:kube-scheduler', schedulerClient),
      kubeconfig('kube-proxy', 'system:kube-proxy', proxyClient),
    ]);
    const [kubeletPort, kubeletHealthz, schedulerPort, proxyMetrics, proxyHealthz] = (await distinctFreePorts(
      5,
    )) as [number, number, number, number, number];
    const kubeletConfigFile = join(dir, 'kubelet.yaml');
    const proxyConfigFile = join(dir, 'kube-proxy.yaml');
    await Promise.all([
      writeFile(
        kubeletConfigFile,
        kubeletConfig({
          paths,
          net,
          caFile: cp.caFile,
          servingCert: kubeletServing,
          port: kubeletPort,
          healthzPort: kubeletHealthz,
        }),
      ),
      writeFile(proxyConfigFile, kubeProxyConfig(proxyKc, NODE_NAME, net, [proxyMetrics, proxyHealthz])),
    ]);

    const start = (name: string, command: string, args: string[]): ManagedProcess => {
      const proc = new ManagedProcess({ name, command, args, logFile: join(logDir, `${name}.log`) });
      processes.push(proc);
      return proc;
    };
    const kubelet = start('kubelet', bins.kubelet, [
      `--config=${kubeletConfigFile}`,
      `--kubeconfig=${kubeletKc}`,
      `--root-dir=${paths.kubeletRoot}`,
      `--cert-dir=${join(dir, 'kubelet-pki')}`,
      `--hostname-override=${NODE_NAME}`,
      `--node-ip=${net.hostAddress}`,
    ]);
    start('kube-scheduler', bins.kubeScheduler, [
      `--kubeconfig=${schedulerKc}`,
      `--authentication-kubeconfig=${schedulerKc}`,
      `--authorization-kubeconfig=${schedulerKc}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${schedulerPort}`,
    ]);
    start('kube-proxy', bins.kubeProxy, [`--config=${proxyConfigFile}`]);

    const kc = cp.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const tStarted = performance.now();
    await waitUntilReady(
      kubelet,
      async () => {
        for (const p of processes) if (p.hasExited) throw p.failure('exited while the node was starting');
        const node = await core.readNode({ name: NODE_NAME });
        const ready = node.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
        if (!ready) return false;
        await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
        return true;
      },
      READY_TIMEOUT_MS,
      'a Ready node with a default ServiceAccount',
    );
    const tReady = performance.now();
    await imagesLoaded;
    const readyAfterMs = tReady - t0;
    const secs = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;
    process.stderr.write(
      `keyward node ${NODE_NAME} Ready ${secs(readyAfterMs)} after start (control plane and containerd ` +
        `${secs(tControlPlane - t0)}, pause image and node certificates ${secs(tStarted - tControlPlane)}, ` +
        `kubelet to Ready ${secs(tReady - tStarted)}, images ${secs(performance.now() - tReady)} more); ` +
        `API server ${cp.server}, host address ${net.hostAddress}; logs in ${logDir}\n`,
    );

    return {
      kubeconfigPath: cp.kubeconfigPath,
      server: cp.server,
      caFile: cp.caFile,
      binDir: cp.binDir,
      nodeName: NODE_NAME,
      hostAddress: net.hostAddress,
      podSubnet,
      readyAfterMs,
      hostBefore: before,
      kubeConfig: () => cp.kubeConfig(),
      loadImage: (archive) => importImage(bins, paths, archive),
      memory: () => nodeMemory(processes, paths),
      stop,
    };
  } catch (err) {
    const problems = await stop();
    if (problems.length > 0)
      process.stderr.write(`node teardown after a failed start: ${problems.join('; ')}\n`);
    throw err;
  }
}

async function startContainerd(
  bins: NodeBinaries,
  paths: NodePaths,
  logDir: string,
): Promise<ManagedProcess> {
  const config = join(paths.dir, 'containerd.toml');
  await writeFile(config, containerdConfig(paths, bins.runc));
  const proc = new ManagedProcess({
    name: 'containerd',
    command: bins.containerd,
    args: [`--config=${config}`],
    logFile: join(logDir, 'containerd.log'),
    // containerd finds containerd-shim-runc-v2 on PATH.
    env: { ...process.env, PATH: `${bins.shimDir}:${process.env.PATH ?? ''}` },
  });
  await waitUntilReady(
    proc,
    async () => {
      await run(bins.ctr, ['--address', paths.containerdSocket, 'version'], { timeout: 2000 });
      return true;
    },
    30_000,
    'serving its socket',
  );
  return proc;
}

async function importImage(bins: NodeBinaries, paths: NodePaths, archive: string): Promise<void> {
  try {
    await run(bins.ctr, ['--address', paths.containerdSocket, '-n', 'k8s.io', 'images', 'import', archive], {
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? String(err);
    throw new Error(`ctr images import ${archive} failed: ${stderr.trim()}`);
  }
}

async function createBridge(net: NodeNetwork): Promise<void> {
  const prefix = net.podSubnet.split('/')[1];
  await run('ip', ['link', 'add', net.bridge, 'type', 'bridge']);
  await run('ip', ['addr', 'add', `${net.hostAddress}/${prefix}`, 'dev', net.bridge]);
  await run('ip', ['link', 'set', net.bridge, 'up']);
}

function firstHost(cidr: string): string {
  const [base] = cidr.split('/');
  const octets = (base ?? '').split('.').map(Number);
  if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o)))
    throw new Error(`not an IPv4 CIDR: ${cidr}`);
  octets[3] = (octets[3] ?? 0) + 1;
  return octets.join('.');
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}
