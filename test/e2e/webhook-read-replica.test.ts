import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../../devenv/poll.js';
import { createDatabase, startPostgres, type TestPostgres } from '../../devenv/postgres.js';
import { createLogger } from '../../webhook/logger.js';
import {
  metricsText,
  readyApp,
  type StoreFixture,
  storeFixture,
  testConfig,
  verify,
} from '../support/webhook.js';

/**
 * A webhook on a real streaming replica (pg_basebackup -R of a private primary): NOTIFY does not
 * reach it, so it follows the change log by polling, reads keys from the replica and writes usage
 * to the primary. And a webhook cut off from its store catches up from the log instead of dropping
 * its cache. Private clusters: the suite blocks logins and terminates backends.
 */
const POLL_MS = 250;
// A revocation must reach the replica's webhook within replication lag plus this.
const PROPAGATION_ALLOWANCE_MS = 1_000;
// How long reconnects are refused. The catch-up decision reads seqs, never the clock, so a minute
// would only add wall time: 5 s is ten listener backoffs (capped at 500 ms in tests) of refusals.
const OUTAGE_MS = 5_000;
const WEBHOOK_LOGIN = 'kw_replica_webhook';

let primary: TestPostgres;
let replica: TestPostgres;
let primaryUrl: string;
let replicaUrl: string;
let fx: StoreFixture;
let primaryAdmin: pg.Client;
let replicaAdmin: pg.Client;

function withPort(url: string, port: number, user?: string): string {
  const u = new URL(url);
  u.port = String(port);
  if (user) u.username = user;
  return u.toString();
}

beforeAll(async () => {
  primary = await startPostgres();
  primaryUrl = await createDatabase(primary.adminUrl, 'keyward');
  fx = await storeFixture(primaryUrl, 2);
  primaryAdmin = new pg.Client({ connectionString: primaryUrl });
  await primaryAdmin.connect();
  await primaryAdmin.query(`CREATE ROLE ${WEBHOOK_LOGIN} LOGIN IN ROLE keyward_webhook`);
  replica = await startPostgres({ replicaOf: primary });
  replicaUrl = withPort(primaryUrl, replica.port);
  replicaAdmin = new pg.Client({ connectionString: replicaUrl });
  await replicaAdmin.connect();
}, 120_000);

afterAll(async () => {
  await replicaAdmin?.end();
  await primaryAdmin?.end();
  await fx?.close();
  await replica?.stop();
  await primary?.stop();
});

