import { SlotIndex } from './slot-index.js';

/** Where each id's chain starts: the one part of a chain that is looked up by the id. */
export interface ChainHeads {
  /** The first slot of `id`'s chain, or -1. */
  get(id: string): number;
  /** `slot` now starts `id`'s chain, which `previous` started (-1: none). */
  set(id: string, slot: number, previous: number): void;
  /** `id`'s chain, which `head` started, is empty. */
  delete(id: string, head: number): void;
  clear(): void;
}

/** Heads in a Map by id: for ids shared by many slots (users), so few entries. */
export class MapHeads implements ChainHeads {
  readonly #heads = new Map<string, number>();

  get(id: string): number {
    return this.#heads.get(id) ?? -1;
  }

  set(id: string, slot: number): void {
    this.#heads.set(id, slot);
  }

  delete(id: string): void {
    this.#heads.delete(id);
  }

  clear(): void {
    this.#heads.clear();
  }
}

/**
 * Heads in a SlotIndex, for ids nearly every slot has one of its own (keys): no string and no Map
 * entry per id on the heap. The caller keeps each slot's id (`idOf`, `idIs`).
 */
export class IndexedHeads implements ChainHeads {
  readonly #index: SlotIndex;
  readonly #idIs: (slot: number, id: string) => boolean;

  constructor(capacity: number, idOf: (slot: number) => string, idIs: (slot: number, id: string) => boolean) {
    this.#index = new SlotIndex(capacity, (slot) => hashId(idOf(slot)));
    this.#idIs = idIs;
  }

  get(id: string): number {
    const index = this.#index;
    for (let position = index.start(hashId(id)); ; position = index.next(position)) {
      const slot = index.at(position);
      if (slot < 0 || this.#idIs(slot, id)) return slot;
    }
  }

  set(id: string, slot: number, previous: number): void {
    if (previous >= 0) this.#index.remove(previous);
    this.#index.insert(hashId(id), slot);
  }

  delete(_id: string, head: number): void {
    this.#index.remove(head);
  }

  clear(): void {
    this.#index.clear();
  }
}

/**
 * The slots that belong to one id (a user's cached keys, a key's cached secrets), as doubly linked
 * chains through two Int32Arrays: 8 bytes a slot outside V8's heap, where a Set per id would cost
 * far more (nearly every key has one secret, and most users many keys).
 */
export class SlotChains {
  readonly #heads: ChainHeads;
  readonly #next: Int32Array;
  readonly #previous: Int32Array;

  constructor(capacity: number, heads: ChainHeads) {
    this.#heads = heads;
    this.#next = new Int32Array(Math.max(1, capacity));
    this.#previous = new Int32Array(Math.max(1, capacity));
  }

  /** `slot` must be in no chain, and the caller must already answer its id (IndexedHeads). */
  add(id: string, slot: number): void {
    const head = this.#heads.get(id);
    this.#next[slot] = head;
    this.#previous[slot] = -1;
    if (head >= 0) this.#previous[head] = slot;
    this.#heads.set(id, slot, head);
  }

  /** Takes `slot` out of `id`'s chain; returns whether the chain is now empty. */
  remove(id: string, slot: number): boolean {
    const next = this.#next[slot]!;
    const previous = this.#previous[slot]!;
    if (next >= 0) this.#previous[next] = previous;
    if (previous >= 0) {
      this.#next[previous] = next;
      return false;
    }
    if (next >= 0) {
      this.#heads.set(id, next, slot);
      return false;
    }
    this.#heads.delete(id, slot);
    return true;
  }

  /** A copy: the caller may change the chain while it walks the list. */
  slotsOf(id: string): number[] {
    const slots: number[] = [];
    for (let slot = this.#heads.get(id); slot >= 0; slot = this.#next[slot]!) slots.push(slot);
    return slots;
  }

  clear(): void {
    this.#heads.clear();
  }
}

/** FNV-1a over the id's characters. */
function hashId(id: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) hash = Math.imul(hash ^ id.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}
