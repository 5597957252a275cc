import { afterAll, beforeAll, describe } from 'vitest';
import { eventually } from '../../devenv/poll.js';
import { type RunningWebhook, runWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import type { TestProxy } from '../harness/proxy.js';
import { startTraefik } from '../harness/traefik.js';
import {
  type EchoUpstream,
  IDENTITY_HEADERS,
  ingressCases,
  ingressLocations,
  startEchoUpstream,
} from '../support/ingress.js';
import { type StoreFixture, storeFixture, testConfig } from '../support/webhook.js';

let fx: StoreFixture;
let webhook: RunningWebhook;
let upstream: EchoUpstream;
let traefik: TestProxy;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  webhook = await runWebhook({
    config: testConfig(fx.url, { KEYWARD_TRUSTED_PROXIES: '127.0.0.1/32' }),
    handleSignals: false,
    defaultMetrics: false,
  });
  await eventually(
    'webhook ready',
    async () => (await fetch(`${webhook.url}/readyz`)).status === 200,
    10_000,
  );
  upstream = await startEchoUpstream();
  traefik = await startTraefik({
    upstream: upstream.url,
    authResponseHeaders: IDENTITY_HEADERS,
    locations: ingressLocations(webhook.url),
  });
});

afterAll(async () => {
  await traefik?.stop();
  await webhook?.close();
  await upstream?.close();
  await fx?.close();
});

describe('Traefik ForwardAuth with authResponseHeaders (docs/ingress/traefik.md)', () => {
  ingressCases(() => ({ proxy: traefik, upstream, fx }));
});
