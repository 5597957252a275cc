import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { generateToken } from '../../credentials/token.js';
import { testDatabase } from '../harness/database.js';
import { readyApp, type StoreFixture, storeFixture, testConfig, verify } from '../support/webhook.js';

/**
 * The two store roles of the `roles` migration, as a deployer sets them up (docs/store-roles.md):
 * a LOGIN role per component, member of keyward_operator or keyward_webhook. The operator's store
 * API runs as the one, a whole webhook as the other.
 */
const suffix = randomBytes(4).toString('hex');
const OPERATOR_LOGIN = `kw_operator_${suffix}`;
const WEBHOOK_LOGIN = `kw_webhook_${suffix}`;

let admin: pg.Client;
let fx: StoreFixture;
let app: FastifyInstance;
let asWebhook: pg.Client;
let asOperator: pg.Client;

function urlAs(url: string, role: string): string {
  const u = new URL(url);
  u.username = role;
  return u.toString();
}

beforeAll(async () => {
  const url = await testDatabase();
  admin = new pg.Client({ connectionString: inject('pgAdminUrl') });
  await admin.connect();
  // Migrating creates the group roles; the deployer's LOGIN roles join them afterwards.
  fx = await storeFixture(url, 2, urlAs(url, OPERATOR_LOGIN));
  await admin.query(`CREATE ROLE ${OPERATOR_LOGIN} LOGIN IN ROLE keyward_operator`);
  await admin.query(`CREATE ROLE ${WEBHOOK_LOGIN} LOGIN IN ROLE keyward_webhook`);
  app = await readyApp(testConfig(urlAs(url, WEBHOOK_LOGIN), { KEYWARD_USAGE_FLUSH_INTERVAL: '1m' }));
  asWebhook = new pg.Client({ connectionString: urlAs(url, WEBHOOK_LOGIN) });
  asOperator = new pg.Client({ connectionString: urlAs(url, OPERATOR_LOGIN) });
  await Promise.all([asWebhook.connect(), asOperator.connect()]);
});

afterAll(async () => {
  await app?.close();
  await fx?.close();
  await asWebhook?.end();
  await asOperator?.end();
  if (admin) {
    await admin.query(`DROP ROLE IF EXISTS ${OPERATOR_LOGIN}`);
    await admin.query(`DROP ROLE IF EXISTS ${WEBHOOK_LOGIN}`);
    await admin.end();
  }
});

/** The SQLSTATE a statement fails with, or 'ok'. */
async function outcome(client: pg.Client, sql: string, values: unknown[] = []): Promise<string> {
  try {
    await client.query(sql, values);
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? 'error';
  }
}

const DENIED = '42501';

