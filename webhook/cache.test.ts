import { describe, expect, it } from 'vitest';
import type { KeyLookup } from '../store/lookup.js';
import { keyLookup } from '../test/support/key-lookup.js';
import { type CacheLookup, VerifyCache } from './cache.js';
import { decide } from './decision.js';

function key(n: number, userId = `user-${n}`): KeyLookup {
  return keyLookup({
    apiKeyId: `api-${n}`,
    keyId: `key_${String(n).padStart(16, '0')}`,
    name: `k${n}`,
    userId,
    username: `u${n}`,
    groups: [],
    userScopes: ['*'],
  });
}

/** Hashes are a SHA-256's 32 bytes as latin1; the tests name theirs and pad the name. */
function h(name: string): string {
  return name.padEnd(32, '.');
}

function setup(overrides: Partial<ConstructorParameters<typeof VerifyCache>[0]> = {}) {
  const clock = { now: 1_000_000 };
  let evictions = 0;
  const cache = new VerifyCache({
    maxEntries: 100,
    ttlMs: 60_000,
    staleIfErrorMs: 300_000,
    negativeMaxEntries: 10,
    negativeTtlMs: 5_000,
    now: () => clock.now,
    onEvict: () => {
      evictions += 1;
    },
    ...overrides,
  });
  cache.listenerAttached();
  return { cache, clock, evictions: () => evictions };
}

/** Served from memory, and refused as revoked. */
function revokedFresh(lookup: CacheLookup): boolean {
  return lookup.kind === 'fresh' && decide(lookup.entry, 0).result === 'deny' && lookup.entry.revoked;
}

