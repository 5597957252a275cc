import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
  keepAliveCase,
  startEchoUpstream,
} from '../support/ingress.js';
import { runReadyWebhook, type StoreFixture, storeFixture, testConfig } from '../support/webhook.js';

/**
 * The first start may build Traefik (devenv/traefik/build.sh): 18 minutes on a loaded 2-core
 * machine, cached afterwards; .ci/run builds it before the suites.
 */
const COLD_BUILD_TIMEOUT_MS = 40 * 60_000;

let fx: StoreFixture;
let webhook: RunningWebhook;
let upstream: EchoUpstream;
let traefik: TestProxy;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  webhook = await runReadyWebhook(testConfig(fx.url, { KEYWARD_TRUSTED_PROXIES: '127.0.0.1/32' }));
  upstream = await startEchoUpstream();
  traefik = await startTraefik({
    upstream: upstream.url,
    authResponseHeaders: IDENTITY_HEADERS,
    locations: ingressLocations(webhook.url),
  });
}, COLD_BUILD_TIMEOUT_MS);

afterAll(async () => {
  await traefik?.stop();
  await webhook?.close();
  await upstream?.close();
  await fx?.close();
});

describe('Traefik ForwardAuth with authResponseHeaders (docs/ingress/traefik.md)', () => {
  ingressCases(() => ({ proxy: traefik, upstream, fx }));
  keepAliveCase(() => ({ proxy: traefik, fx, webhook }));
});

describe('Traefik forwardAuth: whose X-Forwarded-For the webhook counts failed attempts against', () => {
  const LIMIT = 3;

  /** Guesses through a fresh webhook and Traefik (a fresh limiter), each claiming another address. */
  async function guessesWithRotatingForwardedFor(options: {
    trustForwardHeader: boolean;
    insecureForwardedHeaders: boolean;
  }): Promise<number[]> {
    const limited = await runWebhook({
      config: testConfig(fx.url, {
        KEYWARD_TRUSTED_PROXIES: '127.0.0.1/32',
        KEYWARD_FAILED_ATTEMPTS_LIMIT: String(LIMIT),
      }),
      handleSignals: false,
      defaultMetrics: false,
    });
    let proxy: TestProxy | undefined;
    try {
      await eventually(
        'webhook ready',
        async () => (await fetch(`${limited.url}/readyz`)).status === 200,
        10_000,
      );
      proxy = await startTraefik({
        upstream: upstream.url,
        authResponseHeaders: IDENTITY_HEADERS,
        locations: [{ path: '/', authUrl: `${limited.url}/verify` }],
        ...options,
      });
      const statuses: number[] = [];
      for (let i = 0; i <= LIMIT; i++) {
        const res = await fetch(`${proxy.url}/x`, {
          headers: { authorization: `Bearer kw_guess-${i}`, 'x-forwarded-for': `203.0.113.${10 + i}` },
        });
        statuses.push(res.status);
      }
      return statuses;
    } finally {
      await proxy?.stop();
      await limited.close();
    }
  }

  it('trustForwardHeader: false: a client rotating X-Forwarded-For is still limited, whatever the entry point believes', async () => {
    const statuses = await guessesWithRotatingForwardedFor({
      trustForwardHeader: false,
      insecureForwardedHeaders: true,
    });
    expect(statuses).toEqual([...Array(LIMIT).fill(401), 429]);
  });

  it('trustForwardHeader: true with the entry point stripping untrusted X-Forwarded-* (its default): still limited', async () => {
    const statuses = await guessesWithRotatingForwardedFor({
      trustForwardHeader: true,
      insecureForwardedHeaders: false,
    });
    expect(statuses).toEqual([...Array(LIMIT).fill(401), 429]);
  });

  it('trustForwardHeader: true behind an entry point that believes every client: the limit is escaped', async () => {
    const statuses = await guessesWithRotatingForwardedFor({
      trustForwardHeader: true,
      insecureForwardedHeaders: true,
    });
    expect(statuses).toEqual(Array(LIMIT + 1).fill(401));
  });
});
