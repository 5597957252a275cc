import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../../devenv/poll.js';
import { ActAsStore } from '../../store/act-as.js';
import type { RunningWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { startNginx, type TestNginx } from '../harness/nginx.js';
import {
  runReadyWebhook,
  type StoreFixture,
  storeFixture,
  type TestKey,
  type TestUser,
  testConfig,
} from '../support/webhook.js';

/**
 * Acting on behalf of a subject, end to end: a real store, the real webhook process and real nginx
 * configured as ingress-nginx's auth-url with X-Keyward-Actor among the auth-response-headers.
 */
const IDENTITY = [
  'X-Keyward-User',
  'X-Keyward-Actor',
  'X-Keyward-Key-Id',
  'X-Keyward-Scopes',
  'X-Keyward-Groups',
];

let fx: StoreFixture;
let actAs: ActAsStore;
let webhook: RunningWebhook;
let upstream: Server;
let nginx: TestNginx;

let gateway: TestUser;
let gatewayKey: TestKey;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  actAs = new ActAsStore(fx.pool, { actor: 'act-as-tests' });
  webhook = await runReadyWebhook(testConfig(fx.url));
  upstream = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: req.url, headers: req.headers }));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  nginx = await startNginx({
    upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
    authResponseHeaders: IDENTITY,
    locations: [
      { path: '/', authUrl: `${webhook.url}/verify` },
      { path: '/alpha/', authUrl: `${webhook.url}/verify?scope=projects:alpha` },
    ],
  });

  const tag = String(process.pid);
  // The actor holds no project scope of its own: acting, it gets the subject's.
  gateway = await fx.createUser({ username: `gw${tag}`, scopes: ['gateway:ping'], groups: ['gateways'] });
  gatewayKey = await fx.issueKey(gateway);
  alice = await fx.createUser({
    username: `team_alice${tag}`,
    scopes: ['projects:alpha'],
    groups: ['readers'],
  });
  bob = await fx.createUser({ username: `team_bob${tag}`, scopes: ['projects:beta'], groups: [] });
  await actAs.set(gateway.id, { serviceUsers: ['team_*'], externalSubjects: ['customer:*'] });
}, 60_000);

afterAll(async () => {
  await nginx?.stop();
  await webhook?.close();
  await new Promise((resolve) => upstream?.close(resolve));
  await fx?.close();
});

interface Echo {
  url: string;
  headers: Record<string, string | undefined>;
}

const bearer = (key: TestKey): Record<string, string> => ({ authorization: `Bearer ${key.token}` });

async function viaNginx(path: string, headers: Record<string, string>): Promise<Response> {
  return await fetch(`${nginx.url}${path}`, { headers });
}

async function direct(
  headers: Record<string, string>,
  query = '',
): Promise<{ status: number; body: Record<string, string> }> {
  const res = await fetch(`${webhook.url}/verify${query}`, { headers });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, string>) };
}

/** Raw header lines (repeated names, latin1 bytes), as a hostile client can send them. */
function rawVerify(headers: ReadonlyArray<[string, string]>): Promise<{ status: number; body: string }> {
  const url = new URL(`${webhook.url}/verify`);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, path: url.pathname, method: 'GET' },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    for (const [name, value] of headers) req.appendHeader(name, value);
    req.end();
  });
}

