import { describe, expect, it } from 'vitest';
import type { ApiKeySpec } from '../../api/apikey.js';
import {
  type CredentialAction,
  type CredentialInput,
  decideCredentials,
  desiredExpiry,
  nextWakeup,
  readiness,
  rememberRequest,
  requestDigest,
  type SecretView,
  type StoredKey,
} from './policy.js';

const now = new Date('2026-06-01T12:00:00Z');
const hour = 3_600_000;
const spec: ApiKeySpec = { serviceUserRef: { name: 'ci' } };
const stored: StoredKey = {
  keyId: 'key_0123456789abcdef',
  previousValidUntil: null,
  issuedAt: new Date(now.getTime() - 48 * hour),
  rotatedAt: new Date(now.getTime() - 24 * hour),
  expiresAt: null,
  disabled: false,
  revokedAt: null,
};
const holdsCurrent: SecretView = { match: 'current', ownedByKey: true, rotationRequest: null };
const inGrace = { ...stored, previousValidUntil: new Date(now.getTime() + hour) };

function input(overrides: Partial<CredentialInput>): CredentialInput {
  return { spec, stored, secret: holdsCurrent, rotateRequest: null, answeredRequests: [], now, ...overrides };
}

describe('decideCredentials', () => {
  const table: Array<[string, Partial<CredentialInput>, CredentialAction]> = [
    [
      'new key, no Secret',
      { stored: null, secret: { match: 'missing', ownedByKey: false, rotationRequest: null } },
      { kind: 'issue', adopt: false, request: null },
    ],
    [
      'new key whose Secret was written before a crash',
      { stored: null, secret: { match: 'none', ownedByKey: true, rotationRequest: null } },
      { kind: 'issue', adopt: true, request: null },
    ],
    [
      'new key, a leftover Secret of another object is not adopted',
      { stored: null, secret: { match: 'none', ownedByKey: false, rotationRequest: null } },
      { kind: 'issue', adopt: false, request: null },
    ],
    [
      'new key created with a rotate annotation records it and does not rotate later',
      {
        stored: null,
        secret: { match: 'missing', ownedByKey: false, rotationRequest: null },
        rotateRequest: 'r1',
      },
      { kind: 'issue', adopt: false, request: 'r1' },
    ],
    ['Secret holds the current token', {}, { kind: 'none' }],
    [
      'new annotation value',
      { rotateRequest: 'r2', secret: { ...holdsCurrent, rotationRequest: 'r1' } },
      { kind: 'rotate', reason: 'Requested', keepHeld: true, request: 'r2' },
    ],
    [
      'same annotation value again (GitOps re-sync)',
      { rotateRequest: 'r1', secret: { ...holdsCurrent, rotationRequest: 'r1' } },
      { kind: 'none' },
    ],
    [
      'annotation removed later: nothing to do',
      { rotateRequest: null, secret: { ...holdsCurrent, rotationRequest: 'r1' } },
      { kind: 'none' },
    ],
    [
      'scheduled rotation due keeps the recorded request',
      {
        spec: { ...spec, rotation: { every: '1d' } },
        rotateRequest: 'r1',
        secret: { ...holdsCurrent, rotationRequest: 'r1' },
      },
      { kind: 'rotate', reason: 'Scheduled', keepHeld: true, request: 'r1' },
    ],
    ['scheduled rotation not yet due', { spec: { ...spec, rotation: { every: '2d' } } }, { kind: 'none' }],
    [
      'Secret holds the previous token within grace (crash during rotation)',
      {
        secret: { match: 'previous', ownedByKey: true, rotationRequest: 'r1' },
        stored: inGrace,
        rotateRequest: 'r2',
      },
      { kind: 'rotate', reason: 'RotationResumed', keepHeld: true, request: 'r2' },
    ],
    [
      'Secret holds the previous token after grace',
      {
        secret: { match: 'previous', ownedByKey: true, rotationRequest: null },
        stored: { ...stored, previousValidUntil: new Date(now.getTime() - 1) },
      },
      { kind: 'rotate', reason: 'SecretLost', keepHeld: false, request: null },
    ],
    [
      'Secret deleted',
      { secret: { match: 'missing', ownedByKey: false, rotationRequest: null } },
      { kind: 'rotate', reason: 'SecretLost', keepHeld: false, request: null },
    ],
    [
      'token edited by someone',
      { secret: { match: 'none', ownedByKey: true, rotationRequest: null } },
      { kind: 'rotate', reason: 'SecretLost', keepHeld: false, request: null },
    ],
    ['revoked key stays revoked', { stored: { ...stored, revokedAt: now } }, { kind: 'revoked' }],
  ];

  describe('a scheduled rotation never revives a dead key', () => {
    const day = 24 * hour;
    // ttl 30d, every 90d: issued (and last rotated) 90 days ago, so the rotation is due now.
    const issued = new Date(now.getTime() - 90 * day);
    const old: StoredKey = { ...stored, issuedAt: issued, rotatedAt: issued };
    const every90: ApiKeySpec = { ...spec, ttl: '30d', rotation: { every: '90d' } };
    const dead: Array<[string, Partial<CredentialInput>, CredentialAction]> = [
      [
        'expired by the store (ttl 30d, every 90d, day 90)',
        { spec: every90, stored: { ...old, expiresAt: new Date(issued.getTime() + 30 * day) } },
        { kind: 'none' },
      ],
      [
        'expired by a spec ttl the store does not have yet',
        { spec: every90, stored: { ...old, expiresAt: null } },
        { kind: 'none' },
      ],
      [
        'expired by a fixed expiresAt',
        {
          spec: { ...spec, expiresAt: new Date(now.getTime() - 1).toISOString(), rotation: { every: '90d' } },
          stored: { ...old, expiresAt: new Date(now.getTime() - 1) },
        },
        { kind: 'none' },
      ],
      [
        'disabled in the store',
        { spec: { ...spec, rotation: { every: '90d' } }, stored: { ...old, disabled: true } },
        { kind: 'none' },
      ],
      [
        'disabled by the spec',
        { spec: { ...spec, disabled: true, rotation: { every: '90d' } }, stored: old },
        { kind: 'none' },
      ],
      [
        'revoked',
        { spec: { ...spec, rotation: { every: '90d' } }, stored: { ...old, revokedAt: now } },
        { kind: 'revoked' },
      ],
      [
        'a lost Secret of an expired key is not re-issued with a fresh ttl',
        {
          spec: every90,
          stored: { ...old, expiresAt: new Date(issued.getTime() + 30 * day) },
          secret: { match: 'missing', ownedByKey: false, rotationRequest: null },
        },
        { kind: 'none' },
      ],
      [
        'live key (ttl 120d): the rotation happens',
        {
          spec: { ...every90, ttl: '120d' },
          stored: { ...old, expiresAt: new Date(issued.getTime() + 120 * day) },
        },
        { kind: 'rotate', reason: 'Scheduled', keepHeld: true, request: null },
      ],
      [
        'manual rotation renews an expired ttl key, without reviving the expired token',
        {
          spec: every90,
          stored: { ...old, expiresAt: new Date(issued.getTime() + 30 * day) },
          rotateRequest: 'renew',
        },
        { kind: 'rotate', reason: 'Requested', keepHeld: false, request: 'renew' },
      ],
    ];
    it.each(dead)('%s', (_name, overrides, action) => {
      expect(decideCredentials(input(overrides)).action).toEqual(action);
    });

    it('does not wake up for a rotation that will not happen', () => {
      const expiring = { ...old, expiresAt: new Date(now.getTime() + day) };
      const at = new Date(now.getTime() - day);
      expect(nextWakeup(every90, { ...expiring, rotatedAt: at }, now)).toEqual(expiring.expiresAt);
      expect(
        nextWakeup({ ...every90, ttl: undefined, disabled: true }, { ...old, rotatedAt: at }, now),
      ).toBeNull();
    });
  });

  it.each(table)('%s', (_name, overrides, action) => {
    expect(decideCredentials(input(overrides)).action).toEqual(action);
  });
});

