import type { V1ConfigMap } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../test/support/fake-clock.js';
import { KubeStatusError } from './errors.js';
import { Store, Watchdog, watchEndOf } from './informer.js';
import { objectKey } from './object.js';

function cm(name: string, rv: string, namespace = 'ns'): V1ConfigMap {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, resourceVersion: rv } };
}

/** Changes as "type key@rv" for compact expectations. */
function summary(changes: ReadonlyArray<{ type: string; obj: V1ConfigMap } | undefined>): string[] {
  return changes.map((c) =>
    c ? `${c.type} ${objectKey(c.obj)}@${c.obj.metadata?.resourceVersion}` : 'none',
  );
}

describe('objectKey', () => {
  it.each([
    { obj: cm('a', '1'), want: 'ns/a' },
    { obj: { metadata: { name: 'cluster-wide' } }, want: 'cluster-wide' },
    { obj: { metadata: { name: 'x', namespace: '' } }, want: 'x' },
  ])('$want', ({ obj, want }) => {
    expect(objectKey(obj)).toBe(want);
  });
});

describe('Store.apply', () => {
  it.each([
    { name: 'adds an unknown object', start: [], event: ['ADDED', cm('a', '2')], want: ['add ns/a@2'] },
    {
      name: 'treats MODIFIED of an unknown object as add',
      start: [],
      event: ['MODIFIED', cm('a', '2')],
      want: ['add ns/a@2'],
    },
    {
      name: 'updates a known object',
      start: [cm('a', '1')],
      event: ['MODIFIED', cm('a', '2')],
      want: ['update ns/a@2'],
    },
    {
      name: 'treats ADDED of a known object as update',
      start: [cm('a', '1')],
      event: ['ADDED', cm('a', '2')],
      want: ['update ns/a@2'],
    },
    {
      name: 'ignores a replayed version',
      start: [cm('a', '2')],
      event: ['MODIFIED', cm('a', '2')],
      want: ['none'],
    },
    {
      name: 'deletes a known object',
      start: [cm('a', '1')],
      event: ['DELETED', cm('a', '3')],
      want: ['delete ns/a@3'],
    },
    {
      name: 'still reports deleting an unknown object',
      start: [],
      event: ['DELETED', cm('a', '3')],
      want: ['delete ns/a@3'],
    },
    {
      name: 'keeps namespaces apart',
      start: [cm('a', '1', 'one')],
      event: ['ADDED', cm('a', '2', 'two')],
      want: ['add two/a@2'],
    },
  ] as Array<{
    name: string;
    start: V1ConfigMap[];
    event: ['ADDED' | 'MODIFIED' | 'DELETED', V1ConfigMap];
    want: string[];
  }>)('$name', ({ start, event, want }) => {
    const store = new Store<V1ConfigMap>();
    store.replace(start);
    expect(summary([store.apply(...event)])).toEqual(want);
  });

  it('keeps the cache in line with the events', () => {
    const store = new Store<V1ConfigMap>();
    store.apply('ADDED', cm('a', '1'));
    store.apply('ADDED', cm('b', '2'));
    store.apply('MODIFIED', cm('a', '3'));
    store.apply('DELETED', cm('b', '4'));
    expect(store.get('ns/a')?.metadata?.resourceVersion).toBe('3');
    expect(store.get('ns/b')).toBeUndefined();
    expect(store.size).toBe(1);
    expect(store.list().map(objectKey)).toEqual(['ns/a']);
  });
});

describe('Store.replace', () => {
  it.each([
    {
      name: 'fills an empty cache',
      start: [],
      list: [cm('a', '1'), cm('b', '2')],
      want: ['add ns/a@1', 'add ns/b@2'],
    },
    { name: 'is silent when nothing changed', start: [cm('a', '1')], list: [cm('a', '1')], want: [] },
    {
      name: 'reports changed, new and vanished objects',
      start: [cm('keep', '1'), cm('change', '2'), cm('gone', '3')],
      list: [cm('keep', '1'), cm('change', '5'), cm('new', '6')],
      want: ['update ns/change@5', 'add ns/new@6', 'delete ns/gone@3'],
    },
    {
      name: 'deletes everything for an empty list',
      start: [cm('a', '1'), cm('b', '1')],
      list: [],
      want: ['delete ns/a@1', 'delete ns/b@1'],
    },
  ] as Array<{ name: string; start: V1ConfigMap[]; list: V1ConfigMap[]; want: string[] }>)(
    '$name',
    ({ start, list, want }) => {
      const store = new Store<V1ConfigMap>();
      store.replace(start);
      expect(summary(store.replace(list))).toEqual(want);
      expect(store.list()).toEqual(list);
    },
  );
});

describe('watchEndOf', () => {
  it.each([
    { name: 'stream closed by the server', err: null, want: 'closed' },
    {
      name: 'HTTP 410 on the watch request',
      err: Object.assign(new Error('Gone'), { statusCode: 410 }),
      want: 'expired',
    },
    {
      name: 'ERROR event with Expired status',
      err: new KubeStatusError(410, 'too old resource version', 'Expired'),
      want: 'expired',
    },
    { name: 'generated client 410', err: Object.assign(new Error('Gone'), { code: 410 }), want: 'expired' },
    { name: 'server error', err: new KubeStatusError(500, 'internal'), want: 'error' },
    { name: 'forbidden', err: Object.assign(new Error('Forbidden'), { statusCode: 403 }), want: 'error' },
    {
      name: 'connection refused',
      err: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
      want: 'error',
    },
  ])('$name → $want', ({ err, want }) => {
    expect(watchEndOf(err).reason).toBe(want);
  });
});

describe('Watchdog', () => {
  it('fires once after the timeout without kicks', async () => {
    const clock = new FakeClock(0);
    let fired = 0;
    new Watchdog(clock, 100, () => fired++);
    await clock.advance(99);
    expect(fired).toBe(0);
    await clock.advance(1);
    expect(fired).toBe(1);
    await clock.advance(1000);
    expect(fired).toBe(1);
    expect(clock.pendingTimers()).toBe(0);
  });

  it('measures silence from the last kick', async () => {
    const clock = new FakeClock(0);
    const firedAt: number[] = [];
    const dog = new Watchdog(clock, 100, () => firedAt.push(clock.now()));
    for (let t = 0; t < 10; t++) {
      await clock.advance(30);
      dog.kick();
    }
    await clock.advance(1000);
    expect(firedAt).toEqual([400]);
  });

  it('keeps one timer however many kicks arrive', async () => {
    const clock = new FakeClock(0);
    const dog = new Watchdog(clock, 100, () => {});
    for (let i = 0; i < 10_000; i++) dog.kick();
    expect(clock.pendingTimers()).toBe(1);
  });

  it('never fires after stop', async () => {
    const clock = new FakeClock(0);
    let fired = 0;
    const dog = new Watchdog(clock, 100, () => fired++);
    await clock.advance(50);
    dog.stop();
    await clock.advance(1000);
    expect(fired).toBe(0);
  });
});
