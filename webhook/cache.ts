import { LRUCache } from 'lru-cache';
import type { StoreChange } from '../store/changes.js';
import type { KeyLookup } from '../store/lookup.js';
import { SlotColumns } from './cache-columns.js';
import type { KeyState } from './decision.js';
import { HashSlots } from './hash-slots.js';
import { keyColumns, keyState, UserRecord } from './key-state.js';
import { IndexedHeads, MapHeads, SlotChains } from './slot-chains.js';

export interface CacheOptions {
  /** Positive entries (LRU beyond this). */
  readonly maxEntries: number;
  /** A positive entry older than this is re-read from the store before use (backstop for a lost NOTIFY). */
  readonly ttlMs: number;
  /** While the store cannot answer, an entry verified within this window may still be served. */
  readonly staleIfErrorMs: number;
  readonly negativeMaxEntries: number;
  readonly negativeTtlMs: number;
  /** Epoch ms; injected so tests control time. */
  readonly now: () => number;
  readonly onEvict?: () => void;
}

export interface CacheEntry extends KeyState {
  /** When the store last confirmed this row, in epoch ms on the cache's clock (CacheOptions.now). */
  readonly verifiedAt: number;
  /** The listener epoch in which it was confirmed (see VerifyCache.epoch). */
  readonly epoch: number;
}

export type CacheLookup =
  /** Confirmed since the listener last attached, within the TTL: use without a store round trip. */
  | { readonly kind: 'fresh'; readonly entry: CacheEntry }
  /** Must be re-read from the store; may be used only if the store cannot answer. */
  | { readonly kind: 'stale'; readonly entry: CacheEntry; readonly usableOnError: boolean }
  /** Recently looked up and unknown to the store. */
  | { readonly kind: 'negative' }
  | { readonly kind: 'miss' };

const MISS: CacheLookup = { kind: 'miss' };
const NEGATIVE: CacheLookup = { kind: 'negative' };

/**
 * The verification cache, keyed by the token's SHA-256 (a 32-char latin1 string: the token itself
 * is never held). Correctness rests on three rules:
 *
 * 1. Entries are trusted only while the NOTIFY listener is attached, and only if they were
 *    confirmed in the current listener epoch (one epoch per attach). While the listener is away
 *    nothing is fresh: every entry is re-read on its next use, and served from memory only when
 *    the store cannot answer (stale-if-error), which keeps cached keys working through a
 *    Postgres outage. Once the listener is back, a new epoch begins and nothing confirmed before
 *    it is ever served again, not even on error: a change made during the gap was never
 *    announced, so such an entry may be a revoked key. Stale-if-error therefore covers only
 *    the gap itself, and at most staleIfErrorMs after the entry was last confirmed. The one
 *    exception is a gap the change log bridged (listenerResumed): every change made during it
 *    has been applied, so the epoch carries on.
 * 2. A notification deletes the entries of the user or key it names (a revocation, being final,
 *    marks them revoked instead) and records, for that user or key, the generation it arrived
 *    at; a lookup that started before a change to its own key or user cannot write its
 *    (possibly older) answer into the cache afterwards. Changes to other
 *    keys do not hold it back: under a busy operator, a global counter would leave the cache empty.
 *    Whatever cannot be attributed (an unknown notification, a new epoch, a full change log)
 *    holds back every lookup that started before it.
 * 3. Time-based transitions (expiry, end of grace) are evaluated per request against the clock by
 *    decide(), so they need no notification and no expiry of the entry.
 */
const CHANGE_LOG_LIMIT = 10_000;

