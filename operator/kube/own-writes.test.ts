import { describe, expect, it } from 'vitest';
import { OwnStatusWrites } from './own-writes.js';

const key = (rv: string, extra: Record<string, unknown> = {}, status: unknown = undefined) => ({
  apiVersion: 'keyward.dev/v1alpha1',
  kind: 'ApiKey',
  metadata: { namespace: 'ns', name: 'k', resourceVersion: rv, generation: 1, ...extra },
  spec: { serviceUserRef: { name: 'u' } },
  ...(status !== undefined && { status }),
});

describe('OwnStatusWrites', () => {
  it('recognises the echo of its own status write once', () => {
    const own = new OwnStatusWrites();
    const before = key('1');
    const written = key('2', {}, { observedGeneration: 1 });
    own.wrote(written);
    expect(own.isEcho(before, written)).toBe(true);
    // The entry is settled by the event it matched: a later update of the same version is not an echo.
    expect(own.isEcho(before, written)).toBe(false);
    expect(own.size).toBe(0);
  });

  it('queues every other update: another version, a metadata or spec change, a resync', () => {
    const own = new OwnStatusWrites();
    own.wrote(key('2', {}, { observedGeneration: 1 }));
    expect(own.isEcho(key('1'), key('3', {}, { observedGeneration: 1 }))).toBe(false);

    own.wrote(key('5', { finalizers: ['keyward.dev/revoke'] }, {}));
    expect(own.isEcho(key('4'), key('5', { finalizers: ['keyward.dev/revoke'] }, {}))).toBe(false);

    const same = key('6', {}, {});
    own.wrote(same);
    expect(own.isEcho(same, same)).toBe(false);
  });

  it('requeues an object whose status write was stale, so a skipped echo cannot lose that pass', () => {
    const own = new OwnStatusWrites();
    const requeued: string[] = [];
    own.onStale((k) => requeued.push(k));
    const written = key('2', {}, { observedGeneration: 1 });
    own.wrote(written);
    own.stale(key('1'));
    expect(requeued).toEqual(['ns/k']);
    expect(own.isEcho(key('1'), written)).toBe(false);
  });
});
