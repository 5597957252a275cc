import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type RunningWebhook, runWebhook } from '../../webhook/server.js';
import { type ControlPlane, startControlPlane } from '../harness/controlplane.js';
import { testDatabase } from '../harness/database.js';
import { type StoreFixture, storeFixture, testConfig, waitFor } from '../support/webhook.js';

const run = promisify(execFile);

let fx: StoreFixture;
let webhook: RunningWebhook;
let cp: ControlPlane;
let dir: string;
/** A kubeconfig with the cluster and no credentials: every call passes --token. */
let anonymousKubeconfig: string;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  webhook = await runWebhook({
    config: testConfig(fx.url, { KEYWARD_TOKEN_HEADER: 'none' }),
    handleSignals: false,
    defaultMetrics: false,
  });
  await waitFor(async () => (await fetch(`${webhook.url}/readyz`)).status === 200, 10_000, 'webhook ready');
  cp = await startControlPlane({ authnWebhook: { url: `${webhook.url}/tokenreview` } });
  dir = await mkdtemp(join(tmpdir(), 'keyward-kube-e2e-'));
  anonymousKubeconfig = join(dir, 'token.kubeconfig');
  await writeFile(
    anonymousKubeconfig,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: cp.server, 'certificate-authority': cp.caFile } }],
      users: [{ name: 'u', user: {} }],
      contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'c',
    }),
  );
});

afterAll(async () => {
  await cp?.stop();
  await webhook?.close();
  await fx?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function kubectl(args: string[], token?: string): Promise<Result> {
  const auth =
    token === undefined
      ? ['--kubeconfig', cp.kubeconfigPath]
      : ['--kubeconfig', anonymousKubeconfig, '--token', token];
  try {
    const { stdout, stderr } = await run(join(cp.binDir, 'kubectl'), [...auth, ...args], { timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('kube-apiserver authenticating API keys through /tokenreview', () => {
  it('kubectl auth whoami prints keyward:<username> with its groups', async () => {
    const user = await fx.createUser({ groups: ['platform', 'viewers'] });
    const key = await fx.issueKey(user);
    const whoami = await kubectl(['auth', 'whoami', '-o', 'json'], key.token);
    expect(whoami.stderr).toBe('');
    const review = JSON.parse(whoami.stdout) as {
      status: {
        userInfo: { username: string; groups: string[]; uid: string; extra: Record<string, string[]> };
      };
    };
    expect(review.status.userInfo.username).toBe(`keyward:${user.username}`);
    expect(review.status.userInfo.uid).toBe(user.id);
    expect(review.status.userInfo.groups).toEqual(
      expect.arrayContaining(['platform', 'viewers', 'system:authenticated']),
    );
    expect(review.status.userInfo.extra['keyward.dev/key-id']).toEqual([key.keyId]);
    const table = await kubectl(['auth', 'whoami'], key.token);
    expect(table.stdout).toContain(`keyward:${user.username}`);
  });

  it('applies RBAC bound to that user, and refuses a bad key', async () => {
    const user = await fx.createUser();
    const key = await fx.issueKey(user);
    const ns = `kw-e2e-${Date.now().toString(36)}`;
    expect((await kubectl(['create', 'namespace', ns])).code).toBe(0);
    expect(
      (await kubectl(['-n', ns, 'create', 'role', 'cm-reader', '--verb=get,list', '--resource=configmaps']))
        .code,
    ).toBe(0);
    expect(
      (
        await kubectl([
          '-n',
          ns,
          'create',
          'rolebinding',
          'cm-reader',
          '--role=cm-reader',
          `--user=keyward:${user.username}`,
        ])
      ).code,
    ).toBe(0);
    await waitFor(
      async () => (await kubectl(['-n', ns, 'get', 'configmaps'], key.token)).code === 0,
      10_000,
      'RBAC grant',
    );
    const secrets = await kubectl(['-n', ns, 'get', 'secrets'], key.token);
    expect(secrets.code).not.toBe(0);
    expect(secrets.stderr).toMatch(new RegExp(`Forbidden.*keyward:${user.username}`));
    const other = await kubectl(['get', 'configmaps', '-n', 'default'], key.token);
    expect(other.stderr).toMatch(/Forbidden/);

    const bad = await kubectl(['auth', 'whoami'], 'kw_not-a-key');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/Unauthorized/);
  });

  it('refuses a suspended user (after the API server forgets its cached success) and accepts it again when resumed', async () => {
    const user = await fx.createUser();
    const key = await fx.issueKey(user);
    expect((await kubectl(['auth', 'whoami'], key.token)).code).toBe(0);
    await fx.store.setSuspended(user.uid, true);
    // The webhook itself refuses at once...
    const direct = await fetch(`${webhook.url}/tokenreview`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token: key.token },
      }),
    });
    expect(await direct.json()).toMatchObject({
      status: { authenticated: false, error: 'The service user of this API key is suspended.' },
    });
    // ...but kube-apiserver caches every successful token authentication for 10 s, whatever
    // --authentication-token-webhook-cache-ttl says (TokenSuccessCacheTTL has no flag).
    await waitFor(
      async () => (await kubectl(['auth', 'whoami'], key.token)).code !== 0,
      20_000,
      'suspension',
    );
    expect((await kubectl(['auth', 'whoami'], key.token)).stderr).toMatch(/Unauthorized/);
    // Failures are not cached, so resuming takes effect with the next request.
    await fx.store.setSuspended(user.uid, false);
    await waitFor(async () => (await kubectl(['auth', 'whoami'], key.token)).code === 0, 5000, 'resume');
  }, 60_000);
});
