import { setTimeout as sleep } from 'node:timers/promises';

export interface PollOptions {
  /** Appended to the timeout error, e.g. a process's log tail or the object last seen. */
  diagnostics?: () => string;
  /**
   * A fixed pause between checks. By default the pause starts short and doubles up to
   * MAX_INTERVAL_MS, so quick conditions return quickly and slow ones do not hammer the server.
   */
  intervalMs?: number;
}

const FIRST_INTERVAL_MS = 10;
const MAX_INTERVAL_MS = 100;

/**
 * The one poll helper (tests, benchmarks and `keyward sandbox`): calls `check` until it returns
 * something other than `undefined` or `false`, and returns that. A check that throws is retried;
 * on timeout the error names `what`, the last error thrown and the diagnostics.
 */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  /** PollOptions, or just its `diagnostics`. */
  options: PollOptions | (() => string) = {},
): Promise<Exclude<T, false | undefined>> {
  if (typeof options === 'function') options = { diagnostics: options };
  const deadline = Date.now() + timeoutMs;
  let interval = options.intervalMs ?? FIRST_INTERVAL_MS;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as Exclude<T, false | undefined>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) break;
    await sleep(Math.min(interval, Math.max(0, deadline - Date.now())));
    if (options.intervalMs === undefined) interval = Math.min(interval * 2, MAX_INTERVAL_MS);
  }
  const detail =
    lastError === undefined
      ? ''
      : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
  const extra = options.diagnostics ? `\n${options.diagnostics()}` : '';
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}${extra}`);
}
