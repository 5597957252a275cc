import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LimitDefinition } from '../../api/ratelimits.js';
import { eventually } from '../../devenv/poll.js';
import { RateLimitDefinitions } from '../../store/rate-limits.js';
import { type RunningWebhook, runWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { type StoreFixture, storeFixture, type TestKey, testConfig } from '../support/webhook.js';

let fx: StoreFixture;
let definitions: RateLimitDefinitions;

/** A window long enough that no run straddles two (windows start at multiples of it since the epoch). */
const YEAR_MS = 365 * 86_400_000;

const TOKENREVIEW_CALLER = 'kube-apiserver-rate-limit-tests';
const INTROSPECT_CALLER = 'gateway:rate-limit-tests';

async function startReplica(syncInterval: string): Promise<RunningWebhook> {
  const webhook = await runWebhook({
    config: testConfig(fx.url, {
      KEYWARD_RATE_LIMIT_SYNC_INTERVAL: syncInterval,
      KEYWARD_TOKENREVIEW_CREDENTIALS: TOKENREVIEW_CALLER,
      KEYWARD_INTROSPECT_CREDENTIALS: INTROSPECT_CALLER,
    }),
    handleSignals: false,
    defaultMetrics: false,
  });
  await eventually(
    'webhook ready',
    async () => (await fetch(`${webhook.url}/readyz`)).status === 200,
    10_000,
  );
  return webhook;
}

async function keyWithLimits(limits: { key?: LimitDefinition[]; quota?: LimitDefinition }): Promise<TestKey> {
  const key = await fx.issueKey(await fx.createUser());
  await definitions.define({
    uid: key.uid,
    kind: 'ApiKey',
    rateLimits: limits.key ?? [],
    quota: limits.quota ?? null,
  });
  return key;
}

const verify = (webhook: RunningWebhook, key: TestKey): Promise<Response> =>
  fetch(`${webhook.url}/verify`, { headers: { authorization: `Bearer ${key.token}` } });

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  definitions = new RateLimitDefinitions(fx.pool);
});

afterAll(async () => {
  await fx?.close();
});

describe('a limited key over HTTP', () => {
  let webhook: RunningWebhook;
  beforeAll(async () => {
    webhook = await startReplica('1s');
  });
  afterAll(async () => {
    await webhook?.close();
  });

  it('answers 429 with Retry-After and the RateLimit headers once a limit is used up', async () => {
    const key = await keyWithLimits({ key: [{ name: 'hourly', limit: 2, periodMs: 3_600_000 }] });
    const first = await verify(webhook, key);
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit-policy')).toBe('"key:hourly";q=2;w=3600');
    expect(first.headers.get('ratelimit')).toMatch(/^"key:hourly";r=1;t=\d+$/);
    expect((await verify(webhook, key)).status).toBe(200);
    const limited = await verify(webhook, key);
    expect(limited.status).toBe(429);
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    expect(limited.headers.get('ratelimit')).toBe(`"key:hourly";r=0;t=${retryAfter}`);
    expect(await limited.json()).toEqual({
      error: 'rate_limited',
      error_description: 'The API key is over its rate limit key:hourly.',
    });
    const metrics = await (await fetch(`${webhook.metricsUrl}/metrics`)).text();
    expect(metrics).toMatch(
      /keyward_webhook_decisions_total\{[^}]*result="limited"[^}]*reason="rate_limited"[^}]*\} 1\b/,
    );
  });

  it('a quota that never refills: 429 without Retry-After, remaining uses in the store', async () => {
    const key = await keyWithLimits({ quota: { name: 'quota', limit: 3, periodMs: null } });
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await verify(webhook, key)).status);
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    const exhausted = await verify(webhook, key);
    expect(exhausted.headers.get('retry-after')).toBeNull();
    expect(exhausted.headers.get('ratelimit')).toBe('"quota";r=0');
    expect(((await exhausted.json()) as { error_description: string }).error_description).toBe(
      'The API key has used up its quota.',
    );
    await eventually(
      'the uses reach the store',
      async () => (await definitions.quotaUsage(key.uid))?.used === 3,
      10_000,
    );
  });

  it('TokenReview and introspection refuse a limited key too, and its limited answers count nothing', async () => {
    const key = await fx.issueKey(await fx.createUser({ kubernetesAuthentication: true }));
    await definitions.define({
      uid: key.uid,
      kind: 'ApiKey',
      rateLimits: [{ name: 'hourly', limit: 1, periodMs: 3_600_000 }],
      quota: null,
    });
    expect((await verify(webhook, key)).status).toBe(200);
    const review = await fetch(`${webhook.url}/tokenreview`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKENREVIEW_CALLER}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token: key.token },
      }),
    });
    expect(((await review.json()) as { status: unknown }).status).toEqual({
      authenticated: false,
      error: 'The API key is over its rate limit key:hourly.',
    });
    const introspection = await fetch(`${webhook.url}/introspect`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(INTROSPECT_CALLER).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ token: key.token }).toString(),
    });
    expect(await introspection.json()).toEqual({ active: false });
  });

  it('a key without limits gets no RateLimit headers', async () => {
    const key = await fx.issueKey(await fx.createUser());
    const res = await verify(webhook, key);
    expect(res.status).toBe(200);
    expect(res.headers.get('ratelimit')).toBeNull();
    expect(res.headers.get('ratelimit-policy')).toBeNull();
  });

  it('raising a limit applies at once, without waiting for a cache TTL', async () => {
    const key = await keyWithLimits({ key: [{ name: 'daily', limit: 1, periodMs: 86_400_000 }] });
    expect((await verify(webhook, key)).status).toBe(200);
    expect((await verify(webhook, key)).status).toBe(429);
    await definitions.define({
      uid: key.uid,
      kind: 'ApiKey',
      rateLimits: [{ name: 'daily', limit: 5, periodMs: 86_400_000 }],
      quota: null,
    });
    await eventually(
      'the new limit is in force',
      async () => (await verify(webhook, key)).status === 200,
      10_000,
    );
  });
});

