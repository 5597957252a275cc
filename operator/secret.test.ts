import type { V1ManagedFieldsEntry, V1Secret } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { ApiKey } from '../api/apikey.js';
import {
  desiredSecret,
  inspectSecret,
  keysNamingSecret,
  managedFieldsMigration,
  secretFieldManager,
  secretMetadataDiffers,
  secretOwnership,
  TOKEN_VERSION_ANNOTATION,
  tokenVersion,
  unionFields,
} from './secret.js';

const key: ApiKey = {
  apiVersion: 'keyward.dev/v1alpha1',
  kind: 'ApiKey',
  metadata: { name: 'web', namespace: 'team-a', uid: 'uid-web' },
  spec: { serviceUserRef: { name: 'ci' }, secret: { name: 'web-token' } },
};

function secret(meta: Partial<NonNullable<V1Secret['metadata']>>): V1Secret {
  return { metadata: { name: 'web-token', namespace: 'team-a', resourceVersion: '7', ...meta } };
}

const ref = (uid: string, name: string, controller = true) => ({
  apiVersion: 'keyward.dev/v1alpha1',
  kind: 'ApiKey',
  name,
  uid,
  controller,
});

describe('secretOwnership', () => {
  it('is absent without a Secret and own with this key as controller', () => {
    expect(secretOwnership(key, undefined)).toEqual({ kind: 'absent' });
    expect(secretOwnership(key, secret({ ownerReferences: [ref('uid-web', 'web')] }))).toEqual({
      kind: 'own',
    });
  });

  it('names another ApiKey that controls the Secret', () => {
    const result = secretOwnership(key, secret({ ownerReferences: [ref('uid-other', 'other')] }));
    expect(result.kind).toBe('foreign');
    expect(result.kind === 'foreign' && result.message).toMatch(
      /^Secret web-token is controlled by ApiKey other;/,
    );
  });

  it('treats keyward labels without the controller reference as foreign: labels prove nothing', () => {
    const forged = secret({
      labels: { 'app.kubernetes.io/managed-by': 'keyward', 'keyward.dev/api-key': 'web' },
      ownerReferences: [ref('uid-web', 'web', false)],
    });
    const result = secretOwnership(key, forged);
    expect(result.kind).toBe('foreign');
    expect(result.kind === 'foreign' && result.message).toContain('not controlled by this ApiKey');
  });
});

describe('managedFieldsMigration', () => {
  const manager = secretFieldManager('uid-web');
  const now = new Date('2026-12-01T08:00:00Z');
  const entry = (m: string, operation: string, fieldsV1: object): V1ManagedFieldsEntry => ({
    manager: m,
    operation,
    apiVersion: 'v1',
    fieldsType: 'FieldsV1',
    fieldsV1,
  });

  it('stays out of the way once the key applies its own fields', () => {
    const s = secret({
      managedFields: [entry(manager, 'Apply', { 'f:data': {} }), entry('kubectl-edit', 'Update', {})],
    });
    expect(managedFieldsMigration(s, manager, now)).toBeUndefined();
  });

  it('hands the legacy shared manager and the create entry to the key as one Apply entry', () => {
    const s = secret({
      managedFields: [
        entry('keyward', 'Apply', {
          'f:data': { 'f:token': {} },
          'f:metadata': { 'f:labels': { 'f:a': {} } },
        }),
        entry(manager, 'Update', { 'f:metadata': { 'f:labels': { 'f:b': {} } } }),
        entry('kubectl-edit', 'Update', { 'f:metadata': { 'f:labels': { 'f:mine': {} } } }),
      ],
    });
    const ops = managedFieldsMigration(s, manager, now) as Array<{
      op: string;
      path: string;
      value: unknown;
    }>;
    expect(ops[0]).toEqual({ op: 'test', path: '/metadata/resourceVersion', value: '7' });
    expect(ops[1]?.path).toBe('/metadata/managedFields');
    expect(ops[1]?.value).toEqual([
      entry('kubectl-edit', 'Update', { 'f:metadata': { 'f:labels': { 'f:mine': {} } } }),
      {
        ...entry(manager, 'Apply', {
          'f:data': { 'f:token': {} },
          'f:metadata': { 'f:labels': { 'f:a': {}, 'f:b': {} } },
        }),
        time: now,
      },
    ]);
  });

  it('leaves another ApiKey’s manager alone', () => {
    const s = secret({ managedFields: [entry(secretFieldManager('uid-other'), 'Update', {})] });
    expect(managedFieldsMigration(s, manager, now)).toBeUndefined();
  });
});

describe('unionFields', () => {
  it('merges nested field sets', () => {
    expect(unionFields({ 'f:a': { 'f:x': {} } }, { 'f:a': { 'f:y': {} }, 'f:b': {} })).toEqual({
      'f:a': { 'f:x': {}, 'f:y': {} },
      'f:b': {},
    });
  });
});

