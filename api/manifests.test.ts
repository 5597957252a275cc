import type { KubeConfig } from '@kubernetes/client-node';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace } from '../devenv/kube.js';
import { testKubeConfig } from '../test/harness/kube.js';
import { GROUP, VERSION } from './common.js';
import { immutableFieldChanges, parseAccessPolicy, parseApiKey, parseServiceUser } from './validate.js';

type Kind = 'ServiceUser' | 'ApiKey' | 'AccessPolicy';
type Manifest = { apiVersion: string; kind: Kind; metadata: { name: string }; spec: Record<string, unknown> };

function serviceUser(name: string, spec: Record<string, unknown> = {}): Manifest {
  return { apiVersion: `${GROUP}/${VERSION}`, kind: 'ServiceUser', metadata: { name }, spec };
}
function apiKey(name: string, spec: Record<string, unknown> = {}): Manifest {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'ApiKey',
    metadata: { name },
    spec: { serviceUserRef: { name: 'ci' }, ...spec },
  };
}

function accessPolicy(name: string, spec: Record<string, unknown>): Manifest {
  return { apiVersion: `${GROUP}/${VERSION}`, kind: 'AccessPolicy', metadata: { name }, spec };
}

interface InvalidCase {
  name: string;
  manifest: Manifest;
  /** For transition rules: the object as created first; `manifest` is then the update. */
  before?: Manifest;
  /** The field the error must name, as the API server names it. */
  field: string;
}

