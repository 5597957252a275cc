import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Backoff } from '../lib/backoff.js';
import { testDatabase } from '../test/harness/database.js';
import { migrate } from './migrate.js';
import { maintainRequestLog, queryRequestLog, type RequestLogRow, RequestLogWriter } from './request-log.js';
import { RequestLogFields } from './request-log-rows.js';

let url: string;
let pool: pg.Pool;

const DAY_MS = 86_400_000;
const retry = () => new Backoff({ baseMs: 10, capMs: 20 }, () => 0.5);

function row(overrides: Partial<RequestLogRow> = {}): RequestLogRow {
  return {
    at: new Date().toISOString(),
    route: 'verify',
    key_id: 'key_0000000000000001',
    username: 'alice',
    actor: 'alice',
    subject: null,
    method: 'GET',
    path: '/api/things',
    client_address: '10.1.2.3',
    result: 'allow',
    reason: 'ok',
    count: 1,
    ...overrides,
  };
}

/** A row as the writer takes it: its time, key, other fields (each call a distinct set) and path. */
function record({
  at,
  key_id,
  count: _,
  path,
  ...values
}: RequestLogRow): [number, string | null, RequestLogFields, string | null] {
  return [Date.parse(at), key_id, new RequestLogFields(values), path];
}

async function partitions(): Promise<string[]> {
  const { rows } = await pool.query<{ relname: string }>(
    `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'request_log'::regclass ORDER BY 1`,
  );
  return rows.map((r) => r.relname);
}

const dayName = (ms: number): string =>
  `request_log_${new Date(ms).toISOString().slice(0, 10).replace(/-/g, '')}`;

beforeAll(async () => {
  url = await testDatabase();
  await migrate(url);
  pool = new pg.Pool({ connectionString: url, max: 4 });
});

afterAll(async () => {
  await pool?.end();
});

describe('request_log partitions', () => {
  it('exist from the migration for today and the week ahead, and maintenance drops only expired days', async () => {
    const today = Date.now();
    const names = await partitions();
    for (let d = 0; d <= 7; d++) expect(names).toContain(dayName(today + d * DAY_MS));

    // An old day, as a long-running install would have it, with a row in it.
    await pool.query(
      `CREATE TABLE request_log_20200101 PARTITION OF request_log FOR VALUES FROM ('2020-01-01 00:00Z') TO ('2020-01-02 00:00Z')`,
    );
    const writer = new RequestLogWriter(pool, { flushIntervalMs: 3_600_000, maxPending: 10, retry: retry() });
    writer.add(...record(row({ at: '2020-01-01T12:00:00.000Z', key_id: 'key_old' })));
    await writer.close();
    expect(await queryRequestLog(pool, { keyId: 'key_old', limit: 10 })).toHaveLength(1);

    expect(await maintainRequestLog(pool, { retentionDays: 30, aheadDays: 10 })).toEqual({
      created: 3,
      dropped: 1,
    });
    const after = await partitions();
    expect(after).not.toContain('request_log_20200101');
    expect(after).toContain(dayName(today + 10 * DAY_MS));
    expect(await queryRequestLog(pool, { keyId: 'key_old', limit: 10 })).toEqual([]);
    // Again: nothing to do.
    expect(await maintainRequestLog(pool, { retentionDays: 30, aheadDays: 10 })).toEqual({
      created: 0,
      dropped: 0,
    });
    await expect(maintainRequestLog(pool, { retentionDays: 0, aheadDays: 7 })).rejects.toThrow(
      /retention_days must be 1 to 3650/,
    );
  });
});

