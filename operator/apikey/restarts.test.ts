import { describe, expect, it } from 'vitest';
import type { ApiKeySpec } from '../../api/apikey.js';
import {
  decideRestart,
  gracePeriodWarning,
  type RestartDecision,
  type RestartInput,
  restartedAtValue,
} from './restarts.js';

const debounceMs = 10_000;
const rotatedAt = new Date('2026-06-01T12:00:00.250Z');
const at = (ms: number): Date => new Date(rotatedAt.getTime() + ms);

function input(overrides: Partial<RestartInput>): RestartInput {
  return {
    tokenVersion: 'v2',
    last: { tokenVersion: 'v1', at: '2026-05-01T00:00:00Z', targets: ['Deployment/web'] },
    tokenCreatedAt: rotatedAt,
    hasTargets: true,
    debounceMs,
    now: at(debounceMs),
    ...overrides,
  };
}

describe('decideRestart', () => {
  const cases: Array<[string, Partial<RestartInput>, RestartDecision]> = [
    ['the Secret has no token version yet', { tokenVersion: null }, { kind: 'none' }],
    ['first issue: no record, so record without restarting', { last: undefined }, { kind: 'record' }],
    [
      'targets added to a key with an old token: record, no restart',
      { last: undefined, now: at(3_600_000) },
      { kind: 'record' },
    ],
    [
      'operator restart, resync or re-apply: the record answers the token',
      { last: { tokenVersion: 'v2', at: '2026-06-01T12:00:10Z' }, now: at(3_600_000) },
      { kind: 'none' },
    ],
    ['the token changed, no targets: record (nothing to restart)', { hasTargets: false }, { kind: 'record' }],
    [
      'the token changed just now: wait for the debounce window',
      { now: at(1_000) },
      { kind: 'wait', dueAt: at(debounceMs) },
    ],
    [
      'a second rotation moved tokenCreatedAt: the wait starts again from it',
      { tokenVersion: 'v3', tokenCreatedAt: at(5_000), now: at(debounceMs) },
      { kind: 'wait', dueAt: at(5_000 + debounceMs) },
    ],
    ['the window has passed: restart', { now: at(debounceMs) }, { kind: 'restart', dueAt: at(debounceMs) }],
    [
      'the operator was down past the window: restart when it is back',
      { now: at(3_600_000) },
      { kind: 'restart', dueAt: at(debounceMs) },
    ],
    [
      'a recorded restart without targets list still answers only its version',
      { last: { tokenVersion: 'v1' } },
      { kind: 'restart', dueAt: at(debounceMs) },
    ],
  ];
  it.each(cases)('%s', (_name, overrides, expected) => {
    expect(decideRestart(input(overrides))).toEqual(expected);
  });

  it('gives one restart for a burst of rotations inside the window, for the last token', () => {
    // Three rotations 3 s apart; the reconciler looks at every rotation and whenever it woke up.
    const tokens = [
      { version: 'v2', createdAt: at(0) },
      { version: 'v3', createdAt: at(3_000) },
      { version: 'v4', createdAt: at(6_000) },
    ];
    let last: RestartInput['last'] = { tokenVersion: 'v1' };
    const restarts: string[] = [];
    for (let t = 0; t <= 30_000; t += 500) {
      const current = [...tokens].reverse().find((k) => k.createdAt <= at(t));
      if (!current) continue;
      const decision = decideRestart(
        input({ tokenVersion: current.version, tokenCreatedAt: current.createdAt, last, now: at(t) }),
      );
      if (decision.kind === 'restart') {
        restarts.push(current.version);
        last = { tokenVersion: current.version };
      }
    }
    expect(restarts).toEqual(['v4']);
  });
});

describe('restartedAtValue', () => {
  it('is RFC 3339 to the second, as kubectl writes it', () => {
    expect(restartedAtValue(new Date('2026-06-01T12:00:10.999Z'))).toBe('2026-06-01T12:00:10Z');
  });

  it('is the same for a retry of the same restart, so a retried patch changes nothing', () => {
    const dueAt = at(debounceMs);
    expect(restartedAtValue(new Date(dueAt.getTime()))).toBe(restartedAtValue(dueAt));
  });
});

describe('gracePeriodWarning', () => {
  const spec = (gracePeriod: string | undefined, targets = false): ApiKeySpec => ({
    serviceUserRef: { name: 'ci' },
    ...(gracePeriod !== undefined && { rotation: { gracePeriod } }),
    ...(targets && { restartTargets: [{ kind: 'Deployment', name: 'web' }] }),
  });

  it.each<[string, ApiKeySpec, boolean]>([
    ['default grace (1h)', spec(undefined), false],
    ['default grace with restart targets', spec(undefined, true), false],
    ['2m covers the kubelet refresh for volume consumers', spec('2m'), false],
    ['2m is too short once consumers are restarted', spec('2m', true), true],
    ['5s is shorter than the kubelet refresh', spec('5s'), true],
    ['0s ends the previous token at once', spec('0s'), true],
  ])('%s', (_name, s, warns) => {
    const warning = gracePeriodWarning(s, debounceMs);
    expect(warning !== undefined).toBe(warns);
    if (warning) expect(warning).toContain('spec.rotation.gracePeriod');
  });
});
