import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { createCa, createSigningKeyPair, issueCertificate, type KeyPairFiles } from '../pki.js';
import {
  freePort,
  ManagedProcess,
  onExitCleanup,
  requireTool,
  runBuildScript,
  waitUntilReady,
} from '../process.js';
import { repoRoot } from '../repo.js';

export interface ControlPlaneOptions {
  /**
   * Makes kube-apiserver authenticate bearer tokens it does not know through this TokenReview
   * webhook (`authentication.k8s.io/v1`, no caching), as a cluster using keyward's webhook would.
   */
  authnWebhook?: {
    url: string;
    /** CA that signed the webhook's serving certificate (an https url). */
    caFile?: string;
    /** The client certificate kube-apiserver presents to the webhook. */
    clientCertificate?: KeyPairFiles;
  };
  /** Where the component logs go; kept after stop(). Default: inside the temp dir, removed on stop(). */
  logDir?: string;
  /**
   * Runs the control plane for a real node (devenv/node.ts) instead of for API-only tests.
   * kube-apiserver binds and advertises `address` (one pods can reach, so the `kubernetes` Service
   * gets an endpoint), authorizes kubelets (Node,RBAC, NodeRestriction), admits ServiceAccounts,
   * reaches kubelets by InternalIP with its own client certificate; kube-controller-manager runs
   * every controller with per-controller ServiceAccount credentials.
   */
  node?: { address: string };
  /** Receives the one-line start-up summary (where, how long each part took). Default: stderr. */
  report?: (line: string) => void;
}

export interface ControlPlane {
  /** Admin kubeconfig (client certificate in `system:masters`). */
  kubeconfigPath: string;
  /** `https://127.0.0.1:<port>` */
  server: string;
  /** The CA that signed the serving and client certificates. */
  caFile: string;
  /** The CA's certificate and key, for issuing more certificates (kubelet, scheduler…). */
  ca: KeyPairFiles;
  /** The temp dir holding the PKI, logs and etcd data; removed by stop(). */
  dir: string;
  /** Directory holding etcd, kube-apiserver, kube-controller-manager and kubectl. */
  binDir: string;
  /** A fresh admin KubeConfig loaded from `kubeconfigPath`. */
  kubeConfig(): KubeConfig;
  /** Stops every component (controller-manager, API server, etcd) and removes the temp dir. */
  stop(): Promise<void>;
  /** Stops kube-apiserver and starts it again on the same port and etcd; resolves once ready. */
  restartApiServer(): Promise<void>;
}

const tools = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl'] as const;
const startTimeoutMs = 60_000;
const workDirPrefix = 'keyward-cp-';
/** Holds the pid of the Node process that owns a work dir, so orphaned dirs can be recognised. */
const ownerFile = 'owner.pid';

/**
 * The directory with the control-plane binaries: `$KEYWARD_CONTROLPLANE_BIN`, or whatever
 * devenv/controlplane/build.sh prints (it builds once into a cache dir and is a no-op afterwards).
 */
export async function controlPlaneBinDir(): Promise<string> {
  return (await controlPlaneBinaries()).binDir;
}

/** controlPlaneBinDir(), and which binaries this call had to build (none when the cache had them). */
export async function controlPlaneBinaries(): Promise<{ binDir: string; built: string[] }> {
  const fromEnv = process.env.KEYWARD_CONTROLPLANE_BIN;
  if (fromEnv) {
    for (const tool of tools) {
      requireTool(
        join(fromEnv, tool),
        'unset KEYWARD_CONTROLPLANE_BIN to build it with devenv/controlplane/build.sh',
      );
    }
    return { binDir: fromEnv, built: [] };
  }
  const script = findBuildScript();
  const { stdout, stderr } = await runBuildScript(script);
  const binDir = stdout.trim().split('\n').pop() ?? '';
  if (!binDir) throw new Error(`${script} printed no binary directory`);
  const built = [...stderr.matchAll(/^build\.sh: built (\S+)/gm)].map((m) => m[1] ?? '');
  return { binDir, built };
}

function findBuildScript(): string {
  return join(repoRoot(), 'devenv', 'controlplane', 'build.sh');
}

