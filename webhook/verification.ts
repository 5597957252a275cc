import type { IncomingMessage } from 'node:http';
import type { FastifyBaseLogger } from 'fastify';
import type { UsageBatcher } from '../store/usage.js';
import { actingOutcome, type SubjectSource } from './act-as-step.js';
import type { Acting, MALFORMED_SUBJECT, Subject, SubjectDenyReason } from './acting.js';
import type { CacheEntry } from './cache.js';
import { type DenyReason, decide, type KeyDenyReason } from './decision.js';
import type { LimitCheck, RequestLimits } from './limits.js';
import type { Route, WebhookMetrics } from './metrics.js';
import type { FailureLimiter } from './ratelimit.js';
import type { DecisionRecorder } from './request-log.js';
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
  /** The subject header, read by acting.ts readSubject(); undefined when the request names none. */
  readonly subject?: Subject | typeof MALFORMED_SUBJECT;
  /** The HTTP request, for the request log (method, path, client address; never its token). */
  readonly origin?: IncomingMessage;
}

/** What the pipeline decided; each route maps it to its protocol and nothing more. */
export type Outcome =
  /**
   * `acting`: the request acts on behalf of a subject (actor and subject names, what to send upstream).
   * `limits` is set for a key with rate limits or a quota: the RateLimit headers' values.
   */
  | {
      readonly kind: 'allow';
      readonly entry: CacheEntry;
      readonly acting?: Acting;
      readonly limits?: LimitCheck;
    }
  /** A real key over one of its rate limits or its quota (webhook/limits.ts). */
  | { readonly kind: 'rate_limited'; readonly entry: CacheEntry; readonly limits: LimitCheck }
  /** A real key that is refused: its holder may learn why. */
  | { readonly kind: 'denied'; readonly reason: KeyDenyReason; readonly entry: CacheEntry }
  | {
      readonly kind: 'forbidden';
      readonly requiredScope: string;
      readonly entry: CacheEntry;
      readonly acting?: Acting;
    }
  /** A real key naming a subject it may not act for (or a malformed one); `subject` when well-formed. */
  | {
      readonly kind: 'subject_refused';
      readonly reason: SubjectDenyReason;
      readonly entry: CacheEntry;
      readonly subject?: string;
    }
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
  /** The request log; told of every decision that has an origin. */
  readonly recorder?: DecisionRecorder;
  readonly logger: FastifyBaseLogger;
  /** ServiceUsers named as subjects (act-as-step.ts). */
  readonly subjects: SubjectSource;
  /** Epoch ms; every time-based decision goes through this clock. */
  readonly now: () => number;
}

/** Anything with an elapsedTime in ms since the request arrived (the request, request-start.ts). */
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
  missing(route: Route, timer: Timer, origin?: IncomingMessage): Outcome {
    const outcome: Outcome = { kind: 'invalid', reason: 'missing' };
    this.#options.metrics.decision(route, RESULTS.invalid, 'missing');
    if (origin)
      this.#options.recorder?.record(route, outcome, RESULTS.invalid, 'missing', origin, this.#options.now());
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

  #finish(request: VerificationRequest, resolution: Resolution, timer: Timer): Outcome | Promise<Outcome> {
    // One reading of the clock per decision: what it is judged at is the time it is logged with.
    const at = this.#options.now();
    const outcome = this.#decide(request, resolution, at);
    if (outcome instanceof Promise) return outcome.then((o) => this.#observe(request, o, timer, at));
    return this.#observe(request, outcome, timer, at);
  }

  #observe(request: VerificationRequest, outcome: Outcome, timer: Timer, at: number): Outcome {
    const { metrics, recorder } = this.#options;
    const result = RESULTS[outcome.kind];
    const reason = reasonOf(outcome);
    metrics.decision(request.route, result, reason);
    if (request.origin) recorder?.record(request.route, outcome, result, reason, request.origin, at);
    metrics.observe(request.route, timer.elapsedTime / 1000);
    return outcome;
  }

  /** The last step of an allowed request: the key's rate limits and quota, counted in memory. */
  #admit(allowed: Extract<Outcome, { kind: 'allow' }>): Outcome {
    const { usage, logger } = this.#options;
    const key = allowed.entry.key;
    const limits = this.#options.requestLimits?.admit(key);
    if (limits === undefined) {
      usage.record(key.apiKeyId, 'allowed');
      return allowed;
    }
    if (limits.allowed) {
      usage.record(key.apiKeyId, 'allowed');
      return { ...allowed, limits };
    }
    usage.record(key.apiKeyId, 'denied');
    logger.debug({ keyId: key.keyId, policy: limits.refusedBy }, 'rate limited');
    return { kind: 'rate_limited', entry: allowed.entry, limits };
  }

  #decide(request: VerificationRequest, resolution: Resolution, at: number): Outcome | Promise<Outcome> {
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
    // Acting on behalf of a subject: the key must verify on its own, and the scopes are the subject's.
    const { subject } = request;
    const decision = decide(
      entry,
      at,
      subject === undefined ? request.requiredScopes : [],
      request.kubernetes === true,
    );
    if (decision.result === 'allow' && subject !== undefined) {
      return actingOutcome(entry, subject, request.requiredScopes, this.#options.subjects, usage, (allowed) =>
        this.#admit(allowed),
      );
    }
    if (decision.result === 'allow') return this.#admit({ kind: 'allow', entry });
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
  subject_refused: 'forbidden',
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
    case 'subject_refused':
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
