import { getHeapStatistics } from 'node:v8';

/**
 * Heap per cached key: ~390 bytes in a heap snapshot at 100,000 entries with room for 200,000
 * (bench/webhook.ts `--only memory`): the key's object (96), its issue time (16), its hash and id
 * strings (144), the LRU's slots (~65) and the two indexes' (~63). Rounded up for keys with their
 * own scope lists, limits or rare instants (revoked, rotated).
 */
export const CACHED_KEY_BYTES = 600;

/** Share of the heap limit the positive cache may fill: the rest is the process and the garbage between collections. */
const CACHE_HEAP_SHARE = 0.5;

const MIB = 2 ** 20;

/**
 * A warning when a full cache would take more than its share of the V8 heap limit, which the
 * chart caps (webhook.nodeOptions, --max-old-space-size) to keep RSS near the live heap: raising
 * KEYWARD_CACHE_MAX_ENTRIES alone would let the cache run the process out of heap under load.
 */
export function cacheHeapWarning(
  maxEntries: number,
  heapLimitBytes = getHeapStatistics().heap_size_limit,
): string | undefined {
  const needed = maxEntries * CACHED_KEY_BYTES;
  if (needed <= heapLimitBytes * CACHE_HEAP_SHARE) return undefined;
  return (
    `a full cache (KEYWARD_CACHE_MAX_ENTRIES=${maxEntries}) needs about ${Math.ceil(needed / MIB)} MiB ` +
    `of heap, more than half the limit of ${Math.floor(heapLimitBytes / MIB)} MiB: raise ` +
    '--max-old-space-size in NODE_OPTIONS (chart value webhook.nodeOptions) and the memory limit with it'
  );
}