describe('desiredExpiry', () => {
  it.each([
    [{}, null],
    [{ expiresAt: '2030-01-01T00:00:00Z' }, new Date('2030-01-01T00:00:00Z')],
    [{ ttl: '12h' }, new Date(now.getTime() + 12 * hour)],
  ])('%j', (extra, expected) => {
    expect(desiredExpiry({ ...spec, ...extra }, now)).toEqual(expected);
  });
});

describe('readiness', () => {
  it.each([
    ['valid', stored, false, true, 'Issued'],
    ['expired', { ...stored, expiresAt: now }, false, false, 'Expired'],
    ['expired wins over disabled', { ...stored, expiresAt: now, disabled: true }, false, false, 'Expired'],
    ['disabled', { ...stored, disabled: true }, false, false, 'Disabled'],
    ['user suspended', stored, true, false, 'Suspended'],
    ['not yet expired', { ...stored, expiresAt: new Date(now.getTime() + 1) }, false, true, 'Issued'],
  ] as const)('%s', (_name, key, suspended, ready, reason) => {
    const result = readiness(key, suspended, 'web', now);
    expect([result.ready, result.reason]).toEqual([ready, reason]);
  });
});

describe('nextWakeup', () => {
  it('is the earliest future instant among expiry, grace end and scheduled rotation', () => {
    const key = {
      ...stored,
      expiresAt: new Date(now.getTime() + 5 * hour),
      previousValidUntil: new Date(now.getTime() + 2 * hour),
    };
    expect(nextWakeup({ ...spec, rotation: { every: '2d' } }, key, now)).toEqual(
      new Date(now.getTime() + 2 * hour),
    );
  });

  it('ignores instants already past and returns null when nothing is pending', () => {
    expect(nextWakeup(spec, { ...stored, expiresAt: new Date(now.getTime() - 1) }, now)).toBeNull();
  });
});

