import type { LimitDefinition } from '../api/ratelimits.js';
import type { KeyLookup } from '../store/lookup.js';
import type { CounterDelta, CounterTotal } from '../store/rate-limits.js';

/** What admit() reads of a key. */
type LimitedKey = Pick<KeyLookup, 'apiKeyId' | 'userId' | 'limits'>;

/** One limit of one key as a request meets it: which counter, and its name in the headers. */
interface PlanItem {
  /** `<subject>|<name>`: the counter's id in this replica and in rate_limit_counters. */
  readonly id: string;
  readonly subject: string;
  /** `key:<name>`, `user:<name>` or `quota`: the policy name clients see. */
  readonly name: string;
  readonly limit: number;
  /** Infinity: the window never ends (a quota that never refills). */
  readonly periodMs: number;
}

/** Every limit of a key, with its RateLimit-Policy value built once per cache fill. */
interface Plan {
  readonly items: readonly PlanItem[];
  readonly policyHeader: string;
}

interface Counter {
  readonly subject: string;
  readonly name: string;
  limit: number;
  periodMs: number;
  windowStart: number;
  /** Every replica's total for the window at the last sync (this replica's synced counts included). */
  known: number;
  /** Admitted here since the last sync began. */
  pending: number;
  /** Sent by the sync under way, not yet part of `known`. */
  sending: number;
  touchedAt: number;
}

/** What a request with limits learned; `headers` go on the answer whether allowed or not. */
export interface LimitCheck {
  readonly allowed: boolean;
  /** The policy that refused, when one did. */
  readonly refusedBy: string | undefined;
  /** Until the refusing window ends; undefined for a quota that never refills. */
  readonly retryAfterSeconds: number | undefined;
  /** `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers). */
  readonly policyHeader: string;
  /** `RateLimit`: remaining requests and seconds to reset of the tightest policy. */
  readonly stateHeader: string;
}

export interface RequestLimitsOptions {
  readonly now: () => number;
  /** Asks for a sync as soon as possible (the first use of a counter, or one running low). */
  readonly syncSoon: () => void;
  /** Counters held at once; the least recently used are forgotten first. */
  readonly maxCounters?: number;
}

const NO_PLAN: Plan = { items: [], policyHeader: '' };
/**
 * A replica syncs early once what it admitted since its last sync reaches 1/EARLY_SYNC_SHARE of
 * the room it knew of: with several replicas spending the same room, each learns of the others'
 * spending while some is left, and the overshoot shrinks towards what they admit in one round trip.
 */
const EARLY_SYNC_SHARE = 4;
/** A counter unused for this long is not synced any more; it is brought up to date when used again. */
const IDLE_AFTER_MS = 60_000;
/**
 * Admission allows only these in a limit name; a row that somehow holds more (written past the
 * operator) is ignored rather than let into a header, where it would fail the answer.
 */
const HEADER_SAFE_NAME = /^(key|user):[a-z0-9][-a-z0-9]{0,62}$|^quota$/;

/**
 * Rate limits and quotas, counted in this replica's memory so that a cached hit never waits on
 * the store: admit() is synchronous and allocates only its answer. A sync (LimitSync, limit-sync.ts)
 * adds the local counts to the store's and reads everyone's totals back; between syncs each
 * replica admits against the last totals it read plus what it admitted itself, which bounds how
 * far the replicas together can go over a limit (docs/rate-limits.md derives the bound).
 * A request is admitted only if every limit has room, and then counts against all of them.
 */
export class RequestLimits {
  readonly #options: RequestLimitsOptions;
  readonly #plans = new WeakMap<LimitedKey, Plan>();
  /** Insertion-ordered, so the oldest is dropped first when full (an LRU's bookkeeping costs on every hit). */
  readonly #counters = new Map<string, Counter>();
  readonly #maxCounters: number;
  /** Reused by admit(), which is synchronous: no array per request. */
  readonly #scratch: Counter[] = [];

