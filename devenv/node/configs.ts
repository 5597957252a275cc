import { stringify } from 'yaml';

/** Where every node component keeps its state: all under the node's temp dir. */
export interface NodePaths {
  dir: string;
  containerdSocket: string;
  containerdRoot: string;
  containerdState: string;
  runcRoot: string;
  cniConfDir: string;
  cniBinDir: string;
  cniIpamDir: string;
  kubeletRoot: string;
  podLogs: string;
}

export interface NodeNetwork {
  /** The CNI bridge's name; created before the API server binds its address. */
  bridge: string;
  /** Pod subnet, e.g. 10.244.0.0/24. */
  podSubnet: string;
  /** The bridge's address (the pods' gateway): the API server, kubelet and host services bind it. */
  hostAddress: string;
}

/** The CNI bridge; its address is the host as pods see it. */
export const NODE_BRIDGE = 'keyward0';
/** The sandbox (pause) image; our own build carries this name and is pinned so it is never pulled. */
const PAUSE_IMAGE = 'registry.k8s.io/pause:3.10.1';
/** Low eviction thresholds: a CI disk at 90% must not evict the pods under test. */
const EVICTION_PERCENT = '1%';

export function containerdConfig(paths: NodePaths, runc: string): string {
  // Config version 3 (containerd 2.x). restrict_oom_score_adj: this VM's capability bounding set
  // lacks CAP_SYS_RESOURCE even for root, so a negative oom_score_adj would kill every sandbox
  // with "can't get final child's PID from pipe: EOF".
  return `version = 3
root = ${JSON.stringify(paths.containerdRoot)}
state = ${JSON.stringify(paths.containerdState)}
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.tracing"]

[grpc]
  address = ${JSON.stringify(paths.containerdSocket)}

[ttrpc]
  address = ${JSON.stringify(`${paths.containerdSocket}.ttrpc`)}

[metrics]
  address = ""

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = [${JSON.stringify(paths.cniBinDir)}]
  conf_dir = ${JSON.stringify(paths.cniConfDir)}

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = ${JSON.stringify(runc)}
  Root = ${JSON.stringify(paths.runcRoot)}
  SystemdCgroup = false

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = ${JSON.stringify(PAUSE_IMAGE)}

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`;
}

export function cniConfig(paths: NodePaths, net: NodeNetwork): string {
  return `${JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: 'keyward',
      plugins: [
        {
          type: 'bridge',
          bridge: net.bridge,
          isGateway: true,
          ipMasq: true,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: net.podSubnet, gateway: net.hostAddress }]],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir: paths.cniIpamDir,
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  )}\n`;
}

export interface KubeletSettings {
  paths: NodePaths;
  net: NodeNetwork;
  caFile: string;
  servingCert: { cert: string; key: string };
  port: number;
  healthzPort: number;
}

export function kubeletConfig(s: KubeletSettings): string {
  return stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    // These machines have cgroup v1, which kubelet 1.35+ refuses unless told otherwise.
    failCgroupV1: false,
    cgroupDriver: 'cgroupfs',
    failSwapOn: false,
    address: s.net.hostAddress,
    port: s.port,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: s.healthzPort,
    tlsCertFile: s.servingCert.cert,
    tlsPrivateKeyFile: s.servingCert.key,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: s.caFile },
    },
    authorization: { mode: 'Webhook' },
    containerRuntimeEndpoint: `unix://${s.paths.containerdSocket}`,
    podLogsDir: s.paths.podLogs,
    clusterDomain: 'cluster.local',
    evictionHard: {
      'memory.available': '100Mi',
      'nodefs.available': EVICTION_PERCENT,
      'imagefs.available': EVICTION_PERCENT,
      'nodefs.inodesFree': EVICTION_PERCENT,
    },
    // Never garbage-collect the images the harness loaded: there is no registry to pull them again.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    serializeImagePulls: false,
    shutdownGracePeriod: '0s',
  });
}

export function kubeProxyConfig(
  kubeconfig: string,
  nodeName: string,
  net: NodeNetwork,
  ports: number[],
): string {
  return stringify({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    mode: 'iptables',
    clientConnection: { kubeconfig },
    hostnameOverride: nodeName,
    clusterCIDR: net.podSubnet,
    bindAddress: net.hostAddress,
    metricsBindAddress: `127.0.0.1:${ports[0]}`,
    healthzBindAddress: `127.0.0.1:${ports[1]}`,
    // Leave the host's conntrack table size and timeouts alone (0 = do not change).
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
  });
}

/** A kubeconfig for a client certificate. */
export function certKubeconfig(
  server: string,
  caFile: string,
  user: string,
  cert: string,
  key: string,
): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'keyward-node', cluster: { server, 'certificate-authority': caFile } }],
    users: [{ name: user, user: { 'client-certificate': cert, 'client-key': key } }],
    contexts: [{ name: 'keyward-node', context: { cluster: 'keyward-node', user } }],
    'current-context': 'keyward-node',
  });
}
