import { afterAll, beforeAll, describe } from 'vitest';
import type { RunningWebhook } from '../../webhook/server.js';
import { startCaddy } from '../harness/caddy.js';
import { testDatabase } from '../harness/database.js';
import type { TestProxy } from '../harness/proxy.js';
import {
  type EchoUpstream,
  IDENTITY_HEADERS,
  ingressCases,
  ingressLocations,
  keepAliveCase,
  startEchoUpstream,
} from '../support/ingress.js';
import { runReadyWebhook, type StoreFixture, storeFixture, testConfig } from '../support/webhook.js';

let fx: StoreFixture;
let webhook: RunningWebhook;
let upstream: EchoUpstream;
let caddy: TestProxy;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  webhook = await runReadyWebhook(testConfig(fx.url, { KEYWARD_TRUSTED_PROXIES: '127.0.0.1/32' }));
  upstream = await startEchoUpstream();
  caddy = await startCaddy({
    upstream: upstream.url,
    authResponseHeaders: IDENTITY_HEADERS,
    locations: ingressLocations(webhook.url),
  });
});

afterAll(async () => {
  await caddy?.stop();
  await webhook?.close();
  await upstream?.close();
  await fx?.close();
});

describe('Caddy forward_auth with copy_headers (docs/ingress/caddy.md)', () => {
  ingressCases(() => ({ proxy: caddy, upstream, fx }));
  keepAliveCase(() => ({ proxy: caddy, fx, webhook }));
});
