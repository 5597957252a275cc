import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { keyUpdateConcernsUser, userUpdateConcernsKeys } from './changes.js';
import { withoutManagedFields } from './kube/informer.js';

const ready = (status: string, reason: string) => ({
  type: 'Ready',
  status,
  reason,
  message: `m-${reason}`,
  lastTransitionTime: '2026-01-01T00:00:00Z',
});

function user(over: { generation?: number; status?: object; labels?: Record<string, string> } = {}) {
  return {
    metadata: {
      name: 'u',
      namespace: 'ns',
      generation: over.generation ?? 1,
      resourceVersion: '1',
      labels: over.labels,
    },
    spec: { scopes: ['a'] },
    status: {
      observedGeneration: 1,
      conditions: [ready('True', 'Stored')],
      keys: 3,
      activeKeys: 3,
      ...over.status,
    },
  } as KubernetesObject;
}

function key(over: { status?: object; deleting?: boolean; user?: string } = {}) {
  return {
    metadata: {
      name: 'k',
      namespace: 'ns',
      resourceVersion: '1',
      ...(over.deleting && { deletionTimestamp: '2026-01-01T00:00:00Z' }),
    },
    spec: { serviceUserRef: { name: over.user ?? 'u' } },
    status: {
      keyId: 'kid',
      conditions: [ready('True', 'Issued')],
      lastUsedAt: '2026-01-01T00:00:00Z',
      ...over.status,
    },
  } as KubernetesObject;
}

describe('userUpdateConcernsKeys', () => {
  const base = user();
  it.each([
    { name: 'a periodic resync (the same object)', next: base, want: true },
    { name: 'more keys counted', next: user({ status: { keys: 4, activeKeys: 4 } }), want: false },
    {
      name: 'a new resourceVersion alone',
      next: { ...base, metadata: { ...base.metadata, resourceVersion: '2' } },
      want: false,
    },
    { name: 'fewer keys (a slot freed)', next: user({ status: { keys: 2 } }), want: true },
    { name: 'fewer active keys', next: user({ status: { activeKeys: 2 } }), want: true },
    { name: 'a new generation (spec changed)', next: user({ generation: 2 }), want: true },
    {
      name: 'observedGeneration (the store caught up)',
      next: user({ status: { observedGeneration: 2 } }),
      want: true,
    },
    {
      name: 'its Ready condition',
      next: user({ status: { conditions: [ready('False', 'Suspended')] } }),
      want: true,
    },
    { name: 'a label', next: user({ labels: { team: 'x' } }), want: true },
  ])('$name: $want', ({ next, want }) => {
    expect(userUpdateConcernsKeys(base, next)).toBe(want);
  });
});

describe('keyUpdateConcernsUser', () => {
  const base = key();
  it.each([
    { name: 'a periodic resync (the same object)', next: base, want: true },
    {
      name: 'status.lastUsedAt refreshed',
      next: key({ status: { lastUsedAt: '2026-01-02T00:00:00Z' } }),
      want: false,
    },
    {
      name: 'a message or transition time only',
      next: key({
        status: { conditions: [{ ...ready('True', 'Issued'), message: 'other', lastTransitionTime: 'x' }] },
      }),
      want: false,
    },
    { name: 'issued (a keyId)', next: key({ status: { keyId: 'other' } }), want: true },
    { name: 'Ready changed', next: key({ status: { conditions: [ready('False', 'Leaked')] } }), want: true },
    {
      name: 'a Disabled flag',
      next: key({
        status: {
          conditions: [ready('True', 'Issued'), { type: 'Disabled', status: 'True', reason: 'Disabled' }],
        },
      }),
      want: true,
    },
    { name: 'being deleted', next: key({ deleting: true }), want: true },
    { name: 'another user', next: key({ user: 'v' }), want: true },
  ])('$name: $want', ({ next, want }) => {
    expect(keyUpdateConcernsUser(base, next)).toBe(want);
  });
});

describe('withoutManagedFields', () => {
  it('drops managedFields and keeps everything else', () => {
    const obj = {
      metadata: {
        name: 'k',
        resourceVersion: '7',
        managedFields: [{ manager: 'kubectl' }],
        finalizers: ['f'],
      },
      spec: { a: 1 },
    };
    expect(withoutManagedFields(obj)).toEqual({
      metadata: { name: 'k', resourceVersion: '7', finalizers: ['f'] },
      spec: { a: 1 },
    });
  });
  it('returns an object without them as it is', () => {
    const obj = { metadata: { name: 'k' } };
    expect(withoutManagedFields(obj)).toBe(obj);
  });
});
