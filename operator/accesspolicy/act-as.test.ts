import { describe, expect, it } from 'vitest';
import type { AccessPolicy } from '../../api/accesspolicy.js';
import { actAsBeyondGrants, actAsGrantsOf, globCovers } from './act-as.js';
import { checkServiceUser, grantsFor } from './grants.js';

function policy(name: string, spec: Partial<AccessPolicy['spec']>): AccessPolicy {
  return {
    apiVersion: 'keyward.dev/v1alpha1',
    kind: 'AccessPolicy',
    metadata: { name },
    spec: { kubernetesAuthentication: false, ...spec },
  };
}

const teamA = { name: 'team-a', labels: {} };

describe('globCovers', () => {
  it.each<[string, string, boolean]>([
    ['*', 'anything*', true],
    ['team_*', 'team_*', true],
    ['team_*', 'team_ci-*', true],
    ['team_*', 'team_alice', true],
    ['team_*', '*', false],
    ['team_*', 'te*', false],
    ['*_bot', 'ci*_bot', true],
    ['*_bot', 'ci_*', false],
    ['customer:*', 'customer:eu:*', true],
    ['customer:eu:*', 'customer:*', false],
    ['a*b', 'a*', false],
  ])('%s covers %s: %s', (grant, pattern, want) => {
    expect(globCovers(grant, pattern)).toBe(want);
  });
});

describe('act-as grants', () => {
  it('no policy: no acting at all', () => {
    const grants = grantsFor([], teamA);
    expect(grants.actAs).toEqual({ serviceUsers: [], externalSubjects: [] });
    expect(actAsBeyondGrants({ serviceUsers: ['team-a_bob'], externalSubjects: [] }, grants.actAs)).toEqual([
      'spec.actAs.serviceUsers[0]',
      'team-a_bob',
    ]);
  });

  it('several policies add up; only selecting ones count', () => {
    const grants = actAsGrantsOf([
      policy('a', { namespaces: ['team-a'], actAs: { serviceUsers: ['team-a_*'] } }),
      policy('b', { namespaces: ['team-a'], actAs: { externalSubjects: ['customer:*'] } }),
    ]);
    expect(grants).toEqual({ serviceUsers: ['team-a_*'], externalSubjects: ['customer:*'] });
    const viaNamespace = grantsFor(
      [policy('c', { namespaces: ['other'], actAs: { serviceUsers: ['*'] } })],
      teamA,
    );
    expect(viaNamespace.actAs.serviceUsers).toEqual([]);
  });

  it('checkServiceUser names the first actAs pattern beyond the grants as NotPermitted', () => {
    const grants = grantsFor(
      [
        policy('acting', {
          namespaces: ['team-a'],
          actAs: { serviceUsers: ['team-a_*'], externalSubjects: ['customer:*'] },
        }),
      ],
      teamA,
    );
    const claim = { username: 'team-a_gw', usernameFromName: false, groups: [], scopes: [] };
    expect(
      checkServiceUser(
        { ...claim, actAs: { serviceUsers: ['team-a_*'], externalSubjects: ['customer:eu:*'] } },
        grants,
      ),
    ).toBeUndefined();
    expect(
      checkServiceUser(
        { ...claim, actAs: { serviceUsers: ['team-a_*'], externalSubjects: ['partner:*'] } },
        grants,
      ),
    ).toEqual({
      reason: 'NotPermitted',
      message:
        'spec.actAs.externalSubjects[0] "partner:*" is not permitted in namespace team-a (AccessPolicies: acting)',
    });
    expect(
      checkServiceUser({ ...claim, actAs: { serviceUsers: ['*'], externalSubjects: [] } }, grants),
    ).toMatchObject({
      message: expect.stringContaining('spec.actAs.serviceUsers[0] "*"'),
    });
  });
});
