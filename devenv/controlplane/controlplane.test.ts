import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import {
  ApiException,
  ApiextensionsV1Api,
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type V1ConfigMap,
  type V1CustomResourceDefinition,
  Watch,
} from '@kubernetes/client-node';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { testKubeConfig } from '../../test/harness/kube.js';
import { createTestNamespace, restrictedKubeConfig } from '../kube.js';
import { eventually } from '../poll.js';
import { controlPlaneBinDir, startControlPlane } from './controlplane.js';

const run = promisify(execFile);

/** The release devenv/controlplane/tools/go.mod builds, so this test follows a version bump. */
const kubernetesVersion = /^\s*k8s\.io\/kubernetes\s+(v\S+)/m.exec(
  readFileSync(new URL('./tools/go.mod', import.meta.url), 'utf8'),
)?.[1];

/** Status code and message of a rejected API call. */
async function rejection(call: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await call;
  } catch (err) {
    if (!(err instanceof ApiException)) throw err;
    const body: unknown = typeof err.body === 'string' ? JSON.parse(err.body || '{}') : err.body;
    const message = (body as { message?: string } | undefined)?.message ?? err.message;
    return { code: err.code, message };
  }
  throw new Error('expected the API server to reject the request');
}

async function isGone(read: () => Promise<unknown>): Promise<boolean> {
  try {
    await read();
    return false;
  } catch (err) {
    if (err instanceof ApiException && err.code === 404) return true;
    throw err;
  }
}

describe('the shared test control plane', () => {
  let kc: KubeConfig;
  let core: CoreV1Api;
  let namespace: string;

  beforeAll(async () => {
    kc = testKubeConfig();
    core = kc.makeApiClient(CoreV1Api);
    namespace = await createTestNamespace(kc, 'smoke');
  });

  it('stores and returns a ConfigMap and a Secret', async () => {
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'settings' }, data: { a: '1' } },
    });
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: 'credentials' }, stringData: { token: 's3cret' } },
    });

    const cm = await core.readNamespacedConfigMap({ namespace, name: 'settings' });
    const secret = await core.readNamespacedSecret({ namespace, name: 'credentials' });
    expect(cm.data).toEqual({ a: '1' });
    expect(Buffer.from(secret.data?.token ?? '', 'base64').toString()).toBe('s3cret');
    expect(cm.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('enforces a CRD schema and names the offending field', async () => {
    const crd: V1CustomResourceDefinition = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'gadgets.smoke.keyward.dev' },
      spec: {
        group: 'smoke.keyward.dev',
        scope: 'Namespaced',
        names: { plural: 'gadgets', singular: 'gadget', kind: 'Gadget', listKind: 'GadgetList' },
        versions: [
          {
            name: 'v1',
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: {
                type: 'object',
                properties: {
                  spec: {
                    type: 'object',
                    required: ['size'],
                    properties: { size: { type: 'integer', minimum: 1, maximum: 10 } },
                  },
                },
              },
            },
          },
        ],
      },
    };
    const ext = kc.makeApiClient(ApiextensionsV1Api);
    await ext.createCustomResourceDefinition({ body: crd });
    await eventually(
      'the smoke CRD to be established',
      async () => {
        const current = await ext.readCustomResourceDefinition({ name: crd.metadata!.name! });
        return (
          current.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false
        );
      },
      20_000,
    );

    const objects = kc.makeApiClient(CustomObjectsApi);
    const gadget = (name: string, size: unknown): object => ({
      apiVersion: 'smoke.keyward.dev/v1',
      kind: 'Gadget',
      metadata: { name },
      spec: { size },
    });
    const create = (body: object): Promise<unknown> =>
      objects.createNamespacedCustomObject({
        group: 'smoke.keyward.dev',
        version: 'v1',
        namespace,
        plural: 'gadgets',
        body,
      });

    const rejected = await rejection(create(gadget('too-big', 11)));
    expect(rejected.code).toBe(422);
    expect(rejected.message).toContain('spec.size');
    expect(rejected.message).toMatch(/less than or equal to 10/);
    await expect(create(gadget('fits', 3))).resolves.toMatchObject({ spec: { size: 3 } });
  });

  it('delivers a watch event for a new object', async () => {
    const list = await core.listNamespacedConfigMap({ namespace });
    let abort: AbortController | undefined;
    const added = new Promise<V1ConfigMap>((resolve, reject) => {
      new Watch(kc)
        .watch(
          `/api/v1/namespaces/${namespace}/configmaps`,
          // From the list's version, so the event is a real change, not the initial synthetic ADDED.
          { resourceVersion: list.metadata?.resourceVersion },
          (phase, obj: V1ConfigMap) => {
            if (phase === 'ADDED' && obj.metadata?.name === 'watched') resolve(obj);
          },
          (err: unknown) => reject(err ?? new Error('watch ended before the event')),
        )
        .then((controller) => {
          abort = controller;
        }, reject);
    });
    try {
      await eventually('the watch to start', () => abort !== undefined, 10_000);
      await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'watched' } } });
      const event = await added;
      expect(event.metadata?.namespace).toBe(namespace);
    } finally {
      abort?.abort();
    }
  });

  it('garbage-collects a dependent whose owner was deleted', async () => {
    const owner = await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'owner' } } });
    await core.createNamespacedConfigMap({
      namespace,
      body: {
        metadata: {
          name: 'dependent',
          ownerReferences: [
            { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata!.uid! },
          ],
        },
      },
    });
    await core.deleteNamespacedConfigMap({ namespace, name: 'owner' });
    await eventually(
      'the garbage collector to delete the dependent',
      () => isGone(() => core.readNamespacedConfigMap({ namespace, name: 'dependent' })),
      45_000,
    );
  });

  it('deletes a namespace together with its contents', async () => {
    const doomed = await createTestNamespace(kc, 'smoke-doomed');
    await core.createNamespacedConfigMap({ namespace: doomed, body: { metadata: { name: 'inside' } } });
    await core.deleteNamespace({ name: doomed });
    await eventually(
      'the namespace to be deleted',
      () => isGone(() => core.readNamespace({ name: doomed })),
      45_000,
    );
  });

  it('confines a restricted identity to what its roles grant', async () => {
    const restricted = await restrictedKubeConfig(kc, {
      namespace,
      name: 'reader',
      rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list'] }],
      clusterRules: [{ apiGroups: [''], resources: ['namespaces'], verbs: ['get'] }],
    });
    expect(restricted.getCurrentUser()?.certFile).toBeUndefined();
    const asReader = restricted.makeApiClient(CoreV1Api);

    await expect(asReader.listNamespacedConfigMap({ namespace })).resolves.toHaveProperty('items');
    await expect(asReader.readNamespace({ name: namespace })).resolves.toHaveProperty(
      'metadata.name',
      namespace,
    );

    const forbidden = [
      () => asReader.listNamespacedSecret({ namespace }),
      () => asReader.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'not-allowed' } } }),
      () => asReader.listNamespace(),
    ];
    for (const call of forbidden) {
      const rejected = await rejection(call());
      expect(rejected.code).toBe(403);
      expect(rejected.message).toContain(`system:serviceaccount:${namespace}:reader`);
    }
  });

  it('reports the release it was built from through the built kubectl', async () => {
    const kubectl = join(await controlPlaneBinDir(), 'kubectl');
    const { stdout } = await run(kubectl, [
      'version',
      '-o',
      'json',
      '--kubeconfig',
      inject('kubeconfigPath'),
    ]);
    const version = JSON.parse(stdout) as {
      clientVersion: { gitVersion: string };
      serverVersion: { gitVersion: string };
    };
    expect(kubernetesVersion).toMatch(/^v1\.\d+\.\d+$/);
    expect(version.serverVersion.gitVersion).toBe(kubernetesVersion);
    expect(version.clientVersion.gitVersion).toBe(kubernetesVersion);
  });
});

