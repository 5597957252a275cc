import type { StoreContext } from './rows.js';

/** A live key and the last allowed use the store has of it. */
export interface RecentUse {
  readonly namespace: string;
  readonly name: string;
  readonly lastUsedAt: Date;
}

/**
 * Live keys in `namespaces` (null: all) whose last allowed use (api_keys.last_used_at, written by
 * the webhooks' usage batches) is later than `withinSeconds` ago by the store's clock: the keys whose
 * status.lastUsedAt may be behind. One statement for every key, so an operator need not
 * reconcile each of its keys every period to find the few that were used.
 */
export async function recentlyUsedKeys(
  ctx: StoreContext,
  namespaces: readonly string[] | null,
  withinSeconds: number,
): Promise<RecentUse[]> {
  const { rows } = await ctx.pool.query<{ namespace: string; name: string; last_used_at: Date }>(
    `SELECT namespace, name, last_used_at FROM api_keys
      WHERE revoked_at IS NULL AND last_used_at > now() - make_interval(secs => $2)
        AND ($1::text[] IS NULL OR namespace = ANY($1))`,
    [namespaces, withinSeconds],
  );
  return rows.map((r) => ({ namespace: r.namespace, name: r.name, lastUsedAt: r.last_used_at }));
}
