import { describe, expect, it } from 'vitest';
import type { SubjectLookup } from '../store/act-as.js';
import {
  decideActing,
  intersectScopes,
  MALFORMED_SUBJECT,
  mayActAs,
  readSubject,
  type Subject,
  subjectDenial,
} from './acting.js';

const subjectRow = (overrides: Partial<SubjectLookup> = {}): SubjectLookup => ({
  userId: '00000000-0000-4000-8000-000000000009',
  username: 'team_alice',
  groups: ['readers', 'a,b'],
  scopes: ['projects:alpha', 'reports:*'],
  suspended: false,
  notPermitted: false,
  ...overrides,
});

const user = (username: string): Subject => ({ kind: 'service-user', username });
const external = (id: string): Subject => ({ kind: 'external', id });

describe('readSubject', () => {
  it.each<[string, string | string[] | undefined, ReturnType<typeof readSubject>]>([
    ['no header', undefined, undefined],
    ['a username', 'team_alice', user('team_alice')],
    ['an external id with a colon', 'customer:42', external('customer:42')],
    ['an e-mail address', 'alice@example.com', external('alice@example.com')],
    ['a bare number is a username, never an external id', '42', user('42')],
    ['empty', '', MALFORMED_SUBJECT],
    ['two headers as Node joins them', 'team_alice, team_bob', MALFORMED_SUBJECT],
    ['two headers as an array', ['team_alice', 'team_bob'], MALFORMED_SUBJECT],
    ['a space', 'customer 42', MALFORMED_SUBJECT],
    ['latin1 bytes (non-ASCII on the wire)', 'caf\u00e9:1', MALFORMED_SUBJECT],
    ['a non-ASCII character', 'user:\u{1F600}', MALFORMED_SUBJECT],
    ['a pattern character', 'customer:*', MALFORMED_SUBJECT],
    ['a quote', 'customer:"x"', MALFORMED_SUBJECT],
    ['a control character', 'customer:\u0001', MALFORMED_SUBJECT],
    ['256 characters', `u:${'x'.repeat(254)}`, external(`u:${'x'.repeat(254)}`)],
    ['257 characters', `u:${'x'.repeat(255)}`, MALFORMED_SUBJECT],
    ['a username form over 63 characters is not an external id either', 'a'.repeat(64), MALFORMED_SUBJECT],
  ])('%s', (_name, value, want) => {
    expect(readSubject(value)).toEqual(want);
  });
});

describe('mayActAs', () => {
  const actAs = { serviceUsers: ['team_*'], externalSubjects: ['customer:*'] };
  it.each<
    [string, { serviceUsers: string[]; externalSubjects: string[] } | undefined, Subject, string | undefined]
  >([
    ['no actAs stored', undefined, user('team_alice'), 'acting_not_allowed'],
    ['empty actAs', { serviceUsers: [], externalSubjects: [] }, user('team_alice'), 'acting_not_allowed'],
    ['a matching username', actAs, user('team_alice'), undefined],
    ['a username outside the patterns', actAs, user('other_bob'), 'subject_not_allowed'],
    ['a matching external id', actAs, external('customer:42'), undefined],
    ['an external id outside the patterns', actAs, external('partner:42'), 'subject_not_allowed'],
    // Username patterns never grant an external id, and the reverse.
    [
      'an external id against username patterns only',
      { serviceUsers: ['*'], externalSubjects: [] },
      external('a:b'),
      'subject_not_allowed',
    ],
    [
      'a username against external patterns only',
      { serviceUsers: [], externalSubjects: ['*'] },
      user('team_alice'),
      'subject_not_allowed',
    ],
  ])('%s', (_name, stored, subject, want) => {
    expect(mayActAs({ ...(stored ? { actAs: stored } : {}) }, subject)).toBe(want);
  });
});

describe('intersectScopes', () => {
  it.each<[string[], string[], string[]]>([
    [['projects:alpha'], ['projects:*'], ['projects:alpha']],
    [['projects:*'], ['projects:alpha'], ['projects:alpha']],
    [['projects:*'], ['reports:*'], []],
    [['*'], ['a', 'b:*'], ['a', 'b:*']],
    [['a'], ['a:*'], []],
    [['a:*'], ['a:b:*', 'a:c'], ['a:b:*', 'a:c']],
  ])('%j ∩ %j = %j', (a, b, want) => {
    expect(intersectScopes(a, b).sort()).toEqual(want.sort());
  });
});

describe('decideActing', () => {
  const actor = { username: 'gateway', keyScopes: null };

  it('a ServiceUser subject gets its own scopes and groups; the actor is named', () => {
    const d = decideActing(actor, ['*'], user('team_alice'), subjectRow(), ['projects:alpha']);
    expect(d).toEqual({
      result: 'allow',
      acting: {
        actor: 'gateway',
        subject: 'team_alice',
        subjectKind: 'service-user',
        scopes: ['projects:alpha', 'reports:*'],
        scopesHeader: 'projects:alpha,reports:*',
        groupsHeader: 'readers,a%2Cb',
      },
    });
  });

  it('a required scope the subject lacks is forbidden, whatever the actor holds', () => {
    const d = decideActing(actor, ['*'], user('team_alice'), subjectRow(), ['projects:beta']);
    expect(d).toMatchObject({ result: 'forbidden', requiredScope: 'projects:beta' });
  });

  it("the key's own scope list narrows the subject's", () => {
    const narrowing = { username: 'gateway', keyScopes: ['reports:read', 'projects:beta'] };
    const d = decideActing(narrowing, ['reports:read'], user('team_alice'), subjectRow(), ['reports:read']);
    expect(d).toMatchObject({ result: 'allow', acting: { scopes: ['reports:read'] } });
    expect(decideActing(narrowing, [], user('team_alice'), subjectRow(), ['projects:alpha'])).toMatchObject({
      result: 'forbidden',
      requiredScope: 'projects:alpha',
    });
  });

  it('an unknown, blocked or suspended subject is refused', () => {
    expect(decideActing(actor, ['*'], user('team_alice'), null, [])).toEqual({
      result: 'deny',
      reason: 'subject_unknown',
    });
    expect(decideActing(actor, ['*'], user('team_alice'), subjectRow({ notPermitted: true }), [])).toEqual({
      result: 'deny',
      reason: 'subject_unknown',
    });
    expect(decideActing(actor, ['*'], user('team_alice'), subjectRow({ suspended: true }), [])).toEqual({
      result: 'deny',
      reason: 'subject_suspended',
    });
  });

  it("an external subject keeps the key's scopes as a ceiling and carries no groups", () => {
    const d = decideActing(actor, ['orders:*'], external('customer:42'), null, ['orders:read']);
    expect(d).toEqual({
      result: 'allow',
      acting: {
        actor: 'gateway',
        subject: 'customer:42',
        subjectKind: 'external',
        scopes: ['orders:*'],
        scopesHeader: 'orders:*',
        groupsHeader: '',
      },
    });
    expect(decideActing(actor, ['orders:*'], external('customer:42'), null, ['billing'])).toMatchObject({
      result: 'forbidden',
    });
  });
});

describe('subjectDenial', () => {
  it('every refusal is a 403 with its own message', () => {
    const reasons = [
      'subject_malformed',
      'acting_not_allowed',
      'subject_not_allowed',
      'subject_unknown',
      'subject_suspended',
    ] as const;
    const messages = new Set(reasons.map((r) => subjectDenial(r).message));
    expect(messages.size).toBe(reasons.length);
    for (const r of reasons) expect(subjectDenial(r).status).toBe(403);
  });
});