describe('VerifyCache', () => {
  it('serves a filled entry fresh until the TTL backstop, then asks for a re-read', () => {
    const { cache, clock } = setup();
    cache.fill(h('h1'), key(1), cache.beginFill());
    expect(cache.get(h('h1')).kind).toBe('fresh');
    clock.now += 59_999;
    expect(cache.get(h('h1')).kind).toBe('fresh');
    clock.now += 1;
    expect(cache.get(h('h1'))).toMatchObject({ kind: 'stale', usableOnError: true });
    clock.now += 240_000;
    expect(cache.get(h('h1'))).toMatchObject({ kind: 'stale', usableOnError: false });
  });

  it('drops only the entries a notification names', () => {
    const { cache } = setup();
    cache.fill(h('a1'), key(1, 'alice'), cache.beginFill());
    cache.fill(h('a2'), key(2, 'alice'), cache.beginFill());
    cache.fill(h('b3'), key(3, 'bob'), cache.beginFill());
    cache.apply({ entity: 'user', op: 'updated', userId: 'alice' });
    expect(cache.get(h('a1')).kind).toBe('miss');
    expect(cache.get(h('a2')).kind).toBe('miss');
    expect(cache.get(h('b3')).kind).toBe('fresh');
    cache.apply({ entity: 'key', op: 'updated', keyId: key(3).keyId, userId: 'bob' });
    expect(cache.get(h('b3')).kind).toBe('miss');
    expect(cache.size).toBe(0);
  });

  it('answers a revoked key as revoked from the notification alone, until a later change names it', () => {
    const { cache, clock } = setup();
    cache.fill(h('a1'), key(1, 'alice'), cache.beginFill());
    cache.fill(h('a2'), key(2, 'alice'), cache.beginFill());
    clock.now += 1000;
    cache.apply({ entity: 'key', op: 'revoked', keyId: key(1).keyId, userId: 'alice' });
    const revoked = cache.get(h('a1'));
    expect(revokedFresh(revoked)).toBe(true);
    expect(revoked.kind === 'fresh' && revoked.entry.key.revokedAt?.getTime()).toBe(clock.now);
    expect(revoked.kind === 'fresh' && decide(revoked.entry, clock.now)).toEqual({
      result: 'deny',
      reason: 'revoked',
    });
    // The rest of the entry is the key's: usage and logs still name it.
    expect(revoked.kind === 'fresh' && [revoked.entry.key.keyId, revoked.entry.key.username]).toEqual([
      key(1).keyId,
      'u1',
    ]);
    expect(cache.get(h('a2'))).toMatchObject({ kind: 'fresh' });
    expect(revokedFresh(cache.get(h('a2')))).toBe(false);
    // A key issued again (its user re-created) is announced by its id: the revoked entry goes.
    cache.apply({ entity: 'key', op: 'issued', keyId: key(1).keyId, userId: 'alice' });
    expect(cache.get(h('a1')).kind).toBe('miss');
  });

  it('re-reads a revoked entry after the TTL backstop like any other', () => {
    const { cache, clock } = setup();
    cache.fill(h('h'), key(1), cache.beginFill());
    cache.apply({ entity: 'key', op: 'revoked', keyId: key(1).keyId, userId: key(1).userId });
    clock.now += 60_000;
    expect(cache.get(h('h'))).toMatchObject({ kind: 'stale', usableOnError: true });
  });

  it("answers a deleted user's cached keys as revoked, and leaves other users' keys alone", () => {
    const { cache } = setup();
    cache.fill(h('a1'), key(1, 'alice'), cache.beginFill());
    cache.fill(h('a2'), key(2, 'alice'), cache.beginFill());
    cache.fill(h('b3'), key(3, 'bob'), cache.beginFill());
    cache.apply({ entity: 'user', op: 'deleted', userId: 'alice' });
    expect([revokedFresh(cache.get(h('a1'))), revokedFresh(cache.get(h('a2')))]).toEqual([true, true]);
    expect(cache.get(h('b3')).kind).toBe('fresh');
    expect(revokedFresh(cache.get(h('b3')))).toBe(false);
    expect(cache.size).toBe(3);
  });

  it('drops everything on a notification it cannot read', () => {
    const { cache } = setup();
    cache.fill(h('a1'), key(1), cache.beginFill());
    cache.fill(h('x'), null, cache.beginFill());
    cache.apply({ entity: 'unknown' });
    expect(cache.get(h('a1')).kind).toBe('miss');
    expect(cache.get(h('x')).kind).toBe('miss');
  });

  it('does not store an answer read before a change to its own key or user that arrived during the lookup', () => {
    const { cache } = setup();
    for (const change of [
      { entity: 'user', op: 'updated', userId: 'user-1' },
      { entity: 'key', op: 'revoked', keyId: key(1).keyId, userId: 'user-1' },
      { entity: 'unknown' },
    ] as const) {
      const generation = cache.beginFill();
      cache.apply(change);
      const entry = cache.fill(h('h'), key(1), generation);
      expect(entry?.key.keyId, change.entity).toBe(key(1).keyId);
      expect(cache.get(h('h')).kind, change.entity).toBe('miss');
    }
    const negativeGeneration = cache.beginFill();
    cache.apply({ entity: 'key', op: 'issued', keyId: 'key_x', userId: 'u' });
    cache.fill(h('n'), null, negativeGeneration);
    expect(cache.get(h('n')).kind).toBe('miss');
  });

  it('stores an answer although other keys and users changed during the lookup', () => {
    const { cache } = setup();
    const generation = cache.beginFill();
    cache.apply({ entity: 'user', op: 'updated', userId: 'someone-else' });
    cache.apply({ entity: 'key', op: 'issued', keyId: key(2).keyId, userId: 'someone-else' });
    cache.fill(h('h'), key(1), generation);
    expect(cache.get(h('h')).kind).toBe('fresh');
    // Past the change log's bound the cache cannot tell whose change it was, and refuses.
    const old = cache.beginFill();
    for (let i = 0; i < 10_001; i++) cache.apply({ entity: 'user', op: 'updated', userId: `u${i}` });
    cache.fill(h('h2'), key(3), old);
    expect(cache.get(h('h2')).kind).toBe('miss');
    cache.fill(h('h3'), key(4), cache.beginFill());
    expect(cache.get(h('h3')).kind).toBe('fresh');
  });

  it('trusts nothing while the listener is away, and nothing from before it came back', () => {
    const { cache } = setup();
    cache.fill(h('h'), key(1), cache.beginFill());
    cache.listenerDetached();
    expect(cache.get(h('h'))).toMatchObject({ kind: 'stale', usableOnError: true });
    // Filled while detached: still not trusted once the listener is back (a change may have been missed).
    cache.fill(h('d'), key(2), cache.beginFill());
    expect(cache.get(h('d')).kind).toBe('stale');
    expect(cache.get(h('d'))).toMatchObject({ kind: 'stale', usableOnError: true });
    cache.listenerAttached();
    expect(cache.get(h('h')).kind).toBe('stale');
    expect(cache.get(h('d')).kind).toBe('stale');
    cache.fill(h('h'), key(1), cache.beginFill());
    expect(cache.get(h('h')).kind).toBe('fresh');
  });

  it('never offers an entry confirmed before a listener gap for stale-if-error once the gap is over', () => {
    const { cache, clock } = setup();
    cache.fill(h('before'), key(1), cache.beginFill());
    cache.listenerDetached();
    cache.fill(h('during'), key(2), cache.beginFill());
    clock.now += 1000;
    cache.listenerAttached();
    // Well within the stale-if-error window, yet a revoke during the gap may never have been announced.
    expect(cache.get(h('before'))).toMatchObject({ kind: 'stale', usableOnError: false });
    expect(cache.get(h('during'))).toMatchObject({ kind: 'stale', usableOnError: false });
    // Re-confirmed after the gap: usable again, and served on error once the listener drops again.
    cache.fill(h('before'), key(1), cache.beginFill());
    cache.listenerDetached();
    expect(cache.get(h('before'))).toMatchObject({ kind: 'stale', usableOnError: true });
  });

  it('trusts its entries again after a gap the change log bridged, minus what the log named', () => {
    const { cache } = setup();
    cache.fill(h('kept'), key(1), cache.beginFill());
    cache.fill(h('revoked'), key(2), cache.beginFill());
    cache.listenerDetached();
    cache.fill(h('during'), key(3), cache.beginFill());
    // A lookup that began during the gap, before the revoke the catch-up then applies.
    const racing = cache.beginFill();
    cache.apply({ entity: 'key', op: 'revoked', keyId: key(2).keyId, userId: key(2).userId });
    cache.listenerResumed();
    expect(cache.get(h('kept')).kind).toBe('fresh');
    expect(cache.get(h('during')).kind).toBe('fresh');
    expect(revokedFresh(cache.get(h('revoked')))).toBe(true);
    // The racing lookup read the key before its revocation: it must not bring it back.
    cache.fill(h('revoked'), key(2), racing);
    expect(revokedFresh(cache.get(h('revoked')))).toBe(true);
  });

  it('keeps stale rows out of use on error when staleIfError is 0', () => {
    const { cache } = setup({ staleIfErrorMs: 0 });
    cache.fill(h('h'), key(1), cache.beginFill());
    cache.listenerDetached();
    expect(cache.get(h('h'))).toMatchObject({ kind: 'stale', usableOnError: false });
  });

  it('remembers unknown hashes briefly and forgets them when a key is issued or rotated', () => {
    const { cache, clock } = setup();
    cache.fill(h('n'), null, cache.beginFill());
    expect(cache.get(h('n')).kind).toBe('negative');
    clock.now += 5_000;
    expect(cache.get(h('n')).kind).toBe('miss');
    cache.fill(h('n'), null, cache.beginFill());
    cache.apply({ entity: 'user', op: 'updated', userId: 'u' });
    expect(cache.get(h('n')).kind).toBe('negative');
    cache.apply({ entity: 'key', op: 'rotated', keyId: 'key_x', userId: 'u' });
    expect(cache.get(h('n')).kind).toBe('miss');
  });

  it('bounds both caches and keeps the invalidation index in step with evictions', () => {
    const { cache, evictions } = setup({ maxEntries: 3, negativeMaxEntries: 2 });
    for (let i = 0; i < 5; i++) cache.fill(h(`h${i}`), key(i, 'shared'), cache.beginFill());
    expect(cache.size).toBe(3);
    expect(evictions()).toBe(2);
    for (let i = 0; i < 5; i++) cache.fill(h(`n${i}`), null, cache.beginFill());
    expect(cache.negativeSize).toBe(2);
    cache.apply({ entity: 'user', op: 'updated', userId: 'shared' });
    expect(cache.size).toBe(0);
  });

  it('re-indexes an entry whose key moved to another user', () => {
    const { cache } = setup();
    cache.fill(h('h'), key(1, 'alice'), cache.beginFill());
    cache.fill(h('h'), key(1, 'bob'), cache.beginFill());
    cache.apply({ entity: 'user', op: 'updated', userId: 'alice' });
    expect(cache.get(h('h')).kind).toBe('fresh');
    cache.apply({ entity: 'user', op: 'updated', userId: 'bob' });
    expect(cache.get(h('h')).kind).toBe('miss');
  });

  it("answers each key with its own row's user fields, even when the user changed between two keys' reads", () => {
    const { cache } = setup();
    cache.fill(h('a1'), { ...key(1, 'alice'), groups: ['old'], username: 'alice' }, cache.beginFill());
    // Read after a change whose notification has not arrived yet.
    cache.fill(h('a2'), { ...key(2, 'alice'), groups: ['new'], username: 'alice' }, cache.beginFill());
    cache.fill(h('a3'), { ...key(3, 'alice'), groups: ['new'], username: 'alice' }, cache.beginFill());
    const groupsOf = (hash: string): unknown => {
      const found = cache.get(h(hash));
      return found.kind === 'fresh' ? [found.entry.key.groups, found.entry.groupsHeader] : found.kind;
    };
    expect(groupsOf('a1')).toEqual([['old'], 'old']);
    expect(groupsOf('a2')).toEqual([['new'], 'new']);
    expect(groupsOf('a3')).toEqual([['new'], 'new']);
    cache.apply({ entity: 'user', op: 'updated', userId: 'alice' });
    expect([groupsOf('a1'), groupsOf('a2'), groupsOf('a3')]).toEqual(['miss', 'miss', 'miss']);
    // Nothing of the dropped rows is shared with a key read after the change.
    cache.fill(h('a4'), { ...key(4, 'alice'), groups: ['newer'], suspended: true }, cache.beginFill());
    const a4 = cache.get(h('a4'));
    expect(a4.kind === 'fresh' && [a4.entry.key.groups, a4.entry.key.suspended]).toEqual([['newer'], true]);
  });

  it('narrows scopes per key although the keys of one user share its record', () => {
    const { cache } = setup();
    const user = { userScopes: ['projects:*', 'reports:read'] };
    cache.fill(h('all'), { ...key(1, 'alice'), ...user }, cache.beginFill());
    cache.fill(h('one'), { ...key(2, 'alice'), ...user, keyScopes: ['projects:x'] }, cache.beginFill());
    cache.fill(
      h('wider'),
      { ...key(3, 'alice'), ...user, keyScopes: ['admin:*', 'reports:read'] },
      cache.beginFill(),
    );
    const scopesOf = (hash: string): unknown => {
      const found = cache.get(h(hash));
      return found.kind === 'fresh' && found.entry.scopesHeader;
    };
    expect(scopesOf('all')).toBe('projects:*,reports:read');
    expect(scopesOf('one')).toBe('projects:x');
    expect(scopesOf('wider')).toBe('reports:read');
  });

  it('drops both secrets of a key in its rotation grace, and the one left after the other was evicted', () => {
    const { cache } = setup({ maxEntries: 3 });
    const previous = { ...key(1), secret: { current: false as const, notAfter: new Date(2_000_000) } };
    cache.fill(h('new'), key(1), cache.beginFill());
    cache.fill(h('old'), previous, cache.beginFill());
    cache.apply({ entity: 'key', op: 'revoked', keyId: key(1).keyId, userId: key(1).userId });
    expect([revokedFresh(cache.get(h('new'))), revokedFresh(cache.get(h('old')))]).toEqual([true, true]);
    cache.apply({ entity: 'key', op: 'updated', keyId: key(1).keyId, userId: key(1).userId });
    expect([cache.get(h('new')).kind, cache.get(h('old')).kind]).toEqual(['miss', 'miss']);
    cache.fill(h('new'), key(1), cache.beginFill());
    cache.fill(h('old'), previous, cache.beginFill());
    for (let i = 2; i < 4; i++) cache.fill(h(`h${i}`), key(i), cache.beginFill());
    // 'new' was the least recently used: evicted; 'old' stays, indexed alone.
    expect([cache.get(h('new')).kind, cache.get(h('old')).kind]).toEqual(['miss', 'fresh']);
    cache.apply({ entity: 'key', op: 'revoked', keyId: key(1).keyId, userId: key(1).userId });
    expect(revokedFresh(cache.get(h('old')))).toBe(true);
    expect(cache.get(h('new')).kind).toBe('miss');
    cache.apply({ entity: 'key', op: 'rotated', keyId: key(1).keyId, userId: key(1).userId });
    expect(cache.get(h('old')).kind).toBe('miss');
    expect(cache.size).toBe(2);
  });
});