describe('acting on behalf of a ServiceUser through nginx', () => {
  it('the upstream sees the subject as X-Keyward-User and the key holder as X-Keyward-Actor', async () => {
    const res = await viaNginx('/app', { ...bearer(gatewayKey), 'x-keyward-subject': alice.username });
    expect(res.status).toBe(200);
    const echo = (await res.json()) as Echo;
    expect(echo.headers['x-keyward-user']).toBe(alice.username);
    expect(echo.headers['x-keyward-actor']).toBe(gateway.username);
    expect(echo.headers['x-keyward-key-id']).toBe(gatewayKey.keyId);
    expect(echo.headers['x-keyward-scopes']).toBe('projects:alpha');
    expect(echo.headers['x-keyward-groups']).toBe('readers');
  });

  it('every acting request is in the request log with both names, refused ones too', async () => {
    const allowed = `/audited-${process.pid}`;
    const refused = `/alpha/audited-${process.pid}`;
    expect(
      (await viaNginx(allowed, { ...bearer(gatewayKey), 'x-keyward-subject': alice.username })).status,
    ).toBe(200);
    expect(
      (await viaNginx(refused, { ...bearer(gatewayKey), 'x-keyward-subject': bob.username })).status,
    ).toBe(403);
    const rows = async (): Promise<Array<Record<string, string>>> =>
      (
        await fx.pool.query(
          'SELECT path, username, actor, subject, result FROM request_log WHERE path = ANY($1) ORDER BY at',
          [[allowed, refused]],
        )
      ).rows;
    await eventually('both requests in the request log', async () => (await rows()).length === 2, 10_000);
    expect(await rows()).toEqual([
      {
        path: allowed,
        username: alice.username,
        actor: gateway.username,
        subject: alice.username,
        result: 'allow',
      },
      {
        path: refused,
        username: bob.username,
        actor: gateway.username,
        subject: bob.username,
        result: 'forbidden',
      },
    ]);
  });

  it('a required scope counts against the subject: present for alice, missing for bob', async () => {
    const asAlice = await viaNginx('/alpha/x', {
      ...bearer(gatewayKey),
      'x-keyward-subject': alice.username,
    });
    expect(asAlice.status).toBe(200);
    const asBob = await viaNginx('/alpha/x', { ...bearer(gatewayKey), 'x-keyward-subject': bob.username });
    expect(asBob.status).toBe(403);
    // The actor's own scopes do not lend the subject anything, nor the reverse.
    expect((await viaNginx('/alpha/x', bearer(gatewayKey))).status).toBe(403);
    const answer = await direct(
      { ...bearer(gatewayKey), 'x-keyward-subject': bob.username },
      '?scope=projects:alpha',
    );
    expect(answer).toEqual({
      status: 403,
      body: {
        error: 'insufficient_scope',
        error_description: 'The subject does not hold the required scope within what the API key grants.',
      },
    });
  });

  it("the key's own scope list narrows the subject's scopes", async () => {
    const narrowed = await fx.issueKey(gateway, { scopes: ['gateway:ping'] });
    const res = await viaNginx('/alpha/x', { ...bearer(narrowed), 'x-keyward-subject': alice.username });
    expect(res.status).toBe(403);
  });

  it('a subject suspended or deleted a moment ago is refused at once', async () => {
    const carol = await fx.createUser({ username: `team_carol${process.pid}`, scopes: ['projects:alpha'] });
    const asCarol = { ...bearer(gatewayKey), 'x-keyward-subject': carol.username };
    expect((await viaNginx('/', asCarol)).status).toBe(200);
    await fx.setSuspended(carol, true);
    expect((await direct(asCarol)).body.error).toBe('subject_suspended');
    expect((await viaNginx('/', asCarol)).status).toBe(403);
    await fx.store.deleteServiceUser(carol.uid);
    expect((await direct(asCarol)).body.error).toBe('subject_unknown');
    expect((await direct({ ...bearer(gatewayKey), 'x-keyward-subject': 'team_nobody' })).body.error).toBe(
      'subject_unknown',
    );
  });
});

describe('acting on behalf of an external subject through nginx', () => {
  it("passes the subject on with the key's scopes, no groups, and the actor", async () => {
    const res = await viaNginx('/', { ...bearer(gatewayKey), 'x-keyward-subject': 'customer:42' });
    expect(res.status).toBe(200);
    const echo = (await res.json()) as Echo;
    expect(echo.headers['x-keyward-user']).toBe('customer:42');
    expect(echo.headers['x-keyward-actor']).toBe(gateway.username);
    expect(echo.headers['x-keyward-scopes']).toBe('gateway:ping');
    expect(echo.headers['x-keyward-groups']).toBeUndefined();
  });

  it('an id outside the patterns is refused with the reason', async () => {
    expect((await viaNginx('/', { ...bearer(gatewayKey), 'x-keyward-subject': 'partner:1' })).status).toBe(
      403,
    );
    expect(await direct({ ...bearer(gatewayKey), 'x-keyward-subject': 'partner:1' })).toEqual({
      status: 403,
      body: {
        error: 'subject_not_allowed',
        error_description:
          "The API key may not act on behalf of this subject (not in its ServiceUser's spec.actAs).",
      },
    });
    expect((await direct({ ...bearer(gatewayKey), 'x-keyward-subject': 'other_bob' })).body.error).toBe(
      'subject_not_allowed',
    );
  });
});

