import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace } from '../../devenv/kube.js';
import {
  applyAccessPolicy,
  KeywardObjects,
  type OperatorProcess,
  operatorKubeconfig,
  startOperator,
} from '../../devenv/operator.js';
import { eventually } from '../../devenv/poll.js';
import { migrate } from '../../store/migrate.js';
import type { RunningWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { testKubeConfig } from '../harness/kube.js';
import { startNginx, type TestNginx } from '../harness/nginx.js';
import { condition } from '../support/status.js';
import { runReadyWebhook, testConfig } from '../support/webhook.js';

/**
 * A key's whole life as a user sees it: manifests applied to the API server, the operator
 * writing the Secret, and an application behind real nginx whose `auth_request` asks the real
 * webhook (configured as ingress-nginx renders `auth-url`). Every token comes from the Secret the
 * operator wrote; every answer is what nginx returns to the client.
 */
let kc: KubeConfig;
let core: CoreV1Api;
let ns: string;
let objects: KeywardObjects;
let operator: OperatorProcess;
let webhook: RunningWebhook;
let upstream: Server;
let nginx: TestNginx;

const IDENTITY = ['X-Keyward-User', 'X-Keyward-Key-Id'];
const ROTATE_ANNOTATION = 'keyward.dev/rotate';
/** Short enough to cross by waiting, long enough to check both tokens on a loaded machine. */
const GRACE = '5s';
const TTL = '6s';
const TIMEOUT_MS = 60_000;

beforeAll(async () => {
  kc = testKubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  ns = await createTestNamespace(kc, 'lifecycle-nginx');
  await applyAccessPolicy(kc, ns, { namespaces: [ns], usernames: ['*'], scopes: ['*'] });
  objects = new KeywardObjects(kc, ns);
  const storeUrl = await testDatabase();
  await migrate(storeUrl);
  webhook = await runReadyWebhook(testConfig(storeUrl, { KEYWARD_TRUSTED_PROXIES: '127.0.0.1/32' }));
  upstream = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ headers: req.headers }));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  nginx = await startNginx({
    upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
    authResponseHeaders: IDENTITY,
    locations: [{ path: '/', authUrl: `${webhook.url}/verify` }],
  });
  operator = await startOperator({
    kubeconfigPath: await operatorKubeconfig(kc, ns),
    storeUrl,
    namespace: ns,
    watchNamespace: ns,
  });
});

afterAll(async () => {
  await operator?.stop();
  await nginx?.stop();
  await webhook?.close();
  await new Promise((resolve) => upstream?.close(resolve));
});

interface Reply {
  status: number;
  user: string | undefined;
  challenge: string | null;
}

/** A request through nginx with the token, as a client of the application makes it. */
async function through(token: string): Promise<Reply> {
  const res = await fetch(`${nginx.url}/app`, { headers: { authorization: `Bearer ${token}` } });
  const body = await res.text();
  const user =
    res.status === 200
      ? (JSON.parse(body) as { headers: Record<string, string> }).headers['x-keyward-user']
      : undefined;
  return { status: res.status, user, challenge: res.headers.get('www-authenticate') };
}

async function until(what: string, token: string, status: number): Promise<Reply> {
  return await eventually(
    `${what}: nginx answers ${status}`,
    async () => {
      const reply = await through(token);
      return reply.status === status ? reply : undefined;
    },
    TIMEOUT_MS,
    () => operator.process.logTail(20),
  );
}

let users = 0;

/** Applies a ServiceUser with a username unique to this file; returns its name and username. */
async function serviceUser(spec: object = {}): Promise<{ name: string; username: string }> {
  users += 1;
  const name = `user-${users}`;
  const username = `${ns}-${name}`;
  await objects.create('serviceusers', {
    kind: 'ServiceUser',
    metadata: { name },
    spec: { username, scopes: ['*'], ...spec },
  });
  return { name, username };
}

async function apiKey(name: string, user: string, spec: object = {}): Promise<void> {
  await objects.create('apikeys', {
    kind: 'ApiKey',
    metadata: { name },
    spec: { serviceUserRef: { name: user }, ...spec },
  });
}

