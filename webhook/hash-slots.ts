import { SlotIndex } from './slot-index.js';

/** A token's SHA-256 as the resolver holds it: 32 latin1 characters, one per byte. */
export const HASH_LENGTH = 32;

/**
 * Which slot holds which token hash, in least-recently-used order, for a fixed number of slots.
 * Everything is in typed arrays outside V8's heap, so 100,000 cached keys cost the collector
 * nothing and take 48 bytes each here: the hash's bytes (32), the index (8) and the LRU links (8),
 * on pages the kernel provides only once a slot is first used.
 * A slot number is what the cache keeps each key's other columns under (webhook/cache.ts).
 */
export class HashSlots {
  readonly capacity: number;
  readonly #bytes: Uint8Array;
  readonly #index: SlotIndex;
  /** Towards the most and the least recently used; -1 at either end. */
  readonly #newer: Int32Array;
  readonly #older: Int32Array;
  #newest = -1;
  #oldest = -1;
  #size = 0;
  /** Slots from here on were never handed out. */
  #unused = 0;
  /** Slots given back, linked through #older. */
  #freed = -1;

  constructor(capacity: number) {
    this.capacity = Math.max(1, capacity);
    this.#bytes = new Uint8Array(this.capacity * HASH_LENGTH);
    // The hash is a SHA-256: its first four bytes are as good an index hash as any.
    this.#index = new SlotIndex(this.capacity, (slot) => readUint32(this.#bytes, slot * HASH_LENGTH));
    this.#newer = new Int32Array(this.capacity);
    this.#older = new Int32Array(this.capacity);
  }

  get size(): number {
    return this.#size;
  }

  /** The slot holding `hash`, or -1. Does not count as a use (see touch). */
  find(hash: string): number {
    checkLength(hash);
    const index = this.#index;
    const bytes = this.#bytes;
    for (let position = index.start(firstUint32(hash)); ; position = index.next(position)) {
      const slot = index.at(position);
      if (slot < 0) return -1;
      if (sameHash(bytes, slot * HASH_LENGTH, hash)) return slot;
    }
  }

  /** Marks `slot` the most recently used. */
  touch(slot: number): void {
    if (slot === this.#newest) return;
    this.#unlink(slot);
    this.#pushNewest(slot);
  }

  /**
   * Takes a slot for `hash`, which must not be held yet. When every slot is taken, the least
   * recently used is given to `evict` first (the caller drops what it keeps under it), then reused.
   */
  add(hash: string, evict: (slot: number) => void): number {
    checkLength(hash);
    if (this.#freed < 0 && this.#unused === this.capacity) {
      const oldest = this.#oldest;
      evict(oldest);
      this.remove(oldest);
    }
    let slot = this.#freed;
    if (slot >= 0) this.#freed = this.#older[slot]!;
    else slot = this.#unused++;
    this.#size++;
    const offset = slot * HASH_LENGTH;
    for (let i = 0; i < HASH_LENGTH; i++) this.#bytes[offset + i] = hash.charCodeAt(i);
    this.#index.insert(firstUint32(hash), slot);
    this.#pushNewest(slot);
    return slot;
  }

  remove(slot: number): void {
    this.#index.remove(slot);
    this.#unlink(slot);
    this.#older[slot] = this.#freed;
    this.#freed = slot;
    this.#size--;
  }

  clear(): void {
    this.#index.clear();
    this.#newest = -1;
    this.#oldest = -1;
    this.#size = 0;
    this.#unused = 0;
    this.#freed = -1;
  }

  #pushNewest(slot: number): void {
    this.#older[slot] = this.#newest;
    this.#newer[slot] = -1;
    if (this.#newest >= 0) this.#newer[this.#newest] = slot;
    this.#newest = slot;
    if (this.#oldest < 0) this.#oldest = slot;
  }

  #unlink(slot: number): void {
    const newer = this.#newer[slot]!;
    const older = this.#older[slot]!;
    if (newer >= 0) this.#older[newer] = older;
    else this.#newest = older;
    if (older >= 0) this.#newer[older] = newer;
    else this.#oldest = newer;
  }
}

function checkLength(hash: string): void {
  if (hash.length !== HASH_LENGTH) throw new TypeError(`a token hash has ${HASH_LENGTH} characters`);
}

function firstUint32(hash: string): number {
  return (
    (hash.charCodeAt(0) |
      (hash.charCodeAt(1) << 8) |
      (hash.charCodeAt(2) << 16) |
      (hash.charCodeAt(3) << 24)) >>>
    0
  );
}

function readUint32(bytes: Uint8Array, offset: number): number {
  return (
    (bytes[offset]! | (bytes[offset + 1]! << 8) | (bytes[offset + 2]! << 16) | (bytes[offset + 3]! << 24)) >>>
    0
  );
}

function sameHash(bytes: Uint8Array, offset: number, hash: string): boolean {
  for (let i = 0; i < HASH_LENGTH; i++) if (bytes[offset + i] !== hash.charCodeAt(i)) return false;
  return true;
}