describe('RequestLogWriter', () => {
  it('writes queued rows in one batch and reads them back by key, user and time range', async () => {
    const writer = new RequestLogWriter(pool, {
      flushIntervalMs: 3_600_000,
      maxPending: 100,
      retry: retry(),
    });
    const base = Date.now() - 60_000;
    const at = (s: number): string => new Date(base + s * 1000).toISOString();
    const key = `key_${randomBytes(6).toString('hex')}`;
    writer.add(...record(row({ at: at(0), key_id: key, username: 'bob', actor: 'bob' })));
    writer.add(...record(row({ at: at(1), key_id: key, result: 'deny', reason: 'disabled' })));
    writer.add(
      ...record(
        row({ at: at(2), key_id: null, username: null, actor: null, result: 'deny', reason: 'unknown' }),
      ),
    );
    writer.add(...record(row({ at: at(3), key_id: key, username: 'carol', actor: 'bob', subject: 'carol' })));
    expect(writer.pending).toBe(4);
    expect(await queryRequestLog(pool, { keyId: key, limit: 10 })).toEqual([]);
    await writer.flush();
    expect(writer.pending).toBe(0);
    expect(writer.written).toBe(4);

    const byKey = await queryRequestLog(pool, { keyId: key, limit: 10 });
    expect(byKey.map((r) => r.reason)).toEqual(['ok', 'disabled', 'ok']);
    expect(byKey[0]).toMatchObject({
      route: 'verify',
      method: 'GET',
      path: '/api/things',
      at: new Date(at(0)),
    });
    // By user: as the effective user or as the actor.
    const byBob = await queryRequestLog(pool, { username: 'bob', limit: 10 });
    expect(byBob.map((r) => r.subject)).toEqual([null, 'carol']);
    const range = await queryRequestLog(pool, {
      keyId: key,
      since: new Date(at(1)),
      until: new Date(at(3)),
      limit: 10,
    });
    expect(range.map((r) => r.reason)).toEqual(['disabled']);
    // The limit keeps the latest rows, oldest first.
    const latest = await queryRequestLog(pool, { keyId: key, limit: 2 });
    expect(latest.map((r) => r.at.toISOString())).toEqual([at(1), at(3)]);
    await writer.close();
  });

  it('writes like decisions of one millisecond as one row with their count, and counts every decision', async () => {
    const writer = new RequestLogWriter(pool, {
      flushIntervalMs: 3_600_000,
      maxPending: 100,
      retry: retry(),
    });
    const key = `key_${randomBytes(6).toString('hex')}`;
    const ms = Date.now() - 30_000;
    const [, , ok] = record(row());
    const [, , denied] = record(row({ result: 'forbidden', reason: 'insufficient_scope' }));
    // A client repeating one request, and another decision of the same key in between.
    writer.add(ms, key, ok, '/a');
    writer.add(ms, key, ok, '/a');
    writer.add(ms, key, denied, '/a');
    writer.add(ms, key, ok, '/a');
    writer.add(ms, key, ok, '/b');
    writer.add(ms + 1, key, ok, '/b');
    expect(writer.pending).toBe(6);
    await writer.close();
    expect(writer.written).toBe(6);
    const rows = await queryRequestLog(pool, { keyId: key, limit: 10 });
    expect(
      rows
        .map((r) => `${r.at.getTime() - ms} ${r.path} ${r.reason} ×${r.count}`)
        .sort((a, b) => a.localeCompare(b)),
    ).toEqual(['0 /a insufficient_scope ×1', '0 /a ok ×3', '0 /b ok ×1', '1 /b ok ×1']);
  });

  it('keeps rows up to its bound while the store is unreachable and counts the rest dropped', async () => {
    const port = await closedPort();
    const unreachable = new pg.Pool({ connectionString: `postgres://nobody@127.0.0.1:${port}/x`, max: 1 });
    const key = `key_${randomBytes(6).toString('hex')}`;
    const writer = new RequestLogWriter(unreachable, {
      flushIntervalMs: 3_600_000,
      maxPending: 3,
      retry: retry(),
    });
    for (let i = 0; i < 5; i++) writer.add(...record(row({ key_id: key, path: `/n/${i}` })));
    expect(writer.pending).toBe(3);
    expect(writer.dropped('buffer_full')).toBe(2);
    await expect(writer.flush()).rejects.toMatchObject({ transient: true });
    // Nothing lost by the failed write itself.
    expect(writer.pending).toBe(3);
    expect(writer.dropped('buffer_full')).toBe(2);
    await writer.close().catch(() => undefined);
    await unreachable.end();
    // Recovery with the same queue is test/e2e/request-log.test.ts, with a real Postgres stopped and started.
  });

  it('drops and counts a batch the store refuses for good (a day without a partition)', async () => {
    const writer = new RequestLogWriter(pool, { flushIntervalMs: 3_600_000, maxPending: 10, retry: retry() });
    writer.add(...record(row({ at: '2099-01-01T00:00:00.000Z' })));
    writer.add(...record(row()));
    await expect(writer.flush()).rejects.toMatchObject({ transient: false });
    expect(writer.dropped('rejected')).toBe(2);
    expect(writer.pending).toBe(0);
    // The next batch is not held back by the refused one.
    writer.add(...record(row({ key_id: 'key_after_refusal' })));
    await writer.close();
    expect(await queryRequestLog(pool, { keyId: 'key_after_refusal', limit: 10 })).toHaveLength(1);
  });
});

