/** A uniform number in [0, 1); injected so jitter is reproducible in tests. */
type Random = () => number;

export interface BackoffOptions {
  /** Delay ceiling of the first retry. */
  baseMs: number;
  /** No delay exceeds this, however many failures came before. */
  capMs: number;
}

/**
 * Exponential backoff with "equal jitter": the ceiling doubles per attempt up to capMs and the delay
 * is drawn from its upper half, so retries keep growing yet many clients that failed together
 * (every informer after an API server restart, every webhook replica after a store outage) do not retry in lockstep.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions, random: Random): number {
  // Beyond 2^52 the product is already far past any sane cap; clamping avoids Infinity.
  const ceiling = Math.min(opts.capMs, opts.baseMs * 2 ** Math.min(attempt, 52));
  return ceiling / 2 + (random() * ceiling) / 2;
}

/** Stateful form of backoffDelay for one retrying loop. */
export class Backoff {
  #attempt = 0;

  constructor(
    private readonly opts: BackoffOptions,
    private readonly random: Random,
  ) {
    if (!(opts.baseMs > 0) || !(opts.capMs >= opts.baseMs)) {
      throw new Error(`invalid backoff: base ${opts.baseMs} ms, cap ${opts.capMs} ms`);
    }
  }

  next(): number {
    return backoffDelay(this.#attempt++, this.opts, this.random);
  }

  reset(): void {
    this.#attempt = 0;
  }
}