describe('a key that may not act', () => {
  it('naming a subject is refused with 403, never ignored', async () => {
    const plain = await fx.issueKey(alice);
    expect((await viaNginx('/', bearer(plain))).status).toBe(200);
    expect((await viaNginx('/', { ...bearer(plain), 'x-keyward-subject': bob.username })).status).toBe(403);
    expect(await direct({ ...bearer(plain), 'x-keyward-subject': 'customer:1' })).toEqual({
      status: 403,
      body: {
        error: 'acting_not_allowed',
        error_description:
          'The API key may not act on behalf of a subject (its ServiceUser has no spec.actAs).',
      },
    });
  });

  it('an invalid token naming a subject is a 401, as without one', async () => {
    const res = await direct({ authorization: 'Bearer kw_nope', 'x-keyward-subject': alice.username });
    expect(res.status).toBe(401);
  });

  it("withdrawing the actor's actAs takes effect at once (the NOTIFY drops its cached key)", async () => {
    const temp = await fx.createUser({ scopes: [] });
    const key = await fx.issueKey(temp);
    await actAs.set(temp.id, { serviceUsers: [alice.username], externalSubjects: [] });
    const asAlice = { ...bearer(key), 'x-keyward-subject': alice.username };
    expect((await direct(asAlice)).status).toBe(200);
    await actAs.set(temp.id, { serviceUsers: [], externalSubjects: [] });
    await eventually(
      'actAs withdrawn',
      async () => (await direct(asAlice)).body.error === 'acting_not_allowed',
      5000,
    );
  });
});

describe('client-supplied identity headers', () => {
  it('never reach the upstream, with or without acting', async () => {
    const spoof = {
      'x-keyward-user': 'cluster-admin',
      'x-keyward-actor': 'root',
      'x-keyward-groups': 'system:masters',
    };
    const plain = (await (await viaNginx('/', { ...spoof, ...bearer(gatewayKey) })).json()) as Echo;
    expect(plain.headers['x-keyward-user']).toBe(gateway.username);
    expect(plain.headers['x-keyward-actor']).toBeUndefined();
    expect(plain.headers['x-keyward-groups']).toBe('gateways');
    const acting = await viaNginx('/', {
      ...spoof,
      ...bearer(gatewayKey),
      'x-keyward-subject': 'customer:7',
    });
    const echo = (await acting.json()) as Echo;
    expect(echo.headers['x-keyward-user']).toBe('customer:7');
    expect(echo.headers['x-keyward-actor']).toBe(gateway.username);
    expect(echo.headers['x-keyward-groups']).toBeUndefined();
  });
});

describe('bad subject headers', () => {
  it('two subject headers, an oversized or non-ASCII subject: 403, never 5xx', async () => {
    const auth: [string, string] = ['authorization', `Bearer ${gatewayKey.token}`];
    const cases: Array<[string, Array<[string, string]>]> = [
      ['two headers', [auth, ['x-keyward-subject', alice.username], ['x-keyward-subject', 'customer:1']]],
      ['oversized', [auth, ['x-keyward-subject', `customer:${'x'.repeat(300)}`]]],
      ['very large', [auth, ['x-keyward-subject', `customer:${'x'.repeat(12_000)}`]]],
      ['non-ASCII', [auth, ['x-keyward-subject', 'customer:caf\u00e9']]],
      ['empty', [auth, ['x-keyward-subject', '']]],
      ['a pattern', [auth, ['x-keyward-subject', 'customer:*']]],
    ];
    for (const [name, headers] of cases) {
      const res = await rawVerify(headers);
      expect(res.status, name).toBe(403);
      expect(JSON.parse(res.body).error, name).toBe('subject_malformed');
    }
    // Beyond the server's header limit: Node's own 431, still not a 5xx.
    const huge = await rawVerify([auth, ['x-keyward-subject', 'x'.repeat(40_000)]]);
    expect(huge.status).toBeGreaterThanOrEqual(400);
    expect(huge.status).toBeLessThan(500);
  });
});
