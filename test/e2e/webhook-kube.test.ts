import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ControlPlane, startControlPlane } from '../../devenv/controlplane/controlplane.js';
import type { KeyPairFiles } from '../../devenv/pki.js';
import { eventually } from '../../devenv/poll.js';
import type { RunningWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { kubectlFor, startTokenReviewWebhook, tokenOnlyKubeconfig } from '../support/tokenreview-webhook.js';
import { type StoreFixture, storeFixture } from '../support/webhook.js';

let fx: StoreFixture;
let webhook: RunningWebhook;
let cp: ControlPlane;
let dir: string;
/** A kubeconfig with the cluster and no credentials: every call passes --token. */
let kubectl: ReturnType<typeof kubectlFor>;
/** The webhook's own PKI: its serving certificate and the client certificate kube-apiserver presents. */
let ca: KeyPairFiles;
let apiserverClient: KeyPairFiles;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'keyward-kube-e2e-'));
  fx = await storeFixture(await testDatabase());
  const started = await startTokenReviewWebhook(fx.url, dir);
  ({ webhook, ca, apiserverClient } = started);
  cp = await startControlPlane({ authnWebhook: started.authnWebhook });
  kubectl = kubectlFor(cp, await tokenOnlyKubeconfig(cp, join(dir, 'token.kubeconfig')));
});

afterAll(async () => {
  await cp?.stop();
  await webhook?.close();
  await fx?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** POST /tokenreview over TLS, as kube-apiserver does it (with its client certificate) or without. */
async function tokenReview(token: string, client?: KeyPairFiles): Promise<{ status: number; body: string }> {
  const url = new URL(webhook.url);
  const tls = {
    ca: await readFile(ca.cert),
    ...(client ? { cert: await readFile(client.cert), key: await readFile(client.key) } : {}),
  };
  return await new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: '/tokenreview',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        agent: false,
        ...tls,
      },
      (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => {
          body += chunk.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } }));
  });
}

describe('kube-apiserver authenticating API keys through /tokenreview', () => {
  it('is the only caller /tokenreview answers: no client certificate, no answer', async () => {
    const key = await fx.issueKey(await fx.createUser({ kubernetesAuthentication: true }));
    const anonymous = await tokenReview(key.token);
    expect(anonymous.status).toBe(401);
    expect(anonymous.body).not.toContain(key.keyId);
    // Through the API server, over TLS with its client certificate, the same key authenticates.
    expect((await kubectl(['auth', 'whoami'], key.token)).code).toBe(0);
  });

  it('kubectl auth whoami prints keyward:<username> with its groups, keyward:-prefixed', async () => {
    const user = await fx.createUser({ groups: ['platform', 'viewers'], kubernetesAuthentication: true });
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
      expect.arrayContaining(['keyward:platform', 'keyward:viewers', 'system:authenticated']),
    );
    expect(review.status.userInfo.groups).not.toContain('platform');
    expect(review.status.userInfo.extra['keyward.dev/key-id']).toEqual([key.keyId]);
    const table = await kubectl(['auth', 'whoami'], key.token);
    expect(table.stdout).toContain(`keyward:${user.username}`);
  });

  it('refuses a valid key whose AccessPolicy does not allow Kubernetes authentication', async () => {
    const key = await fx.issueKey(await fx.createUser({ groups: ['platform'] }));
    // A valid key (the store holds it and the webhook would let it through an ingress) …
    const direct = await tokenReview(key.token, apiserverClient);
    expect(direct.status).toBe(200);
    expect(JSON.parse(direct.body).status).toEqual({
      authenticated: false,
      error: 'The API key is not allowed to authenticate to Kubernetes.',
    });
    const whoami = await kubectl(['auth', 'whoami'], key.token);
    expect(whoami.code).not.toBe(0);
    expect(whoami.stderr).toMatch(/Unauthorized/);
    expect((await kubectl(['auth', 'can-i', '*', '*'], key.token)).stdout.trim()).not.toBe('yes');
  });

  it('applies RBAC bound to that user, and refuses a bad key', async () => {
    const user = await fx.createUser({ kubernetesAuthentication: true });
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
    await eventually(
      'RBAC grant',
      async () => (await kubectl(['-n', ns, 'get', 'configmaps'], key.token)).code === 0,
      10_000,
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
    const user = await fx.createUser({ kubernetesAuthentication: true });
    const key = await fx.issueKey(user);
    expect((await kubectl(['auth', 'whoami'], key.token)).code).toBe(0);
    await fx.setSuspended(user, true);
    // The webhook itself refuses at once...
    const direct = await tokenReview(key.token, apiserverClient);
    expect(JSON.parse(direct.body)).toMatchObject({
      status: { authenticated: false, error: 'The service user of this API key is suspended.' },
    });
    // ...but kube-apiserver caches every successful token authentication for 10 s, whatever
    // --authentication-token-webhook-cache-ttl says (TokenSuccessCacheTTL has no flag).
    await eventually(
      'suspension',
      async () => (await kubectl(['auth', 'whoami'], key.token)).code !== 0,
      20_000,
    );
    expect((await kubectl(['auth', 'whoami'], key.token)).stderr).toMatch(/Unauthorized/);
    // Failures are not cached, so resuming takes effect with the next request.
    await fx.setSuspended(user, false);
    await eventually('resume', async () => (await kubectl(['auth', 'whoami'], key.token)).code === 0, 5000);
  }, 60_000);
});
