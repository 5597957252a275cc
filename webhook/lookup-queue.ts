/**
 * Which lookups wait, most valuable first. `known`: re-reading a hash the cache holds as a real
 * key (its TTL ran out, or the listener came back). `unknown`: a hash never seen, which under a
 * flood of random tokens is nearly every one. `suspect`: a hash never seen, from a client address
 * already over its failed-attempt limit. Lower ones are shed first.
 */
export type LookupPriority = 'known' | 'unknown' | 'suspect';

const PRIORITIES: readonly LookupPriority[] = ['known', 'unknown', 'suspect'];

/**
 * Lookups that share one store round trip (key misses: one `= ANY($1)` query for many hashes).
 * Methods, not function properties: a queue of any item type is still a LookupQueue to callers
 * that only acquire().
 */
export interface BatchRunner<T> {
  /** Most items one round trip takes. */
  readonly maxSize: number;
  /** One round trip for all of them; must settle every item and never reject. */
  run(items: T[]): Promise<void>;
  /** The item will not run: answer its caller at once (overload). */
  shed(item: T): void;
}

export interface LookupQueueOptions<T> {
  /** Store round trips in flight at once (a batch is one). */
  readonly maxConcurrent: number;
  /** Lookups waiting for a slot; beyond it the least valuable one is shed. */
  readonly maxQueued: number;
  /** A lookup that waited this long is shed when its turn comes: its caller has given up by then. */
  readonly maxWaitMs: number;
  readonly now: () => number;
  readonly onShed?: (priority: LookupPriority) => void;
  /** Runs submit()ted items; without it, only acquire() is available. */
  readonly batch?: BatchRunner<T>;
  /** How a batch's dispatch is put off until the requests read in this turn have joined it. */
  readonly defer?: (run: () => void) => void;
}

/** Call once when the lookup is done. */
export type Release = () => void;

type Waiter<T> =
  | {
      readonly since: number;
      readonly priority: LookupPriority;
      readonly grant: (release: Release | null) => void;
    }
  | {
      readonly since: number;
      readonly priority: LookupPriority;
      readonly grant?: undefined;
      readonly item: T;
    };

/**
 * Bounds store lookups: at most maxConcurrent round trips in flight and maxQueued lookups waiting,
 * so a flood costs a fixed amount of memory and a fixed number of connections. Higher priorities
 * go first and, when the queue is full, displace the newest waiter of the lowest priority present.
 * A shed lookup is told at once, so its request can answer 503 instead of waiting.
 *
 * Two kinds of waiter share the bound: acquire() holds a slot for one lookup of its own (a
 * subject row), submit() hands an item to the batch runner. When a slot frees, it takes the best
 * waiter; if that is a batch item, it takes up to maxSize batch items with it, best first, so a
 * busy queue turns many misses into one round trip. A submitted item never starts a round trip
 * synchronously: dispatch is deferred (setImmediate) until every request parsed from the sockets
 * in this event-loop turn has joined, which costs one turn of latency and nothing else.
 */
export class LookupQueue<T = unknown> {
  readonly #options: LookupQueueOptions<T>;
  readonly #waiting: Record<LookupPriority, Waiter<T>[]> = { known: [], unknown: [], suspect: [] };
  readonly #defer: (run: () => void) => void;
  #active = 0;
  #dispatchPending = false;

  constructor(options: LookupQueueOptions<T>) {
    this.#options = options;
    this.#defer = options.defer ?? setImmediate;
  }

  get inFlight(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#waiting.known.length + this.#waiting.unknown.length + this.#waiting.suspect.length;
  }

  /** Resolves with a release once a slot is free, or with null when the lookup is shed. */
  acquire(priority: LookupPriority): Promise<Release | null> {
    if (this.#active < this.#options.maxConcurrent && this.queued === 0) {
      this.#active += 1;
      return Promise.resolve(this.#release());
    }
    if (!this.#makeRoom(priority)) {
      this.#options.onShed?.(priority);
      return Promise.resolve(null);
    }
    return new Promise((grant) => {
      this.#waiting[priority].push({ since: this.#options.now(), priority, grant });
      this.#scheduleDispatch();
    });
  }

  /** Queues an item for the batch runner; it runs, or is shed through BatchRunner.shed. */
  submit(priority: LookupPriority, item: T): void {
    const batch = this.#options.batch;
    if (!batch) throw new Error('LookupQueue: submit() needs a batch runner');
    if (!this.#makeRoom(priority)) {
      this.#options.onShed?.(priority);
      batch.shed(item);
      return;
    }
    this.#waiting[priority].push({ since: this.#options.now(), priority, item });
    this.#scheduleDispatch();
  }

  /** False when the queue is full of waiters at least as valuable; else sheds one below if need be. */
  #makeRoom(priority: LookupPriority): boolean {
    if (this.queued < this.#options.maxQueued) return true;
    const displaced = this.#newestBelow(priority);
    if (!displaced) return false;
    this.#shed(displaced);
    return true;
  }

  /** The most recent waiter of the lowest priority below `priority`, taken out of the queue. */
  #newestBelow(priority: LookupPriority): Waiter<T> | undefined {
    for (let rank = PRIORITIES.length - 1; PRIORITIES[rank] !== priority; rank--) {
      const waiter = this.#waiting[PRIORITIES[rank]!].pop();
      if (waiter) return waiter;
    }
    return undefined;
  }

  #scheduleDispatch(): void {
    if (this.#dispatchPending || this.#active >= this.#options.maxConcurrent) return;
    this.#dispatchPending = true;
    this.#defer(() => {
      this.#dispatchPending = false;
      this.#next();
    });
  }

  #release(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active -= 1;
      this.#next();
    };
  }

  #next(): void {
    while (this.#active < this.#options.maxConcurrent) {
      const waiter = this.#take();
      if (!waiter) return;
      this.#active += 1;
      if (waiter.grant) {
        waiter.grant(this.#release());
        continue;
      }
      const items = [waiter.item];
      this.#gather(items);
      const release = this.#release();
      // run() settles its items and never rejects; the slot is freed however it ends.
      this.#options.batch!.run(items).then(release, release);
    }
  }

  /** The best waiter that has not waited too long; those that have are shed on the way. */
  #take(): Waiter<T> | undefined {
    for (;;) {
      const waiter =
        this.#waiting.known.shift() ?? this.#waiting.unknown.shift() ?? this.#waiting.suspect.shift();
      if (!waiter || !this.#expired(waiter)) return waiter;
      this.#shed(waiter);
    }
  }

  /** Moves more batch items into `items`, best priority first, oldest first, up to maxSize. */
  #gather(items: T[]): void {
    const max = this.#options.batch!.maxSize;
    for (const priority of PRIORITIES) {
      const waiting = this.#waiting[priority];
      if (items.length >= max || waiting.length === 0) continue;
      const kept: Waiter<T>[] = [];
      for (const waiter of waiting) {
        if (waiter.grant || items.length >= max) kept.push(waiter);
        else if (this.#expired(waiter)) this.#shed(waiter);
        else items.push(waiter.item);
      }
      this.#waiting[priority] = kept;
    }
  }

  #expired(waiter: Waiter<T>): boolean {
    return this.#options.now() - waiter.since > this.#options.maxWaitMs;
  }

  #shed(waiter: Waiter<T>): void {
    this.#options.onShed?.(waiter.priority);
    if (waiter.grant) waiter.grant(null);
    else this.#options.batch!.shed(waiter.item);
  }
}
