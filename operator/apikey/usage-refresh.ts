import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { RecentUse } from '../../store/recent-use.js';

/**
 * How far back each poll looks, in periods: the webhooks write a use seconds after it happened
 * (their usage flush) and with their own clock, so a use can land in the store with a time already
 * older than the previous poll. Looking back two periods and comparing with status finds it once.
 */
const LOOKBACK_PERIODS = 2;

export interface UsageRefreshDeps {
  readonly store: {
    recentlyUsedKeys(namespaces: readonly string[] | null, withinSeconds: number): Promise<RecentUse[]>;
  };
  readonly apiKeys: { get(key: string): KubernetesObject | undefined };
  readonly logger: Logger;
  /** null: every namespace. */
  readonly namespaces: readonly string[] | null;
  /** Reconciles the ApiKey `namespace/name`, which writes the store's lastUsedAt into its status. */
  readonly enqueue: (key: string) => void;
  /** KEYWARD_LAST_USED_REFRESH_SECONDS. */
  readonly intervalMs: number;
}

/**
 * Brings the webhooks' record of use to status.lastUsedAt. Every Ready key used to be reconciled
 * once a period to look for a newer use: with 10,000 keys, 167 passes a second, four store round
 * trips each, for keys nobody used. Now one query a period names the keys used lately, and only
 * those whose status is behind the store are queued.
 */
export class UsageRefresh {
  readonly #d: UsageRefreshDeps;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(deps: UsageRefreshDeps) {
    this.#d = deps;
  }

  start(): void {
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.poll().finally(() => this.#schedule());
    }, this.#d.intervalMs);
  }

  /** One round: queues every recently used key whose status.lastUsedAt is older than the store's. */
  async poll(): Promise<void> {
    const d = this.#d;
    let used: RecentUse[];
    try {
      used = await d.store.recentlyUsedKeys(d.namespaces, (LOOKBACK_PERIODS * d.intervalMs) / 1000);
    } catch (err) {
      d.logger.warn({ err: (err as Error).message }, 'recent key use could not be read; retrying');
      return;
    }
    for (const use of used) {
      const key = `${use.namespace}/${use.name}`;
      const shown = (d.apiKeys.get(key) as { status?: { lastUsedAt?: string } } | undefined)?.status
        ?.lastUsedAt;
      if (shown === undefined || new Date(shown).getTime() < use.lastUsedAt.getTime()) d.enqueue(key);
    }
  }
}
