import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../../credentials/token.js';
import { eventually } from '../../devenv/poll.js';
import { type RunningWebhook, runWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { startNginx, type TestNginx } from '../harness/nginx.js';
import { type StoreFixture, storeFixture, testConfig } from '../support/webhook.js';

/**
 * One client misbehaving behind real nginx (configured as ingress-nginx configures auth-url) must
 * not cost another client with a valid key anything. Clients get their own loopback addresses
 * (127.0.0.2, 127.0.0.3, …), so nginx sees them as the distinct peers they would be in a cluster.
 * The failed-attempt limit is the default (30 per minute) in every webhook here.
 */
const ATTACKER = '127.0.0.2';
const VICTIM = '127.0.0.3';
/** More than the default limit of 30. */
const LOOP = 45;

let fx: StoreFixture;
let upstream: Server;
/** Default settings: no trusted proxies, so every request counts against nginx's own address. */
let plain: { webhook: RunningWebhook; nginx: TestNginx };
/** nginx's address (127.0.0.1) as the trusted proxy, X-Forwarded-For as the client header. */
let trusting: { webhook: RunningWebhook; nginx: TestNginx };

async function behindNginx(
  env: Record<string, string>,
): Promise<{ webhook: RunningWebhook; nginx: TestNginx }> {
  const webhook = await runWebhook({
    // testConfig turns the limit off for unit suites; here it is the default again.
    config: testConfig(fx.url, { KEYWARD_FAILED_ATTEMPTS_LIMIT: '30', ...env }),
    handleSignals: false,
    defaultMetrics: false,
  });
  await eventually(
    'webhook ready',
    async () => (await fetch(`${webhook.url}/readyz`)).status === 200,
    10_000,
  );
  const nginx = await startNginx({
    upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
    authResponseHeaders: ['X-Keyward-User'],
    locations: [{ path: '/', authUrl: `${webhook.url}/verify` }],
  });
  return { webhook, nginx };
}

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  upstream = createServer((req, res) => res.end(String(req.headers['x-keyward-user'] ?? '')));
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  plain = await behindNginx({});
  trusting = await behindNginx({ KEYWARD_TRUSTED_PROXIES: '127.0.0.1/32' });
});

afterAll(async () => {
  for (const setup of [plain, trusting]) {
    await setup?.nginx.stop();
    await setup?.webhook.close();
  }
  await new Promise((resolve) => upstream?.close(resolve));
  await fx?.close();
});

/** GET from a given local address, as a client on that host would. */
function get(base: string, from: string, headers: Record<string, string>, path = '/app'): Promise<number> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, path, headers, localAddress: from, agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function loop(
  base: string,
  from: string,
  headers: () => Record<string, string>,
  path = '/app',
): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < LOOP; i++) statuses.push(await get(base, from, headers(), path));
  return statuses;
}

describe('behind nginx with default settings', () => {
  it('an expired-key loop from one client is never limited and never locks out another', async () => {
    const user = await fx.createUser();
    const expired = await fx.issueKey(user, { expiresAt: new Date(Date.now() - 60_000) });
    const statuses = await loop(plain.nginx.url, ATTACKER, () => bearer(expired.token));
    expect(new Set(statuses)).toEqual(new Set([401]));
    // A key nobody has used yet (so not cached), from another client, right after the loop.
    const fresh = await fx.issueKey(await fx.createUser());
    expect(await get(plain.nginx.url, VICTIM, bearer(fresh.token))).toBe(200);
  });

  it('a garbage flood from one client does not deny a valid key, cached or not, to anyone', async () => {
    const cached = await fx.issueKey(await fx.createUser());
    await eventually(
      'cached',
      async () => (await get(plain.nginx.url, VICTIM, bearer(cached.token))) === 200,
      5000,
    );
    let n = 0;
    const flood = await loop(plain.nginx.url, ATTACKER, () =>
      n++ % 2 === 0 ? bearer(generateToken().token) : bearer(`garbage-${n}`),
    );
    // The limiter did trip (nginx turns the webhook's 429 into 500): all clients share nginx's address.
    expect(flood.filter((s) => s === 500).length).toBeGreaterThan(0);
    const uncached = await fx.issueKey(await fx.createUser());
    expect(await get(plain.nginx.url, VICTIM, bearer(cached.token))).toBe(200);
    expect(await get(plain.nginx.url, VICTIM, bearer(uncached.token))).toBe(200);
    // Even the flooding client's own valid key gets through.
    const own = await fx.issueKey(await fx.createUser());
    expect(await get(plain.nginx.url, ATTACKER, bearer(own.token))).toBe(200);
  });
});

describe('behind nginx as a trusted proxy', () => {
  it('limits the flooding client only, and ignores a client-IP header from an untrusted peer', async () => {
    // Through nginx, with a forged X-Forwarded-For naming the victim: nginx writes the real peer.
    const flood = await loop(trusting.nginx.url, ATTACKER, () => ({
      ...bearer(generateToken().token),
      'x-forwarded-for': VICTIM,
    }));
    expect(flood.filter((s) => s === 500).length).toBeGreaterThan(0);
    expect(await get(trusting.nginx.url, VICTIM, bearer('garbage'))).toBe(401);
    // Straight at the webhook, claiming to be the victim behind a proxy: the header is ignored.
    const direct = await loop(
      trusting.webhook.url,
      ATTACKER,
      () => ({
        ...bearer(generateToken().token),
        'x-forwarded-for': `${VICTIM}, 127.0.0.1`,
        'x-real-ip': VICTIM,
      }),
      '/verify',
    );
    expect(direct.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(await get(trusting.nginx.url, VICTIM, bearer('garbage'))).toBe(401);
    const key = await fx.issueKey(await fx.createUser());
    expect(await get(trusting.nginx.url, VICTIM, bearer(key.token))).toBe(200);
  });
});
