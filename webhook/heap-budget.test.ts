import { describe, expect, it } from 'vitest';
import { CACHED_KEY_BYTES, cacheHeapWarning } from './heap-budget.js';

const MIB = 2 ** 20;

describe('cacheHeapWarning', () => {
  it("stays quiet for a cache of 1,000,000 keys under the chart's heap limit", () => {
    // The chart's --max-semi-space-size=2 --max-old-space-size=256 give a heap limit of 262 MiB.
    expect(cacheHeapWarning(1_000_000, 262 * MIB)).toBeUndefined();
  });

  it('names the variable, the heap a full cache needs and the flag to raise when it does not fit', () => {
    const warning = cacheHeapWarning(3_000_000, 262 * MIB);
    expect(warning).toContain('KEYWARD_CACHE_MAX_ENTRIES=3000000');
    expect(warning).toContain(`${Math.ceil((3_000_000 * CACHED_KEY_BYTES) / MIB)} MiB`);
    expect(warning).toContain('262 MiB');
    expect(warning).toContain('--max-old-space-size');
  });
});