export class VerifyCache {
  readonly #options: CacheOptions;
  /** Positive entries: hash → slot, in LRU order; each key's fields are in #columns under its slot. */
  readonly #slots: HashSlots;
  readonly #columns: SlotColumns;
  readonly #negative: LRUCache<string, number>;
  readonly #byUser: SlotChains;
  readonly #byKey: SlotChains;
  /** The record the next cached key of a user shares, while any of its keys is cached. */
  readonly #users = new Map<string, UserRecord>();
  #generation = 0;
  /** Fills that began before this generation are refused whatever they found. */
  #refuseBefore = 0;
  /** Generation of the last change per user id and per key id (two maps: no id string built per fill). */
  readonly #userChangedAt = new Map<string, number>();
  readonly #keyChangedAt = new Map<string, number>();
  /** Generation of the last key issue or rotation: what may turn an unknown hash into a known one. */
  #lastIssued = 0;
  #epoch = 0;
  #attached = false;
  readonly #evict = (slot: number): void => {
    this.#unindex(slot);
    this.#options.onEvict?.();
  };

  constructor(options: CacheOptions) {
    this.#options = options;
    this.#slots = new HashSlots(options.maxEntries);
    this.#columns = new SlotColumns(this.#slots.capacity);
    const columns = this.#columns;
    this.#byUser = new SlotChains(this.#slots.capacity, new MapHeads());
    this.#byKey = new SlotChains(
      this.#slots.capacity,
      new IndexedHeads(
        this.#slots.capacity,
        (slot) => columns.keyId(slot),
        (slot, keyId) => columns.keyIdIs(slot, keyId),
      ),
    );
    // lru-cache rejects max 0; a one-slot cache that is never written does the same job.
    this.#negative = new LRUCache<string, number>({ max: Math.max(1, options.negativeMaxEntries) });
  }

  get size(): number {
    return this.#slots.size;
  }

  get negativeSize(): number {
    return this.#negative.size;
  }

  /** Whether the change listener is attached; entries are trusted only then. */
  get attached(): boolean {
    return this.#attached;
  }

  get(hash: string): CacheLookup {
    const slot = this.#slots.find(hash);
    const now = this.#options.now();
    if (slot >= 0) {
      this.#slots.touch(slot);
      const columns = this.#columns;
      const age = now - columns.verifiedAt(slot);
      const current = columns.epoch(slot) === this.#epoch;
      if (this.#attached && current && age < this.#options.ttlMs) {
        return { kind: 'fresh', entry: columns.view(slot) };
      }
      return {
        kind: 'stale',
        entry: columns.view(slot),
        usableOnError: current && age < this.#options.staleIfErrorMs,
      };
    }
    const until = this.#negative.get(hash);
    if (until !== undefined) {
      if (now < until) return NEGATIVE;
      this.#negative.delete(hash);
    }
    return MISS;
  }

  /** Call before a store lookup; pass the result to fill(). */
  beginFill(): number {
    return this.#generation;
  }

  /**
   * Records a store answer. Ignored when a change arrived since `generation` was taken: the
   * answer may predate that change. Returns the entry to use for this request either way.
   */
  fill(hash: string, key: KeyLookup | null, generation: number): CacheEntry | null {
    const now = this.#options.now();
    if (key === null) {
      // Any key issued or rotated since the lookup began could be the one this hash belongs to.
      const current = generation >= this.#refuseBefore && generation >= this.#lastIssued;
      if (current && this.#options.negativeMaxEntries > 0) {
        this.#negative.set(hash, now + this.#options.negativeTtlMs);
      }
      return null;
    }
    const changed = Math.max(
      this.#refuseBefore,
      this.#userChangedAt.get(key.userId) ?? 0,
      this.#keyChangedAt.get(key.keyId) ?? 0,
    );
    // Refused: this request's answer only, sharing nothing with what the cache holds.
    if (generation < changed) return keyState(key, now, this.#epoch);
    // Replacing an entry un-indexes it first, which may retire its user's record.
    const old = this.#slots.find(hash);
    if (old >= 0) this.#remove(old);
    this.#negative.delete(hash);
    const slot = this.#slots.add(hash, this.#evict);
    const entry = this.#columns.write(
      slot,
      key.apiKeyId,
      key.keyId,
      keyColumns(this.#userRecord(key), key),
      now,
      this.#epoch,
    );
    this.#byUser.add(key.userId, slot);
    this.#byKey.add(key.keyId, slot);
    return entry;
  }

  /**
   * The record this user's cached keys share, if it says what `key` says; otherwise a new one,
   * which later keys share. Keys still holding the old record keep it: they were read before the
   * change and the change's notification drops them.
   */
  #userRecord(key: KeyLookup): UserRecord {
    const known = this.#users.get(key.userId);
    if (known?.matches(key)) return known;
    const record = new UserRecord(key);
    this.#users.set(key.userId, record);
    return record;
  }

  /** Applies one NOTIFY: drops only what it names. */
  apply(change: StoreChange): void {
    const generation = ++this.#generation;
    switch (change.entity) {
      case 'user':
        // A deleted user's keys are revoked with it: final, like a key's own revocation.
        if (change.op === 'deleted') this.#revokeAll(this.#byUser.slotsOf(change.userId));
        else this.#removeAll(this.#byUser.slotsOf(change.userId));
        this.#recordChange(this.#userChangedAt, change.userId, generation);
        return;
      case 'key':
        if (change.op === 'revoked') this.#revokeAll(this.#byKey.slotsOf(change.keyId));
        else this.#removeAll(this.#byKey.slotsOf(change.keyId));
        this.#recordChange(this.#keyChangedAt, change.keyId, generation);
        // A new secret may have a hash that was looked up (and found unknown) moments ago.
        if (change.op === 'issued' || change.op === 'rotated') {
          this.#negative.clear();
          this.#lastIssued = generation;
        }
        return;
      default:
        this.#refuseBefore = generation;
        this.#clear();
        this.#negative.clear();
    }
  }

  /**
   * The listener is attached again (LISTEN confirmed): start trusting entries confirmed from now
   * on, and retire everything from before, including for stale-if-error.
   */
  listenerAttached(): void {
    this.#refuseOlderFills();
    this.#epoch++;
    this.#attached = true;
  }

  /**
   * The listener is attached again and every change it missed was applied from the change log:
   * trust the entries again, in the same epoch (nothing is dropped but what those changes named).
   */
  listenerResumed(): void {
    this.#attached = true;
  }

  /**
   * The listener is gone: nothing cached is fresh until it is back. The epoch stays, so entries
   * confirmed up to now can still bridge a store outage during the gap.
   */
  listenerDetached(): void {
    this.#refuseOlderFills();
    this.#attached = false;
  }

  #recordChange(log: Map<string, number>, id: string, generation: number): void {
    // Bounded: past the limit, forget the per-identity log and refuse every older fill instead.
    if (this.#userChangedAt.size + this.#keyChangedAt.size >= CHANGE_LOG_LIMIT) {
      this.#userChangedAt.clear();
      this.#keyChangedAt.clear();
      this.#refuseBefore = generation;
    }
    log.set(id, generation);
  }

  #refuseOlderFills(): void {
    this.#refuseBefore = ++this.#generation;
    this.#userChangedAt.clear();
    this.#keyChangedAt.clear();
    this.#negative.clear();
  }

  #remove(slot: number): void {
    this.#unindex(slot);
    this.#slots.remove(slot);
  }

  #removeAll(slots: readonly number[]): void {
    for (const slot of slots) this.#remove(slot);
  }

  /** Un-indexes the key in `slot` and lets go of its columns; the slot itself is the caller's. */
  #unindex(slot: number): void {
    const columns = this.#columns;
    const userId = columns.userId(slot);
    if (this.#byUser.remove(userId, slot)) this.#users.delete(userId);
    this.#byKey.remove(columns.keyId(slot), slot);
    columns.clear(slot);
  }

  #clear(): void {
    this.#columns.clearAll();
    this.#slots.clear();
    this.#byUser.clear();
    this.#byKey.clear();
    this.#users.clear();
  }

  /**
   * Revocations are final (only a later change naming the key, which drops the entry, brings a key
   * back), so the NOTIFY that announces one says all a re-read would: the entries named answer
   * "revoked" from now on instead of being dropped, and the first request after it needs no store
   * round trip.
   */
  #revokeAll(slots: readonly number[]): void {
    const now = this.#options.now();
    for (const slot of slots) this.#columns.revoke(slot, now, now, this.#epoch);
  }
}
