/**
 * An open-addressing index from a 32-bit hash to slot numbers, in one Int32Array outside V8's heap:
 * 8 bytes a slot at half load, where a Map entry keyed by a string costs the string and ~30 bytes
 * of table on the heap. Linear probing; a removal shifts the following entries back instead of
 * leaving a tombstone, so lookups never slow down as entries come and go.
 *
 * The index keeps no keys: the caller walks the probe sequence (`start`, `next`, `at`) and compares
 * its own key at each slot, and tells it each slot's hash for the shifts (`hashOf`).
 */
export class SlotIndex {
  /** slot + 1; 0 is empty. */
  readonly #table: Int32Array;
  readonly #mask: number;
  readonly #hashOf: (slot: number) => number;

  constructor(capacity: number, hashOf: (slot: number) => number) {
    let size = 8;
    while (size < capacity * 2) size *= 2;
    this.#table = new Int32Array(size);
    this.#mask = size - 1;
    this.#hashOf = hashOf;
  }

  /** The first position to look at for `hash`. */
  start(hash: number): number {
    return hash & this.#mask;
  }

  next(position: number): number {
    return (position + 1) & this.#mask;
  }

  /** The slot at `position`, or -1: the probe sequence ends there. */
  at(position: number): number {
    return this.#table[position]! - 1;
  }

  /** `slot` must not be in the index yet. */
  insert(hash: number, slot: number): void {
    let position = hash & this.#mask;
    while (this.#table[position] !== 0) position = (position + 1) & this.#mask;
    this.#table[position] = slot + 1;
  }

  clear(): void {
    this.#table.fill(0);
  }

  remove(slot: number): void {
    const table = this.#table;
    const mask = this.#mask;
    let hole = this.#hashOf(slot) & mask;
    while (table[hole] !== slot + 1) {
      if (table[hole] === 0) return;
      hole = (hole + 1) & mask;
    }
    table[hole] = 0;
    // Every entry after the hole up to the next empty position stays reachable from its home.
    for (let position = (hole + 1) & mask; table[position] !== 0; position = (position + 1) & mask) {
      const home = this.#hashOf(table[position]! - 1) & mask;
      const stays = hole <= position ? hole < home && home <= position : hole < home || home <= position;
      if (stays) continue;
      table[hole] = table[position]!;
      table[position] = 0;
      hole = position;
    }
  }
}
