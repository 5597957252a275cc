import { LRUCache } from 'lru-cache';

export interface FailureLimiterOptions {
  /** Failures allowed in a burst; 0 disables the limiter. */
  readonly limit: number;
  /** The burst refills at `limit` per window. */
  readonly windowMs: number;
  /** Client addresses tracked at once; the least recently failing are forgotten first. */
  readonly maxClients?: number;
  readonly now: () => number;
}

const ONE_PER_CLIENT = (): number => 1;

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Per-client token bucket over failed verifications only: a client that keeps presenting bad
 * tokens is slowed to `limit` per window, while clients with valid keys are never counted. The
 * table is bounded, so a flood from many addresses costs memory proportional to maxClients.
 */
export class FailureLimiter {
  readonly #limit: number;
  readonly #perMs: number;
  readonly #now: () => number;
  readonly #buckets: LRUCache<string, Bucket>;

  constructor(options: FailureLimiterOptions) {
    this.#limit = options.limit;
    this.#perMs = options.limit / options.windowMs;
    this.#now = options.now;
    // Bounded by maxSize at one per client rather than by max: lru-cache allocates its arrays for
    // `max` entries up front (2.7 MiB at 100,000), and this table is empty unless under attack.
    this.#buckets = new LRUCache({ maxSize: options.maxClients ?? 100_000, sizeCalculation: ONE_PER_CLIENT });
  }

  get enabled(): boolean {
    return this.#limit > 0;
  }

  /** Milliseconds until `client` may fail again; 0 when it is not limited. */
  blockedFor(client: string): number {
    if (this.#limit === 0) return 0;
    const bucket = this.#buckets.peek(client);
    if (!bucket) return 0;
    const tokens = this.#refill(bucket);
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) / this.#perMs);
  }

  recordFailure(client: string): void {
    if (this.#limit === 0) return;
    const bucket = this.#buckets.get(client);
    if (!bucket) {
      this.#buckets.set(client, { tokens: this.#limit - 1, at: this.#now() });
      return;
    }
    bucket.tokens = Math.max(0, this.#refill(bucket) - 1);
    bucket.at = this.#now();
  }

  #refill(bucket: Bucket): number {
    const now = this.#now();
    return Math.min(this.#limit, bucket.tokens + (now - bucket.at) * this.#perMs);
  }
}