async function secretToken(name: string): Promise<string | undefined> {
  try {
    const secret = await core.readNamespacedSecret({ namespace: ns, name });
    const data = secret.data?.token;
    return data === undefined ? undefined : Buffer.from(data, 'base64').toString('utf8');
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

/** Waits for the ApiKey to report Ready with a token in its Secret (other than `not`); returns the token. */
async function readyToken(name: string, not?: string): Promise<string> {
  let seen: unknown;
  return await eventually(
    `ApiKey ${name} Ready with ${not ? 'a new' : 'a'} token in its Secret`,
    async () => {
      const key = await objects.get('apikeys', name);
      seen = condition(key, 'Ready');
      if (condition(key, 'Ready')?.status !== 'True') return undefined;
      const token = await secretToken(name);
      return token !== undefined && token !== not ? token : undefined;
    },
    TIMEOUT_MS,
    () => `last Ready condition: ${JSON.stringify(seen)}`,
  );
}

describe('an ApiKey through nginx auth_request and the real webhook', { timeout: 3 * TIMEOUT_MS }, () => {
  it('issue: the token the operator wrote passes, with the user identity', async () => {
    const user = await serviceUser();
    await apiKey('issued', user.name);
    const token = await readyToken('issued');
    expect(await through(token)).toMatchObject({ status: 200, user: user.username });
    expect((await through(`${token.slice(0, -1)}x`)).status).toBe(401);
  });

  it('rotation: old and new tokens pass within the grace period; the old one stops at its end', async () => {
    const user = await serviceUser();
    await apiKey('rotated', user.name, { rotation: { gracePeriod: GRACE } });
    const old = await readyToken('rotated');
    expect((await through(old)).status).toBe(200);
    await objects.patch('apikeys', 'rotated', { metadata: { annotations: { [ROTATE_ANNOTATION]: 'r1' } } });
    const fresh = await readyToken('rotated', old);
    const [oldReply, freshReply] = await Promise.all([through(old), through(fresh)]);
    expect(freshReply).toMatchObject({ status: 200, user: user.username });
    expect(oldReply).toMatchObject({ status: 200, user: user.username });

    const ended = await until('grace end', old, 401);
    expect(ended.challenge).toMatch(/invalid_token/);
    expect(await through(fresh)).toMatchObject({ status: 200, user: user.username });
  });

  it('suspension rejects every key of the user; resuming lets them through again', async () => {
    const user = await serviceUser();
    await apiKey('suspended', user.name);
    const token = await readyToken('suspended');
    expect((await through(token)).status).toBe(200);

    await objects.patch('serviceusers', user.name, { spec: { suspended: true } });
    const rejected = await until('suspension', token, 401);
    expect(rejected.challenge).toMatch(/suspended/);
    await eventually('ApiKey reports Suspended', async () => {
      const key = await objects.get('apikeys', 'suspended');
      return condition(key, 'Ready')?.reason === 'Suspended';
    });

    await objects.patch('serviceusers', user.name, { spec: { suspended: false } });
    expect(await until('resume', token, 200)).toMatchObject({ user: user.username });
  });

  it('expiry: a key with a short ttl passes, then stops at its end', async () => {
    const user = await serviceUser();
    await apiKey('expiring', user.name, { ttl: TTL });
    const token = await readyToken('expiring');
    expect((await through(token)).status).toBe(200);
    const expired = await until('expiry', token, 401);
    expect(expired.challenge).toMatch(/has expired/);
    await eventually('ApiKey reports Expired', async () => {
      const key = await objects.get('apikeys', 'expiring');
      return condition(key, 'Ready')?.reason === 'Expired';
    });
  });

  it('disable: spec.disabled stops the key; the other key of the user still passes', async () => {
    const user = await serviceUser();
    await apiKey('disabled', user.name);
    await apiKey('sibling', user.name);
    const token = await readyToken('disabled');
    const sibling = await readyToken('sibling');
    expect((await through(token)).status).toBe(200);
    await objects.patch('apikeys', 'disabled', { spec: { disabled: true } });
    await until('disable', token, 401);
    expect((await through(sibling)).status).toBe(200);
  });

  it('deletion of the ApiKey: its token stops and its Secret is gone', async () => {
    const user = await serviceUser();
    await apiKey('deleted', user.name);
    const token = await readyToken('deleted');
    expect((await through(token)).status).toBe(200);
    await objects.delete('apikeys', 'deleted');
    const revoked = await until('ApiKey deletion', token, 401);
    expect(revoked.challenge).toMatch(/revoked|invalid/);
    await eventually('Secret deleted', async () => (await secretToken('deleted')) === undefined);
  });

  it('deletion and re-creation of the ServiceUser: its keys stop, then come back with fresh tokens', async () => {
    const user = await serviceUser();
    await apiKey('recreated-a', user.name);
    await apiKey('recreated-b', user.name);
    const before = [await readyToken('recreated-a'), await readyToken('recreated-b')];
    for (const token of before) expect((await through(token)).status).toBe(200);

    await objects.delete('serviceusers', user.name);
    for (const token of before) await until('ServiceUser deletion', token, 401);
    await eventually(
      'ServiceUser gone',
      async () => {
        try {
          await objects.get('serviceusers', user.name);
          return false;
        } catch (err) {
          return (err as { code?: number }).code === 404;
        }
      },
      TIMEOUT_MS,
    );

    // What GitOps does after a prune: the same manifest applied again.
    await objects.create('serviceusers', {
      kind: 'ServiceUser',
      metadata: { name: user.name },
      spec: { username: user.username, scopes: ['*'] },
    });
    const after = [await readyToken('recreated-a', before[0]), await readyToken('recreated-b', before[1])];
    for (const token of after)
      expect(await through(token)).toMatchObject({ status: 200, user: user.username });
    // The revoked tokens stay revoked.
    for (const token of before) expect((await through(token)).status).toBe(401);
  });
});
