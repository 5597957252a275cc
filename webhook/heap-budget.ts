import { getHeapStatistics } from 'node:v8';

/**
 * Heap per cached key. The cache keeps its keys in columns outside V8's heap (webhook/cache-columns.ts,
 * ~140 bytes a key, not counted against the heap limit); on the heap each key has only a reference
 * to its shared profile (8 bytes). Rounded up for keys with their own scope lists, limits or rare
 * instants (revoked, rotated), which hold an object of their own: 100,000 entries added 6–9 MiB
 * of heap in `bench/webhook.ts --only memory`, garbage between collections included.
 */
export const CACHED_KEY_BYTES = 100;

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