const REPLICAS = 2;
const REQUESTS = 1000;
const LIMIT = 100;
const CONCURRENCY = 16;

/** Most admissions one replica made within any span of `spanMs` (the bound's "what one replica admits"). */
function busiestSpan(times: number[], spanMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let start = 0;
  for (let end = 0; end < sorted.length; end++) {
    while ((sorted[end] as number) - (sorted[start] as number) > spanMs) start++;
    best = Math.max(best, end - start + 1);
  }
  return best;
}

// docs/rate-limits.md: with N replicas syncing every S, a limit L admits at most
// L + (N - 1) * min(L, A), A = the most one replica admits in any 2 S.
describe.each([
  { syncInterval: '1s', syncMs: 1000 },
  { syncInterval: '5s', syncMs: 5000 },
])('2 replicas, 1,000 requests, a limit of 100, sync every $syncInterval', ({ syncInterval, syncMs }) => {
  let replicas: RunningWebhook[];
  beforeAll(async () => {
    replicas = await Promise.all(Array.from({ length: REPLICAS }, () => startReplica(syncInterval)));
  });
  afterAll(async () => {
    await Promise.all((replicas ?? []).map((r) => r.close()));
  });

  it('admits at least the limit and at most the documented bound over it, and the store counts every admission', async () => {
    const key = await keyWithLimits({ key: [{ name: 'accuracy', limit: LIMIT, periodMs: YEAR_MS }] });
    const admittedAt: number[][] = replicas.map(() => []);
    const statuses = new Map<number, number>();
    let next = 0;
    const startedAt = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < REQUESTS) {
          const i = next++;
          const replica = i % REPLICAS;
          const res = await verify(replicas[replica] as RunningWebhook, key);
          await res.arrayBuffer();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (res.status === 200) admittedAt[replica]?.push(performance.now());
        }
      }),
    );
    const elapsedMs = performance.now() - startedAt;
    const admitted = statuses.get(200) ?? 0;
    expect([...statuses.keys()].sort()).toEqual([200, 429]);
    const busiest = Math.max(...admittedAt.map((times) => busiestSpan(times, 2 * syncMs)));
    const bound = (REPLICAS - 1) * Math.min(LIMIT, busiest);
    console.info(
      `rate-limit accuracy (sync ${syncInterval}): ${admitted} of ${REQUESTS} admitted against ${LIMIT} ` +
        `(per replica ${admittedAt.map((t) => t.length).join(' + ')}), overshoot ${admitted - LIMIT}, ` +
        `documented bound ${bound} (busiest replica admitted ${busiest} in ${2 * syncMs} ms), ${Math.round(elapsedMs)} ms`,
    );
    expect(admitted).toBeGreaterThanOrEqual(LIMIT);
    expect(admitted).toBeLessThanOrEqual(LIMIT + bound);

    // Every admission reaches the store (closing syncs what is left): the count other replicas see.
    await Promise.all(replicas.map((r) => r.close()));
    const { rows } = await fx.pool.query<{ count: string }>(
      "SELECT count FROM rate_limit_counters WHERE subject = $1 AND name = 'key:accuracy'",
      [key.apiKeyId],
    );
    expect(Number(rows[0]?.count)).toBe(admitted);
  });
});
