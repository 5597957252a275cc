import type pg from 'pg';
import { recordAudit } from './audit.js';
import { revokeLocked } from './keys.js';
import type { StoreContext } from './rows.js';
import { inTransaction } from './tx.js';

export interface LeakReportRow {
  readonly hash: Buffer;
  readonly tokenType: string;
  readonly url: string | null;
  readonly source: string | null;
  readonly reportedBy: string;
}

/**
 * Records leak reports for the operator to act on (store/migrations/0004_leak_reports.sql): the
 * webhook's role may insert here and nowhere else. One statement for the whole batch.
 */
export async function recordLeakReports(pool: pg.Pool, rows: readonly LeakReportRow[]): Promise<void> {
  if (rows.length === 0) return;
  await pool.query(
    `INSERT INTO leak_reports (token_hash, token_type, url, source, reported_by)
     SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[], $5::text[])`,
    [
      rows.map((r) => r.hash),
      rows.map((r) => r.tokenType),
      rows.map((r) => r.url),
      rows.map((r) => r.source),
      rows.map((r) => r.reportedBy),
    ],
  );
}

/**
 * Works through pending leak reports (POST /leaks on the webhook): revokes each reported key
 * that is live, in `namespaces` (null: all), with reason `leaked`, and records an audit event
 * per report, the token's hash never among its details. Returns the keys it revoked.
 */
export async function processLeakReports(
  ctx: StoreContext,
  namespaces: readonly string[] | null,
  limit = 100,
): Promise<Array<{ namespace: string; name: string; keyId: string; source: string | null }>> {
  return inTransaction(ctx.pool, 'process leak reports', async (client) => {
    const { rows } = await client.query<{
      id: string;
      token_type: string;
      url: string | null;
      source: string | null;
      reported_by: string;
      key: string | null;
      key_id: string | null;
      namespace: string | null;
      name: string | null;
      service_user_id: string | null;
      revoked_at: Date | null;
    }>(
      `SELECT r.id, r.token_type, r.url, r.source, r.reported_by,
              k.id AS key, k.key_id, k.namespace, k.name, k.service_user_id, k.revoked_at
         FROM leak_reports r
         LEFT JOIN api_key_secrets s ON s.hash = r.token_hash
         LEFT JOIN api_keys k ON k.id = s.api_key_id
        WHERE r.processed_at IS NULL AND ($1::text[] IS NULL OR k.namespace = ANY($1) OR k.id IS NULL)
        ORDER BY r.id LIMIT $2
        FOR UPDATE OF r SKIP LOCKED`,
      [namespaces, limit],
    );
    const revoked: Array<{ namespace: string; name: string; keyId: string; source: string | null }> = [];
    const revokedNow = new Set<string>();
    for (const row of rows) {
      let outcome: 'revoked' | 'already_revoked' | 'unknown' = 'unknown';
      if (row.key !== null) {
        // The rows were read before this batch revoked anything: the same token twice in it is one revocation.
        outcome = row.revoked_at || revokedNow.has(row.key) ? 'already_revoked' : 'revoked';
        if (outcome === 'revoked') {
          revokedNow.add(row.key);
          await revokeLocked(ctx, client, row.key, 'leaked');
          revoked.push({
            namespace: row.namespace!,
            name: row.name!,
            keyId: row.key_id!,
            source: row.source,
          });
        }
      }
      await recordAudit(client, ctx.actor, {
        action: 'key.leak_reported',
        namespace: row.namespace,
        name: row.name,
        serviceUserId: row.service_user_id,
        keyId: row.key_id,
        detail: {
          outcome,
          tokenType: row.token_type,
          url: row.url,
          source: row.source,
          reportedBy: row.reported_by,
        },
      });
      await client.query('UPDATE leak_reports SET processed_at = now(), outcome = $2 WHERE id = $1', [
        row.id,
        outcome,
      ]);
    }
    return revoked;
  });
}