  constructor(options: RequestLimitsOptions) {
    this.#options = options;
    this.#maxCounters = options.maxCounters ?? 100_000;
  }

  get size(): number {
    return this.#counters.size;
  }

  /** undefined for a key without limits (the common case, and no work beyond one WeakMap read). */
  admit(key: LimitedKey): LimitCheck | undefined {
    // No WeakMap entry for a key without limits: at 100,000 cached keys its table alone was 4 MiB.
    if (key.limits === undefined) return undefined;
    const plan = this.#plan(key);
    if (plan.items.length === 0) return undefined;
    const now = this.#options.now();
    let refused: PlanItem | undefined;
    let refusedCounter: Counter | undefined;
    const counters = this.#scratch;
    counters.length = 0;
    for (const item of plan.items) {
      const counter = this.#counter(item, now);
      counters.push(counter);
      if (refused === undefined && used(counter) >= counter.limit) {
        refused = item;
        refusedCounter = counter;
      }
    }
    // The RateLimit field names the policy the client is closest to running out of (the one that
    // refused, if one did): formatting every policy on every hit would cost more than counting.
    let tightest = refusedCounter;
    for (const counter of counters) {
      if (refused === undefined) {
        counter.pending += 1;
        // Running low: tell the other replicas now rather than at the next interval.
        if (counter.pending * EARLY_SYNC_SHARE >= counter.limit - counter.known - counter.sending) {
          this.#options.syncSoon();
        }
        if (tightest === undefined || remaining(counter) < remaining(tightest)) tightest = counter;
      }
    }
    return {
      allowed: refused === undefined,
      refusedBy: refused?.name,
      retryAfterSeconds: refusedCounter && secondsLeft(refusedCounter, now),
      policyHeader: plan.policyHeader,
      stateHeader: stateItem(tightest as Counter, now),
    };
  }

  /**
   * Takes what was admitted since the last sync, for the store. Each delta must come back
   * through settle() (or restore() on failure) before the next takeDeltas().
   */
  takeDeltas(): CounterDelta[] {
    const now = this.#options.now();
    const out: CounterDelta[] = [];
    for (const [id, counter] of this.#counters.entries()) {
      if (now >= counter.windowStart + counter.periodMs) {
        // The window is over: nothing in it matters any more.
        this.#counters.delete(id);
        continue;
      }
      if (counter.pending === 0 && now - counter.touchedAt > IDLE_AFTER_MS) continue;
      out.push({
        subject: counter.subject,
        name: counter.name,
        windowStart: counter.windowStart,
        delta: counter.pending,
      });
      counter.sending += counter.pending;
      counter.pending = 0;
    }
    return out;
  }

  /** The store's totals after `sent` was added. */
  settle(sent: readonly CounterDelta[], totals: readonly CounterTotal[]): void {
    const byId = new Map(totals.map((t) => [`${t.subject}|${t.name}`, t]));
    for (const delta of sent) {
      const counter = this.#counters.get(`${delta.subject}|${delta.name}`);
      if (!counter || counter.windowStart !== delta.windowStart) continue;
      counter.sending -= delta.delta;
      const total = byId.get(`${delta.subject}|${delta.name}`);
      if (total === undefined) continue;
      if (total.windowStart === delta.windowStart) counter.known = Math.max(counter.known, total.count);
      else if (total.windowStart > delta.windowStart && Number.isFinite(counter.periodMs)) {
        // Another replica's clock is already in the next window: follow the store.
        counter.windowStart = total.windowStart;
        counter.known = total.count;
        counter.pending = 0;
        counter.sending = 0;
      }
    }
  }

  /** The sync failed: its counts go back to pending, for the next one. */
  restore(sent: readonly CounterDelta[]): void {
    for (const delta of sent) {
      const counter = this.#counters.get(`${delta.subject}|${delta.name}`);
      if (!counter || counter.windowStart !== delta.windowStart) continue;
      counter.sending -= delta.delta;
      counter.pending += delta.delta;
    }
  }

