import { hash } from 'node:crypto';
import { EventsV1Api, type EventsV1Event, type KubeConfig, V1MicroTime } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { type Clock, type Random, realClock, type Timer } from './clock.js';
import type { KubeObject } from './object.js';

export interface AggregatorOptions {
  /** A repeat within this long of the previous occurrence joins its series. Default 6 min, as client-go. */
  windowMs: number;
  /** New (non-repeat) events one object may produce at once. Default 25, as client-go's spam filter. */
  burst: number;
  /** One more new event per object is allowed per this interval. Default 5 min. */
  refillMs: number;
  /** Series and per-object buckets remembered; the least recently used are forgotten. */
  maxEntries: number;
}

/** One run of identical events. The recorder attaches the API object it created for the series. */
export interface Series {
  count: number;
  lastMs: number;
  /** The count the API server has been told. */
  reportedCount: number;
  created?: Promise<{ namespace: string; name: string } | undefined>;
  flushTimer?: Timer;
}

export type Observation =
  | { action: 'create'; series: Series }
  | { action: 'count'; series: Series }
  | { action: 'drop' };

/**
 * Decides, without I/O, what an occurrence of an event becomes: a new Event, one more count on an
 * existing series, or nothing because its object exhausted its budget of new events. A hot loop
 * repeating one event therefore costs one create plus periodic series updates, and one changing
 * its message every time is capped by the per-object bucket.
 */
export class EventAggregator {
  readonly #series = new Map<string, Series>();
  readonly #buckets = new Map<string, { tokens: number; atMs: number }>();

  constructor(private readonly opts: AggregatorOptions) {}

  observe(nowMs: number, objectKey: string, eventKey: string): Observation {
    const existing = this.#series.get(eventKey);
    if (existing && nowMs - existing.lastMs < this.opts.windowMs) {
      existing.count++;
      existing.lastMs = nowMs;
      touch(this.#series, eventKey, existing, this.opts.maxEntries);
      return { action: 'count', series: existing };
    }
    if (!this.#take(nowMs, objectKey)) return { action: 'drop' };
    const series: Series = { count: 1, lastMs: nowMs, reportedCount: 1 };
    touch(this.#series, eventKey, series, this.opts.maxEntries);
    return { action: 'create', series };
  }

  #take(nowMs: number, objectKey: string): boolean {
    const { burst, refillMs, maxEntries } = this.opts;
    const b = this.#buckets.get(objectKey) ?? { tokens: burst, atMs: nowMs };
    const refill = Math.floor((nowMs - b.atMs) / refillMs);
    if (refill > 0) {
      b.tokens = Math.min(burst, b.tokens + refill);
      b.atMs += refill * refillMs;
    }
    if (b.tokens >= burst) b.atMs = nowMs;
    const ok = b.tokens > 0;
    if (ok) b.tokens--;
    touch(this.#buckets, objectKey, b, maxEntries);
    return ok;
  }
}

/** Re-inserts key as most recently used and evicts the oldest entries beyond max. */
function touch<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  for (const oldest of map.keys()) {
    if (map.size <= max) break;
    map.delete(oldest);
  }
}

export interface EventSpec {
  type: 'Normal' | 'Warning';
  /** UpperCamelCase, e.g. 'Rotated'. */
  reason: string;
  /** Human-readable; truncated to the 1 kB the API allows. */
  message: string;
  /** What was done, e.g. 'Rotate'; defaults to reason. */
  action?: string;
}

export interface EventRecorderOptions extends Partial<AggregatorOptions> {
  /** reportingController, e.g. 'keyward.dev/operator'. */
  controller: string;
  /** reportingInstance, e.g. the pod name. */
  instance: string;
  /** How often a growing series is written back. Default 30 s. */
  seriesFlushMs?: number;
  logger: Logger;
  clock?: Clock;
  random?: Random;
}

const NOTE_MAX_BYTES = 1024;

/**
 * Records events.k8s.io/v1 Events about objects. record() never throws and never waits: the API
 * calls happen in the background and failures are logged, so reconcilers can call it anywhere.
 */
export class EventRecorder {
  readonly #api: EventsV1Api;
  readonly #o: EventRecorderOptions;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #aggregator: EventAggregator;
  readonly #flushMs: number;
  readonly #inflight = new Set<Promise<void>>();
  readonly #pending = new Set<Series>();

  constructor(kc: KubeConfig, opts: EventRecorderOptions) {
    this.#api = kc.makeApiClient(EventsV1Api);
    this.#o = opts;
    this.#clock = opts.clock ?? realClock;
    this.#random = opts.random ?? Math.random;
    this.#flushMs = opts.seriesFlushMs ?? 30_000;
    this.#aggregator = new EventAggregator({
      windowMs: opts.windowMs ?? 6 * 60_000,
      burst: opts.burst ?? 25,
      refillMs: opts.refillMs ?? 5 * 60_000,
      maxEntries: opts.maxEntries ?? 4096,
    });
  }