describe('store roles', () => {
  it('runs the operator as keyward_operator and a whole webhook as keyward_webhook', async () => {
    const user = await fx.createUser({ scopes: ['projects:*'] });
    const key = await fx.issueKey(user);
    const ok = await verify(app, key.token, { scope: 'projects:alpha' });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['x-keyward-key-id']).toBe(key.keyId);
    expect((await verify(app, key.token, { scope: 'billing' })).statusCode).toBe(403);
    expect((await verify(app, generateToken().token)).statusCode).toBe(401);
    await app.usage.flush();
    const { rows } = await asOperator.query<{ allowed: string; denied: string; used: boolean }>(
      `SELECT sum(u.allowed) AS allowed, sum(u.denied) AS denied, bool_and(k.last_used_at IS NOT NULL) AS used
         FROM api_key_usage u JOIN api_keys k ON k.id = u.api_key_id WHERE k.key_id = $1`,
      [key.keyId],
    );
    expect(rows[0]).toEqual({ allowed: '1', denied: '1', used: true });
    // The operator role changes state the webhook sees at once.
    await fx.setSuspended(user, true);
    await expect.poll(async () => (await verify(app, key.token)).statusCode).toBe(401);
  });

  it('refuses the webhook role everything but reading keys and writing usage', async () => {
    const user = await fx.createUser();
    const key = await fx.issueKey(user);
    const forged = generateToken();
    expect(
      await outcome(
        asWebhook,
        'INSERT INTO api_key_secrets (hash, api_key_id, display_prefix) VALUES ($1, $2, $3)',
        [forged.hash, key.apiKeyId, forged.displayPrefix],
      ),
    ).toBe(DENIED);
    expect(await outcome(asWebhook, 'UPDATE api_keys SET disabled = false, expires_at = NULL')).toBe(DENIED);
    expect(await outcome(asWebhook, 'UPDATE api_keys SET revoked_at = NULL')).toBe(DENIED);
    expect(await outcome(asWebhook, "UPDATE service_users SET scopes = '{*}', suspended = false")).toBe(
      DENIED,
    );
    expect(await outcome(asWebhook, 'DELETE FROM api_key_secrets')).toBe(DENIED);
    expect(await outcome(asWebhook, 'DELETE FROM api_key_usage')).toBe(DENIED);
    expect(await outcome(asWebhook, 'SELECT * FROM audit_events')).toBe(DENIED);
    expect(await outcome(asWebhook, 'CREATE TABLE mine (x int)')).toBe(DENIED);
    // The change log is read by every webhook; a webhook that could write it could hide a revoke.
    expect(await outcome(asWebhook, `INSERT INTO change_log (change) VALUES ('{}')`)).toBe(DENIED);
    expect(await outcome(asWebhook, 'DELETE FROM change_log')).toBe(DENIED);
    expect(await outcome(asWebhook, 'UPDATE change_log SET change = change')).toBe(DENIED);
    expect(await outcome(asWebhook, 'SELECT seq, change FROM change_log LIMIT 1')).toBe('ok');
    // What it needs, it has.
    expect(await outcome(asWebhook, 'SELECT hash FROM api_key_secrets LIMIT 1')).toBe('ok');
    expect(
      await outcome(asWebhook, 'UPDATE api_keys SET last_used_at = now() WHERE id = $1', [key.apiKeyId]),
    ).toBe('ok');
    // The forged secret never made it in.
    expect((await verify(app, forged.token)).statusCode).toBe(401);
  });

  it('lets the webhook role write the request log it cannot read back; the operator role reads it', async () => {
    const user = await fx.createUser();
    const key = await fx.issueKey(user);
    expect(
      (await verify(app, key.token, { headers: { 'x-original-uri': '/as-webhook-role' } })).statusCode,
    ).toBe(200);
    await app.requestLog.flush();
    expect(await outcome(asWebhook, 'SELECT * FROM request_log')).toBe(DENIED);
    expect(await outcome(asWebhook, 'DELETE FROM request_log')).toBe(DENIED);
    const { rows } = await asOperator.query(
      'SELECT username, path, result FROM request_log WHERE key_id = $1',
      [key.keyId],
    );
    expect(rows).toEqual([{ username: user.username, path: '/as-webhook-role', result: 'allow' }]);
    expect(await outcome(asOperator, 'DELETE FROM request_log')).toBe(DENIED);
  });

  it('keeps the migrations ledger and the audit trail out of the operator role’s reach', async () => {
    expect(await outcome(asOperator, 'DELETE FROM keyward_schema_migrations')).toBe(DENIED);
    expect(await outcome(asOperator, 'DELETE FROM audit_events')).toBe(DENIED);
    expect(await outcome(asOperator, 'DROP TABLE api_key_usage')).toBe(DENIED);
    // The change log is append-only but for the leader's pruning.
    expect(await outcome(asOperator, 'UPDATE change_log SET change = change')).toBe(DENIED);
    expect(await outcome(asOperator, 'DELETE FROM change_log WHERE false')).toBe('ok');
    expect(await outcome(asOperator, 'SELECT version FROM keyward_schema_migrations')).toBe('ok');
  });
});
