import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ChainHeads, IndexedHeads, MapHeads, SlotChains } from './slot-chains.js';

const CAPACITY = 16;
/** Chosen so that their index positions collide in pairs (key_a and k2 at 0, key_b and k1 at 1, key_e and user-1 at 4) and wrap (key_d at 7). */
const IDS = ['key_a', 'k2', 'key_b', 'k1', 'key_d', 'key_e', 'user-1'];
/** The heads' index is sized for this many ids (8 positions), not for every slot: room for IDS, no more. */
const INDEXED_IDS = 4;

/** Each slot's id as the cache's columns would answer it. */
function chains(kind: 'map' | 'indexed', ids: (string | undefined)[]): SlotChains {
  const heads: ChainHeads =
    kind === 'map'
      ? new MapHeads()
      : new IndexedHeads(
          INDEXED_IDS,
          (slot) => ids[slot] as string,
          (slot, id) => ids[slot] === id,
        );
  return new SlotChains(CAPACITY, heads);
}

const opArb = fc.record({
  add: fc.boolean(),
  slot: fc.integer({ min: 0, max: CAPACITY - 1 }),
  // Few ids, so chains grow long and heads change hands.
  id: fc.constantFrom(...IDS),
});

describe.each(['map', 'indexed'] as const)('SlotChains with %s heads', (kind) => {
  it('lists exactly the slots added under an id and not removed since', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 200 }), (ops) => {
        const ids: (string | undefined)[] = [];
        const list = chains(kind, ids);
        const model = new Map<string, Set<number>>();
        for (const { add, slot, id } of ops) {
          const held = ids[slot];
          if (add && held === undefined) {
            ids[slot] = id;
            list.add(id, slot);
            model.set(id, (model.get(id) ?? new Set()).add(slot));
          } else if (!add && held !== undefined) {
            const set = model.get(held) as Set<number>;
            set.delete(slot);
            if (set.size === 0) model.delete(held);
            expect(list.remove(held, slot)).toBe(!model.has(held));
            ids[slot] = undefined;
          }
          for (const name of IDS) {
            expect(new Set(list.slotsOf(name))).toEqual(model.get(name) ?? new Set());
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