/** Answers TokenReviews like keyward's webhook will: one known token, everything else rejected. */
async function startTokenReviewer(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on('end', () => {
      const review = JSON.parse(body) as { spec: { token: string } };
      const status =
        review.spec.token === 'kw_smoke'
          ? {
              authenticated: true,
              user: { username: 'keyward:smoke', uid: 'smoke-uid', groups: ['smoke-team'] },
            }
          : { authenticated: false, error: 'unknown token' };
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', status }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}/tokenreview` };
}

function bearerKubeConfig(admin: KubeConfig, token: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [admin.getCurrentCluster()],
    users: [{ name: 'bearer', token }],
    contexts: [{ name: 'bearer', cluster: admin.getCurrentCluster()!.name, user: 'bearer' }],
    currentContext: 'bearer',
  });
  return kc;
}

describe('a private control plane', () => {
  it('authenticates through a TokenReview webhook, keeps its data across an API server restart and leaves no process', async () => {
    const reviewer = await startTokenReviewer();
    const cp = await startControlPlane({ authnWebhook: { url: reviewer.url } });
    const workDir = dirname(cp.kubeconfigPath);
    try {
      const admin = cp.kubeConfig();
      const whoAmI = (kc: KubeConfig): Promise<unknown> =>
        kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} });

      await expect(whoAmI(bearerKubeConfig(admin, 'kw_smoke'))).resolves.toMatchObject({
        status: {
          userInfo: {
            username: 'keyward:smoke',
            uid: 'smoke-uid',
            groups: expect.arrayContaining(['smoke-team']),
          },
        },
      });
      expect((await rejection(whoAmI(bearerKubeConfig(admin, 'kw_wrong')))).code).toBe(401);

      const core = admin.makeApiClient(CoreV1Api);
      await core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { name: 'survivor' } },
      });
      await cp.restartApiServer();
      await expect(
        core.readNamespacedConfigMap({ namespace: 'default', name: 'survivor' }),
      ).resolves.toBeDefined();
      await expect(whoAmI(bearerKubeConfig(admin, 'kw_smoke'))).resolves.toBeDefined();
    } finally {
      await cp.stop();
      reviewer.server.close();
    }
    const { stdout } = await run('ps', ['-eo', 'args']);
    expect(stdout.split('\n').filter((line) => line.includes(workDir))).toEqual([]);
    expect(existsSync(workDir)).toBe(false);
  }, 180_000);
});
