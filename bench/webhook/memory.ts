// Webhook RSS against the number of cached entries: a fresh webhook verifies distinct keys one
// batch at a time, and RSS is read after each step (0, ¼, ½ and all of the entries).
import { rssMiB } from '../lib/processes.js';
import type { Harness } from './harness.js';

const RSS_TARGET_MIB = 128;
/** The entry count the target is stated for. */
const TARGET_ENTRIES = 100_000;
const STEPS = [0, 0.25, 0.5, 1];
/** Concurrent verifying clients: enough to keep the store busy, few enough not to queue. */
const CLIENTS = 32;
/**
 * The webhook's default KEYWARD_CACHE_MAX_ENTRIES (docs/configuration.md): the cache is sized as
 * deployed, since it reserves its columns for the maximum up front (about 140 bytes a slot,
 * resident once a slot is first used).
 */
const DEFAULT_CACHE_MAX_ENTRIES = 100_000;
/** Lets the allocator and the collector settle after a burst before RSS is read. */
const SETTLE_MS = 2_000;

export async function memory(h: Harness): Promise<void> {
  const entries = h.sizes.entries;
  if (h.loaded.length < entries) await h.bulkKeys(entries - h.loaded.length);
  const tokens = h.loaded.slice(0, entries);
  const maxEntries = Math.max(entries, DEFAULT_CACHE_MAX_ENTRIES);
  const webhook = await h.startWebhook('webhook-memory', { KEYWARD_CACHE_MAX_ENTRIES: String(maxEntries) });
  const pid = webhook.proc.child.pid!;
  const points: { x: number; y: number }[] = [];
  const heap: { x: number; y: number }[] = [];
  let verified = 0;
  for (const step of STEPS) {
    const until = Math.round(entries * step);
    const verify = async (): Promise<void> => {
      while (verified < until) {
        const token = tokens[verified++]!;
        const res = await fetch(`${webhook.url}/verify`, { headers: { authorization: `Bearer ${token}` } });
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`verify of a loaded key answered ${res.status}`);
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, verify));
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const metrics = await h.metrics(webhook);
    const cached = Number(
      /keyward_webhook_cache_entries\{cache="positive"\} (\d+)/.exec(metrics)?.[1] ?? until,
    );
    const heapMiB = Number(/keyward_webhook_nodejs_heap_size_used_bytes (\d+)/.exec(metrics)?.[1]) / 2 ** 20;
    const rss = await rssMiB(pid);
    points.push({ x: cached, y: Math.round(rss) });
    heap.push({ x: cached, y: Math.round(heapMiB) });
    h.print(
      `memory: ${cached} cached entries, RSS ${rss.toFixed(0)} MiB, V8 heap used ${heapMiB.toFixed(0)} MiB`,
    );
  }
  const last = points.at(-1)!;
  h.writer.row({
    id: 'webhook-rss',
    measure: `webhook RSS with ${last.x.toLocaleString('en')} cached entries`,
    target: `≤ ${RSS_TARGET_MIB} MiB at ${TARGET_ENTRIES.toLocaleString('en')}`,
    value: last.y,
    unit: 'MiB',
    met: entries >= TARGET_ENTRIES ? last.y <= RSS_TARGET_MIB : null,
    note: `one fresh webhook (KEYWARD_CACHE_MAX_ENTRIES ${maxEntries.toLocaleString('en')}), ${entries.toLocaleString('en')} distinct keys verified by ${CLIENTS} clients, RSS read ${SETTLE_MS / 1000} s after the last; V8 heap used ${heap.at(-1)!.y} MiB; ${points[0]!.y} MiB with an empty cache.`,
  });
  h.writer.series('rss-vs-entries', {
    kind: 'xy',
    title: 'Webhook memory against cached entries',
    xUnit: 'cached entries',
    yUnit: 'MiB',
    lines: [
      { label: 'RSS', points },
      { label: 'V8 heap used', points: heap },
    ],
  });
}