const cases: InvalidCase[] = [
  {
    name: 'username with a space',
    manifest: serviceUser('u1', { username: 'ci bot' }),
    field: 'spec.username',
  },
  {
    name: 'username with a dot',
    manifest: serviceUser('u2', { username: 'ci.bot' }),
    field: 'spec.username',
  },
  {
    name: 'username with a leading separator',
    manifest: serviceUser('u3', { username: '-cibot' }),
    field: 'spec.username',
  },
  {
    name: 'username with a trailing separator',
    manifest: serviceUser('u4', { username: 'cibot_' }),
    field: 'spec.username',
  },
  {
    name: 'username with a doubled separator',
    manifest: serviceUser('u5', { username: 'ci--bot' }),
    field: 'spec.username',
  },
  {
    name: 'username with mixed doubled separators',
    manifest: serviceUser('u6', { username: 'ci-_bot' }),
    field: 'spec.username',
  },
  {
    name: 'non-ASCII username',
    manifest: serviceUser('u7', { username: 'bötuser' }),
    field: 'spec.username',
  },
  {
    name: 'username of 64 characters',
    manifest: serviceUser('u8', { username: 'a'.repeat(64) }),
    field: 'spec.username',
  },
  { name: 'empty username', manifest: serviceUser('u9', { username: '' }), field: 'spec.username' },
  {
    name: 'metadata.name standing in for a bad username',
    manifest: serviceUser('ci.bot'),
    field: 'metadata.name',
  },
  { name: 'unknown spec field', manifest: serviceUser('u10', { nickname: 'x' }), field: 'spec.nickname' },
  {
    name: 'suspended as a string',
    manifest: serviceUser('u11', { suspended: 'yes' }),
    field: 'spec.suspended',
  },
  {
    name: 'scopes as a string',
    manifest: serviceUser('u12', { scopes: 'projects:alpha' }),
    field: 'spec.scopes',
  },
  {
    name: 'scope with a space',
    manifest: serviceUser('u13', { scopes: ['projects alpha'] }),
    field: 'spec.scopes[0]',
  },
  {
    name: 'scope with an empty segment',
    manifest: serviceUser('u14', { scopes: ['projects::alpha'] }),
    field: 'spec.scopes[0]',
  },
  {
    name: 'scope with an inner wildcard',
    manifest: serviceUser('u15', { scopes: ['ok', 'projects:*:read'] }),
    field: 'spec.scopes[1]',
  },
  {
    name: 'description over 1024',
    manifest: serviceUser('u16', { description: 'x'.repeat(1025) }),
    field: 'spec.description',
  },
  {
    name: 'contact e-mail malformed',
    manifest: serviceUser('u17', { contact: { email: 'ops at example' } }),
    field: 'spec.contact.email',
  },
  { name: 'negative maxKeys', manifest: serviceUser('u18', { maxKeys: -1 }), field: 'spec.maxKeys' },
  {
    name: 'groups as objects',
    manifest: serviceUser('u19', { groups: [{ name: 'ops' }] }),
    field: 'spec.groups[0]',
  },
  {
    name: 'a system: group',
    manifest: serviceUser('u20', { groups: ['deployers', 'system:masters'] }),
    field: 'spec.groups[1]',
  },
  {
    name: 'missing serviceUserRef',
    manifest: { ...apiKey('k1'), spec: { description: 'x' } },
    field: 'spec.serviceUserRef',
  },
  {
    name: 'serviceUserRef name not a DNS name',
    manifest: apiKey('k2', { serviceUserRef: { name: 'Bad_User' } }),
    field: 'spec.serviceUserRef.name',
  },
  {
    name: 'expiresAt and ttl together',
    manifest: apiKey('k3', { expiresAt: '2030-01-01T00:00:00Z', ttl: '90d' }),
    field: 'spec.ttl',
  },
  { name: 'negative ttl', manifest: apiKey('k4', { ttl: '-1h' }), field: 'spec.ttl' },
  { name: 'ttl in words', manifest: apiKey('k5', { ttl: '90 days' }), field: 'spec.ttl' },
  { name: 'zero ttl', manifest: apiKey('k6', { ttl: '0s' }), field: 'spec.ttl' },
  {
    name: 'grace period in years',
    manifest: apiKey('k7', { rotation: { gracePeriod: '1y' } }),
    field: 'spec.rotation.gracePeriod',
  },
  {
    name: 'zero rotation period',
    manifest: apiKey('k8', { rotation: { every: '0d' } }),
    field: 'spec.rotation.every',
  },
  {
    name: 'expiresAt not a time',
    manifest: apiKey('k9', { expiresAt: 'tomorrow' }),
    field: 'spec.expiresAt',
  },
  {
    name: 'key description over 256',
    manifest: apiKey('k10', { description: 'x'.repeat(257) }),
    field: 'spec.description',
  },
  {
    name: 'unknown rotation field',
    manifest: apiKey('k11', { rotation: { period: '30d' } }),
    field: 'spec.rotation.period',
  },
  { name: 'bad key scope', manifest: apiKey('k12', { scopes: ['*:read'] }), field: 'spec.scopes[0]' },
  {
    name: 'tokenKey with a slash',
    manifest: apiKey('k13', { secret: { tokenKey: 'api/token' } }),
    field: 'spec.secret.tokenKey',
  },
  { name: 'disabled as a string', manifest: apiKey('k14', { disabled: 'true' }), field: 'spec.disabled' },
  {
    name: 'Secret label under keyward.dev/',
    manifest: apiKey('k16', { secret: { labels: { 'keyward.dev/api-key': 'other' } } }),
    field: 'spec.secret.labels',
  },
  {
    name: 'Secret label under a keyward.dev subdomain',
    manifest: apiKey('k17', { secret: { labels: { 'x.keyward.dev/owner': 'me' } } }),
    field: 'spec.secret.labels',
  },
  {
    name: 'Secret annotation under keyward.dev/',
    manifest: apiKey('k18', { secret: { annotations: { 'keyward.dev/rotation-request': 'r9' } } }),
    field: 'spec.secret.annotations',
  },
  {
    name: 'Secret label managed-by, which keyward sets',
    manifest: apiKey('k19', { secret: { labels: { 'app.kubernetes.io/managed-by': 'helm' } } }),
    field: 'spec.secret.labels',
  },
  {
    name: 'Secret label key with a space',
    manifest: apiKey('k20', { secret: { labels: { 'my team': 'a' } } }),
    field: 'spec.secret.labels',
  },
  {
    name: 'Secret label key with two slashes',
    manifest: apiKey('k21', { secret: { labels: { 'a/b/c': 'x' } } }),
    field: 'spec.secret.labels',
  },
  {
    name: 'Secret label key with an upper-case prefix',
    manifest: apiKey('k22', { secret: { labels: { 'Example.com/team': 'x' } } }),
    field: 'spec.secret.labels',
  },
  {
    name: 'Secret label key name over 63 characters',
    manifest: apiKey('k23', { secret: { labels: { [`example.com/${'n'.repeat(64)}`]: 'x' } } }),
    field: 'spec.secret.labels',
  },
  {
    name: 'Secret label key prefix over 253 characters',
    manifest: apiKey('k24', {
      secret: {
        labels: { [`${'p'.repeat(63)}.${'q'.repeat(63)}.${'r'.repeat(63)}.${'s'.repeat(63)}/n`]: 'x' },
      },
    }),
    field: 'spec.secret.labels',
  },
  {
    name: 'Secret label key ending in a dash',
    manifest: apiKey('k25', { secret: { labels: { 'team-': 'x' } } }),
    field: 'spec.secret.labels',
  },
  {
    name: 'Secret label value with a space',
    manifest: apiKey('k26', { secret: { labels: { team: 'team a' } } }),
    field: 'spec.secret.labels.team',
  },
  {
    name: 'Secret label value over 63 characters',
    manifest: apiKey('k27', { secret: { labels: { team: 'v'.repeat(64) } } }),
    field: 'spec.secret.labels.team',
  },
  {
    name: 'Secret label value starting with a dot',
    manifest: apiKey('k28', { secret: { labels: { team: '.a' } } }),
    field: 'spec.secret.labels.team',
  },
  {
    name: 'Secret annotation key with a colon',
    manifest: apiKey('k29', { secret: { annotations: { 'note:owner': 'x' } } }),
    field: 'spec.secret.annotations',
  },
  {
    name: 'Secret annotation key empty',
    manifest: apiKey('k30', { secret: { annotations: { '': 'x' } } }),
    field: 'spec.secret.annotations',
  },
  {
    name: 'previousTokenKey equal to tokenKey',
    manifest: apiKey('k31', { secret: { tokenKey: 'API_KEY', previousTokenKey: 'API_KEY' } }),
    field: 'spec.secret.previousTokenKey',
  },
  {
    name: 'previousTokenKey equal to the default tokenKey',
    manifest: apiKey('k32', { secret: { previousTokenKey: 'token' } }),
    field: 'spec.secret.previousTokenKey',
  },
  {
    name: 'restart target with both name and selector',
    manifest: apiKey('k33', {
      restartTargets: [{ kind: 'Deployment', name: 'web', selector: { matchLabels: { app: 'web' } } }],
    }),
    field: 'spec.restartTargets[0]',
  },
  {
    name: 'restart target with neither name nor selector',
    manifest: apiKey('k34', { restartTargets: [{ kind: 'Deployment', name: 'web' }, { kind: 'DaemonSet' }] }),
    field: 'spec.restartTargets[1]',
  },
  {
    name: 'restart target with an empty selector (every workload)',
    manifest: apiKey('k35', { restartTargets: [{ kind: 'StatefulSet', selector: {} }] }),
    field: 'spec.restartTargets[0].selector',
  },
  {
    name: 'restart target of a kind keyward does not restart',
    manifest: apiKey('k36', { restartTargets: [{ kind: 'CronJob', name: 'nightly' }] }),
    field: 'spec.restartTargets[0].kind',
  },
  {
    name: 'restart targets beyond the bound',
    manifest: apiKey('k37', {
      restartTargets: Array.from({ length: 17 }, (_, i) => ({ kind: 'Deployment', name: `web-${i}` })),
    }),
    field: 'spec.restartTargets',
  },
  {
    name: 'changed serviceUserRef',
    before: apiKey('k15'),
    manifest: apiKey('k15', { serviceUserRef: { name: 'other' } }),
    field: 'spec.serviceUserRef.name',
  },
  {
    name: 'policy selecting no namespace',
    manifest: accessPolicy('p1', { groups: ['deployers'] }),
    field: 'spec.namespaces',
  },
  {
    name: 'policy granting a system: group',
    manifest: accessPolicy('p2', { namespaces: ['team-a'], groups: ['system:masters'] }),
    field: 'spec.groups[0]',
  },
  {
    name: 'policy username pattern with a dot',
    manifest: accessPolicy('p3', { namespaces: ['team-a'], usernames: ['ci.*'] }),
    field: 'spec.usernames[0]',
  },
  {
    name: 'policy scope outside the grammar',
    manifest: accessPolicy('p4', { namespaces: ['team-a'], scopes: ['*:read'] }),
    field: 'spec.scopes[0]',
  },
  {
    name: 'policy zero lifetime',
    manifest: accessPolicy('p5', { namespaces: ['team-a'], maxKeyLifetime: '0d' }),
    field: 'spec.maxKeyLifetime',
  },
  {
    name: 'policy lifetime in years',
    manifest: accessPolicy('p6', { namespaces: ['team-a'], maxKeyLifetime: '1y' }),
    field: 'spec.maxKeyLifetime',
  },
  {
    name: 'policy In requirement without values',
    manifest: accessPolicy('p7', {
      namespaceSelector: { matchExpressions: [{ key: 'tier', operator: 'In' }] },
    }),
    field: 'spec.namespaceSelector.matchExpressions[0].values',
  },
  {
    name: 'policy Exists requirement with values',
    manifest: accessPolicy('p8', {
      namespaceSelector: { matchExpressions: [{ key: 'tier', operator: 'Exists', values: ['x'] }] },
    }),
    field: 'spec.namespaceSelector.matchExpressions[0].values',
  },
  {
    name: 'policy unknown selector operator',
    manifest: accessPolicy('p9', {
      namespaceSelector: { matchExpressions: [{ key: 'tier', operator: 'Matches', values: ['x'] }] },
    }),
    field: 'spec.namespaceSelector.matchExpressions[0].operator',
  },
  {
    name: 'policy namespace name not a DNS label',
    manifest: accessPolicy('p10', { namespaces: ['Team_A'] }),
    field: 'spec.namespaces[0]',
  },
  {
    name: 'policy kubernetesAuthentication as a string',
    manifest: accessPolicy('p11', { namespaces: ['team-a'], kubernetesAuthentication: 'yes' }),
    field: 'spec.kubernetesAuthentication',
  },
  {
    name: 'policy unknown field',
    manifest: accessPolicy('p12', { namespaces: ['team-a'], subjects: ['x'] }),
    field: 'spec.subjects',
  },
];

