import { describe, expect, it } from 'vitest';
import type { AccessPolicy, AccessPolicySpec } from '../../api/accesspolicy.js';
import type { ApiKeySpec } from '../../api/apikey.js';
import {
  checkApiKey,
  checkServiceUser,
  type Grants,
  grantedExpiry,
  grantsFor,
  type NamespaceInfo,
  permittedGroups,
  permittedScopes,
  type ServiceUserClaim,
  usernameGlobMatches,
} from './grants.js';

function policy(name: string, spec: Partial<AccessPolicySpec>): AccessPolicy {
  return {
    apiVersion: 'keyward.dev/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name },
    spec: { kubernetesAuthentication: false, ...spec },
  };
}

const teamA: NamespaceInfo = { name: 'team-a', labels: { tier: 'prod', 'keyward.dev/tenant': 'a' } };
const none = grantsFor([], teamA);

describe('grantsFor', () => {
  const cases: Array<{ name: string; policies: AccessPolicy[]; ns: NamespaceInfo; want: Partial<Grants> }> = [
    {
      name: 'no policy: the namespace space only',
      policies: [],
      ns: teamA,
      want: {
        usernames: ['team-a_*'],
        scopes: ['team-a', 'team-a:*'],
        groups: [],
        kubernetesAuthentication: false,
        maxKeyLifetimeMs: null,
        policies: [],
      },
    },
    {
      name: 'a policy listing the namespace by name',
      policies: [
        policy('p', { namespaces: ['team-a'], groups: ['deployers'], kubernetesAuthentication: true }),
      ],
      ns: teamA,
      want: { groups: ['deployers'], kubernetesAuthentication: true, policies: ['p'] },
    },
    {
      name: 'a policy for another namespace grants nothing here',
      policies: [
        policy('p', { namespaces: ['team-ab'], groups: ['deployers'], kubernetesAuthentication: true }),
      ],
      ns: teamA,
      want: { groups: [], kubernetesAuthentication: false, policies: [] },
    },
    {
      name: 'matchLabels selects',
      policies: [
        policy('p', { namespaceSelector: { matchLabels: { tier: 'prod' } }, scopes: ['shared:read'] }),
      ],
      ns: teamA,
      want: { scopes: ['team-a', 'team-a:*', 'shared:read'], policies: ['p'] },
    },
    {
      name: 'matchLabels with another value does not select',
      policies: [
        policy('p', { namespaceSelector: { matchLabels: { tier: 'dev' } }, scopes: ['shared:read'] }),
      ],
      ns: teamA,
      want: { scopes: ['team-a', 'team-a:*'], policies: [] },
    },
    {
      name: 'matchExpressions: In, NotIn, Exists, DoesNotExist all hold',
      policies: [
        policy('p', {
          namespaceSelector: {
            matchExpressions: [
              { key: 'tier', operator: 'In', values: ['prod', 'staging'] },
              { key: 'tier', operator: 'NotIn', values: ['dev'] },
              { key: 'keyward.dev/tenant', operator: 'Exists' },
              { key: 'legacy', operator: 'DoesNotExist' },
            ],
          },
          groups: ['g'],
        }),
      ],
      ns: teamA,
      want: { groups: ['g'] },
    },
    {
      name: 'matchExpressions: one failing requirement deselects',
      policies: [
        policy('p', {
          namespaceSelector: {
            matchExpressions: [
              { key: 'tier', operator: 'In', values: ['prod'] },
              { key: 'keyward.dev/tenant', operator: 'DoesNotExist' },
            ],
          },
          groups: ['g'],
        }),
      ],
      ns: teamA,
      want: { groups: [] },
    },
    {
      name: 'NotIn holds for a namespace without the label',
      policies: [
        policy('p', {
          namespaceSelector: { matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['x'] }] },
          groups: ['g'],
        }),
      ],
      ns: teamA,
      want: { groups: ['g'] },
    },
    {
      name: 'an empty selector selects every namespace',
      policies: [policy('p', { namespaceSelector: {}, groups: ['everyone'] })],
      ns: { name: 'x', labels: {} },
      want: { groups: ['everyone'] },
    },
    {
      name: 'several policies add up; the longest set lifetime wins, an unset one does not lift it',
      policies: [
        policy('b', { namespaces: ['team-a'], scopes: ['b:*'], groups: ['gb'], maxKeyLifetime: '30d' }),
        policy('a', { namespaces: ['team-a'], usernames: ['ci-*'], groups: ['ga'], maxKeyLifetime: '90d' }),
        policy('c', { namespaceSelector: {}, kubernetesAuthentication: true }),
      ],
      ns: teamA,
      want: {
        usernames: ['team-a_*', 'ci-*'],
        scopes: ['team-a', 'team-a:*', 'b:*'],
        groups: ['gb', 'ga'],
        maxKeyLifetimeMs: 90 * 86_400_000,
        kubernetesAuthentication: true,
        policies: ['a', 'b', 'c'],
      },
    },
    {
      name: 'a system: group that slipped past admission is never granted',
      policies: [policy('p', { namespaces: ['team-a'], groups: ['system:masters', 'ok'] })],
      ns: teamA,
      want: { groups: ['ok'] },
    },
  ];
  it.each(cases)('$name', ({ policies, ns, want }) => {
    expect(grantsFor(policies, ns)).toMatchObject(want);
  });
});

