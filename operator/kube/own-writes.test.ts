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
  it('recognises the echo of its own status write once, whether it comes before or after the response', () => {
    const own = new OwnStatusWrites();
    const before = key('1', {}, { keyId: 'key_1', previousValidUntil: '2026-01-01T00:00:00Z' });
    own.writing(before, { observedGeneration: 1, conditions: [{ type: 'Ready' }], previousValidUntil: null });
    const echo = key('2', {}, { keyId: 'key_1', observedGeneration: 1, conditions: [{ type: 'Ready' }] });
    expect(own.isEcho(before, echo)).toBe(true);
    // The entry is settled by the event it matched: the same update again is not an echo.
    expect(own.isEcho(before, echo)).toBe(false);
    expect(own.size).toBe(0);
  });

  it('queues every other update: other status values, a metadata or spec change, a resync', () => {
    const own = new OwnStatusWrites();
    const before = key('1');
    own.writing(before, { observedGeneration: 1 });
    expect(own.isEcho(before, key('2', {}, { observedGeneration: 2 }))).toBe(false);

    own.writing(before, { observedGeneration: 1 });
    expect(
      own.isEcho(before, key('3', { finalizers: ['keyward.dev/revoke'] }, { observedGeneration: 1 })),
    ).toBe(false);

    own.writing(before, { observedGeneration: 1 });
    expect(own.isEcho(before, key('4', { annotations: { a: 'b' } }, { observedGeneration: 1 }))).toBe(false);

    const same = key('5', {}, { observedGeneration: 1 });
    own.writing(same, { observedGeneration: 1 });
    expect(own.isEcho(same, same)).toBe(false);
  });

  it('requeues an object whose status write was stale, so a skipped echo cannot lose that pass', () => {
    const own = new OwnStatusWrites();
    const requeued: string[] = [];
    own.onStale((k) => requeued.push(k));
    own.writing(key('1'), { observedGeneration: 1 });
    own.stale(key('1'));
    expect(requeued).toEqual(['ns/k']);
    expect(own.isEcho(key('1'), key('2', {}, { observedGeneration: 1 }))).toBe(false);
  });

  it('lets the echo through when a pass started before it came: that pass decided from the version before the write', () => {
    const own = new OwnStatusWrites();
    const before = key('1', {}, { conditions: [{ type: 'Ready', status: 'True' }] });
    const written = { conditions: [{ type: 'Ready', status: 'False' }] };
    own.writing(before, written);
    // The next pass of the object reads `before` from the informer: the echo below has not arrived.
    own.passStarts('ns/k');
    expect(own.isEcho(before, key('2', {}, written))).toBe(false);
  });

  it('still skips the echo when the next pass starts after it', () => {
    const own = new OwnStatusWrites();
    const before = key('1');
    own.writing(before, { observedGeneration: 1 });
    expect(own.isEcho(before, key('2', {}, { observedGeneration: 1 }))).toBe(true);
    own.passStarts('ns/k');
    expect(own.size).toBe(0);
  });

  it('forgets a write that failed', () => {
    const own = new OwnStatusWrites();
    own.writing(key('1'), { observedGeneration: 1 });
    own.failed(key('1'));
    expect(own.isEcho(key('1'), key('2', {}, { observedGeneration: 1 }))).toBe(false);
  });
});