describe('request_log grants', () => {
  const suffix = randomBytes(4).toString('hex');
  const WEBHOOK = `kw_rl_webhook_${suffix}`;
  const OPERATOR = `kw_rl_operator_${suffix}`;
  let admin: pg.Client;
  let asWebhook: pg.Client;
  let asOperator: pg.Client;

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: inject('pgAdminUrl') });
    await admin.connect();
    await admin.query(`CREATE ROLE ${WEBHOOK} LOGIN IN ROLE keyward_webhook`);
    await admin.query(`CREATE ROLE ${OPERATOR} LOGIN IN ROLE keyward_operator`);
    const as = (role: string): pg.Client => {
      const u = new URL(url);
      u.username = role;
      return new pg.Client({ connectionString: u.toString() });
    };
    asWebhook = as(WEBHOOK);
    asOperator = as(OPERATOR);
    await Promise.all([asWebhook.connect(), asOperator.connect()]);
  });

  afterAll(async () => {
    await asWebhook?.end();
    await asOperator?.end();
    await admin?.query(`DROP ROLE IF EXISTS ${WEBHOOK}`);
    await admin?.query(`DROP ROLE IF EXISTS ${OPERATOR}`);
    await admin?.end();
  });

  async function outcome(client: pg.Client, sql: string): Promise<string> {
    try {
      await client.query(sql);
      return 'ok';
    } catch (err) {
      return (err as { code?: string }).code ?? 'error';
    }
  }
  const DENIED = '42501';
  const today = (): string => dayName(Date.now());

  it('lets the webhook only insert, the operator only read and run maintenance', async () => {
    const insert = `INSERT INTO request_log (at, route, result, reason) VALUES (now(), 'verify', 'deny', 'missing')`;
    expect(await outcome(asWebhook, insert)).toBe('ok');
    // The writer's COPY needs no more than INSERT.
    const u = new URL(url);
    u.username = WEBHOOK;
    const webhookPool = new pg.Pool({ connectionString: u.toString(), max: 1 });
    const writer = new RequestLogWriter(webhookPool, {
      flushIntervalMs: 3_600_000,
      maxPending: 10,
      retry: retry(),
    });
    writer.add(...record(row({ key_id: `key_copy_${suffix}` })));
    await writer.close();
    await webhookPool.end();
    expect(writer.written).toBe(1);
    expect(await queryRequestLog(pool, { keyId: `key_copy_${suffix}`, limit: 10 })).toHaveLength(1);
    expect(await outcome(asWebhook, 'SELECT * FROM request_log')).toBe(DENIED);
    expect(await outcome(asWebhook, 'DELETE FROM request_log')).toBe(DENIED);
    expect(await outcome(asWebhook, `UPDATE request_log SET reason = 'ok'`)).toBe(DENIED);
    expect(await outcome(asWebhook, `SELECT * FROM ${today()}`)).toBe(DENIED);
    expect(await outcome(asWebhook, `SELECT keyward_request_log_maintain(1, 1)`)).toBe(DENIED);

    expect(await outcome(asOperator, 'SELECT count(*) FROM request_log')).toBe('ok');
    expect(await outcome(asOperator, 'SELECT * FROM keyward_request_log_maintain(30, 7)')).toBe('ok');
    expect(await outcome(asOperator, insert)).toBe(DENIED);
    expect(await outcome(asOperator, 'DELETE FROM request_log')).toBe(DENIED);
    expect(await outcome(asOperator, 'TRUNCATE request_log')).toBe(DENIED);
    // Not through a partition either, and no partition can be dropped by hand.
    expect(await outcome(asOperator, `DELETE FROM ${today()}`)).toBe(DENIED);
    expect(await outcome(asOperator, `DROP TABLE ${today()}`)).toBe(DENIED);
    expect(await partitions()).toContain(today());
  });
});

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const { createServer } = await import('node:net');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
