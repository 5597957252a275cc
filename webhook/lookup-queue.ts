/**
 * Which lookups wait, most valuable first. `known`: re-reading a hash the cache holds as a real
 * key (its TTL ran out, or the listener came back). `unknown`: a hash never seen, which under a
 * flood of random tokens is nearly every one. `suspect`: a hash never seen, from a client address
 * already over its failed-attempt limit. Lower ones are shed first.
 */
export type LookupPriority = 'known' | 'unknown' | 'suspect';

const PRIORITIES: readonly LookupPriority[] = ['known', 'unknown', 'suspect'];

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
 * a fixed amount of memory and a fixed number of connections. Higher priorities go first and,
 * when the queue is full, displace the newest waiter of the lowest priority present. A shed lookup is told at once (null), so
 * its request can answer 503 instead of waiting.
 */
export class LookupQueue {
  readonly #options: LookupQueueOptions;
  readonly #waiting: Record<LookupPriority, Waiter[]> = { known: [], unknown: [], suspect: [] };
  #active = 0;

  constructor(options: LookupQueueOptions) {
    this.#options = options;
  }

  get inFlight(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#waiting.known.length + this.#waiting.unknown.length + this.#waiting.suspect.length;
  }

  /** Resolves with a release once a slot is free, or with null when the lookup is shed. */
  acquire(priority: LookupPriority): Promise<Release | null> {
    if (this.#active < this.#options.maxConcurrent) {
      this.#active += 1;
      return Promise.resolve(this.#release());
    }
    if (this.queued >= this.#options.maxQueued) {
      const displaced = this.#newestBelow(priority);
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

  /** The most recent waiter of the lowest priority below `priority`, taken out of the queue. */
  #newestBelow(priority: LookupPriority): Waiter | undefined {
    for (let rank = PRIORITIES.length - 1; PRIORITIES[rank] !== priority; rank--) {
      const waiter = this.#waiting[PRIORITIES[rank]!].pop();
      if (waiter) return waiter;
    }
    return undefined;
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
      const waiter =
        this.#waiting.known.shift() ?? this.#waiting.unknown.shift() ?? this.#waiting.suspect.shift();
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
