import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';

export type Route = 'verify' | 'tokenreview' | 'introspect' | 'leaks';

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
    collect: () => this.#flushCounts(),
  });
  readonly duration = new LatencyHistogram(
    'keyward_webhook_request_duration_seconds',
    'Time from request start to decision, by route.',
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  );
  readonly cacheLookups = new Counter({
    name: 'keyward_webhook_cache_lookups_total',
    help: 'Cache lookups by outcome: hit, negative_hit, stale (re-read from the store), miss, stale_served (store down).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
    collect: () => this.#flushCounts(),
  });
  /** Counted on every request as plain numbers; moved into the counters when scraped. */
  readonly cacheOutcome = {
    hit: new PendingCount(),
    negativeHit: new PendingCount(),
    stale: new PendingCount(),
    miss: new PendingCount(),
    staleServed: new PendingCount(),
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
    help: 'Store lookups by outcome: found, not_found, error, shed (no pooled connection in time).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly storeRoundTrips = new Counter({
    name: 'keyward_webhook_store_lookup_round_trips_total',
    help: 'Store round trips that answered cache misses; keyward_webhook_store_lookups_total{outcome=~"found|not_found"} divided by this is the mean batch size.',
    registers: [this.registry],
  });
  readonly lookupsShed = new Counter({
    name: 'keyward_webhook_store_lookups_shed_total',
    help: 'Store lookups shed by the bounded queue (answered 503 unless a cached row could be served), by priority: known (re-read of a cached key), unknown (a hash never seen).',
    labelNames: ['priority'] as const,
    registers: [this.registry],
  });
  readonly lookupSlots = new Gauge({
    name: 'keyward_webhook_store_lookups',
    help: 'Store lookups in flight and waiting in the queue.',
    labelNames: ['state'] as const,
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
  readonly changesApplied = new Counter({
    name: 'keyward_webhook_changes_applied_total',
    help: 'Change-log entries applied to the cache, by how they arrived: notify (NOTIFY) or log (read from the change log after a gap, or by polling a replica).',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly cacheResets = new Counter({
    name: 'keyward_webhook_cache_resets_total',
    help: 'Times every cached entry was distrusted because the change log no longer reached back to the last change applied (pruned) — not counting the first attach.',
    registers: [this.registry],
  });
  readonly changeSeq = new Gauge({
    name: 'keyward_webhook_change_seq',
    help: 'The last change-log seq applied to the cache.',
    registers: [this.registry],
  });
  readonly invalidations = new Counter({
    name: 'keyward_webhook_cache_invalidations_total',
    help: 'Change notifications applied to the cache, by entity (user, key, unknown).',
    labelNames: ['entity'] as const,
    registers: [this.registry],
  });

  /**
   * Pending decision counts by route, result and reason: nested maps keyed by the strings the
   * caller already holds, so counting builds no key string per request.
   */
  readonly #decisionCounts = new Map<string, Map<string, Map<string, PendingCount>>>();

  constructor(options: { defaultMetrics?: boolean } = {}) {
    this.registry.registerMetric(this.duration as unknown as Parameters<Registry['registerMetric']>[0]);
    if (options.defaultMetrics ?? true)
      collectDefaultMetrics({ register: this.registry, prefix: 'keyward_webhook_' });
  }

  /** Counts one decision. A plain number per label set: prom-client's labels() costs more than the decision. */
  decision(route: Route, result: string, reason: string): void {
    let byResult = this.#decisionCounts.get(route);
    if (!byResult) {
      byResult = new Map();
      this.#decisionCounts.set(route, byResult);
    }
    let byReason = byResult.get(result);
    if (!byReason) {
      byReason = new Map();
      byResult.set(result, byReason);
    }
    let count = byReason.get(reason);
    if (!count) {
      count = new PendingCount();
      byReason.set(reason, count);
    }
    count.inc();
  }

  observe(route: Route, seconds: number): void {
    this.duration.observe(route, seconds);
  }

  #flushCounts(): void {
    for (const [route, byResult] of this.#decisionCounts) {
      for (const [result, byReason] of byResult) {
        for (const [reason, count] of byReason) {
          if (count.n > 0) this.decisions.inc({ route, result, reason }, count.take());
        }
      }
    }
    const outcomes: Array<[string, PendingCount]> = [
      ['hit', this.cacheOutcome.hit],
      ['negative_hit', this.cacheOutcome.negativeHit],
      ['stale', this.cacheOutcome.stale],
      ['miss', this.cacheOutcome.miss],
      ['stale_served', this.cacheOutcome.staleServed],
    ];
    for (const [outcome, count] of outcomes) {
      if (count.n > 0) this.cacheLookups.inc({ outcome }, count.take());
    }
  }
}

/** A counter increment that costs one addition; read (and reset) at scrape time. */
class PendingCount {
  n = 0;
  inc(): void {
    this.n += 1;
  }
  take(): number {
    const n = this.n;
    this.n = 0;
    return n;
  }
}

/**
 * A Prometheus histogram by route with fixed buckets, kept in typed arrays and rendered by the
 * registry through get(): observe() is a bucket search and three additions, with no label hashing.
 */
class LatencyHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #byRoute = new Map<string, { buckets: Float64Array; sum: number; count: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
  ) {}

  observe(route: string, seconds: number): void {
    let series = this.#byRoute.get(route);
    if (!series) {
      series = { buckets: new Float64Array(this.bounds.length), sum: 0, count: 0 };
      this.#byRoute.set(route, series);
    }
    const { bounds } = this;
    for (let i = 0; i < bounds.length; i++) {
      if (seconds <= bounds[i]!) {
        series.buckets[i]! += 1;
        break;
      }
    }
    series.sum += seconds;
    series.count += 1;
  }

  get(): {
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }>;
  } {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    for (const [route, series] of this.#byRoute) {
      let cumulative = 0;
      this.bounds.forEach((bound, i) => {
        cumulative += series.buckets[i]!;
        values.push({ labels: { le: bound, route }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', route }, value: series.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { route }, value: series.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { route }, value: series.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.#byRoute.clear();
  }
}
