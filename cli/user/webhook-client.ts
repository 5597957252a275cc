import { UsageError } from './errors.js';

/** How long the CLI waits for the webhook. */
const WEBHOOK_TIMEOUT_MS = 10_000;

/** --webhook-url, else $KEYWARD_WEBHOOK_URL; without a trailing slash. */
export function webhookUrl(option: string | undefined): string | undefined {
  const url = option ?? process.env.KEYWARD_WEBHOOK_URL;
  if (url === undefined || url.trim() === '') return undefined;
  try {
    const parsed = new URL(url.trim());
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error();
  } catch {
    throw new UsageError('--webhook-url must be an http(s) URL');
  }
  return url.trim().replace(/\/+$/, '');
}

export function webhookFetch(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS) });
}
