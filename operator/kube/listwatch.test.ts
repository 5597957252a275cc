import { describe, expect, it } from 'vitest';
import { resourcePath } from './listwatch.js';

describe('resourcePath', () => {
  it.each([
    {
      ref: { group: '', version: 'v1', plural: 'configmaps', namespace: 'ns' },
      want: '/api/v1/namespaces/ns/configmaps',
    },
    { ref: { group: '', version: 'v1', plural: 'namespaces' }, want: '/api/v1/namespaces' },
    {
      ref: { group: 'keyward.dev', version: 'v1alpha1', plural: 'apikeys' },
      want: '/apis/keyward.dev/v1alpha1/apikeys',
    },
    {
      ref: { group: 'keyward.dev', version: 'v1alpha1', plural: 'serviceusers', namespace: 'team-a' },
      want: '/apis/keyward.dev/v1alpha1/namespaces/team-a/serviceusers',
    },
  ])('$want', ({ ref, want }) => {
    expect(resourcePath(ref)).toBe(want);
  });
});