describe('keysNamingSecret', () => {
  it('finds keys by spec.secret.name or by their own name, in the Secret’s namespace only', () => {
    const keys = [
      { metadata: { namespace: 'team-a', name: 'web' }, spec: { secret: { name: 'shared' } } },
      { metadata: { namespace: 'team-a', name: 'shared' }, spec: {} },
      { metadata: { namespace: 'team-b', name: 'shared' }, spec: {} },
      { metadata: { namespace: 'team-a', name: 'other' }, spec: {} },
    ];
    expect(keysNamingSecret(keys, { metadata: { namespace: 'team-a', name: 'shared' } })).toEqual([
      'team-a/web',
      'team-a/shared',
    ]);
  });
});

describe('secretMetadataDiffers', () => {
  const manager = secretFieldManager('uid-web');
  const desired: V1Secret = { metadata: { labels: { team: 'a' }, annotations: {} }, data: { token: 'x' } };
  const actual = (labelsOwned: object, labels: Record<string, string>): V1Secret => ({
    metadata: {
      labels,
      managedFields: [
        {
          manager,
          operation: 'Apply',
          fieldsV1: { 'f:metadata': { 'f:labels': labelsOwned } },
        },
        {
          manager: 'kubectl-edit',
          operation: 'Update',
          fieldsV1: { 'f:metadata': { 'f:labels': { 'f:mine': {} } } },
        },
      ],
    },
    data: { token: 'x' },
  });

  it('is false when the Secret carries what the spec asks, whatever others added', () => {
    expect(
      secretMetadataDiffers(desired, actual({ 'f:team': {} }, { team: 'a', mine: 'yes' }), manager),
    ).toBe(false);
  });

  it('is true when a label keyward applied is no longer in the spec', () => {
    expect(
      secretMetadataDiffers(
        desired,
        actual({ 'f:team': {}, 'f:tier': {} }, { team: 'a', tier: 'gold' }),
        manager,
      ),
    ).toBe(true);
  });

  it('is true when a label is missing or different', () => {
    expect(secretMetadataDiffers(desired, actual({ 'f:team': {} }, { team: 'b' }), manager)).toBe(true);
    expect(secretMetadataDiffers(desired, actual({}, {}), manager)).toBe(true);
  });
});

describe('token data and version', () => {
  const overlap: ApiKey = {
    ...key,
    spec: {
      ...key.spec,
      secret: { name: 'web-token', tokenKey: 'API_KEY', previousTokenKey: 'API_KEY_PREVIOUS' },
    },
  };
  const decode = (s: V1Secret, k: string): string | undefined => {
    const v = s.data?.[k];
    return v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8');
  };

  it('writes the previous token under previousTokenKey, in the same object as the new one', () => {
    const written = desiredSecret(overlap, {
      token: 'kw_new',
      rotationRequest: 'r1',
      tokenVersion: 'abc',
      previousToken: 'kw_old',
    });
    expect(decode(written, 'API_KEY')).toBe('kw_new');
    expect(decode(written, 'API_KEY_PREVIOUS')).toBe('kw_old');
    expect(written.metadata?.annotations?.[TOKEN_VERSION_ANNOTATION]).toBe('abc');
    const read = inspectSecret(overlap, written);
    expect(read).toMatchObject({ token: 'kw_new', previousToken: 'kw_old', tokenVersion: 'abc' });
  });

  it('writes no previous token without previousTokenKey, or when there is none (grace over)', () => {
    const without = desiredSecret(key, {
      token: 'kw_new',
      rotationRequest: null,
      tokenVersion: 'a',
      previousToken: 'kw_old',
    });
    expect(Object.keys(without.data ?? {})).toEqual(['token']);
    const over = desiredSecret(overlap, {
      token: 'kw_new',
      rotationRequest: null,
      tokenVersion: 'a',
      previousToken: null,
    });
    expect(Object.keys(over.data ?? {})).toEqual(['API_KEY']);
    expect(inspectSecret(overlap, over).previousToken).toBeNull();
  });

  it('versions a token by the key and its creation time, never by the token', () => {
    const t = new Date('2026-06-01T12:00:00.123Z');
    expect(tokenVersion('uid-web', t)).toMatch(/^[0-9a-f]{16}$/);
    expect(tokenVersion('uid-web', t)).toBe(tokenVersion('uid-web', new Date(t.getTime())));
    expect(tokenVersion('uid-web', new Date(t.getTime() + 1))).not.toBe(tokenVersion('uid-web', t));
    expect(tokenVersion('uid-other', t)).not.toBe(tokenVersion('uid-web', t));
  });
});
