import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { generateToken } from '../../credentials/token.js';
import { testDatabase } from '../harness/database.js';
import { runCli } from '../support/cli.js';
import {
  readyApp,
  type StoreFixture,
  storeFixture,
  type TestKey,
  testConfig,
  verify,
} from '../support/webhook.js';

/**
 * `keyward audit` (the built CLI, as a child process) reading the request log a real webhook
 * wrote into a real store, as the role a deployer would give it.
 */
const suffix = randomBytes(4).toString('hex');
const READER = `kw_audit_reader_${suffix}`;
const WEBHOOK = `kw_audit_webhook_${suffix}`;

let url: string;
let fx: StoreFixture;
let app: FastifyInstance;
let admin: pg.Client;
let alice: TestKey;
let bob: TestKey;
let startedAt: Date;

function urlAs(role: string): string {
  const u = new URL(url);
  u.username = role;
  return u.toString();
}

beforeAll(async () => {
  url = await testDatabase();
  fx = await storeFixture(url, 2);
  admin = new pg.Client({ connectionString: inject('pgAdminUrl') });
  await admin.connect();
  await admin.query(`CREATE ROLE ${READER} LOGIN IN ROLE keyward_operator`);
  await admin.query(`CREATE ROLE ${WEBHOOK} LOGIN IN ROLE keyward_webhook`);
  app = await readyApp(testConfig(url, { KEYWARD_REQUEST_LOG_FLUSH_INTERVAL: '1h' }));
  alice = await fx.issueKey(await fx.createUser({ username: `alice-${suffix}`, scopes: ['projects:*'] }));
  bob = await fx.issueKey(await fx.createUser({ username: `bob-${suffix}` }));
  startedAt = new Date();
  // Apart by a few milliseconds, so the order by time the tests expect is well defined.
  const apart = () => new Promise((resolve) => setTimeout(resolve, 5));
  await verify(app, alice.token, { headers: { 'x-original-uri': '/projects/alpha?x=1' } });
  await apart();
  await verify(app, alice.token, { scope: 'billing', headers: { 'x-original-uri': '/billing' } });
  await apart();
  await verify(app, bob.token, { headers: { 'x-original-uri': '/bob' } });
  await apart();
  await verify(app, generateToken().token, { headers: { 'x-original-uri': '/nobody' } });
  await app.requestLog.flush();
});

afterAll(async () => {
  await app?.close();
  await fx?.close();
  await admin?.query(`DROP ROLE IF EXISTS ${READER}`);
  await admin?.query(`DROP ROLE IF EXISTS ${WEBHOOK}`);
  await admin?.end();
});

describe('keyward audit', () => {
  it('lists one key’s requests as JSON, oldest first, as a member of keyward_operator', async () => {
    const res = await runCli(['audit', '--store-url', urlAs(READER), '--key', alice.keyId, '-o', 'json']);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const records = JSON.parse(res.stdout) as Array<Record<string, unknown>>;
    expect(records.map((r) => [r.path, r.result, r.reason])).toEqual([
      ['/projects/alpha', 'allow', 'ok'],
      ['/billing', 'forbidden', 'insufficient_scope'],
    ]);
    expect(records[0]).toMatchObject({
      route: 'verify',
      key_id: alice.keyId,
      username: alice.user.username,
      actor: alice.user.username,
      subject: null,
      method: 'GET',
      client_address: '127.0.0.1',
      count: 1,
    });
    expect(Date.parse(records[0]!.at as string)).toBeGreaterThanOrEqual(startedAt.getTime() - 1000);
    expect(res.stdout).not.toContain(alice.token);
  });

  it('filters by user and time range, and prints a table', async () => {
    const byUser = await runCli(['audit', '--store-url', urlAs(READER), '--user', bob.user.username]);
    expect(byUser.code).toBe(0);
    const lines = byUser.stdout.trim().split('\n');
    expect(lines[0]).toMatch(
      /^TIME\s+ROUTE\s+KEY-ID\s+USER\s+ACTOR\s+SUBJECT\s+METHOD\s+PATH\s+CLIENT\s+RESULT\s+REASON\s+COUNT$/,
    );
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain(bob.keyId);
    expect(lines[1]).toMatch(/\s\/bob\s.*\s1$/);

    const all = await runCli(['audit', '--store-url', urlAs(READER), '--since', '1h', '-o', 'json']);
    expect((JSON.parse(all.stdout) as Array<{ path: string }>).map((r) => r.path)).toEqual(
      expect.arrayContaining(['/projects/alpha', '/billing', '/bob', '/nobody']),
    );
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const none = await runCli(['audit', '--store-url', urlAs(READER), '--since', future]);
    expect(none).toMatchObject({ code: 0, stdout: 'No requests recorded for this filter.\n' });
    const latest = await runCli(['audit', '--store-url', urlAs(READER), '--limit', '1', '-o', 'json']);
    expect((JSON.parse(latest.stdout) as Array<{ path: string }>).map((r) => r.path)).toEqual(['/nobody']);
  });

  it('exits 1 for a role that may not read the log, 2 for bad options', async () => {
    const denied = await runCli(['audit', '--store-url', urlAs(WEBHOOK)]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/^keyward: read request log: permission denied for table request_log/);
    for (const args of [
      ['--since', 'yesterday'],
      ['--key', 'not-a-key'],
      ['--limit', '0'],
      ['--user', 'a b'],
    ]) {
      const res = await runCli(['audit', '--store-url', urlAs(READER), ...args]);
      expect({ args, code: res.code }).toEqual({ args, code: 2 });
      expect(res.stderr).toMatch(new RegExp(`^keyward: ${args[0]}: want`));
    }
    expect((await runCli(['audit'], { env: { KEYWARD_STORE_URL: '' } })).code).toBe(2);
  });
});
