import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { AppsV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildKeywardImage, type ImageArchive } from '../../devenv/image/image.js';
import { type NodeCluster, startNodeCluster } from '../../devenv/node/node.js';
import { eventually } from '../../devenv/poll.js';
import { createDatabase, startPostgres, type TestPostgres } from '../../devenv/postgres.js';
import {
  megabytes,
  nodeLeftovers,
  podRssBytes,
  RESTRICTED_CONTAINER,
  RESTRICTED_NAMESPACE_LABELS,
  skipWithoutNode,
  uncompressedImageBytes,
} from '../support/node.js';
import { type StoreFixture, storeFixture } from '../support/webhook.js';

const skip = skipWithoutNode('test/e2e/node.test.ts');

const NS = 'keyward-node-e2e';
const WEBHOOK_PORT = 8080;
/** A LOGIN role in the migrations' keyward_webhook group, as a deployer creates it (docs/store-roles.md). */
const WEBHOOK_LOGIN = `kw_webhook_node_${process.pid}`;
const START_TIMEOUT_MS = 600_000;

let node: NodeCluster;
let pgServer: TestPostgres;
let fx: StoreFixture;
let image: ImageArchive;
let core: CoreV1Api;
let apps: AppsV1Api;

describe.skipIf(skip)('a real node runs the keyward image', () => {
  beforeAll(async () => {
    image = await buildKeywardImage();
    node = await startNodeCluster({ images: [image.archive] });
    pgServer = await startPostgres({ network: { address: node.hostAddress, cidr: node.podSubnet } });
    const dbUrl = await createDatabase(pgServer.adminUrl, 'keyward');
    fx = await storeFixture(dbUrl);
    const kc = node.kubeConfig();
    core = kc.makeApiClient(CoreV1Api);
    apps = kc.makeApiClient(AppsV1Api);
  }, START_TIMEOUT_MS);

  afterAll(async () => {
    // Normally already stopped by the last test; after a failure, still leave nothing behind.
    await closeStore();
    await node?.stop();
    await pgServer?.stop();
  }, 180_000);

  it('the node is Ready and the default ServiceAccount exists', async () => {
    const n = await core.readNode({ name: node.nodeName });
    expect(n.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    expect(n.status?.addresses).toContainEqual({ type: 'InternalIP', address: node.hostAddress });
    await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
  });

  it('runs keyward webhook from the loaded image under the restricted profile, Ready against Postgres, reachable through a ClusterIP Service', async () => {
    const password = randomBytes(18).toString('base64url');
    const admin = new pg.Client({ connectionString: fx.url });
    await admin.connect();
    try {
      await admin.query(`CREATE ROLE ${WEBHOOK_LOGIN} LOGIN PASSWORD '${password}' IN ROLE keyward_webhook`);
    } finally {
      await admin.end();
    }
    const storeUrl = new URL(fx.url);
    storeUrl.username = WEBHOOK_LOGIN;
    storeUrl.password = password;
    storeUrl.hostname = node.hostAddress;
    const user = await fx.createUser({ namespace: NS });
    const key = await fx.issueKey(user);

    await core.createNamespace({
      body: {
        metadata: {
          name: NS,
          labels: RESTRICTED_NAMESPACE_LABELS,
        },
      },
    });
    await core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: 'keyward-store' }, stringData: { KEYWARD_STORE_URL: storeUrl.toString() } },
    });
    const labels = { app: 'keyward-webhook' };
    await apps.createNamespacedDeployment({
      namespace: NS,
      body: {
        metadata: { name: 'keyward-webhook', labels },
        spec: {
          replicas: 1,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              automountServiceAccountToken: false,
              enableServiceLinks: false,
              securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
              containers: [
                {
                  name: 'webhook',
                  image: image.image,
                  imagePullPolicy: 'Never',
                  args: ['webhook'],
                  envFrom: [{ secretRef: { name: 'keyward-store' } }],
                  ports: [{ name: 'http', containerPort: WEBHOOK_PORT }],
                  readinessProbe: { httpGet: { path: '/readyz', port: 'http' }, periodSeconds: 1 },
                  livenessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 5 },
                  resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
                  securityContext: RESTRICTED_CONTAINER,
                },
              ],
            },
          },
        },
      },
    });
    await core.createNamespacedService({
      namespace: NS,
      body: {
        metadata: { name: 'keyward-webhook' },
        spec: { selector: labels, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
      },
    });
    await eventually(
      'the webhook Deployment Ready',
      async () => {
        const d = await apps.readNamespacedDeployment({ name: 'keyward-webhook', namespace: NS });
        return d.status?.readyReplicas === 1;
      },
      120_000,
    );
    const webhookPod = (await core.listNamespacedPod({ namespace: NS, labelSelector: 'app=keyward-webhook' }))
      .items[0]!;
    expect(webhookPod.status?.containerStatuses?.[0]?.ready).toBe(true);
    expect(webhookPod.spec?.containers[0]?.securityContext?.readOnlyRootFilesystem).toBe(true);

    const service = await core.readNamespacedService({ name: 'keyward-webhook', namespace: NS });
    const clusterIp = service.spec?.clusterIP;
    expect(clusterIp).toMatch(/^10\.0\.0\.\d+$/);
    // The client is the same image running node: static busybox wget segfaults in these containers.
    const script = `
      const base = 'http://${clusterIp}';
      // kube-proxy programs the Service a moment after the pod turns Ready: until then the
      // ClusterIP refuses connections (or, seen once, answers from elsewhere with 404), as it
      // would for any client started that early. Wait for the webhook's own 200, up to 10 s.
      let r;
      for (let attempt = 1; r?.status !== 200 && attempt <= 20; attempt++) {
        if (attempt > 1) await new Promise((done) => setTimeout(done, 500));
        r = await fetch(base + '/readyz').catch((err) => {
          if (attempt >= 20) throw err;
          return undefined;
        });
      }
      const ok = await fetch(base + '/verify', { headers: { authorization: 'Bearer ' + process.env.TOKEN } });
      const bad = await fetch(base + '/verify', { headers: { authorization: 'Bearer kw_not_a_real_token' } });
      const api = await fetch('https://' + process.env.KUBERNETES_SERVICE_HOST + ':' + process.env.KUBERNETES_SERVICE_PORT + '/version');
      console.log(JSON.stringify({ readyz: r.status, verify: ok.status, bogus: bad.status, user: ok.headers.get('x-keyward-user'), api: api.status }));
    `;
    await core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: 'client-token' }, stringData: { token: key.token } },
    });
    await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: 'client' },
        spec: {
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: 'client',
              image: image.image,
              imagePullPolicy: 'Never',
              command: ['node', '--input-type=module', '-e', script],
              // The API server through the `kubernetes` Service, verified with the CA that
              // kube-controller-manager publishes into every namespace.
              env: [
                { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'client-token', key: 'token' } } },
                { name: 'NODE_EXTRA_CA_CERTS', value: '/ca/ca.crt' },
              ],
              volumeMounts: [{ name: 'ca', mountPath: '/ca', readOnly: true }],
              securityContext: RESTRICTED_CONTAINER,
            },
          ],
          volumes: [{ name: 'ca', configMap: { name: 'kube-root-ca.crt' } }],
        },
      },
    });
    let client: V1Pod | undefined;
    await eventually(
      'the client pod to finish',
      async () => {
        client = await core.readNamespacedPod({ name: 'client', namespace: NS });
        return client.status?.phase === 'Succeeded' || client.status?.phase === 'Failed';
      },
      60_000,
    );
    // Through the API server to the kubelet: logs work with the node's InternalIP.
    const log = await core.readNamespacedPodLog({ name: 'client', namespace: NS });
    expect(client?.status?.phase, log).toBe('Succeeded');
    expect(JSON.parse(log.trim().split('\n').pop() ?? '{}')).toEqual({
      readyz: 200,
      verify: 200,
      bogus: 401,
      user: user.username,
      api: 200,
    });

    const memory = node.memory();
    const podRss = podRssBytes(webhookPod.metadata?.uid ?? '');
    const mb = megabytes;
    process.stderr.write(
      `node figures: Ready after ${(node.readyAfterMs / 1000).toFixed(1)}s; image ${image.image} archive ` +
        `${mb(statSync(image.archive).size)} (uncompressed ${mb(uncompressedImageBytes(image.archive))}); webhook pod RSS ` +
        `${mb(podRss)}; ${Object.entries(memory)
          .map(([name, rss]) => `${name} ${mb(rss)}`)
          .join(', ')}\n`,
    );
    expect(podRss).toBeGreaterThan(0);
  }, 300_000);

  it('stops without leaving mounts, interfaces, iptables chains, cgroups or sysctl changes behind', async () => {
    await closeStore();
    const problems = await node.stop();
    await pgServer.stop();
    expect(await nodeLeftovers(node, problems)).toEqual([]);
  }, 180_000);
});

let storeClosed = false;
async function closeStore(): Promise<void> {
  if (storeClosed || !fx) return;
  storeClosed = true;
  await fx.close();
}
