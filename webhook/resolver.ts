import { hash as digest } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { checksumPasses, displayPrefixOfValid, type ParseResult, parseToken } from '../credentials/token.js';
import { isPoolAcquireTimeout } from '../store/errors.js';
import type { KeyLookup } from '../store/lookup.js';
import type { CacheEntry, VerifyCache } from './cache.js';
import type { DenyReason } from './decision.js';
import { safeError } from './logger.js';
import { type LookupPriority, LookupQueue, type LookupQueueOptions } from './lookup-queue.js';
import type { WebhookMetrics } from './metrics.js';

/** What a token resolves to before any per-request check (scope, time) is applied. */
export type Resolution =
  | { readonly kind: 'key'; readonly entry: CacheEntry; readonly displayPrefix: string }
  | {
      readonly kind: 'invalid';
      readonly reason: Extract<DenyReason, 'malformed' | 'bad_checksum' | 'wrong_prefix' | 'unknown'>;
      /** Only for well-formed tokens; a malformed string may be anything, even a password. */
      readonly displayPrefix?: string;
    }
  /**
   * Nothing usable was cached and the store could not answer: it failed, or the lookup was shed
   * (queue full, pool exhausted), which is overload and says nothing about the store's health.
   */
  | {
      readonly kind: 'unavailable';
      readonly reason: UnavailableReason;
      readonly displayPrefix: string;
    };

export type UnavailableReason = 'store_unavailable' | 'overloaded';

/** A token that passed the checksum but needs the store; finish it with Verifier.complete(). */
export interface PendingLookup {
  readonly kind: 'pending';
  readonly hash: string;
  readonly displayPrefix: string;
  /** The cached row, if it may be served when the store cannot answer. */
  readonly stale: CacheEntry | undefined;
  /** The cache holds this hash as a real key: its re-read is not shed for unknown hashes. */
  readonly priority: LookupPriority;
}

/** A miss waiting in the lookup queue for its batch: the hash and whoever waits for it. */
export interface MissLookup {
  readonly hash: string;
  readonly settle: (outcome: LookupOutcome) => void;
}

export interface ResolverOptions {
  readonly cache: VerifyCache;
  /** The bounded queue misses (and other store lookups) wait in; the resolver runs its batches. */
  readonly queue: Omit<LookupQueueOptions<MissLookup>, 'batch'>;
  /** Most hashes one coalesced round trip carries. */
  readonly maxBatch: number;
  /** One round trip for many hashes: the key behind each, in the same order, null where none. */
  readonly lookup: (hashes: Buffer[]) => Promise<(KeyLookup | null)[]>;
  readonly metrics: WebhookMetrics;
  readonly logger: FastifyBaseLogger;
  /** Only tokens with this prefix are looked up. */
  readonly tokenPrefix: string | undefined;
}

export type LookupOutcome =
  | { readonly ok: true; readonly entry: CacheEntry | null }
  | { readonly ok: false; readonly reason: UnavailableReason };

const SHED: LookupOutcome = { ok: false, reason: 'overloaded' };
const FAILED: LookupOutcome = { ok: false, reason: 'store_unavailable' };

/**
 * Token → key, in DESIGN.md §5's order: parse and checksum (no I/O), cache by SHA-256, store on a
 * miss through the bounded lookup queue. Split in a synchronous first half and an asynchronous
 * second so that a cache hit never allocates a promise: that path is the one the throughput
 * target is about.
 *
 * Misses are coalesced twice: concurrent misses for one hash share one entry in the queue, and
 * the queue hands waiting misses to runBatch() many at a time, so one `= ANY($1)` round trip
 * answers them all (webhook/lookup-queue.ts). Each hash gets its own row or null; a failed round
 * trip fails only the hashes it carried.
 */
export class Resolver {
  readonly #options: ResolverOptions;
  /** Concurrent misses for one hash share a single store round trip. */
  readonly #inFlight = new Map<string, Promise<LookupOutcome>>();
  #storeFailing = false;
  /** Bounds every store lookup of the request path: these misses, and subject rows (acquire()). */
  readonly queue: LookupQueue<MissLookup>;

  constructor(options: ResolverOptions) {
    this.#options = options;
    this.queue = new LookupQueue({
      ...options.queue,
      batch: {
        maxSize: options.maxBatch,
        run: (items) => this.#runBatch(items),
        shed: (item) => item.settle(SHED),
      },
    });
  }

  /** False from the first failed lookup until the next successful one. */
  get storeAnswering(): boolean {
    return !this.#storeFailing;
  }

