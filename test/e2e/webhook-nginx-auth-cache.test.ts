import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../../devenv/poll.js';
import type { RunningWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { startNginx, type TestNginx } from '../harness/nginx.js';
import { type EchoUpstream, IDENTITY_HEADERS, startEchoUpstream } from '../support/ingress.js';
import { runReadyWebhook, type StoreFixture, storeFixture, testConfig } from '../support/webhook.js';

/**
 * The auth-cache trap (docs/ingress/README.md): ingress-nginx's `auth-cache-key` keeps auth
 * answers in a proxy_cache for `auth-cache-duration`, and a cached 200 would keep admitting a key
 * after it was revoked. /verify answers `Cache-Control: no-store`, which nginx honours, so
 * the cache never holds an answer; only a configuration that ignores the header brings the trap
 * back, shown here so the first test is known to exercise a live cache.
 */

const CACHE_KEY = '$host$http_authorization$http_x_api_key';
/** ingress-nginx's documented example duration. */
const CACHE_VALID = '200 202 401 5m';

let fx: StoreFixture;
let webhook: RunningWebhook;
let upstream: EchoUpstream;
let honouring: TestNginx;
let ignoring: TestNginx;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  webhook = await runReadyWebhook(testConfig(fx.url, { KEYWARD_TRUSTED_PROXIES: '127.0.0.1/32' }));
  upstream = await startEchoUpstream();
  const base = {
    upstream: upstream.url,
    authResponseHeaders: IDENTITY_HEADERS,
    locations: [{ path: '/', authUrl: `${webhook.url}/verify` }],
  };
  honouring = await startNginx({ ...base, authCache: { key: CACHE_KEY, valid: CACHE_VALID } });
  ignoring = await startNginx({
    ...base,
    authCache: { key: CACHE_KEY, valid: CACHE_VALID, ignoreCacheControl: true },
  });
});

afterAll(async () => {
  await honouring?.stop();
  await ignoring?.stop();
  await webhook?.close();
  await upstream?.close();
  await fx?.close();
});

async function status(proxy: TestNginx | RunningWebhook, path: string, token: string): Promise<number> {
  return (await fetch(`${proxy.url}${path}`, { headers: { authorization: `Bearer ${token}` } })).status;
}

async function revokeAndWaitForWebhook(key: { uid: string; token: string }): Promise<void> {
  await fx.store.revokeKey(key.uid);
  await eventually(
    'the webhook denies the revoked key',
    async () => (await status(webhook, '/verify', key.token)) === 401,
    5000,
  );
}

describe('ingress-nginx auth-cache-key in front of /verify', () => {
  it('with Cache-Control honoured (the default), a revoked key is refused on the next request', async () => {
    const key = await fx.issueKey(await fx.createUser());
    for (let i = 0; i < 3; i++) expect(await status(honouring, '/app', key.token)).toBe(200);
    await revokeAndWaitForWebhook(key);
    expect(await status(honouring, '/app', key.token)).toBe(401);
  });

  it('with proxy_ignore_headers Cache-Control, the cached 200 outlives the revocation (the trap)', async () => {
    const key = await fx.issueKey(await fx.createUser());
    expect(await status(ignoring, '/app', key.token)).toBe(200);
    await revokeAndWaitForWebhook(key);
    expect(await status(ignoring, '/app', key.token)).toBe(200);
  });
});
