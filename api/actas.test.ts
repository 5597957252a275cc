import { describe, expect, it } from 'vitest';
import { globMatches } from './actas.js';
import { parseAccessPolicy, parseServiceUser } from './validate.js';

const user = (actAs: unknown): unknown => ({
  apiVersion: 'keyward.dev/v1alpha1',
  kind: 'ServiceUser',
  metadata: { name: 'gw', namespace: 'team' },
  spec: { username: 'team_gw', actAs },
});

describe('spec.actAs', () => {
  it('accepts username and external subject patterns', () => {
    const parsed = parseServiceUser(
      user({ serviceUsers: ['team_*'], externalSubjects: ['customer:*', 'a@b.example'] }),
    );
    expect(parsed.ok).toBe(true);
  });

  it.each<[string, unknown, string]>([
    ['a username pattern with a colon', { serviceUsers: ['a:b'] }, 'spec.actAs.serviceUsers[0]'],
    [
      'an external pattern with a space',
      { externalSubjects: ['customer 1'] },
      'spec.actAs.externalSubjects[0]',
    ],
    [
      'an external pattern with a comma',
      { externalSubjects: ['ok:1', 'a,b'] },
      'spec.actAs.externalSubjects[1]',
    ],
    ['a non-ASCII external pattern', { externalSubjects: ['caf\u00e9:*'] }, 'spec.actAs.externalSubjects[0]'],
    ['an empty pattern', { serviceUsers: [''] }, 'spec.actAs.serviceUsers[0]'],
    [
      'an oversized pattern',
      { externalSubjects: [`x:${'y'.repeat(300)}`] },
      'spec.actAs.externalSubjects[0]',
    ],
    ['an unknown field', { everyone: true }, 'spec.actAs.everyone: unknown field'],
  ])('refuses %s, naming the field', (_name, actAs, field) => {
    const parsed = parseServiceUser(user(actAs));
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.errors.join('\n')).toContain(field);
  });

  it('is an AccessPolicy field too', () => {
    const parsed = parseAccessPolicy({
      apiVersion: 'keyward.dev/v1alpha1',
      kind: 'AccessPolicy',
      metadata: { name: 'acting' },
      spec: { namespaces: ['team'], actAs: { serviceUsers: ['team_*'], externalSubjects: ['customer:*'] } },
    });
    expect(parsed.ok).toBe(true);
  });
});

describe('globMatches', () => {
  it.each<[string, string, boolean]>([
    ['customer:*', 'customer:42', true],
    ['customer:*', 'customer:', true],
    ['customer:*', 'partner:42', false],
    ['*@example.com', 'alice@example.com', true],
    ['*@example.com', 'alice@example.com.evil', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'acb', false],
    ['exact', 'exact', true],
    ['exact', 'exactly', false],
  ])('%s ~ %s: %s', (pattern, value, want) => {
    expect(globMatches(pattern, value)).toBe(want);
  });
});