  record(regarding: KubeObject, event: EventSpec): void {
    try {
      const meta = regarding.metadata ?? {};
      const action = event.action ?? event.reason;
      const note = truncateBytes(event.message, NOTE_MAX_BYTES);
      const objectKey = digest(
        JSON.stringify([regarding.apiVersion, regarding.kind, meta.namespace, meta.name, meta.uid]),
      );
      const eventKey = digest(JSON.stringify([objectKey, event.type, event.reason, action, note]));
      const now = this.#clock.now();
      const seen = this.#aggregator.observe(now, objectKey, eventKey);
      if (seen.action === 'drop') {
        this.#o.logger.debug({ reason: event.reason, name: meta.name }, 'event dropped by rate limit');
      } else if (seen.action === 'create') {
        seen.series.created = this.#track(this.#create(regarding, { ...event, action, message: note }, now));
      } else if (!seen.series.flushTimer) {
        this.#pending.add(seen.series);
        seen.series.flushTimer = this.#clock.setTimer(this.#flushMs, () => this.#flushSeries(seen.series));
      }
    } catch (err) {
      this.#o.logger.warn({ err, reason: event.reason }, 'recording event failed');
    }
  }

  /** Writes back every growing series now and waits for all outstanding API calls; never rejects. */
  async flush(): Promise<void> {
    for (const series of [...this.#pending]) this.#flushSeries(series);
    while (this.#inflight.size > 0) await Promise.all(this.#inflight);
  }

  async #create(
    regarding: KubeObject,
    e: Required<EventSpec>,
    now: number,
  ): Promise<{ namespace: string; name: string } | undefined> {
    const meta = regarding.metadata ?? {};
    const namespace = meta.namespace || 'default';
    // Unique without a round trip; the regarding name is cut so the result stays a valid name.
    const suffix = `${now.toString(16)}${Math.floor(this.#random() * 0xffff).toString(16)}`;
    const name = `${(meta.name ?? 'event').slice(0, 200)}.${suffix}`;
    const body: EventsV1Event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name, namespace },
      eventTime: new V1MicroTime(now),
      reportingController: this.#o.controller,
      reportingInstance: this.#o.instance,
      type: e.type,
      reason: e.reason,
      action: e.action,
      note: e.message,
      regarding: {
        apiVersion: regarding.apiVersion,
        kind: regarding.kind,
        namespace: meta.namespace,
        name: meta.name,
        uid: meta.uid,
        resourceVersion: meta.resourceVersion,
      },
    };
    try {
      await this.#api.createNamespacedEvent({ namespace, body });
      return { namespace, name };
    } catch (err) {
      this.#o.logger.warn({ err, reason: e.reason, regarding: meta.name }, 'creating event failed');
      return undefined;
    }
  }

  #flushSeries(series: Series): void {
    series.flushTimer?.cancel();
    series.flushTimer = undefined;
    this.#pending.delete(series);
    if (series.count === series.reportedCount || !series.created) return;
    const count = series.count;
    const lastObservedTime = new V1MicroTime(series.lastMs);
    const created = series.created;
    series.reportedCount = count;
    this.#track(
      (async (): Promise<void> => {
        const ref = await created;
        if (!ref) return;
        try {
          await this.#api.patchNamespacedEvent({
            ...ref,
            body: [{ op: 'add', path: '/series', value: { count, lastObservedTime } }],
          });
        } catch (err) {
          this.#o.logger.warn({ err, event: ref.name }, 'updating event series failed');
        }
      })(),
    );
  }

  #track<R>(work: Promise<R>): Promise<R> {
    const done = work.then(
      () => undefined,
      () => undefined,
    );
    this.#inflight.add(done);
    void done.then(() => this.#inflight.delete(done));
    return work;
  }
}

/**
 * The aggregator's keys are remembered for up to maxEntries objects and series: as digests, 28
 * characters each, instead of the JSON of the object and the whole message (about 0.5 kB per ApiKey
 * issued, bench/README.md). SHA-1 is ample for telling apart the events of one process.
 */
function digest(key: string): string {
  return hash('sha1', key, 'base64');
}

/** Cuts s to at most max UTF-8 bytes without splitting a character. */
export function truncateBytes(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  let out = '';
  let bytes = 0;
  for (const ch of s) {
    bytes += Buffer.byteLength(ch);
    if (bytes > max) break;
    out += ch;
  }
  return out;
}
