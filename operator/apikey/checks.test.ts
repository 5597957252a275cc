import { describe, expect, it } from 'vitest';
import type { ApiKey } from '../../api/apikey.js';
import type { ServiceUser } from '../../api/serviceuser.js';
import type { ApiKeyState, ServiceUserRecord } from '../../store/operator-store.js';
import { FakeClock } from '../../test/support/fake-clock.js';
import type { Grants } from '../accesspolicy/grants.js';
import { type CheckInput, firstFailure, readyFailure, reductions } from './checks.js';

const HOUR = 3_600_000;
const clock = new FakeClock(Date.UTC(2026, 5, 1, 12));
const at = (): Date => new Date(clock.now());

const grants: Grants = {
  namespace: 'team',
  usernames: ['*'],
  scopes: ['projects:*'],
  groups: [],
  maxKeyLifetimeMs: null,
  kubernetesAuthentication: false,
  actAs: { serviceUsers: [], externalSubjects: [] },
  policies: ['p'],
};
const apiKey = (spec: Partial<ApiKey['spec']> = {}): ApiKey =>
  ({
    apiVersion: 'keyward.dev/v1alpha1',
    kind: 'ApiKey',
    metadata: { name: 'k', namespace: 'team', uid: 'k-uid' },
    spec: { serviceUserRef: { name: 'ci' }, ...spec },
  }) as ApiKey;
const user = (spec: Partial<ServiceUser['spec']> = {}): ServiceUser =>
  ({
    apiVersion: 'keyward.dev/v1alpha1',
    kind: 'ServiceUser',
    metadata: { name: 'ci', namespace: 'team', uid: 'u-uid' },
    spec: { scopes: ['projects:a'], ...spec },
  }) as ServiceUser;
const storedUser = (fields: Partial<ServiceUserRecord> = {}): ServiceUserRecord =>
  ({ id: 'u1', suspended: false, notPermitted: false, deletedAt: null, ...fields }) as ServiceUserRecord;
const state = (fields: Partial<ApiKeyState> = {}): ApiKeyState =>
  ({
    id: 'k1',
    keyId: 'key_0123456789abcdef',
    scopes: null,
    disabled: false,
    expiresAt: null,
    issuedAt: new Date(at().getTime() - 2 * HOUR),
    rotatedAt: null,
    revokedAt: null,
    revokedReason: null,
    previousValidUntil: null,
    ...fields,
  }) as ApiKeyState;

function input(overrides: Partial<CheckInput>): CheckInput {
  return {
    apiKey: apiKey(),
    state: state(),
    revokedWithUser: false,
    user: user(),
    storedUser: storedUser(),
    userReadyReason: 'Stored',
    grants,
    ownership: { kind: 'own' },
    liveKeys: undefined,
    writeFailure: undefined,
    now: at(),
    ...overrides,
  };
}

describe('firstFailure: the check chain, first failure wins', () => {
  const revoked = { revokedAt: new Date(at().getTime() - HOUR) };
  const rows: Array<[string, Partial<CheckInput>, string | undefined, boolean?]> = [
    ['nothing wrong', {}, undefined],
    ['revoked, whatever else is wrong', { state: state(revoked), user: undefined }, 'Revoked', true],
    ['revoked on a leak report', { state: state({ ...revoked, revokedReason: 'leaked' }) }, 'Leaked', true],
    [
      'revoked with its user, the user still gone',
      { state: state(revoked), revokedWithUser: true, user: undefined, storedUser: null },
      'ServiceUserDeleted',
      true,
    ],
    [
      'revoked with its user, the user back: issued again',
      { state: state(revoked), revokedWithUser: true },
      undefined,
    ],
    [
      'a lifetime beyond the grants, before its user',
      { apiKey: apiKey({ ttl: '30d' }), user: undefined, grants: { ...grants, maxKeyLifetimeMs: HOUR } },
      'NotPermitted',
      true,
    ],
    [
      'its user missing or being deleted',
      { user: undefined, storedUser: null },
      'ServiceUserNotFound',
      false,
    ],
    [
      'its user beyond its grants',
      { storedUser: storedUser({ notPermitted: true }) },
      'ServiceUserNotPermitted',
      false,
    ],
    ['its user not stored yet', { storedUser: null }, 'ServiceUserNotReady', false],
    [
      'a scope its user does not grant',
      { apiKey: apiKey({ scopes: ['projects:b'] }) },
      'ScopeNotGranted',
      true,
    ],
    [
      'no maxKeys slot left',
      { state: null, user: user({ maxKeys: 1 }), liveKeys: 1 },
      'MaxKeysExceeded',
      true,
    ],
    ['a slot left', { state: null, user: user({ maxKeys: 2 }), liveKeys: 1 }, undefined],
    ['a foreign Secret', { ownership: { kind: 'foreign', message: 'taken' } }, 'SecretConflict', false],
    ['a Secret the API server refused', { writeFailure: 'Too long' }, 'SecretWriteFailed', true],
  ];
  it.each(rows)('%s', (_name, overrides, reason, stalled) => {
    const failure = firstFailure(input(overrides));
    expect(failure?.reason).toBe(reason);
    if (reason) expect(failure?.stalled).toBe(stalled);
  });
});

describe('reductions: what applies whatever blocks the key', () => {
  const rows: Array<[string, Partial<ApiKey['spec']>, Partial<ApiKeyState>, object | undefined]> = [
    ['nothing stricter', {}, {}, undefined],
    ['disabled', { disabled: true }, {}, { disabled: true }],
    ['enabling is not a reduction', { disabled: false }, { disabled: true }, undefined],
    ['a ttl where there was none', { ttl: '1h' }, {}, { expiresAt: new Date(at().getTime() - HOUR) }],
    ['a longer ttl is not', { ttl: '10h' }, { expiresAt: new Date(at().getTime() + HOUR) }, undefined],
    [
      'narrower scopes',
      { scopes: ['projects:a'] },
      { scopes: ['projects:a', 'projects:b'] },
      { scopes: ['projects:a'] },
    ],
    [
      'explicit scopes where it inherited',
      { scopes: ['projects:a'] },
      { scopes: null },
      { scopes: ['projects:a'] },
    ],
    ['wider scopes are not', { scopes: ['projects:*'] }, { scopes: ['projects:a'] }, undefined],
    ['a revoked key has nothing to reduce', { disabled: true }, { revokedAt: at() }, undefined],
  ];
  it.each(rows)('%s', (_name, spec, fields, patch) => {
    expect(reductions(apiKey(spec).spec, state(fields), grants)).toEqual(patch);
  });
});

describe('readyFailure: once the credentials are in place, with the clock moving', () => {
  it('is Ready, then Expired (Stalled) when the clock passes expiresAt; Disabled and Suspended are not Stalled', async () => {
    const key = {
      keyId: 'key_0123456789abcdef',
      previousValidUntil: null,
      issuedAt: at(),
      rotatedAt: at(),
      expiresAt: new Date(at().getTime() + HOUR),
      disabled: false,
      revokedAt: null,
    };
    expect(readyFailure(key, false, 's', at()).failure).toBeUndefined();
    expect(readyFailure({ ...key, disabled: true }, false, 's', at()).failure).toMatchObject({
      reason: 'Disabled',
      stalled: false,
    });
    expect(readyFailure(key, true, 's', at()).failure).toMatchObject({ reason: 'Suspended', stalled: false });
    await clock.advance(HOUR);
    expect(readyFailure({ ...key, disabled: true }, true, 's', at())).toMatchObject({
      expired: true,
      failure: { reason: 'Expired', stalled: true },
    });
  });
});
