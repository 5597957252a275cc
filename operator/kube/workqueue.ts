import type { Logger } from 'pino';
import { type BackoffOptions, backoffDelay } from '../../lib/backoff.js';
import type { Clock, Random, Timer } from './clock.js';
import { realClock } from './clock.js';

/** Hooks the operator backs with prom-client; the queue itself owns no registry. */
export interface QueueMetrics {
  /** Keys ready to be handed to a worker (not delayed, not in progress). */
  depth(n: number): void;
  /** Seconds a key waited between becoming ready and being handed out. */
  queueLatency(seconds: number): void;
  /** Seconds a handler spent on one key. */
  workDuration(seconds: number): void;
  /** A handler failed and its key was requeued with backoff. */
  retry(): void;
}

/** What a handler asks for after succeeding; a thrown error means "retry with backoff". */
export interface HandlerResult {
  /** Process the key again after this delay, e.g. at an ApiKey's expiry instant. */
  requeueAfterMs?: number;
}

export type Handler = (key: string) => Promise<HandlerResult | undefined>;

export interface WorkQueueOptions {
  clock?: Clock;
  random?: Random;
  /** Per-key retry backoff; client-go's controller default is 5 ms to 1000 s. */
  backoff?: BackoffOptions;
  metrics?: QueueMetrics;
  logger?: Logger;
}

const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 5, capMs: 1000_000 };

/**
 * A keyed work queue with client-go's guarantees: a key is queued at most once however often it is
 * added, a key is never handed to two workers at once (an add during processing is replayed after
 * done()), delayed adds keep the earliest deadline, and failures back off per key.
 */
export class WorkQueue {
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #backoff: BackoffOptions;
  readonly #metrics: QueueMetrics | undefined;
  readonly #logger: Logger | undefined;

  readonly #ready = new Deque();
  /** Keys that need processing: queued, or re-added while in progress. Value: when it became ready. */
  readonly #dirty = new Map<string, number>();
  readonly #processing = new Set<string>();
  /** Delayed keys and their earliest ready time; the heap may hold stale entries. */
  readonly #waiting = new Map<string, number>();
  readonly #heap = new DeadlineHeap();
  #timer: { at: number; handle: Timer } | undefined;
  readonly #failures = new Map<string, number>();
  #getters: Array<() => void> = [];
  #shuttingDown = false;
  #idle: Array<() => void> = [];

