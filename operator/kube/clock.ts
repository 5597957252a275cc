/** A scheduled callback that can be cancelled before it fires. */
export interface Timer {
  cancel(): void;
}

/**
 * Time as the machinery sees it. Everything in operator/kube takes one, so unit tests drive time with
 * test/support/fake-clock.ts instead of waiting.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  setTimer(ms: number, fn: () => void): Timer;
  /** Resolves after ms, or as soon as signal aborts; never rejects. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** A uniform number in [0, 1); injected so jitter is reproducible in tests. */
export type Random = () => number;

// Node fires a setTimeout longer than this after 1 ms, so longer delays (an ApiKey expiring next
// year) are chained through several timers.
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** `clock.sleep` for any Clock: a timer on that clock, cancelled when `signal` aborts. */
export function sleepOn(clock: Clock, ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const onAbort = (): void => {
      timer.cancel();
      resolve();
    };
    const timer = clock.setTimer(ms, () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimer(ms: number, fn: () => void): Timer {
    const due = Date.now() + Math.max(0, ms);
    let handle: NodeJS.Timeout;
    const arm = (): void => {
      const left = due - Date.now();
      handle = setTimeout(left > MAX_TIMEOUT_MS ? arm : fn, Math.min(Math.max(0, left), MAX_TIMEOUT_MS));
    };
    arm();
    return { cancel: () => clearTimeout(handle) };
  },
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(realClock, ms, signal);
  },
};