  resolveCached(token: string): Resolution | PendingLookup {
    const { cache, metrics } = this.#options;
    // A made-up token (wrong length or checksum, oversized input too) matches no key: refused
    // before the SHA-256 and the cache lookup a real one needs, with nothing allocated until then,
    // so garbage is answered at least as fast as a hit. parseToken names the reason on that path only.
    if (!checksumPasses(token))
      return refused(parseToken(token, { prefix: this.#options.tokenPrefix }), token);
    // Then the cache: only tokens that passed parseToken (prefix too) are ever filled, so a fresh
    // hit is that same string again and needs no full parse. This is the hot path.
    const hash = digest('sha256', token, 'binary');
    const cached = cache.get(hash);
    if (cached.kind === 'fresh') {
      metrics.cacheOutcome.hit.inc();
      return { kind: 'key', entry: cached.entry, displayPrefix: displayPrefixOfValid(token) };
    }
    const parsed = parseToken(token, { prefix: this.#options.tokenPrefix });
    if (!parsed.ok) return refused(parsed, token);
    const { displayPrefix } = parsed.value;
    switch (cached.kind) {
      case 'negative':
        metrics.cacheOutcome.negativeHit.inc();
        return { kind: 'invalid', reason: 'unknown', displayPrefix };
      case 'stale':
        metrics.cacheOutcome.stale.inc();
        return {
          kind: 'pending',
          hash,
          displayPrefix,
          stale: cached.usableOnError ? cached.entry : undefined,
          priority: 'known',
        };
      default:
        metrics.cacheOutcome.miss.inc();
        return { kind: 'pending', hash, displayPrefix, stale: undefined, priority: 'unknown' };
    }
  }

  async complete(pending: PendingLookup): Promise<Resolution> {
    // Bounded by the queue: every entry holds a place in it or in a running batch, or is settled already.
    let shared = this.#inFlight.get(pending.hash);
    if (!shared) {
      const { hash } = pending;
      // The settle that ends the lookup also ends its sharing (no second promise per miss for that).
      // Registered before submit(), which may shed, and so settle, at once.
      let resolve!: (outcome: LookupOutcome) => void;
      const lookup = new Promise<LookupOutcome>((r) => {
        resolve = r;
      });
      shared = lookup;
      this.#inFlight.set(hash, lookup);
      this.queue.submit(pending.priority, {
        hash,
        settle: (outcome) => {
          if (this.#inFlight.get(hash) === lookup) this.#inFlight.delete(hash);
          resolve(outcome);
        },
      });
    }
    const outcome = await shared;
    if (outcome.ok) {
      return outcome.entry
        ? { kind: 'key', entry: outcome.entry, displayPrefix: pending.displayPrefix }
        : { kind: 'invalid', reason: 'unknown', displayPrefix: pending.displayPrefix };
    }
    if (pending.stale) {
      this.#options.metrics.cacheOutcome.staleServed.inc();
      return { kind: 'key', entry: pending.stale, displayPrefix: pending.displayPrefix };
    }
    return { kind: 'unavailable', reason: outcome.reason, displayPrefix: pending.displayPrefix };
  }

  async #runBatch(items: MissLookup[]): Promise<void> {
    const { cache, metrics, logger } = this.#options;
    const generation = cache.beginFill();
    let keys: (KeyLookup | null)[];
    try {
      keys = await this.#options.lookup(items.map((item) => Buffer.from(item.hash, 'latin1')));
    } catch (err) {
      // Every pooled connection busy: this replica is overloaded, the store may be fine.
      if (isPoolAcquireTimeout(err)) {
        metrics.storeLookups.labels('shed').inc(items.length);
        for (const item of items) item.settle(SHED);
        return;
      }
      metrics.storeLookups.labels('error').inc(items.length);
      // Once per outage, not once per request: under load that would be thousands of lines a second.
      if (!this.#storeFailing) {
        this.#storeFailing = true;
        logger.error({ err: safeError(err) }, 'credential store lookup failed; serving cached keys only');
      }
      for (const item of items) item.settle(FAILED);
      return;
    }
    metrics.storeRoundTrips.inc();
    if (this.#storeFailing) {
      this.#storeFailing = false;
      logger.info('credential store answering again');
    }
    const found = metrics.storeLookups.labels('found');
    const notFound = metrics.storeLookups.labels('not_found');
    for (const [i, item] of items.entries()) {
      const key = keys[i] ?? null;
      (key ? found : notFound).inc();
      item.settle({ ok: true, entry: cache.fill(item.hash, key, generation) });
    }
  }
}

/**
 * A token parseToken rejects, as the pipeline answers it. Never `ok` here (checksumPasses lets every
 * token parseToken accepts through); were it, the token would still be refused, not served unchecked.
 */
function refused(parsed: ParseResult, token: string): Resolution {
  if (parsed.ok || parsed.reason === 'malformed') return { kind: 'invalid', reason: 'malformed' };
  return invalidWellFormed(parsed.reason, token);
}

function invalidWellFormed(reason: 'bad_checksum' | 'wrong_prefix', token: string): Resolution {
  // A token with a bad checksum is usually a typo of a real one: its first characters identify
  // which, and are as public as a real token's display prefix.
  const separator = token.length - 50;
  return { kind: 'invalid', reason, displayPrefix: token.slice(0, separator + 5) };
}
