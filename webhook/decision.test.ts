import { describe, expect, it } from 'vitest';
import type { KeyLookup } from '../store/lookup.js';
import { keyLookup } from '../test/support/key-lookup.js';
import { decide, headerListItem, type KeyDecision, kubernetesGroups } from './decision.js';
import { keyState } from './key-state.js';

const T0 = Date.parse('2030-01-01T00:00:00Z');
const minutes = (n: number): number => n * 60_000;

function key(overrides: Partial<KeyLookup> = {}): KeyLookup {
  return keyLookup({ issuedAt: new Date(T0 - minutes(60)), ...overrides });
}

const allow: KeyDecision = { result: 'allow' };
const deny = (reason: string): KeyDecision => ({ result: 'deny', reason }) as KeyDecision;
const forbidden = (requiredScope: string): KeyDecision => ({ result: 'forbidden', requiredScope });

describe('decide', () => {
  const cases: Array<[string, Partial<KeyLookup>, number, string[], KeyDecision]> = [
    ['current secret, no scope asked', {}, T0, [], allow],
    ['granted by wildcard', {}, T0, ['projects:alpha'], allow],
    ['granted exactly', {}, T0, ['reports:read'], allow],
    ['wildcard does not grant its own stem', {}, T0, ['projects'], forbidden('projects')],
    ['every required scope must be granted', {}, T0, ['projects:a', 'billing'], forbidden('billing')],
    [
      'ungrammatical required scope fails closed, even for *',
      { userScopes: ['*'] },
      T0,
      ['a b'],
      forbidden('a b'),
    ],
    ['* grants anything grammatical', { userScopes: ['*'] }, T0, ['x:y:z'], allow],
    [
      'key narrows the user',
      { keyScopes: ['projects:alpha'] },
      T0,
      ['projects:beta'],
      forbidden('projects:beta'),
    ],
    ['key within the user', { keyScopes: ['projects:alpha'] }, T0, ['projects:alpha'], allow],
    [
      'key scope no longer covered by user drops out',
      { keyScopes: ['billing'] },
      T0,
      ['billing'],
      forbidden('billing'),
    ],
    ['empty key scopes grant nothing', { keyScopes: [] }, T0, ['projects:a'], forbidden('projects:a')],
    ['empty key scopes still authenticate', { keyScopes: [] }, T0, [], allow],
    ['one ms before expiry', { expiresAt: new Date(T0 + 1) }, T0, [], allow],
    ['at expiry', { expiresAt: new Date(T0) }, T0, [], deny('expired')],
    [
      'previous secret within grace',
      { secret: { current: false, notAfter: new Date(T0 + 1) } },
      T0,
      [],
      allow,
    ],
    [
      'previous secret at grace end',
      { secret: { current: false, notAfter: new Date(T0) } },
      T0,
      [],
      deny('rotated'),
    ],
    ['disabled', { disabled: true }, T0, [], deny('disabled')],
    ['suspended', { suspended: true }, T0, [], deny('suspended')],
    [
      'revoked beats everything',
      { revokedAt: new Date(T0), suspended: true, disabled: true },
      T0,
      [],
      deny('revoked'),
    ],
    ['deleted user counts as revoked', { userDeleted: true }, T0, [], deny('revoked')],
    ['expired beats disabled', { expiresAt: new Date(T0 - 1), disabled: true }, T0, [], deny('expired')],
    ['suspended beats scope', { suspended: true }, T0, ['nope'], deny('suspended')],
    ['beyond its AccessPolicy', { notPermitted: true }, T0, [], deny('not_permitted')],
    [
      'beyond its AccessPolicy, even for a granted scope',
      { notPermitted: true },
      T0,
      ['projects:a'],
      deny('not_permitted'),
    ],
    ['revoked beats not permitted', { notPermitted: true, revokedAt: new Date(T0) }, T0, [], deny('revoked')],
  ];
  it.each(cases)('%s', (_name, overrides, now, required, expected) => {
    expect(decide(keyState(key(overrides)), now, required)).toEqual(expected);
  });

  it('follows the injected clock across expiry without any other input', () => {
    const state = keyState(key({ expiresAt: new Date(T0 + minutes(5)) }));
    expect(decide(state, T0 + minutes(5) - 1).result).toBe('allow');
    expect(decide(state, T0 + minutes(5)).result).toBe('deny');
    expect(state.deadline).toBe(T0 + minutes(5));
  });

  it('takes the earlier of expiry and grace end as the deadline', () => {
    const state = keyState(
      key({
        expiresAt: new Date(T0 + minutes(10)),
        secret: { current: false, notAfter: new Date(T0 + minutes(3)) },
      }),
    );
    expect(state.deadline).toBe(T0 + minutes(3));
    expect(keyState(key()).deadline).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('kubernetesGroups', () => {
  const cases: Array<[string, string[], string, string[]]> = [
    ['prefixes every group', ['team-a', 'viewers'], 'keyward:', ['keyward:team-a', 'keyward:viewers']],
    ['never emits a system: group the store holds', ['system:masters', 'ok'], 'keyward:', ['keyward:ok']],
    ['not even without a prefix', ['system:masters', 'system:nodes', 'ok'], '', ['ok']],
    ['nor one a prefix would build', ['masters'], 'system:', []],
    ['no groups', [], 'keyward:', []],
  ];
  it.each(cases)('%s', (_name, groups, prefix, want) => {
    expect(kubernetesGroups(groups, prefix)).toEqual(want);
  });
});

describe('header values', () => {
  it('keeps ordinary group names and escapes what would break a comma list or a header', () => {
    expect(headerListItem('team-a')).toBe('team-a');
    expect(headerListItem('system:masters')).toBe('system:masters');
    expect(headerListItem('a,b')).toBe('a%2Cb');
    expect(headerListItem('50%')).toBe('50%25');
    expect(headerListItem('x\r\ny')).toBe('x%0D%0Ay');
    expect(headerListItem('équipe')).toBe('%C3%A9quipe');
    expect(headerListItem('two words')).toBe('two%20words');
  });

  it('joins scopes and groups once per state', () => {
    const state = keyState(key({ groups: ['a', 'b,c'], keyScopes: ['projects:x', 'reports:read'] }));
    expect(state.scopesHeader).toBe('projects:x,reports:read');
    expect(state.groupsHeader).toBe('a,b%2Cc');
    expect(keyState(key({ groups: ['system:masters', 'ok'] })).groupsHeader).toBe('ok');
  });
});
