import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type ControlPlane, startControlPlane } from '../../devenv/controlplane/controlplane.js';
import { eventually } from '../../devenv/poll.js';
import type { RunningWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import {
  type KubectlResult,
  kubectlFor,
  startTokenReviewWebhook,
  tokenOnlyKubeconfig,
} from '../support/tokenreview-webhook.js';
import { type StoreFixture, storeFixture } from '../support/webhook.js';

/**
 * On the Kubernetes API path keyward does not act on behalf of anyone itself: a key authenticates
 * as `keyward:<username>` through TokenReview, and acting as another identity is Kubernetes' own
 * impersonation (`kubectl --as`), which RBAC's `impersonate` verb grants to that identity.
 */
/** A raw read: kubectl skips discovery, which would hide the API server's reason. */
const CONFIGMAPS = '/api/v1/namespaces/default/configmaps';

let fx: StoreFixture;
let webhook: RunningWebhook;
let cp: ControlPlane;
let dir: string;
let kubectl: ReturnType<typeof kubectlFor>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'keyward-impersonate-e2e-'));
  fx = await storeFixture(await testDatabase());
  const started = await startTokenReviewWebhook(fx.url, dir);
  webhook = started.webhook;
  cp = await startControlPlane({ authnWebhook: started.authnWebhook });
  kubectl = kubectlFor(cp, await tokenOnlyKubeconfig(cp, join(dir, 'token.kubeconfig')));
});

afterAll(async () => {
  await cp?.stop();
  await webhook?.close();
  await fx?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function apply(name: string, objects: object[]): Promise<void> {
  const file = join(dir, `${name}.yaml`);
  await writeFile(file, objects.map((o) => stringify(o)).join('---\n'));
  const applied = await kubectl(['apply', '-f', file]);
  expect(applied.stderr).toBe('');
}

function whoamiUser(result: KubectlResult): string {
  return (JSON.parse(result.stdout) as { status: { userInfo: { username: string } } }).status.userInfo
    .username;
}

describe('Kubernetes impersonation with a keyward identity', () => {
  it('kubectl --as works only with an RBAC impersonate grant to keyward:<username>, and only for what it names', async () => {
    const user = await fx.createUser({ kubernetesAuthentication: true });
    const key = await fx.issueKey(user);
    const identity = `keyward:${user.username}`;

    const self = await kubectl(['auth', 'whoami', '-o', 'json'], key.token);
    expect(self.stderr).toBe('');
    expect(whoamiUser(self)).toBe(identity);

    // Authenticated, but not allowed to impersonate anyone yet.
    const refused = await kubectl(['--as', 'jane', 'get', '--raw', CONFIGMAPS], key.token);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/cannot impersonate/);

    await apply('impersonate-jane', [
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: { name: 'impersonate-jane' },
        rules: [{ apiGroups: [''], resources: ['users'], verbs: ['impersonate'], resourceNames: ['jane'] }],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'impersonate-jane' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'impersonate-jane' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: identity }],
      },
    ]);

    const asJane = await eventually(
      'impersonate grant in force',
      async () => {
        const r = await kubectl(['--as', 'jane', 'auth', 'whoami', '-o', 'json'], key.token);
        return r.code === 0 ? r : undefined;
      },
      20_000,
    );
    expect(whoamiUser(asJane)).toBe('jane');

    // The grant names jane only: nobody else, and no groups.
    const asBob = await kubectl(['--as', 'bob', 'get', '--raw', CONFIGMAPS], key.token);
    expect(asBob.stderr).toMatch(/cannot impersonate/);
    const withGroup = await kubectl(
      ['--as', 'jane', '--as-group', 'system:masters', 'get', '--raw', CONFIGMAPS],
      key.token,
    );
    expect(withGroup.stderr).toMatch(/cannot impersonate/);

    // Another keyward identity holds no such grant.
    const other = await fx.issueKey(await fx.createUser({ kubernetesAuthentication: true }));
    const otherKey = await kubectl(['--as', 'jane', 'get', '--raw', CONFIGMAPS], other.token);
    expect(otherKey.stderr).toMatch(/cannot impersonate/);
    // Jane herself holds no RBAC here: the impersonated request is judged as hers, not the key's.
    const janeReads = await kubectl(['--as', 'jane', 'get', '--raw', CONFIGMAPS], key.token);
    expect(janeReads.stderr).toMatch(/User "jane" cannot list resource "configmaps"/);

    // The key stops working, and its impersonation with it.
    await fx.store.revokeKey(key.uid);
    await eventually(
      'revoked key refused',
      async () =>
        /Unauthorized/.test((await kubectl(['--as', 'jane', 'get', '--raw', CONFIGMAPS], key.token)).stderr),
      10_000,
    );
  });
});