describe('usernameGlobMatches', () => {
  const cases: Array<[string, string, boolean]> = [
    ['team-a_*', 'team-a_ci', true],
    ['team-a_*', 'team-a_', true],
    ['team-a_*', 'team-ab_ci', false],
    ['team-a_*', 'team-a-ci', false],
    ['team-a_*', 'xteam-a_ci', false],
    ['ci', 'ci', true],
    ['ci', 'ci2', false],
    ['*', 'anything', true],
    ['ci-*-bot', 'ci-alpha-bot', true],
    ['ci-*-bot', 'ci-bot', false],
    ['ci-*-bot', 'ci--bot', true],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'aXbYc', true],
    ['a*b*c', 'acb', false],
    ['a*a', 'a', false],
    ['CI-*', 'ci-x', false],
  ];
  it.each(cases)('%s vs %s → %s', (pattern, name, want) => {
    expect(usernameGlobMatches(pattern, name)).toBe(want);
  });
});

function claim(partial: Partial<ServiceUserClaim>): ServiceUserClaim {
  return { username: 'team-a_ci', usernameFromName: false, groups: [], scopes: [], ...partial };
}

describe('checkServiceUser', () => {
  const granted = grantsFor(
    [
      policy('ci', {
        namespaces: ['team-a'],
        usernames: ['ci-*'],
        scopes: ['projects:*', 'reports:read'],
        groups: ['deployers'],
      }),
    ],
    teamA,
  );
  const cases: Array<{ name: string; claim: ServiceUserClaim; grants: Grants; want: string | undefined }> = [
    {
      name: 'default: own username and scopes fit',
      claim: claim({ scopes: ['team-a', 'team-a:x:y', 'team-a:*'] }),
      grants: none,
      want: undefined,
    },
    {
      name: 'default: system:masters',
      claim: claim({ groups: ['system:masters'] }),
      grants: none,
      want: 'spec.groups[0] "system:masters" is not permitted in namespace team-a (no AccessPolicy selects it)',
    },
    {
      name: 'default: any group',
      claim: claim({ groups: ['deployers'] }),
      grants: none,
      want: 'spec.groups[0] "deployers" is not permitted in namespace team-a (no AccessPolicy selects it)',
    },
    {
      name: 'default: the * scope',
      claim: claim({ scopes: ['team-a:read', '*'] }),
      grants: none,
      want: 'spec.scopes[1] "*" is not permitted in namespace team-a (no AccessPolicy selects it)',
    },
    {
      name: "default: another team's scope",
      claim: claim({ scopes: ['other-team:admin'] }),
      grants: none,
      want: 'spec.scopes[0] "other-team:admin" is not permitted in namespace team-a (no AccessPolicy selects it)',
    },
    {
      name: 'default: a prefix of the namespace name is not its scope',
      claim: claim({ scopes: ['team:*'] }),
      grants: none,
      want: 'spec.scopes[0] "team:*" is not permitted in namespace team-a (no AccessPolicy selects it)',
    },
    {
      name: 'default: an unprefixed username',
      claim: claim({ username: 'ci-deployer' }),
      grants: none,
      want: 'spec.username "ci-deployer" is not permitted in namespace team-a (no AccessPolicy selects it)',
    },
    {
      name: 'default: a username from metadata.name is named as such',
      claim: claim({ username: 'deployer', usernameFromName: true }),
      grants: none,
      want: 'metadata.name "deployer" is not permitted in namespace team-a (no AccessPolicy selects it)',
    },
    {
      name: "default: another namespace's space (team + a-b versus team-a + b cannot collide)",
      claim: claim({ username: 'team_a-b' }),
      grants: grantsFor([], { name: 'team', labels: {} }),
      want: undefined,
    },
    {
      name: "default: the namespace team-a cannot claim team's names",
      claim: claim({ username: 'team_a-b' }),
      grants: none,
      want: 'spec.username "team_a-b" is not permitted in namespace team-a (no AccessPolicy selects it)',
    },
    {
      name: 'policy: granted username, group and scopes fit',
      claim: claim({
        username: 'ci-alpha',
        groups: ['deployers'],
        scopes: ['projects:alpha', 'projects:*', 'reports:read'],
      }),
      grants: granted,
      want: undefined,
    },
    {
      name: 'policy: a group beyond the grants',
      claim: claim({ groups: ['deployers', 'admins'] }),
      grants: granted,
      want: 'spec.groups[1] "admins" is not permitted in namespace team-a (AccessPolicies: ci)',
    },
    {
      name: 'policy: a wider wildcard than granted',
      claim: claim({ scopes: ['reports:*'] }),
      grants: granted,
      want: 'spec.scopes[0] "reports:*" is not permitted in namespace team-a (AccessPolicies: ci)',
    },
    {
      name: 'policy: the parent of a granted wildcard',
      claim: claim({ scopes: ['projects'] }),
      grants: granted,
      want: 'spec.scopes[0] "projects" is not permitted in namespace team-a (AccessPolicies: ci)',
    },
    {
      name: 'username is checked first',
      claim: claim({ username: 'root', groups: ['system:masters'], scopes: ['*'] }),
      grants: granted,
      want: 'spec.username "root" is not permitted in namespace team-a (AccessPolicies: ci)',
    },
  ];
  it.each(cases)('$name', ({ claim: c, grants, want }) => {
    const violation = checkServiceUser(c, grants);
    expect(violation?.message).toBe(want);
    if (want) expect(violation?.reason).toBe('NotPermitted');
  });

  it('stores only the permitted subset', () => {
    expect(permittedScopes(granted, ['*', 'projects:a', 'other:x', 'team-a:y'])).toEqual([
      'projects:a',
      'team-a:y',
    ]);
    expect(permittedGroups(granted, ['system:masters', 'deployers', 'admins'])).toEqual(['deployers']);
  });
});

