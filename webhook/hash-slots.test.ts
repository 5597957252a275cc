import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HASH_LENGTH, HashSlots } from './hash-slots.js';

/**
 * Hashes that share their first four bytes (the index's hash) often, so probe sequences collide
 * and removals shift entries back: what a real SHA-256 does rarely, and a bug would do silently.
 */
const hashArb = fc
  .tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 7 }))
  .map(([head, tail]) => `${String(head).repeat(4)}${String(tail).padStart(HASH_LENGTH - 4, '.')}`);

type Op = { kind: 'add' | 'remove' | 'touch'; hash: string };
const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom<Op['kind']>('add', 'add', 'remove', 'touch', 'touch'),
  hash: hashArb,
});

describe('HashSlots', () => {
  it('finds what it holds, and evicts the least recently used first, like a Map kept in use order', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(opArb, { maxLength: 300 }), (capacity, ops) => {
        const slots = new HashSlots(capacity);
        // The model: hash → slot, in use order (a Map iterates in insertion order).
        const model = new Map<string, number>();
        for (const { kind, hash } of ops) {
          const slot = slots.find(hash);
          expect(slot).toBe(model.get(hash) ?? -1);
          if (kind === 'add' && slot < 0) {
            let evicted = -1;
            const added = slots.add(hash, (s) => {
              evicted = s;
            });
            if (model.size === capacity) {
              const [oldest, oldestSlot] = model.entries().next().value as [string, number];
              expect(evicted).toBe(oldestSlot);
              model.delete(oldest);
            } else expect(evicted).toBe(-1);
            expect([...model.values()]).not.toContain(added);
            model.set(hash, added);
          } else if (kind === 'remove' && slot >= 0) {
            slots.remove(slot);
            model.delete(hash);
          } else if (kind === 'touch' && slot >= 0) {
            slots.touch(slot);
            model.delete(hash);
            model.set(hash, slot);
          }
          expect(slots.size).toBe(model.size);
        }
        for (const [hash, slot] of model) expect(slots.find(hash)).toBe(slot);
      }),
      { numRuns: 500 },
    );
  });

  it('forgets everything on clear and hands its slots out again', () => {
    const slots = new HashSlots(2);
    const a = 'a'.repeat(HASH_LENGTH);
    const b = 'b'.repeat(HASH_LENGTH);
    slots.add(a, () => {});
    slots.add(b, () => {});
    slots.clear();
    expect([slots.size, slots.find(a), slots.find(b)]).toEqual([0, -1, -1]);
    expect(slots.add(b, () => expect.unreachable())).toBeGreaterThanOrEqual(0);
  });

  it('refuses a hash that is not a SHA-256 in latin1', () => {
    const slots = new HashSlots(1);
    expect(() => slots.find('short')).toThrow(TypeError);
    expect(() => slots.add('x'.repeat(HASH_LENGTH + 1), () => {})).toThrow(TypeError);
  });
});
