import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../../devenv/poll.js';
import type { RunningWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { startNginx, type TestNginx } from '../harness/nginx.js';
import { runReadyWebhook, type StoreFixture, storeFixture, testConfig } from '../support/webhook.js';

const IDENTITY = ['X-Keyward-User', 'X-Keyward-Key-Id', 'X-Keyward-Scopes', 'X-Keyward-Groups'];

let fx: StoreFixture;
let webhook: RunningWebhook;
let upstream: Server;
let nginx: TestNginx;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  webhook = await runReadyWebhook(testConfig(fx.url, { KEYWARD_TRUSTED_PROXIES: '127.0.0.1/32' }));
  // The application behind the ingress: echoes what reached it.
  upstream = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers }));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const upstreamPort = (upstream.address() as AddressInfo).port;
  nginx = await startNginx({
    upstream: `http://127.0.0.1:${upstreamPort}`,
    authResponseHeaders: IDENTITY,
    locations: [
      { path: '/', authUrl: `${webhook.url}/verify` },
      { path: '/alpha/', authUrl: `${webhook.url}/verify?scope=projects:alpha` },
      { path: '/kept/', authUrl: `${webhook.url}/verify?scope=projects:alpha`, authKeepalive: 8 },
    ],
  });
});

afterAll(async () => {
  await nginx?.stop();
  await webhook?.close();
  await new Promise((resolve) => upstream?.close(resolve));
  await fx?.close();
});

interface Echo {
  method: string;
  url: string;
  headers: Record<string, string>;
}

async function get(path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Response> {
  return await fetch(`${nginx.url}${path}`, { method, headers });
}

describe('nginx auth_request configured as ingress-nginx auth-url', () => {
  it('passes a valid key through with the identity headers copied to the upstream', async () => {
    const user = await fx.createUser({ groups: ['team-a', 'ops'], scopes: ['projects:*'] });
    const key = await fx.issueKey(user);
    const res = await get('/app/items?page=2', { authorization: `Bearer ${key.token}` }, 'DELETE');
    expect(res.status).toBe(200);
    const echo = (await res.json()) as Echo;
    expect(echo.method).toBe('DELETE');
    expect(echo.url).toBe('/app/items?page=2');
    expect(echo.headers['x-keyward-user']).toBe(user.username);
    expect(echo.headers['x-keyward-key-id']).toBe(key.keyId);
    expect(echo.headers['x-keyward-scopes']).toBe('projects:*');
    expect(echo.headers['x-keyward-groups']).toBe('team-a,ops');

    const viaHeader = await get('/x', { 'x-api-key': key.token });
    expect(viaHeader.status).toBe(200);
  });

  it('does not let a client spoof the identity headers', async () => {
    const user = await fx.createUser();
    const key = await fx.issueKey(user);
    const spoof = { 'x-keyward-user': 'cluster-admin', 'x-keyward-groups': 'system:masters' };
    const withKey = await get('/', { ...spoof, authorization: `Bearer ${key.token}` });
    expect(withKey.status).toBe(200);
    const echo = (await withKey.json()) as Echo;
    expect(echo.headers['x-keyward-user']).toBe(user.username);
    expect(echo.headers['x-keyward-groups']).toBe('team-a');
    const without = await get('/', spoof);
    expect(without.status).toBe(401);
  });

  it('answers 401 with WWW-Authenticate at the client for missing, invalid, expired, suspended and revoked keys', async () => {
    const suspendedUser = await fx.createUser();
    const suspended = await fx.issueKey(suspendedUser);
    const revoked = await fx.issueKey(await fx.createUser());
    const expiring = await fx.issueKey(await fx.createUser(), { expiresAt: new Date(Date.now() + 1500) });
    for (const key of [suspended, revoked, expiring]) {
      expect((await get('/', { authorization: `Bearer ${key.token}` })).status).toBe(200);
    }
    await fx.setSuspended(suspendedUser, true);
    await fx.store.revokeKey(revoked.uid);
    await eventually(
      'expiry',
      async () => (await get('/', { authorization: `Bearer ${expiring.token}` })).status === 401,
      5000,
    );

    const cases: Array<[string, Record<string, string>, RegExp]> = [
      ['missing', {}, /^Bearer realm="keyward"$/],
      [
        'invalid',
        { authorization: 'Bearer kw_not-a-real-token' },
        /error="invalid_token", error_description="The API key is invalid."/,
      ],
      ['expired', { authorization: `Bearer ${expiring.token}` }, /has expired/],
      ['suspended', { authorization: `Bearer ${suspended.token}` }, /suspended/],
      ['revoked', { authorization: `Bearer ${revoked.token}` }, /revoked/],
    ];
    for (const [name, headers, challenge] of cases) {
      const res = await get('/anything', headers);
      expect(res.status, name).toBe(401);
      expect(res.headers.get('www-authenticate'), name).toMatch(challenge);
    }
  });

  it('with auth-keepalive, answers every request for its own key over reused connections', async () => {
    const alpha = await fx.issueKey(
      await fx.createUser({ groups: ['alpha-team'], scopes: ['projects:alpha'] }),
    );
    const wide = await fx.issueKey(await fx.createUser({ groups: ['wide-team'], scopes: ['projects:*'] }));
    const other = await fx.issueKey(
      await fx.createUser({ groups: ['other-team'], scopes: ['projects:beta'] }),
    );
    const groupsOf = async (token: string): Promise<string | undefined> => {
      const res = await get('/kept/x', { authorization: `Bearer ${token}` });
      expect(res.status).toBe(200);
      return ((await res.json()) as Echo).headers['x-keyward-groups'];
    };
    let accepted = 0;
    const onConnection = (): void => {
      accepted += 1;
    };
    webhook.app.server.on('connection', onConnection);
    try {
      // One after another, alternating users: an answer left over from the previous request on
      // the same connection would show up as the wrong user.
      for (let i = 0; i < 10; i++) {
        expect(await groupsOf(alpha.token)).toBe('alpha-team');
        expect(await groupsOf(wide.token)).toBe('wide-team');
      }
    } finally {
      webhook.app.server.off('connection', onConnection);
    }
    // 20 subrequests in sequence: nginx kept its connection (a second only if one was closed).
    expect(accepted).toBeLessThanOrEqual(2);
    // Refusals carry a body, which nginx does not read from an auth subrequest, so it closes that
    // connection (docs/ingress/nginx.md#keep-alive-to-the-webhook); each is still its own answer.
    for (let i = 0; i < 3; i++) {
      expect((await get('/kept/x', { authorization: `Bearer ${other.token}` })).status).toBe(403);
      expect((await get('/kept/x', { authorization: 'Bearer kw_nope' })).status).toBe(401);
      expect(await groupsOf(alpha.token)).toBe('alpha-team');
    }
  });

  it('answers 403 when the location requires a scope the key lacks', async () => {
    const user = await fx.createUser({ scopes: ['projects:*'] });
    const alphaOnly = await fx.issueKey(user, { scopes: ['projects:alpha'] });
    const betaOnly = await fx.issueKey(user, { scopes: ['projects:beta'] });
    expect((await get('/alpha/x', { authorization: `Bearer ${alphaOnly.token}` })).status).toBe(200);
    expect((await get('/alpha/x', { authorization: `Bearer ${betaOnly.token}` })).status).toBe(403);
    // A client cannot loosen the location's requirement with its own header.
    expect(
      (
        await get('/alpha/x', {
          authorization: `Bearer ${betaOnly.token}`,
          'x-keyward-required-scope': 'projects:beta',
        })
      ).status,
    ).toBe(403);
  });
});
