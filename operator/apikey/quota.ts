import { type Quota, type QuotaStatus, quotaDefinition } from '../../api/ratelimits.js';
import type { RateLimitDefinitions } from '../../store/rate-limits.js';

/**
 * status.quota of a key: its quota less what the webhooks have counted in the current refill
 * period. Webhook replicas report every KEYWARD_RATE_LIMIT_SYNC_INTERVAL, and a Ready key is
 * reconciled at least every lastUsedRefresh, so the figure lags by at most the sum of both.
 */
export async function quotaStatus(
  limits: RateLimitDefinitions,
  uid: string,
  quota: Quota | undefined,
  now: Date,
): Promise<QuotaStatus | null> {
  const definition = quotaDefinition(quota);
  if (!definition) return null;
  const period = definition.periodMs;
  const windowStart = period === null ? 0 : now.getTime() - (now.getTime() % period);
  const usage = await limits.quotaUsage(uid);
  const used = usage && usage.windowStart.getTime() === windowStart ? usage.used : 0;
  return {
    limit: definition.limit,
    remaining: Math.max(0, definition.limit - used),
    ...(period !== null && { resetsAt: new Date(windowStart + period).toISOString() }),
  };
}
