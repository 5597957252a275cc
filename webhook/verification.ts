import type { FastifyBaseLogger } from 'fastify';
import type { UsageBatcher } from '../store/usage.js';
import type { CacheEntry } from './cache.js';
import { type DenyReason, decide, type KeyDenyReason } from './decision.js';
import type { LimitCheck, RequestLimits } from './limits.js';
import type { Route, WebhookMetrics } from './metrics.js';
import type { FailureLimiter } from './ratelimit.js';
import type { Resolution, Resolver, UnavailableReason } from './resolver.js';

export interface VerificationRequest {
  readonly route: Route;
  readonly token: string;
  /** Every one of them must be granted (the ingress' `?scope=`, TokenReview's configured scope…). */
  readonly requiredScopes: readonly string[];
  /** The token is presented as a Kubernetes credential: only keys an AccessPolicy lets authenticate there pass. */
  readonly kubernetes?: boolean;
  /**
   * The address failed attempts are counted against, or undefined where the caller is a relay
   * for many clients (kube-apiserver, an introspecting gateway) and limiting it would lock out all.
   * A function: it is worked out only for a token that matches no key, never on the hot path.
   */
  readonly client: (() => string) | undefined;
}

/** What the pipeline decided; each route maps it to its protocol and nothing more. */
export type Outcome =
  /** `limits` is set for a key with rate limits or a quota: the RateLimit headers' values. */
  | { readonly kind: 'allow'; readonly entry: CacheEntry; readonly limits?: LimitCheck }
  /** A real key over one of its rate limits or its quota (webhook/limits.ts). */
  | { readonly kind: 'rate_limited'; readonly entry: CacheEntry; readonly limits: LimitCheck }
  /** A real key that is refused: its holder may learn why. */
  | { readonly kind: 'denied'; readonly reason: KeyDenyReason; readonly entry: CacheEntry }
  | { readonly kind: 'forbidden'; readonly requiredScope: string; readonly entry: CacheEntry }
  /** Nothing that matches a key: the generic message only. */
  | { readonly kind: 'invalid'; readonly reason: Exclude<DenyReason, KeyDenyReason> }
  | { readonly kind: 'limited'; readonly retryAfterMs: number }
  | { readonly kind: 'unavailable'; readonly reason: UnavailableReason };

export interface VerificationOptions {
  readonly resolver: Resolver;
  readonly limiter: FailureLimiter;
  readonly usage: UsageBatcher;
  /** Rate limits and quotas, counted in memory: never a store round trip on the request path. */
  readonly requestLimits?: RequestLimits;
  readonly metrics: WebhookMetrics;
  readonly logger: FastifyBaseLogger;
  /** Epoch ms; every time-based decision goes through this clock. */
  readonly now: () => number;
}

/** Anything with Fastify's reply.elapsedTime (ms since the request arrived). */
interface Timer {
  readonly elapsedTime: number;
}

/**
 * The one verification pipeline of every route: resolve (token → key: cache, then store) →
 * decide (the key's state, the clock, the required scopes) → usage → metric. A cache hit is
 * answered synchronously, without allocating a promise.
 *
 * Only tokens that match no key count as failed attempts, and only they can be limited. A real
 * key that is refused (expired, disabled, suspended, rotated, lacking a scope) is its holder's
 * own business and never counts; a valid key is never refused by the limiter, even from an
 * address over its limit, so a shared proxy address cannot be turned against its clients.
 */
export class Verification {
  readonly #options: VerificationOptions;

  constructor(options: VerificationOptions) {
    this.#options = options;
  }

  /** A request that presented no token at all: not a failed attempt, just an answer and its metric. */
  missing(route: Route, timer: Timer): Outcome {
    const outcome: Outcome = { kind: 'invalid', reason: 'missing' };
    this.#options.metrics.decision(route, RESULTS.invalid, 'missing');
    this.#options.metrics.observe(route, timer.elapsedTime / 1000);
    return outcome;
  }