describe('rotate requests already answered', () => {
  /** Runs the decisions a sequence of annotation values gets, as the reconciler records them. */
  function rotationsFor(values: string[]): string[] {
    let history: string[] = [];
    let onSecret: string | null = null;
    const rotated: string[] = [];
    for (const value of values) {
      const decision = decideCredentials(
        input({
          rotateRequest: value,
          answeredRequests: history,
          secret: { ...holdsCurrent, rotationRequest: onSecret },
        }),
      );
      if (decision.action.kind === 'rotate') {
        rotated.push(value);
        onSecret = value;
      }
      history = rememberRequest(history, onSecret);
    }
    return rotated;
  }

  it.each([
    [
      'v1 → v2 → v1 (GitOps self-heal reverts a manual rotation): only v2 rotates',
      ['v1', 'v2', 'v1'],
      ['v1', 'v2'],
    ],
    ['v1 → v2 → v1 → v2 → v3', ['v1', 'v2', 'v1', 'v2', 'v3'], ['v1', 'v2', 'v3']],
    ['re-sync of one value', ['a', 'a', 'a'], ['a']],
  ])('%s', (_name, values, rotated) => {
    expect(rotationsFor(values)).toEqual(rotated);
  });

  it('remembers the last 16 values, by a digest that does not hold the value', () => {
    const long = 'x'.repeat(10_000);
    expect(requestDigest(long)).toMatch(/^[0-9a-f]{16}$/);
    let history: string[] = [];
    for (let i = 0; i < 20; i++) history = rememberRequest(history, `r${i}`);
    expect(history).toHaveLength(16);
    expect(history).not.toContain(requestDigest('r3'));
    expect(history).toContain(requestDigest('r4'));
    // A value far enough back is a new request again.
    expect(rotationsFor(['old', ...Array.from({ length: 16 }, (_, i) => `n${i}`), 'old'])).toContain('old');
    expect(rememberRequest(rememberRequest([], 'a'), 'a')).toEqual([requestDigest('a')]);
  });
});