const parsers = { ServiceUser: parseServiceUser, ApiKey: parseApiKey, AccessPolicy: parseAccessPolicy };

function zodErrors(testCase: InvalidCase): string[] {
  const { manifest, before } = testCase;
  if (before && manifest.kind !== 'AccessPolicy')
    return immutableFieldChanges(manifest.kind, before, manifest);
  const parsed = parsers[manifest.kind](manifest);
  return parsed.ok ? [] : parsed.errors;
}

describe('invalid manifests, zod side', () => {
  it.each(cases)('rejects $name naming $field', (testCase) => {
    const errors = zodErrors(testCase);
    expect(errors.some((e) => e.startsWith(`${testCase.field}:`))).toBe(true);
  });

  it('the table is large enough to mean something', () => {
    expect(cases.length).toBeGreaterThanOrEqual(25);
  });
});

const plural: Record<Kind, string> = {
  ServiceUser: 'serviceusers',
  ApiKey: 'apikeys',
  AccessPolicy: 'accesspolicies',
};

describe('invalid manifests, API server side', () => {
  let kc: KubeConfig;
  let api: CustomObjectsApi;
  let namespace: string;

  beforeAll(async () => {
    kc = testKubeConfig();
    api = kc.makeApiClient(CustomObjectsApi);
    namespace = await createTestNamespace(kc, 'manifests');
  });

  async function create(manifest: Manifest): Promise<void> {
    if (manifest.kind === 'AccessPolicy') {
      // Cluster-scoped, and the API server is shared: a dry run leaves nothing behind.
      await api.createClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: plural[manifest.kind],
        body: manifest,
        fieldValidation: 'Strict',
        dryRun: 'All',
      });
      return;
    }
    await api.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: plural[manifest.kind],
      body: manifest,
      fieldValidation: 'Strict',
    });
  }

  it.each(cases)('rejects $name naming $field', async (testCase) => {
    if (testCase.before) await create(testCase.before);
    const attempt = testCase.before
      ? api.patchNamespacedCustomObject(
          {
            group: GROUP,
            version: VERSION,
            namespace,
            plural: plural[testCase.manifest.kind],
            name: testCase.manifest.metadata.name,
            body: testCase.manifest,
            fieldManager: 'test',
            fieldValidation: 'Strict',
            force: true,
          },
          // Server-side apply: the update a GitOps tool would send.
          setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
        )
      : create(testCase.manifest);
    const error = await attempt.then(
      () => undefined,
      (err: unknown) => err as { code?: number; body?: string },
    );
    expect(error, 'the API server accepted it').toBeDefined();
    expect([400, 422]).toContain(error?.code);
    const message = (JSON.parse(String(error?.body)) as { message: string }).message;
    // Strict decoding names unknown fields as `unknown field "spec.x"` (or a field inside the bad
    // value, `spec.x[0].name`); schema errors as `spec.x: ...`.
    expect(message).toMatch(new RegExp(`${escapeRegExp(testCase.field)}(:|"|\\.)`));
  });

  it('accepts a rename: spec.username is changeable', async () => {
    await create(serviceUser('renamed', { username: 'first' }));
    const patched = await api.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        namespace,
        plural: 'serviceusers',
        name: 'renamed',
        body: serviceUser('renamed', { username: 'second' }),
        fieldManager: 'test',
        fieldValidation: 'Strict',
        force: true,
      },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
    expect((patched as { spec: { username: string } }).spec.username).toBe('second');
  });

  it('accepts a valid AccessPolicy and defaults kubernetesAuthentication to false', async () => {
    const created = (await api.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: 'accesspolicies',
      body: accessPolicy('valid', {
        namespaceSelector: {
          matchLabels: { 'keyward.dev/tenant': 'a' },
          matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['dev'] }],
        },
        namespaces: ['team-a'],
        usernames: ['ci-*', '*_bot'],
        scopes: ['projects:*', 'reports:read'],
        groups: ['deployers'],
        maxKeyLifetime: '90d',
      }),
      fieldValidation: 'Strict',
      dryRun: 'All',
    })) as { spec: Record<string, unknown> };
    expect(created.spec.kubernetesAuthentication).toBe(false);
    expect(parseAccessPolicy(created).ok).toBe(true);
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Edge cases of the label and annotation syntax that must stay accepted on both sides. */
const validSecretMetadata: Array<{ name: string; manifest: Manifest }> = [
  {
    name: 'prefixed and plain label keys, an empty label value',
    manifest: apiKey('ok1', {
      secret: { labels: { 'example.com/team': 'a', 'app.kubernetes.io/part-of': 'shop', tier: '' } },
    }),
  },
  {
    name: 'a label key name of 63 characters and a prefix of 253',
    manifest: apiKey('ok2', {
      secret: {
        labels: {
          [`${'p'.repeat(63)}.${'q'.repeat(63)}.${'r'.repeat(63)}.${'s'.repeat(61)}/${'n'.repeat(63)}`]:
            'v'.repeat(63),
        },
      },
    }),
  },
  {
    name: 'annotations with free-form values and keyward-like but distinct prefixes',
    manifest: apiKey('ok3', {
      secret: {
        annotations: {
          'notkeyward.dev/x': 'a value with spaces: and colons',
          'keyward.dev.example.com/y': '{"json": true}',
          'reloader.stakater.com/match': 'true',
        },
      },
    }),
  },
];

describe('valid Secret labels and annotations', () => {
  it.each(validSecretMetadata)('zod accepts $name', ({ manifest }) => {
    const parsed = parseApiKey(manifest);
    expect(parsed.ok ? [] : parsed.errors).toEqual([]);
  });

  it.each(validSecretMetadata)('the API server accepts $name', async ({ manifest }) => {
    const kc = testKubeConfig();
    const namespace = await createTestNamespace(kc, 'manifests-ok');
    await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: 'apikeys',
      body: manifest,
      dryRun: 'All',
      fieldValidation: 'Strict',
    });
  });
});
