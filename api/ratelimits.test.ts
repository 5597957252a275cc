import { CustomObjectsApi } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace } from '../devenv/kube.js';
import { testKubeConfig } from '../test/harness/kube.js';
import { GROUP, VERSION } from './common.js';
import { quotaDefinition, rateLimitDefinitions } from './ratelimits.js';
import { parseApiKey, parseServiceUser } from './validate.js';

type Kind = 'ServiceUser' | 'ApiKey';
interface Manifest {
  apiVersion: string;
  kind: Kind;
  metadata: { name: string };
  spec: Record<string, unknown>;
}

const user = (name: string, spec: Record<string, unknown>): Manifest => ({
  apiVersion: `${GROUP}/${VERSION}`,
  kind: 'ServiceUser',
  metadata: { name },
  spec,
});
const key = (name: string, spec: Record<string, unknown>): Manifest => ({
  apiVersion: `${GROUP}/${VERSION}`,
  kind: 'ApiKey',
  metadata: { name },
  spec: { serviceUserRef: { name: 'ci' }, ...spec },
});
const limit = (overrides: Record<string, unknown>): Record<string, unknown> => ({
  name: 'burst',
  limit: 10,
  period: '1m',
  ...overrides,
});

/** Each must be refused by the zod schema and by the API server, naming `field`. */
const invalid: Array<{ name: string; manifest: Manifest; field: string }> = [
  {
    name: 'a zero limit',
    manifest: key('k1', { rateLimits: [limit({ limit: 0 })] }),
    field: 'spec.rateLimits[0].limit',
  },
  {
    name: 'a negative limit',
    manifest: user('u1', { rateLimits: [limit({ limit: -5 })] }),
    field: 'spec.rateLimits[0].limit',
  },
  {
    name: 'a fractional limit',
    manifest: key('k2', { rateLimits: [limit({ limit: 1.5 })] }),
    field: 'spec.rateLimits[0].limit',
  },
  {
    name: 'a period that does not parse',
    manifest: key('k3', { rateLimits: [limit({}), limit({ name: 'daily', period: '1 day' })] }),
    field: 'spec.rateLimits[1].period',
  },
  {
    name: 'a period in an unknown unit',
    manifest: user('u2', { rateLimits: [limit({ period: '1w' })] }),
    field: 'spec.rateLimits[0].period',
  },
  {
    name: 'a zero period',
    manifest: key('k4', { rateLimits: [limit({ period: '0s' })] }),
    field: 'spec.rateLimits[0].period',
  },
  {
    name: 'a negative period',
    manifest: key('k5', { rateLimits: [limit({ period: '-1m' })] }),
    field: 'spec.rateLimits[0].period',
  },
  {
    name: 'a limit without a period',
    manifest: user('u3', { rateLimits: [{ name: 'burst', limit: 10 }] }),
    field: 'spec.rateLimits[0].period',
  },
  {
    name: 'a limit name with a space',
    manifest: key('k6', { rateLimits: [limit({ name: 'per minute' })] }),
    field: 'spec.rateLimits[0].name',
  },
  {
    name: 'a duplicate limit name',
    manifest: key('k7', { rateLimits: [limit({}), limit({ limit: 20 })] }),
    field: 'spec.rateLimits[1]',
  },
  { name: 'a zero quota', manifest: key('k8', { quota: { limit: 0 } }), field: 'spec.quota.limit' },
  { name: 'a negative quota', manifest: key('k9', { quota: { limit: -1 } }), field: 'spec.quota.limit' },
  {
    name: 'a refill period that does not parse',
    manifest: key('k10', { quota: { limit: 100, refillEvery: 'monthly' } }),
    field: 'spec.quota.refillEvery',
  },
  {
    name: 'a zero refill period',
    manifest: key('k11', { quota: { limit: 100, refillEvery: '0d' } }),
    field: 'spec.quota.refillEvery',
  },
  { name: 'a quota on a ServiceUser', manifest: user('u4', { quota: { limit: 100 } }), field: 'spec.quota' },
];

function zodErrors(manifest: Manifest): string[] {
  const parsed = manifest.kind === 'ApiKey' ? parseApiKey(manifest) : parseServiceUser(manifest);
  return parsed.ok ? [] : parsed.errors;
}

describe('rate limits and quotas, zod side', () => {
  it.each(invalid)('refuses $name, naming $field', ({ manifest, field }) => {
    expect(zodErrors(manifest).some((e) => e.startsWith(field))).toBe(true);
  });

  it('parses valid limits into windows in milliseconds', () => {
    const parsed = parseApiKey(
      key('ok', {
        rateLimits: [limit({}), { name: 'daily', limit: 5000, period: '1d' }],
        quota: { limit: 100_000, refillEvery: '30d' },
      }),
    );
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(rateLimitDefinitions(parsed.value.spec.rateLimits)).toEqual([
      { name: 'burst', limit: 10, periodMs: 60_000 },
      { name: 'daily', limit: 5000, periodMs: 86_400_000 },
    ]);
    expect(quotaDefinition(parsed.value.spec.quota)).toEqual({
      name: 'quota',
      limit: 100_000,
      periodMs: 2_592_000_000,
    });
    expect(quotaDefinition({ limit: 3 })).toEqual({ name: 'quota', limit: 3, periodMs: null });
  });
});

describe('rate limits and quotas, API server side', () => {
  let api: CustomObjectsApi;
  let namespace: string;

  beforeAll(async () => {
    const kc = testKubeConfig();
    api = kc.makeApiClient(CustomObjectsApi);
    namespace = await createTestNamespace(kc, 'ratelimits');
  });

  const create = (manifest: Manifest): Promise<unknown> =>
    api.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: manifest.kind === 'ApiKey' ? 'apikeys' : 'serviceusers',
      body: manifest,
      fieldValidation: 'Strict',
    });

  it.each(invalid)('refuses $name, naming $field', async ({ manifest, field }) => {
    const error = await create(manifest).then(
      () => undefined,
      (err: unknown) => err as { code?: number; body?: string },
    );
    expect(error, 'the API server accepted it').toBeDefined();
    expect([400, 422]).toContain(error?.code);
    const message = (JSON.parse(String(error?.body)) as { message: string }).message;
    expect(message).toContain(field);
  });

  it('accepts valid limits on a ServiceUser and an ApiKey', async () => {
    await create(user('limited', { rateLimits: [limit({}), { name: 'hourly', limit: 1000, period: '1h' }] }));
    const created = (await create(
      key('limited', { rateLimits: [limit({ period: '1s' })], quota: { limit: 10, refillEvery: '1d' } }),
    )) as { spec: Record<string, unknown> };
    expect(created.spec.quota).toEqual({ limit: 10, refillEvery: '1d' });
  });
});