  run(request: VerificationRequest, timer: Timer): Outcome | Promise<Outcome> {
    const first = this.#options.resolver.resolveCached(request.token);
    if (first.kind === 'pending') {
      // A never-seen hash from an address over its limit is still looked up (it may be a valid
      // key, which is never refused), but it is the first lookup shed when the store is busy.
      const suspect =
        first.priority === 'unknown' &&
        request.client !== undefined &&
        this.#options.limiter.blockedFor(request.client()) > 0;
      return this.#options.resolver
        .complete(suspect ? { ...first, priority: 'suspect' } : first)
        .then((resolution) => this.#finish(request, resolution, timer));
    }
    return this.#finish(request, first, timer);
  }

  #finish(request: VerificationRequest, resolution: Resolution, timer: Timer): Outcome {
    const outcome = this.#decide(request, resolution);
    const { metrics } = this.#options;
    metrics.decision(request.route, RESULTS[outcome.kind], reasonOf(outcome));
    metrics.observe(request.route, timer.elapsedTime / 1000);
    return outcome;
  }

  #decide(request: VerificationRequest, resolution: Resolution): Outcome {
    const { limiter, usage, logger } = this.#options;
    if (resolution.kind === 'unavailable') return { kind: 'unavailable', reason: resolution.reason };
    if (resolution.kind === 'invalid') {
      if (resolution.displayPrefix !== undefined) {
        logger.debug({ tokenPrefix: resolution.displayPrefix, reason: resolution.reason }, 'token rejected');
      }
      if (request.client !== undefined) {
        const client = request.client();
        const blockedMs = limiter.blockedFor(client);
        if (blockedMs > 0) return { kind: 'limited', retryAfterMs: blockedMs };
        limiter.recordFailure(client);
      }
      return { kind: 'invalid', reason: resolution.reason };
    }
    const { entry } = resolution;
    const key = entry.key;
    const decision = decide(entry, this.#options.now(), request.requiredScopes, request.kubernetes === true);
    if (decision.result === 'allow') {
      const limits = this.#options.requestLimits?.admit(key);
      if (limits === undefined) {
        usage.record(key.apiKeyId, 'allowed');
        return { kind: 'allow', entry };
      }
      if (limits.allowed) {
        usage.record(key.apiKeyId, 'allowed');
        return { kind: 'allow', entry, limits };
      }
      usage.record(key.apiKeyId, 'denied');
      logger.debug({ keyId: key.keyId, policy: limits.refusedBy }, 'rate limited');
      return { kind: 'rate_limited', entry, limits };
    }
    usage.record(key.apiKeyId, 'denied');
    if (decision.result === 'forbidden') {
      logger.debug({ keyId: key.keyId, tokenPrefix: resolution.displayPrefix }, 'insufficient scope');
      return { kind: 'forbidden', requiredScope: decision.requiredScope, entry };
    }
    logger.debug(
      { keyId: key.keyId, tokenPrefix: resolution.displayPrefix, reason: decision.reason },
      'key rejected',
    );
    return { kind: 'denied', reason: decision.reason, entry };
  }
}

/** The `result` label of keyward_webhook_decisions_total per outcome. */
const RESULTS: Record<Outcome['kind'], string> = {
  allow: 'allow',
  denied: 'deny',
  invalid: 'deny',
  forbidden: 'forbidden',
  limited: 'limited',
  rate_limited: 'limited',
  unavailable: 'unavailable',
};

function reasonOf(outcome: Outcome): string {
  switch (outcome.kind) {
    case 'allow':
      return 'ok';
    case 'denied':
    case 'invalid':
      return outcome.reason;
    case 'forbidden':
      return 'insufficient_scope';
    case 'limited':
      return 'too_many_failures';
    case 'rate_limited':
      return outcome.limits.refusedBy === 'quota' ? 'quota_exhausted' : 'rate_limited';
    case 'unavailable':
      return outcome.reason;
  }
}