/** Starts etcd, kube-apiserver and kube-controller-manager on free loopback ports. */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const binDir = await controlPlaneBinDir();
  const bin = (tool: (typeof tools)[number]): string =>
    requireTool(join(binDir, tool), 'rebuild with devenv/controlplane/build.sh');

  await removeOrphanedWorkDirs();
  const t0 = performance.now();
  const dir = await mkdtemp(join(tmpdir(), workDirPrefix));
  const unregisterCleanup = onExitCleanup(() => rmSync(dir, { recursive: true, force: true }));
  await writeFile(join(dir, ownerFile), String(process.pid));
  const logDir = opts.logDir ?? join(dir, 'logs');
  const pkiDir = join(dir, 'pki');
  await Promise.all([mkdir(logDir, { recursive: true }), mkdir(pkiDir)]);

  const processes: ManagedProcess[] = [];
  const stopAll = async (): Promise<void> => {
    // Reverse start order, so etcd goes last: the API server's shutdown stalls without it.
    for (const p of [...processes].reverse()) await p.stop();
    await rm(dir, { recursive: true, force: true });
    unregisterCleanup();
  };

  try {
    const [etcdClientPort, etcdPeerPort, apiPort, cmPort] = await distinctFreePorts(4);
    const address = opts.node?.address ?? '127.0.0.1';
    const server = `https://${address}:${apiPort}`;

    const ca = await createCa(pkiDir, 'keyward-test-ca');
    const [apiServing, admin, cmClient, cmServing, serviceAccount] = await Promise.all([
      issueCertificate(pkiDir, ca, {
        name: 'kube-apiserver',
        commonName: 'kube-apiserver',
        usage: 'server',
        // The in-cluster names too, so the same cert serves a client that resolves them.
        subjectAltNames: [
          'IP:127.0.0.1',
          ...(opts.node ? [`IP:${opts.node.address}`] : []),
          'IP:10.0.0.1',
          'DNS:localhost',
          'DNS:kubernetes',
          'DNS:kubernetes.default',
          'DNS:kubernetes.default.svc',
          'DNS:kubernetes.default.svc.cluster.local',
        ],
      }),
      issueCertificate(pkiDir, ca, {
        name: 'admin',
        commonName: 'keyward-admin',
        organizations: ['system:masters'],
        usage: 'client',
      }),
      // With --use-service-account-credentials=false every controller acts as this identity, so
      // it needs what the garbage collector and namespace controller delete across all types.
      issueCertificate(pkiDir, ca, {
        name: 'kube-controller-manager',
        commonName: 'system:kube-controller-manager',
        organizations: ['system:masters'],
        usage: 'client',
      }),
      issueCertificate(pkiDir, ca, {
        name: 'kube-controller-manager-serving',
        commonName: 'kube-controller-manager',
        usage: 'server',
        subjectAltNames: ['IP:127.0.0.1', 'DNS:localhost'],
      }),
      createSigningKeyPair(pkiDir, 'service-account'),
    ]);
    const kubeconfigPath = join(dir, 'admin.kubeconfig');
    const cmKubeconfig = join(dir, 'kube-controller-manager.kubeconfig');
    await Promise.all([
      writeFile(kubeconfigPath, clientKubeconfig(server, ca.cert, 'keyward-admin', admin)),
      writeFile(cmKubeconfig, clientKubeconfig(server, ca.cert, 'kube-controller-manager', cmClient)),
    ]);
    const tPki = performance.now();

    const etcd = new ManagedProcess({
      name: 'etcd',
      command: bin('etcd'),
      logFile: join(logDir, 'etcd.log'),
      args: [
        '--name=keyward-test',
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=http://127.0.0.1:${etcdClientPort}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdClientPort}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-cluster=keyward-test=http://127.0.0.1:${etcdPeerPort}`,
        '--initial-cluster-state=new',
        // Throwaway data: durability costs seconds of fsync on slow CI disks for nothing.
        '--unsafe-no-fsync',
      ],
    });
    processes.push(etcd);
    await waitUntilReady(
      etcd,
      async () => {
        const res = await fetch(`http://127.0.0.1:${etcdClientPort}/health`, {
          signal: AbortSignal.timeout(2000),
        });
        return res.ok && ((await res.json()) as { health?: string }).health === 'true';
      },
      startTimeoutMs,
      'healthy',
    );
    const tEtcd = performance.now();

    const apiArgs = [
      `--etcd-servers=http://127.0.0.1:${etcdClientPort}`,
      `--bind-address=${address}`,
      `--advertise-address=${address}`,
      `--secure-port=${apiPort}`,
      `--cert-dir=${join(dir, 'kube-apiserver')}`,
      `--tls-cert-file=${apiServing.cert}`,
      `--tls-private-key-file=${apiServing.key}`,
      `--client-ca-file=${ca.cert}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${serviceAccount.publicKey}`,
      `--service-account-signing-key-file=${serviceAccount.privateKey}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--profiling=false',
      // Graceful termination otherwise waits up to 60 s for open watches (the controller-manager
      // holds dozens); this mode answers 429 while draining, then gives connections 2 s.
      '--shutdown-send-retry-after=true',
    ];
    if (opts.node) {
      const kubeletClient = await issueCertificate(pkiDir, ca, {
        name: 'kube-apiserver-kubelet-client',
        commonName: 'kube-apiserver-kubelet-client',
        organizations: ['system:masters'],
        usage: 'client',
      });
      apiArgs.push(
        '--authorization-mode=Node,RBAC',
        '--enable-admission-plugins=NodeRestriction',
        `--kubelet-client-certificate=${kubeletClient.cert}`,
        `--kubelet-client-key=${kubeletClient.key}`,
        `--kubelet-certificate-authority=${ca.cert}`,
        // The node's hostname resolves to 127.0.0.1 on these machines, which breaks logs and exec.
        '--kubelet-preferred-address-types=InternalIP,Hostname',
      );
    } else {
      apiArgs.push(
        '--authorization-mode=RBAC',
        // Nothing runs the service-account controller, so no namespace has a `default` account
        // for this plugin to insist on; tests create the accounts they use.
        '--disable-admission-plugins=ServiceAccount',
        // No kubelets can reach 127.0.0.1 endpoints, and Endpoints validation rejects loopback
        // addresses, which would only fill the log with reconcile errors.
        '--endpoint-reconciler-type=none',
      );
    }
    if (opts.authnWebhook) {
      const webhookConfig = join(dir, 'authn-webhook.kubeconfig');
      await writeFile(webhookConfig, webhookKubeconfig(opts.authnWebhook));
      apiArgs.push(
        `--authentication-token-webhook-config-file=${webhookConfig}`,
        '--authentication-token-webhook-version=v1',
        // Tests revoke keys and expect the very next request to fail.
        '--authentication-token-webhook-cache-ttl=0s',
      );
    }
    const tls: TlsFiles = {
      ca: await readFile(ca.cert),
      cert: await readFile(admin.cert),
      key: await readFile(admin.key),
    };
    const startApiServer = async (): Promise<ManagedProcess> => {
      const proc = new ManagedProcess({
        name: 'kube-apiserver',
        command: bin('kube-apiserver'),
        args: apiArgs,
        logFile: join(logDir, 'kube-apiserver.log'),
      });
      processes.push(proc);
      await waitUntilReady(
        proc,
        async () => (await httpsStatus(`${server}/readyz`, tls)) === 200,
        startTimeoutMs,
      );
      return proc;
    };
    let apiServer = await startApiServer();
    const tApi = performance.now();

    const controllerManager = new ManagedProcess({
      name: 'kube-controller-manager',
      command: bin('kube-controller-manager'),
      logFile: join(logDir, 'kube-controller-manager.log'),
      args: [
        `--kubeconfig=${cmKubeconfig}`,
        `--authentication-kubeconfig=${cmKubeconfig}`,
        `--authorization-kubeconfig=${cmKubeconfig}`,
        ...(opts.node
          ? [
              // Everything a cluster with pods needs: ServiceAccounts and their tokens, the
              // kube-root-ca.crt ConfigMaps, Deployments, Jobs, EndpointSlices, CSR signing.
              '--controllers=*',
              '--use-service-account-credentials=true',
              `--service-account-private-key-file=${serviceAccount.privateKey}`,
              `--root-ca-file=${ca.cert}`,
              `--cluster-signing-cert-file=${ca.cert}`,
              `--cluster-signing-key-file=${ca.key}`,
            ]
          : [
              '--controllers=garbage-collector-controller,namespace-controller',
              '--use-service-account-credentials=false',
            ]),
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        `--secure-port=${cmPort}`,
        `--tls-cert-file=${cmServing.cert}`,
        `--tls-private-key-file=${cmServing.key}`,
      ],
    });
    processes.push(controllerManager);
    await waitUntilReady(
      controllerManager,
      async () => (await httpsStatus(`https://127.0.0.1:${cmPort}/healthz`, { ca: tls.ca })) === 200,
      startTimeoutMs,
      'healthy',
    );
    const tCm = performance.now();

    const secs = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;
    const report = opts.report ?? ((line: string) => process.stderr.write(`keyward ${line}\n`));
    report(
      `control plane ready at ${server} in ${secs(tCm - t0)} ` +
        `(pki ${secs(tPki - t0)}, etcd ${secs(tEtcd - tPki)}, kube-apiserver ${secs(tApi - tEtcd)}, ` +
        `kube-controller-manager ${secs(tCm - tApi)}); logs in ${logDir}`,
    );

    let stopped: Promise<void> | undefined;
    return {
      kubeconfigPath,
      server,
      caFile: ca.cert,
      ca,
      dir,
      binDir,
      kubeConfig(): KubeConfig {
        const kc = new KubeConfig();
        kc.loadFromFile(kubeconfigPath);
        return kc;
      },
      stop(): Promise<void> {
        stopped ??= stopAll();
        return stopped;
      },
      async restartApiServer(): Promise<void> {
        if (stopped) throw new Error('restartApiServer() after stop()');
        await apiServer.stop();
        processes.splice(processes.indexOf(apiServer), 1);
        apiServer = await startApiServer();
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/**
 * Removes the work dirs (etcd preallocates over 100 MB) of control planes whose Node process was
 * SIGKILLed: the watchdog still kills their components, but nothing was left to delete files.
 */
async function removeOrphanedWorkDirs(): Promise<void> {
  const names = (await readdir(tmpdir())).filter((name) => name.startsWith(workDirPrefix));
  await Promise.all(
    names.map(async (name) => {
      const dir = join(tmpdir(), name);
      // No owner file yet means another process is still setting this dir up.
      const owner = Number.parseInt(await readFile(join(dir, ownerFile), 'utf8').catch(() => ''), 10);
      if (Number.isInteger(owner) && !isAlive(owner)) await rm(dir, { recursive: true, force: true });
    }),
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

function clientKubeconfig(server: string, caFile: string, user: string, client: KeyPairFiles): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'keyward-test', cluster: { server, 'certificate-authority': caFile } }],
    users: [{ name: user, user: { 'client-certificate': client.cert, 'client-key': client.key } }],
    contexts: [{ name: 'keyward-test', context: { cluster: 'keyward-test', user } }],
    'current-context': 'keyward-test',
  });
}

/** The kubeconfig-format file kube-apiserver reads to find its TokenReview webhook. */
function webhookKubeconfig(webhook: NonNullable<ControlPlaneOptions['authnWebhook']>): string {
  const { url, caFile, clientCertificate } = webhook;
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'authn-webhook',
        cluster: { server: url, ...(caFile ? { 'certificate-authority': caFile } : {}) },
      },
    ],
    users: [
      {
        name: 'kube-apiserver',
        user: clientCertificate
          ? { 'client-certificate': clientCertificate.cert, 'client-key': clientCertificate.key }
          : {},
      },
    ],
    contexts: [{ name: 'authn-webhook', context: { cluster: 'authn-webhook', user: 'kube-apiserver' } }],
    'current-context': 'authn-webhook',
  });
}

interface TlsFiles {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** Status code of a GET, verified against our CA (fetch cannot take a custom CA or client cert). */
async function httpsStatus(url: string, tls: TlsFiles): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { ...tls, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}