describe('checkApiKey (injected clock)', () => {
  const now = new Date('2026-01-01T00:00:00Z');
  const limited = grantsFor([policy('short', { namespaces: ['team-a'], maxKeyLifetime: '90d' })], teamA);
  const key = (spec: Partial<ApiKeySpec>): ApiKeySpec => ({ serviceUserRef: { name: 'u' }, ...spec });
  const cases: Array<{
    name: string;
    spec: ApiKeySpec;
    grants: Grants;
    from?: Date;
    want: string | undefined;
  }> = [
    { name: 'no limit, no lifetime', spec: key({}), grants: none, want: undefined },
    { name: 'own scope', spec: key({ scopes: ['team-a:read'] }), grants: none, want: undefined },
    {
      name: 'a scope beyond the grants',
      spec: key({ scopes: ['team-a:read', 'other-team:admin'] }),
      grants: none,
      want: 'spec.scopes[1] "other-team:admin" is not permitted in namespace team-a (no AccessPolicy selects it)',
    },
    { name: 'ttl at the limit', spec: key({ ttl: '90d' }), grants: limited, want: undefined },
    {
      name: 'ttl beyond the limit',
      spec: key({ ttl: '91d' }),
      grants: limited,
      want: 'spec.ttl "91d" is not permitted: keys live at most 90d in namespace team-a (AccessPolicies: short)',
    },
    {
      name: 'expiresAt within the limit from now',
      spec: key({ expiresAt: '2026-03-31T00:00:00Z' }),
      grants: limited,
      want: undefined,
    },
    {
      name: 'expiresAt beyond the limit from now',
      spec: key({ expiresAt: '2026-04-02T00:00:00Z' }),
      grants: limited,
      want: 'spec.expiresAt "2026-04-02T00:00:00Z" is not permitted: keys live at most 90d from issue or rotation in namespace team-a (AccessPolicies: short)',
    },
    {
      name: 'expiresAt counted from the last rotation',
      spec: key({ expiresAt: '2026-04-02T00:00:00Z' }),
      grants: limited,
      from: new Date('2026-01-10T00:00:00Z'),
      want: undefined,
    },
    {
      name: 'no lifetime at all under a limit',
      spec: key({ rotation: { every: '30d' } }),
      grants: limited,
      want: 'a key without spec.ttl or spec.expiresAt is not permitted: keys live at most 90d in namespace team-a (AccessPolicies: short)',
    },
  ];
  it.each(cases)('$name', ({ spec, grants, from, want }) => {
    expect(checkApiKey(spec, grants, from ?? now)?.message).toBe(want);
  });

  it('the stored expiry never exceeds the granted lifetime', () => {
    const latest = new Date(now.getTime() + 90 * 86_400_000);
    expect(grantedExpiry(null, limited, now)).toEqual(latest);
    expect(grantedExpiry(new Date('2027-01-01T00:00:00Z'), limited, now)).toEqual(latest);
    expect(grantedExpiry(new Date('2026-02-01T00:00:00Z'), limited, now)).toEqual(
      new Date('2026-02-01T00:00:00Z'),
    );
    expect(grantedExpiry(null, none, now)).toBeNull();
  });
});
