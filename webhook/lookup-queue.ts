/**
 * Which lookups wait. `known`: re-reading a hash the cache holds as a real key (its TTL ran out,
 * or the listener came back). `unknown`: a hash never seen, which under a flood of random tokens
 * is nearly every one: those are shed first.
 */
export type LookupPriority = 'known' | 'unknown';

export interface LookupQueueOptions {
  /** Lookups in flight at once. */
  readonly maxConcurrent: number;
  /** Lookups waiting for a slot; beyond it the least valuable one is shed. */
  readonly maxQueued: number;
  /** A lookup that waited this long is shed when its turn comes: its caller has given up by then. */
  readonly maxWaitMs: number;
  readonly now: () => number;
  readonly onShed?: (priority: LookupPriority) => void;
}

/** Call once when the lookup is done. */
export type Release = () => void;

interface Waiter {
  readonly since: number;
  readonly priority: LookupPriority;
  readonly grant: (release: Release | null) => void;
}

/**
 * Bounds store lookups: at most maxConcurrent in flight and maxQueued waiting, so a flood costs
 * a fixed amount of memory and a fixed number of connections. `known` waiters go first and, when
 * the queue is full, displace the newest `unknown` one. A shed lookup is told at once (null), so
 * its request can answer 503 instead of waiting.
 */
export class LookupQueue {
  readonly #options: LookupQueueOptions;
  readonly #waiting: Record<LookupPriority, Waiter[]> = { known: [], unknown: [] };
  #active = 0;

  constructor(options: LookupQueueOptions) {
    this.#options = options;
  }

  get inFlight(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#waiting.known.length + this.#waiting.unknown.length;
  }

  /** Resolves with a release once a slot is free, or with null when the lookup is shed. */
  acquire(priority: LookupPriority): Promise<Release | null> {
    if (this.#active < this.#options.maxConcurrent) {
      this.#active += 1;
      return Promise.resolve(this.#release());
    }
    if (this.queued >= this.#options.maxQueued) {
      const displaced = priority === 'known' ? this.#waiting.unknown.pop() : undefined;
      if (!displaced) {
        this.#options.onShed?.(priority);
        return Promise.resolve(null);
      }
      this.#shed(displaced);
    }
    return new Promise((grant) => {
      this.#waiting[priority].push({ since: this.#options.now(), priority, grant });
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
      const waiter = this.#waiting.known.shift() ?? this.#waiting.unknown.shift();
      if (!waiter) return;
      if (this.#options.now() - waiter.since > this.#options.maxWaitMs) {
        this.#shed(waiter);
        continue;
      }
      this.#active += 1;
      waiter.grant(this.#release());
    }
  }

  #shed(waiter: Waiter): void {
    this.#options.onShed?.(waiter.priority);
    waiter.grant(null);
  }
}
