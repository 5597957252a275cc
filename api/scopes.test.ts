import { describe, expect, it } from 'vitest';
import { effectiveScopes, isValidScope, scopeCovers, uncoveredScopes } from './scopes.js';

describe('isValidScope', () => {
  it.each([
    '*',
    'read',
    'projects:alpha',
    'projects:*',
    'projects:alpha:read',
    'a.b-c_d:e',
    'projects:alpha:*',
  ])('%s is valid', (scope) => {
    expect(isValidScope(scope)).toBe(true);
  });
  it.each([
    '',
    ':',
    'projects:',
    ':alpha',
    'projects::alpha',
    'projects:*:read',
    '*:read',
    'pro jects',
    'projects*',
    '**',
    'ü',
    'a'.repeat(129),
  ])('%j is invalid', (scope) => {
    expect(isValidScope(scope)).toBe(false);
  });
});

describe('scopeCovers', () => {
  it.each([
    ['*', 'anything', true],
    ['*', '*', true],
    ['projects:*', 'projects:alpha', true],
    ['projects:*', 'projects:alpha:read', true],
    ['projects:*', 'projects:*', true],
    ['projects:*', 'projects:alpha:*', true],
    ['projects:*', 'projects', false],
    ['projects:*', 'projectsx:alpha', false],
    ['projects:*', '*', false],
    ['projects:alpha', 'projects:alpha', true],
    ['projects:alpha', 'projects:alpha:read', false],
    ['projects:alpha', 'projects:*', false],
    ['projects:alpha:*', 'projects:alpha:read', true],
    ['projects:alpha:*', 'projects:beta:read', false],
  ])('%s covers %s: %s', (granted, wanted, covered) => {
    expect(scopeCovers(granted, wanted)).toBe(covered);
  });
});

describe('key scopes against user scopes', () => {
  it('lists the key scopes the user does not grant', () => {
    expect(
      uncoveredScopes(['projects:alpha', 'reports:*'], ['projects:alpha', 'reports:q1', 'projects:beta']),
    ).toEqual(['projects:beta']);
  });

  it('a key without scopes inherits the user scopes at verification time', () => {
    expect(effectiveScopes(['projects:alpha'], null)).toEqual(['projects:alpha']);
  });

  it('a narrowed key loses a scope the user no longer grants', () => {
    expect(effectiveScopes(['projects:alpha'], ['projects:alpha', 'projects:beta'])).toEqual([
      'projects:alpha',
    ]);
  });
});