/** A counter or gauge of the app's metrics, summed over its label sets. */
async function metric(app: FastifyInstance, name: string, labels = ''): Promise<number> {
  const text = await metricsText(app);
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{${labels}`) || line.startsWith(`${name} `))
      total += Number(line.split(' ').at(-1));
  }
  return total;
}

/** Resolves (with ms since `since`) once the replica has replayed the key's revocation. */
async function replicaSeesRevoked(keyId: string, since: number): Promise<number> {
  await eventually(
    'revocation replayed on the replica',
    async () =>
      (
        await replicaAdmin.query('SELECT 1 FROM api_keys WHERE key_id = $1 AND revoked_at IS NOT NULL', [
          keyId,
        ])
      ).rowCount === 1,
    30_000,
    { intervalMs: 5 },
  );
  return Date.now() - since;
}

async function webhookRefuses(app: FastifyInstance, token: string, since: number): Promise<number> {
  await eventually('webhook answers 401', async () => (await verify(app, token)).statusCode === 401, 30_000, {
    intervalMs: 5,
  });
  return Date.now() - since;
}

describe('webhook on a read replica', () => {
  let app: FastifyInstance;

  beforeAll(async () => {
    app = await readyApp(
      testConfig(replicaUrl, {
        KEYWARD_STORE_WRITE_URL: primaryUrl,
        KEYWARD_CHANGE_POLL_INTERVAL_MS: String(POLL_MS),
        KEYWARD_USAGE_FLUSH_INTERVAL: '1s',
      }),
    );
  });

  afterAll(async () => {
    await app?.close();
  });

  it('polls the change log (NOTIFY never arrives) and sees a revocation within lag + 1 s', async () => {
    expect(app.store.listener.mode).toBe('poll');
    const figures: { lagMs: number; webhookMs: number }[] = [];
    for (let i = 0; i < 5; i++) {
      const user = await fx.createUser();
      const key = await fx.issueKey(user);
      // Issued on the primary, it becomes valid on the replica once replayed.
      await eventually(
        'key replicated',
        async () => (await verify(app, key.token)).statusCode === 200,
        30_000,
      );
      expect((await verify(app, key.token)).statusCode).toBe(200);
      await fx.store.revokeKey(key.uid);
      const committed = Date.now();
      const [lagMs, webhookMs] = await Promise.all([
        replicaSeesRevoked(key.keyId, committed),
        webhookRefuses(app, key.token, committed),
      ]);
      figures.push({ lagMs, webhookMs });
    }
    console.info(`replica propagation (ms since the revoke committed): ${JSON.stringify(figures)}`);
    for (const { lagMs, webhookMs } of figures)
      expect(webhookMs).toBeLessThanOrEqual(lagMs + PROPAGATION_ALLOWANCE_MS);
    expect(await metric(app, 'keyward_webhook_changes_applied_total', 'source="notify"')).toBe(0);
    expect(await metric(app, 'keyward_webhook_changes_applied_total', 'source="log"')).toBeGreaterThanOrEqual(
      10,
    );
  });

  it('reads keys from the replica and writes usage to the primary', async () => {
    const user = await fx.createUser();
    const key = await fx.issueKey(user);
    await eventually('key replicated', async () => (await verify(app, key.token)).statusCode === 200, 30_000);
    await app.usage.flush();
    const { rows } = await primaryAdmin.query<{ used: boolean }>(
      'SELECT last_used_at IS NOT NULL AS used FROM api_keys WHERE key_id = $1',
      [key.keyId],
    );
    expect(rows[0]?.used).toBe(true);
    const lookups = await replicaAdmin.query(
      `SELECT 1 FROM pg_stat_activity WHERE application_name = 'keyward-webhook-listener'`,
    );
    expect(lookups.rowCount).toBe(1);
  });
});

describe('webhook on a read replica without KEYWARD_STORE_WRITE_URL', () => {
  let app: FastifyInstance;
  const logLines: string[] = [];

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk, _encoding, done) {
        logLines.push(String(chunk));
        done();
      },
    });
    app = await readyApp(
      testConfig(replicaUrl, {
        KEYWARD_CHANGE_POLL_INTERVAL_MS: String(POLL_MS),
        KEYWARD_USAGE_FLUSH_INTERVAL: '1m',
      }),
      { logger: createLogger({ level: 'info' }, sink) },
    );
  });

  afterAll(async () => {
    await app?.close();
  });

  it('says once that its writes have nowhere to go, keeps verifying, and keeps the counts', async () => {
    const user = await fx.createUser();
    const key = await fx.issueKey(user);
    await eventually('key replicated', async () => (await verify(app, key.token)).statusCode === 200, 30_000);
    const warnings = () => logLines.filter((l) => l.includes('KEYWARD_STORE_WRITE_URL is unset'));
    expect(warnings()).toHaveLength(1);
    expect(JSON.parse(warnings()[0] as string).level).toBe(40);

    // The flush fails on the read-only standby; the counts wait for the next one, the key still
    // verifies and nothing reached the primary.
    expect(app.usage.pending).toBeGreaterThan(0);
    await expect(app.usage.flush()).rejects.toThrow(/read-only/);
    expect(app.usage.pending).toBeGreaterThan(0);
    expect((await verify(app, key.token)).statusCode).toBe(200);
    const { rows } = await primaryAdmin.query<{ used: boolean }>(
      'SELECT last_used_at IS NOT NULL AS used FROM api_keys WHERE key_id = $1',
      [key.keyId],
    );
    expect(rows[0]?.used).toBe(false);
    expect(warnings()).toHaveLength(1);
  });
});

describe.each([
  { where: 'primary', mode: 'notify' },
  { where: 'replica', mode: 'poll' },
])('webhook on the $where cut off from its store', ({ where, mode }) => {
  let app: FastifyInstance;
  let serverAdmin: () => pg.Client;

  beforeAll(async () => {
    const url = where === 'primary' ? primaryUrl : replicaUrl;
    serverAdmin = () => (where === 'primary' ? primaryAdmin : replicaAdmin);
    app = await readyApp(
      testConfig(withPort(url, Number(new URL(url).port), WEBHOOK_LOGIN), {
        KEYWARD_STORE_WRITE_URL: withPort(primaryUrl, primary.port, WEBHOOK_LOGIN),
        KEYWARD_CHANGE_POLL_INTERVAL_MS: String(POLL_MS),
        KEYWARD_USAGE_FLUSH_INTERVAL: '1m',
      }),
    );
  });

  afterAll(async () => {
    await primaryAdmin.query(`ALTER ROLE ${WEBHOOK_LOGIN} LOGIN`);
    await app?.close();
  });

  it('keeps its cache and applies exactly the changes it missed', async () => {
    expect(app.store.listener.mode).toBe(mode);
    const user = await fx.createUser();
    const untouched = await fx.issueKey(user);
    const revoked = await fx.issueKey(user);
    const other = await fx.createUser();
    const suspended = await fx.issueKey(other);
    for (const key of [untouched, revoked, suspended]) {
      await eventually('key visible', async () => (await verify(app, key.token)).statusCode === 200, 30_000);
    }
    // A verify is a hit once the entry was confirmed in the listener's current epoch; on a loaded
    // machine a slow poll can start a new epoch between the reads above, so ask again.
    await eventually(
      'the untouched key answered from the cache',
      async () => {
        const hits = await metric(app, 'keyward_webhook_cache_lookups_total', 'outcome="hit"');
        expect((await verify(app, untouched.token)).statusCode).toBe(200);
        return (await metric(app, 'keyward_webhook_cache_lookups_total', 'outcome="hit"')) > hits;
      },
      10_000,
    );
    const appliedBefore = await metric(app, 'keyward_webhook_changes_applied_total', 'source="log"');
    const notifiedBefore = await metric(app, 'keyward_webhook_changes_applied_total', 'source="notify"');
    const resetsBefore = await metric(app, 'keyward_webhook_cache_resets_total');

    // Cut off: no new logins for the webhook's role, then every backend it has is ended.
    await primaryAdmin.query(`ALTER ROLE ${WEBHOOK_LOGIN} NOLOGIN`);
    await eventually(
      'NOLOGIN replayed',
      async () =>
        (
          await serverAdmin().query(`SELECT 1 FROM pg_roles WHERE rolname = $1 AND NOT rolcanlogin`, [
            WEBHOOK_LOGIN,
          ])
        ).rowCount === 1,
      30_000,
    );
    await serverAdmin().query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [
      WEBHOOK_LOGIN,
    ]);
    await eventually(
      'listener detached',
      async () => (await app.keyward.readiness()).listener === 'detached',
      10_000,
      {
        intervalMs: 5,
      },
    );
    // Three changes while it cannot hear or read anything.
    await fx.store.revokeKey(revoked.uid);
    await fx.setSuspended(other, true);
    const issued = await fx.issueKey(user);
    await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS));
    expect((await app.keyward.readiness()).listener).toBe('detached');

    await primaryAdmin.query(`ALTER ROLE ${WEBHOOK_LOGIN} LOGIN`);
    await eventually(
      'listener back',
      async () => (await app.keyward.readiness()).listener === 'attached',
      30_000,
    );
    expect(await metric(app, 'keyward_webhook_changes_applied_total', 'source="log"')).toBe(
      appliedBefore + 3,
    );
    expect(await metric(app, 'keyward_webhook_changes_applied_total', 'source="notify"')).toBe(
      notifiedBefore,
    );
    expect(await metric(app, 'keyward_webhook_cache_resets_total')).toBe(resetsBefore);
    // The untouched key's entry survived the gap: answered from the cache, without a lookup.
    const lookupsBefore = await metric(app, 'keyward_webhook_cache_lookups_total', 'outcome="miss"');
    const staleBefore = await metric(app, 'keyward_webhook_cache_lookups_total', 'outcome="stale"');
    const hitsBefore = await metric(app, 'keyward_webhook_cache_lookups_total', 'outcome="hit"');
    expect((await verify(app, untouched.token)).statusCode).toBe(200);
    await eventually(
      'the hit counted',
      async () =>
        (await metric(app, 'keyward_webhook_cache_lookups_total', 'outcome="hit"')) === hitsBefore + 1,
      10_000,
    );
    expect(await metric(app, 'keyward_webhook_cache_lookups_total', 'outcome="miss"')).toBe(lookupsBefore);
    expect(await metric(app, 'keyward_webhook_cache_lookups_total', 'outcome="stale"')).toBe(staleBefore);
    expect((await verify(app, revoked.token)).statusCode).toBe(401);
    expect((await verify(app, suspended.token)).statusCode).toBe(401);
    await eventually(
      'new key visible',
      async () => (await verify(app, issued.token)).statusCode === 200,
      30_000,
    );
  });
});
