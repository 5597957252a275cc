import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export type Route = 'verify' | 'tokenreview' | 'introspect';

/**
 * The webhook's metrics, on a registry the app owns: two apps in one process (tests, two
 * replicas in a benchmark) must not share or clash over prom-client's global registry.
 * Label values are fixed enumerations; key ids, usernames and client addresses would make
 * cardinality unbounded and are left to logs.
 */
export class WebhookMetrics {
  readonly registry = new Registry();
  readonly decisions = new Counter({
    name: 'keyward_webhook_decisions_total',
    help: 'Verification decisions by route, result (allow, deny, forbidden, unavailable, limited) and reason.',
    labelNames: ['route', 'result', 'reason'] as const,
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'keyward_webhook_request_duration_seconds',
    help: 'Time from request start to decision, by route.',
    labelNames: ['route'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly cacheLookups = new Counter({
    name: 'keyward_webhook_cache_lookups_total',
    help: 'Cache lookups by outcome: hit, negative_hit, stale (re-read from the store), miss, stale_served (store down).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  /** Pre-bound children: these run on every request. */
  readonly cacheOutcome = {
    hit: this.cacheLookups.labels('hit'),
    negativeHit: this.cacheLookups.labels('negative_hit'),
    stale: this.cacheLookups.labels('stale'),
    miss: this.cacheLookups.labels('miss'),
    staleServed: this.cacheLookups.labels('stale_served'),
  };
  readonly cacheEvictions = new Counter({
    name: 'keyward_webhook_cache_evictions_total',
    help: 'Positive cache entries evicted because the cache was full.',
    registers: [this.registry],
  });
  readonly cacheEntries = new Gauge({
    name: 'keyward_webhook_cache_entries',
    help: 'Entries in the positive and negative caches.',
    labelNames: ['cache'] as const,
    registers: [this.registry],
  });
  readonly storeLookups = new Counter({
    name: 'keyward_webhook_store_lookups_total',
    help: 'Store lookups by outcome: found, not_found, error.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly listenerReconnects = new Counter({
    name: 'keyward_webhook_listener_reconnects_total',
    help: 'Times the NOTIFY listener re-attached after losing its connection.',
    registers: [this.registry],
  });
  readonly listenerAttached = new Gauge({
    name: 'keyward_webhook_listener_attached',
    help: '1 while the NOTIFY listener is attached (the cache is trusted), else 0.',
    registers: [this.registry],
  });
  readonly invalidations = new Counter({
    name: 'keyward_webhook_cache_invalidations_total',
    help: 'Change notifications applied to the cache, by entity (user, key, unknown).',
    labelNames: ['entity'] as const,
    registers: [this.registry],
  });

  readonly #decisionChildren = new Map<string, Counter.Internal>();
  readonly #durationChildren = new Map<Route, Histogram.Internal<'route'>>();

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true)
      collectDefaultMetrics({ register: this.registry, prefix: 'keyward_webhook_' });
  }

  /** Counts one decision; label children are memoised because this runs on every request. */
  decision(route: Route, result: string, reason: string): void {
    const id = `${route}\0${result}\0${reason}`;
    let child = this.#decisionChildren.get(id);
    if (!child) {
      child = this.decisions.labels(route, result, reason);
      this.#decisionChildren.set(id, child);
    }
    child.inc();
  }

  observe(route: Route, seconds: number): void {
    let child = this.#durationChildren.get(route);
    if (!child) {
      child = this.duration.labels(route);
      this.#durationChildren.set(route, child);
    }
    child.observe(seconds);
  }
}