  constructor(opts: WorkQueueOptions = {}) {
    this.#clock = opts.clock ?? realClock;
    this.#random = opts.random ?? Math.random;
    this.#backoff = opts.backoff ?? DEFAULT_BACKOFF;
    if (!(this.#backoff.baseMs > 0) || !(this.#backoff.capMs >= this.#backoff.baseMs)) {
      throw new Error(`invalid backoff: base ${this.#backoff.baseMs} ms, cap ${this.#backoff.capMs} ms`);
    }
    this.#metrics = opts.metrics;
    this.#logger = opts.logger;
  }

  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#dirty.set(key, this.#clock.now());
    if (this.#processing.has(key)) return;
    this.#ready.push(key);
    this.#changed();
    this.#getters.shift()?.();
  }

  /** Adds key after ms. A key already waiting keeps whichever deadline is earlier. */
  addAfter(key: string, ms: number): void {
    if (this.#shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.#clock.now() + ms;
    const current = this.#waiting.get(key);
    if (current !== undefined && current <= at) return;
    this.#waiting.set(key, at);
    this.#heap.push(key, at);
    this.#arm();
  }

  /** Adds key after its next backoff delay; each call without forget() doubles the delay. */
  addRateLimited(key: string): void {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    this.addAfter(key, backoffDelay(failures, this.#backoff, this.#random));
  }

  /** Resets key's backoff, typically after it was processed successfully. */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  /** How often key was requeued by addRateLimited since its last forget(). */
  numRequeues(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** Keys ready to be handed out; the depth metric. */
  len(): number {
    return this.#ready.length;
  }

  /**
   * Waits for a ready key and marks it in progress; the caller must call done(key). Resolves
   * undefined once the queue is shutting down.
   */
  async get(): Promise<string | undefined> {
    while (this.#ready.length === 0 && !this.#shuttingDown) {
      await new Promise<void>((resolve) => this.#getters.push(resolve));
    }
    if (this.#shuttingDown) return undefined;
    const key = this.#ready.shift()!;
    const readySince = this.#dirty.get(key)!;
    this.#dirty.delete(key);
    this.#processing.add(key);
    this.#metrics?.queueLatency((this.#clock.now() - readySince) / 1000);
    this.#changed();
    return key;
  }

  done(key: string): void {
    if (!this.#processing.delete(key)) return;
    if (this.#dirty.has(key) && !this.#shuttingDown) {
      this.#ready.push(key);
      this.#changed();
      this.#getters.shift()?.();
    }
    if (this.#processing.size === 0) {
      for (const resolve of this.#idle.splice(0)) resolve();
    }
  }

  /**
   * Runs `workers` concurrent loops that feed keys to handler until shutDown(). A handler that
   * resolves resets the key's backoff (and may ask for a timed requeue); one that throws requeues
   * the key with backoff.
   */
  async run(workers: number, handler: Handler): Promise<void> {
    await Promise.all(Array.from({ length: workers }, () => this.#work(handler)));
  }

  /**
   * Stops handing out keys, drops queued and delayed ones, and resolves when every key in progress
   * is done(). Dropping is safe because reconciliation is level-triggered: the next leader's
   * informers enqueue every object again, and finishing a backlog here would delay exit and could
   * reconcile after leadership was lost.
   */
  async shutDown(): Promise<void> {
    if (!this.#shuttingDown) {
      this.#shuttingDown = true;
      this.#timer?.handle.cancel();
      this.#timer = undefined;
      this.#waiting.clear();
      this.#heap.clear();
      this.#ready.clear();
      for (const key of this.#dirty.keys()) if (!this.#processing.has(key)) this.#dirty.delete(key);
      this.#changed();
      for (const wake of this.#getters.splice(0)) wake();
    }
    if (this.#processing.size > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  isShuttingDown(): boolean {
    return this.#shuttingDown;
  }

  async #work(handler: Handler): Promise<void> {
    for (;;) {
      const key = await this.get();
      if (key === undefined) return;
      const started = this.#clock.now();
      try {
        const result = await handler(key);
        this.forget(key);
        if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
      } catch (err) {
        this.#metrics?.retry();
        this.addRateLimited(key);
        this.#logger?.warn(
          { err, key, retries: this.numRequeues(key) },
          'work item failed; requeued with backoff',
        );
      } finally {
        this.#metrics?.workDuration((this.#clock.now() - started) / 1000);
        this.done(key);
      }
    }
  }

  #changed(): void {
    this.#metrics?.depth(this.#ready.length);
  }

  /** Keeps one timer, set for the earliest delayed key. */
  #arm(): void {
    const next = this.#heap.peek(this.#waiting);
    if (next === undefined) {
      this.#timer?.handle.cancel();
      this.#timer = undefined;
      return;
    }
    if (this.#timer && this.#timer.at <= next) return;
    this.#timer?.handle.cancel();
    this.#timer = {
      at: next,
      handle: this.#clock.setTimer(next - this.#clock.now(), () => {
        this.#timer = undefined;
        this.#releaseDue();
      }),
    };
  }

  #releaseDue(): void {
    const now = this.#clock.now();
    for (;;) {
      const at = this.#heap.peek(this.#waiting);
      if (at === undefined || at > now) break;
      const key = this.#heap.pop()!;
      this.#waiting.delete(key);
      this.add(key);
    }
    this.#arm();
  }
}

/** FIFO with amortised O(1) shift; Array#shift is O(n) and the queue can hold every object. */
class Deque {
  #items: string[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(key: string): void {
    this.#items.push(key);
  }

  shift(): string | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const key = this.#items[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return key;
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}

/**
 * Binary min-heap of (deadline, key). Moving a key earlier pushes a new entry instead of updating
 * the old one; entries whose deadline no longer matches `live` are skipped when they surface.
 */
class DeadlineHeap {
  #entries: Array<{ at: number; key: string }> = [];

  push(key: string, at: number): void {
    const e = this.#entries;
    e.push({ at, key });
    let i = e.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (e[parent]!.at <= e[i]!.at) break;
      [e[parent], e[i]] = [e[i]!, e[parent]!];
      i = parent;
    }
  }

  /** Earliest live deadline, discarding stale entries on the way. */
  peek(live: ReadonlyMap<string, number>): number | undefined {
    for (;;) {
      const top = this.#entries[0];
      if (!top) return undefined;
      if (live.get(top.key) === top.at) return top.at;
      this.pop();
    }
  }

  pop(): string | undefined {
    const e = this.#entries;
    const top = e[0];
    const last = e.pop();
    if (!top || !last || e.length === 0) return top?.key;
    e[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let min = i;
      if (l < e.length && e[l]!.at < e[min]!.at) min = l;
      if (r < e.length && e[r]!.at < e[min]!.at) min = r;
      if (min === i) break;
      [e[min], e[i]] = [e[i]!, e[min]!];
      i = min;
    }
    return top.key;
  }

  clear(): void {
    this.#entries = [];
  }
}
