import pg from 'pg';
import { parseDuration } from '../../api/duration.js';
import { isKeyId } from '../../credentials/token.js';
import { queryRequestLog, type RequestLogFilter } from '../../store/request-log.js';
import { UsageError } from './errors.js';
import { EXIT_OK, emit, fail, type OutputFormat, table } from './output.js';

export interface AuditOptions {
  readonly output: OutputFormat;
  readonly storeUrl?: string;
  readonly key?: string;
  readonly user?: string;
  readonly since?: string;
  readonly until?: string;
  readonly limit: string;
}

const MAX_LIMIT = 100_000;
const USERNAME = /^[A-Za-z0-9]+([-_][A-Za-z0-9]+)*$/;

/** An RFC 3339 time, or a duration (`1h`, `7d`) meaning that long ago. */
function parseTime(option: string, text: string, now: number): Date {
  const ago = parseDuration(text);
  if (ago !== undefined) return new Date(now - ago);
  const at = /^\d{4}-\d{2}-\d{2}(T|$)/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(at)) {
    throw new UsageError(
      `${option}: want an RFC 3339 time (2026-12-01T09:00:00Z) or a duration ago (90m, 7d)`,
    );
  }
  return new Date(at);
}

function filterOf(options: AuditOptions): RequestLogFilter {
  const now = Date.now();
  const limit = Number(options.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    throw new UsageError(`--limit: want a whole number from 1 to ${MAX_LIMIT}`);
  }
  if (options.key !== undefined && !isKeyId(options.key)) {
    throw new UsageError('--key: want a key id like key_0123456789abcdef (status.keyId of the ApiKey)');
  }
  if (options.user !== undefined && !USERNAME.test(options.user)) {
    throw new UsageError('--user: want a ServiceUser username');
  }
  return {
    limit,
    ...(options.key !== undefined ? { keyId: options.key } : {}),
    ...(options.user !== undefined ? { username: options.user } : {}),
    ...(options.since !== undefined ? { since: parseTime('--since', options.since, now) } : {}),
    ...(options.until !== undefined ? { until: parseTime('--until', options.until, now) } : {}),
  };
}

/**
 * `keyward audit`: the request log (the store's request_log, written by the webhooks) by key,
 * user or time range. Reads as whatever role the URL names; keyward_operator may read it.
 */
export async function auditCommand(options: AuditOptions): Promise<number> {
  const filter = filterOf(options);
  const storeUrl = options.storeUrl ?? process.env.KEYWARD_STORE_URL;
  if (storeUrl === undefined || storeUrl === '') throw new UsageError('no --store-url or $KEYWARD_STORE_URL');
  const pool = new pg.Pool({ connectionString: storeUrl, max: 1, connectionTimeoutMillis: 10_000 });
  pool.on('error', () => undefined);
  let entries: Awaited<ReturnType<typeof queryRequestLog>>;
  try {
    entries = await queryRequestLog(pool, filter);
  } catch (err) {
    // StoreError messages carry no parameters and no connection password.
    return fail((err as Error).message);
  } finally {
    await pool.end().catch(() => undefined);
  }
  const records = entries.map((e) => ({ ...e, at: e.at.toISOString() }));
  emit(options.output, records, () =>
    records.length === 0
      ? 'No requests recorded for this filter.\n'
      : table(records, [
          { header: 'TIME', value: (r) => r.at },
          { header: 'ROUTE', value: (r) => r.route },
          { header: 'KEY-ID', value: (r) => r.key_id },
          { header: 'USER', value: (r) => r.username },
          { header: 'ACTOR', value: (r) => r.actor },
          { header: 'SUBJECT', value: (r) => r.subject },
          { header: 'METHOD', value: (r) => r.method },
          { header: 'PATH', value: (r) => r.path },
          { header: 'CLIENT', value: (r) => r.client_address },
          { header: 'RESULT', value: (r) => r.result },
          { header: 'REASON', value: (r) => r.reason },
          // Like decisions of one millisecond are one row (docs/request-log.md).
          { header: 'COUNT', value: (r) => String(r.count) },
        ]),
  );
  return EXIT_OK;
}