  #counter(item: PlanItem, now: number): Counter {
    let counter = this.#counters.get(item.id);
    if (counter === undefined || counter.periodMs !== item.periodMs) {
      counter = {
        subject: item.subject,
        name: item.name,
        limit: item.limit,
        periodMs: item.periodMs,
        windowStart: windowOf(now, item.periodMs),
        known: 0,
        pending: 0,
        sending: 0,
        touchedAt: now,
      };
      if (this.#counters.size >= this.#maxCounters) {
        const oldest = this.#counters.keys().next();
        if (!oldest.done) this.#counters.delete(oldest.value);
      }
      this.#counters.set(item.id, counter);
      // This replica has never heard the others' count: ask at once, not at the next interval.
      this.#options.syncSoon();
      return counter;
    }
    counter.limit = item.limit;
    if (now >= counter.windowStart + counter.periodMs) {
      counter.windowStart = windowOf(now, counter.periodMs);
      counter.known = 0;
      counter.pending = 0;
      counter.sending = 0;
    } else if (now - counter.touchedAt > IDLE_AFTER_MS) {
      // Not synced while idle: its `known` may be old.
      this.#options.syncSoon();
    }
    counter.touchedAt = now;
    return counter;
  }

  #plan(key: LimitedKey): Plan {
    let plan = this.#plans.get(key);
    if (plan === undefined) {
      plan = buildPlan(key);
      this.#plans.set(key, plan);
    }
    return plan;
  }
}

function buildPlan(key: LimitedKey): Plan {
  const limits = key.limits;
  if (!limits) return NO_PLAN;
  const items: PlanItem[] = [
    ...limits.key.map((l) => planItem(key.apiKeyId, `key:${l.name}`, l)),
    ...limits.user.map((l) => planItem(key.userId, `user:${l.name}`, l)),
    ...(limits.quota ? [planItem(key.apiKeyId, 'quota', limits.quota)] : []),
  ].filter((item) => item.limit > 0 && item.periodMs > 0 && HEADER_SAFE_NAME.test(item.name));
  if (items.length === 0) return NO_PLAN;
  return { items, policyHeader: items.map(policyItem).join(', ') };
}

function planItem(subject: string, name: string, definition: LimitDefinition): PlanItem {
  return {
    id: `${subject}|${name}`,
    subject,
    name,
    limit: definition.limit,
    periodMs: definition.periodMs ?? Number.POSITIVE_INFINITY,
  };
}

function used(counter: Counter): number {
  return counter.known + counter.sending + counter.pending;
}

/** Fixed windows at multiples of the period since the epoch, so every replica agrees on them. */
function windowOf(now: number, periodMs: number): number {
  return Number.isFinite(periodMs) ? now - (now % periodMs) : 0;
}

function secondsLeft(counter: Counter, now: number): number | undefined {
  if (!Number.isFinite(counter.periodMs)) return undefined;
  return Math.max(1, Math.ceil((counter.windowStart + counter.periodMs - now) / 1000));
}

// Structured-field strings (RFC 9651): names are [a-z0-9:-] only (api/ratelimits.ts), so no escaping.
function policyItem(item: PlanItem): string {
  const window = Number.isFinite(item.periodMs) ? `;w=${Math.ceil(item.periodMs / 1000)}` : '';
  return `"${item.name}";q=${item.limit}${window}`;
}

function remaining(counter: Counter): number {
  return Math.max(0, counter.limit - used(counter));
}

function stateItem(counter: Counter, now: number): string {
  const reset = secondsLeft(counter, now);
  const head = `"${counter.name}";r=${remaining(counter)}`;
  return reset === undefined ? head : `${head};t=${reset}`;
}

/** The answer's text: which policy refused (its name is public, it is in the headers too). */
export function rateLimitedMessage(check: LimitCheck): string {
  if (check.refusedBy === 'quota') {
    return check.retryAfterSeconds === undefined
      ? 'The API key has used up its quota.'
      : 'The API key has used up its quota until the next refill.';
  }
  return `The API key is over its rate limit ${check.refusedBy ?? ''}.`;
}
