import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RateLimitDefinitions } from '../../store/rate-limits.js';
import type { RunningWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { startNginx, type TestNginx } from '../harness/nginx.js';
import {
  runReadyWebhook,
  type StoreFixture,
  storeFixture,
  type TestKey,
  testConfig,
} from '../support/webhook.js';

// The shipped recipe, included verbatim (examples/nginx/).
const EXAMPLES = join(import.meta.dirname, '..', '..', 'examples', 'nginx');

let fx: StoreFixture;
let definitions: RateLimitDefinitions;
let webhook: RunningWebhook;
let upstream: Server;
let withRecipe: TestNginx;
let withoutRecipe: TestNginx;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  definitions = new RateLimitDefinitions(fx.pool);
  webhook = await runReadyWebhook(testConfig(fx.url, { KEYWARD_TRUSTED_PROXIES: '127.0.0.1/32' }));
  upstream = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ user: req.headers['x-keyward-user'] ?? null }));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const options = {
    upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
    authResponseHeaders: ['X-Keyward-User'],
    locations: [{ path: '/', authUrl: `${webhook.url}/verify` }],
  };
  [withRecipe, withoutRecipe] = await Promise.all([
    startNginx({
      ...options,
      locationSnippet: `include ${join(EXAMPLES, 'keyward-auth-location.conf')};`,
      serverSnippet: `include ${join(EXAMPLES, 'keyward-auth-errors.conf')};`,
    }),
    startNginx(options),
  ]);
});

afterAll(async () => {
  await Promise.all([withRecipe?.stop(), withoutRecipe?.stop()]);
  await webhook?.close();
  await new Promise((resolve) => upstream?.close(resolve));
  await fx?.close();
});

async function limitedKey(limit: number): Promise<TestKey> {
  const key = await fx.issueKey(await fx.createUser());
  await definitions.define({
    uid: key.uid,
    kind: 'ApiKey',
    rateLimits: [{ name: 'hourly', limit, periodMs: 3_600_000 }],
    quota: null,
  });
  return key;
}

const get = (nginx: TestNginx, key: TestKey | undefined): Promise<Response> =>
  fetch(`${nginx.url}/app`, { headers: key ? { authorization: `Bearer ${key.token}` } : {} });

describe('nginx auth_request with the shipped rate-limit recipe', () => {
  it('gives the client a real 429 with Retry-After and the RateLimit headers', async () => {
    const key = await limitedKey(1);
    const allowed = await get(withRecipe, key);
    expect(allowed.status).toBe(200);
    expect(await allowed.json()).toEqual({ user: key.user.username });
    expect(allowed.headers.get('ratelimit-policy')).toBe('"key:hourly";q=1;w=3600');
    expect(allowed.headers.get('ratelimit')).toMatch(/^"key:hourly";r=0;t=\d+$/);

    const limited = await get(withRecipe, key);
    expect(limited.status).toBe(429);
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    expect(limited.headers.get('ratelimit')).toBe(`"key:hourly";r=0;t=${retryAfter}`);
    expect(limited.headers.get('ratelimit-policy')).toBe('"key:hourly";q=1;w=3600');
    expect(((await limited.json()) as { error: string }).error).toBe('rate_limited');
  });

  it('leaves 401 and 403 as they were, and a key without limits gets no RateLimit headers', async () => {
    const missing = await get(withRecipe, undefined);
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toBe('Bearer realm="keyward"');
    expect(missing.headers.get('retry-after')).toBeNull();
    const plain = await get(withRecipe, await fx.issueKey(await fx.createUser()));
    expect(plain.status).toBe(200);
    expect(plain.headers.get('ratelimit')).toBeNull();
  });

  it('without the recipe, nginx turns the 429 into a 500 (why the recipe exists)', async () => {
    const key = await limitedKey(1);
    expect((await get(withoutRecipe, key)).status).toBe(200);
    const res = await get(withoutRecipe, key);
    expect(res.status).toBe(500);
    expect(res.headers.get('retry-after')).toBeNull();
  });
});
