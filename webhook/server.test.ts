import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../devenv/poll.js';
import { testDatabase } from '../test/harness/database.js';
import { type StoreFixture, storeFixture, testConfig } from '../test/support/webhook.js';
import { type RunningWebhook, runWebhook } from './server.js';

let fx: StoreFixture;
let webhook: RunningWebhook;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  webhook = await runWebhook({
    config: testConfig(fx.url, {
      KEYWARD_SHUTDOWN_DELAY: '1s',
      KEYWARD_MAX_HEADER_BYTES: '4096',
      KEYWARD_MAX_URL_BYTES: '1024',
    }),
    handleSignals: false,
    defaultMetrics: false,
  });
  await eventually('ready', async () => (await fetch(`${webhook.url}/readyz`)).status === 200, 10_000);
});

afterAll(async () => {
  await webhook?.close();
  await fx?.close();
});

/** Raw request: fetch refuses some of what a hostile client sends. */
function raw(path: string, headers: Record<string, string>): Promise<number> {
  const url = new URL(webhook.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, headers, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', (err) => reject(new Error(`${path.slice(0, 20)}: ${err.message}`)));
    req.end();
  });
}

describe('runWebhook', () => {
  it('serves over HTTP with keep-alive and enforces header and URL size limits', async () => {
    const key = await fx.issueKey(await fx.createUser());
    const ok = await fetch(`${webhook.url}/verify`, { headers: { authorization: `Bearer ${key.token}` } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('x-keyward-key-id')).toBe(key.keyId);
    expect(await raw('/verify', { authorization: `Bearer ${'a'.repeat(5000)}` })).toBe(431);
    expect(await raw(`/verify/${'x'.repeat(2000)}`, {})).toBe(414);
    expect(await raw(`/verify/${'x'.repeat(900)}`, {})).toBe(401);
    expect(await raw('/verify', { authorization: `Bearer ${key.token}` })).toBe(200);
  });

  it('drains on close: readiness false at once, still answering during the delay, then closed', async () => {
    const closing = webhook.close();
    const ready = await fetch(`${webhook.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { draining: boolean }).draining).toBe(true);
    expect((await fetch(`${webhook.url}/healthz`)).status).toBe(200);
    await closing;
    await expect(fetch(`${webhook.url}/healthz`)).rejects.toThrow();
  });
});
