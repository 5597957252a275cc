import type pg from 'pg';

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
