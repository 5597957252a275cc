import type { KeyLookup } from '../../store/lookup.js';

/** A store row for a live key with a current secret, as lookupByHash returns it; tests override what they look at. */
export function keyLookup(overrides: Partial<KeyLookup> = {}): KeyLookup {
  return {
    apiKeyId: '00000000-0000-4000-8000-000000000001',
    keyId: 'key_0123456789abcdef',
    namespace: 'ns',
    name: 'k',
    userId: '00000000-0000-4000-8000-000000000002',
    username: 'ci-bot',
    groups: ['team-a'],
    userScopes: ['projects:*', 'reports:read'],
    keyScopes: null,
    suspended: false,
    notPermitted: false,
    kubernetesAuthentication: false,
    userDeleted: false,
    disabled: false,
    revokedAt: null,
    expiresAt: null,
    issuedAt: new Date(0),
    rotatedAt: null,
    secret: { current: true },
    tokenPrefix: 'kw_abcd',
    ...overrides,
  };
}
