import { createHash, randomBytes } from 'node:crypto';
import { CoreV1Api, EventsV1Api, type KubeConfig } from '@kubernetes/client-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { generateToken } from '../../credentials/token.js';
import { createTestNamespace } from '../../devenv/kube.js';
import {
  applyAccessPolicy,
  KeywardObjects,
  type OperatorProcess,
  operatorKubeconfig,
  startOperator,
} from '../../devenv/operator.js';
import { eventually } from '../../devenv/poll.js';
import { migrate } from '../../store/migrate.js';
import type { RunningWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { testKubeConfig } from '../harness/kube.js';
import { condition } from '../support/status.js';
import { runReadyWebhook, testConfig } from '../support/webhook.js';

/**
 * Leak reports end to end, with GitHub's secret-scanning partner payload: the webhook (running as
 * the keyward_webhook store role, which may not revoke) records them, `keyward operator` (as
 * keyward_operator) revokes the key, sets Ready=False/Leaked and emits an Event, and /verify
 * refuses the token. Real kube-apiserver, real Postgres, real HTTP.
 */
const suffix = randomBytes(4).toString('hex');
const OPERATOR_LOGIN = `kw_operator_${suffix}`;
const WEBHOOK_LOGIN = `kw_webhook_${suffix}`;
const CREDENTIAL = `leak-relay-${randomBytes(16).toString('hex')}`;

let kc: KubeConfig;
let ns: string;
let objects: KeywardObjects;
let operator: OperatorProcess;
let webhook: RunningWebhook;
let admin: pg.Client;
let asOperator: pg.Pool;
let asWebhook: pg.Client;

function urlAs(url: string, role: string): string {
  const u = new URL(url);
  u.username = role;
  return u.toString();
}

beforeAll(async () => {
  kc = testKubeConfig();
  ns = await createTestNamespace(kc, 'leaks');
  await applyAccessPolicy(kc, ns, { namespaces: [ns], usernames: ['*'], scopes: ['projects:*'] });
  objects = new KeywardObjects(kc, ns);
  const url = await testDatabase();
  await migrate(url);
  admin = new pg.Client({ connectionString: inject('pgAdminUrl') });
  await admin.connect();
  await admin.query(`CREATE ROLE ${OPERATOR_LOGIN} LOGIN IN ROLE keyward_operator`);
  await admin.query(`CREATE ROLE ${WEBHOOK_LOGIN} LOGIN IN ROLE keyward_webhook`);
  asOperator = new pg.Pool({ connectionString: urlAs(url, OPERATOR_LOGIN), max: 2 });
  asWebhook = new pg.Client({ connectionString: urlAs(url, WEBHOOK_LOGIN) });
  await asWebhook.connect();
  operator = await startOperator({
    kubeconfigPath: await operatorKubeconfig(kc, ns),
    storeUrl: urlAs(url, OPERATOR_LOGIN),
    namespace: ns,
    watchNamespace: ns,
  });
  webhook = await runReadyWebhook(
    testConfig(urlAs(url, WEBHOOK_LOGIN), { KEYWARD_LEAK_REPORT_CREDENTIALS: CREDENTIAL }),
  );
  await objects.create('serviceusers', {
    kind: 'ServiceUser',
    metadata: { name: 'ci' },
    spec: { scopes: ['projects:a'] },
  });
  for (const name of ['leaked', 'kept']) {
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name },
      spec: { serviceUserRef: { name: 'ci' } },
    });
    await readyKey(name, 'Issued');
  }
}, 120_000);

afterAll(async () => {
  await webhook?.close();
  await operator?.stop();
  await asOperator?.end();
  await asWebhook?.end();
  if (admin) {
    await admin.query(`DROP OWNED BY ${OPERATOR_LOGIN}`).catch(() => undefined);
    await admin.query(`DROP ROLE IF EXISTS ${OPERATOR_LOGIN}`).catch(() => undefined);
    await admin.query(`DROP ROLE IF EXISTS ${WEBHOOK_LOGIN}`).catch(() => undefined);
    await admin.end();
  }
});

const logs = (): string => operator.process.logTail(30);

async function readyKey(name: string, reason: string) {
  return eventually(
    `ApiKey ${name} Ready reason ${reason}`,
    async () => {
      const key = await objects.get('apikeys', name);
      const current = key.status?.observedGeneration === key.metadata?.generation;
      return current && condition(key, 'Ready')?.reason === reason ? key : undefined;
    },
    30_000,
    logs,
  );
}

async function tokenOf(secret: string): Promise<string> {
  const s = await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ namespace: ns, name: secret });
  return Buffer.from(s.data?.token ?? '', 'base64').toString('utf8');
}

function report(body: unknown, credential: string | null = CREDENTIAL): Promise<Response> {
  return fetch(`${webhook.url}/leaks`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(credential === null ? {} : { authorization: `Bearer ${credential}` }),
    },
    body: JSON.stringify(body),
  });
}

const verifyStatus = async (token: string): Promise<number> =>
  (await fetch(`${webhook.url}/verify`, { headers: { authorization: `Bearer ${token}` } })).status;

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');
const match = (token: string) => ({
  token,
  type: 'keyward_api_key',
  url: 'https://github.com/octo/app/blob/2f1e4c0/config/.env',
  source: 'content',
});

describe('POST /leaks', () => {
  it('refuses callers without the configured credential, and malformed payloads', async () => {
    const token = await tokenOf('leaked');
    expect((await report([match(token)], null)).status).toBe(401);
    expect((await report([match(token)], 'not-the-credential-at-all')).status).toBe(401);
    expect((await report({ token })).status).toBe(400);
    expect((await report([])).status).toBe(400);
    expect((await report([{ type: 'x' }])).status).toBe(400);
    expect(await verifyStatus(token)).toBe(200);
  });

  it('answers per token by format only: the same for a live key and a key that never existed', async () => {
    const unknown = generateToken().token;
    const garbage = 'kw_not-a-real-token';
    const res = await report([match(unknown), match(garbage)]);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain(unknown);
    expect(JSON.parse(text)).toEqual([
      { token_hash: sha256(unknown), token_type: 'keyward_api_key', label: 'true_positive' },
      { token_hash: sha256(garbage), token_type: 'keyward_api_key', label: 'false_positive' },
    ]);
  });

  it('revokes a reported key: /verify refuses it, the ApiKey says Ready=False Leaked with an Event, audit has no token', async () => {
    const token = await tokenOf('leaked');
    const kept = await tokenOf('kept');
    const res = await report([match(token)]);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual([
      { token_hash: sha256(token), token_type: 'keyward_api_key', label: 'true_positive' },
    ]);

    await eventually('the leaked token refused', async () =>
      (await verifyStatus(token)) === 401 ? true : undefined,
    );
    const key = await readyKey('leaked', 'Leaked');
    expect(condition(key, 'Ready')).toMatchObject({ status: 'False' });
    expect(condition(key, 'Ready')?.message).toContain('reported leaked');
    const events = await eventually('a Leaked Event', async () => {
      const list = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns });
      const found = list.items.filter((e) => e.regarding?.name === 'leaked' && e.reason === 'Leaked');
      return found.length > 0 ? found : undefined;
    });
    expect(events[0]?.type).toBe('Warning');
    expect(await verifyStatus(kept)).toBe(200);

    const audit = await asOperator.query<{ action: string; detail: Record<string, unknown>; text: string }>(
      `SELECT action, detail, row_to_json(a)::text AS text FROM audit_events a WHERE key_id = $1 ORDER BY id`,
      [key.status?.keyId],
    );
    expect(audit.rows.map((r) => [r.action, r.detail.reason ?? r.detail.outcome])).toEqual(
      expect.arrayContaining([
        ['key.revoked', 'leaked'],
        ['key.leak_reported', 'revoked'],
      ]),
    );
    const reported = audit.rows.find((r) => r.action === 'key.leak_reported');
    expect(reported?.detail).toMatchObject({
      source: 'content',
      url: match(token).url,
      tokenType: 'keyward_api_key',
    });
    for (const row of audit.rows) {
      expect(row.text).not.toContain(token);
      expect(row.text).not.toContain(sha256(token));
    }
    // Reporting it again answers the same; the store records that it was already revoked.
    const again = await report([match(token)]);
    expect(await again.json()).toEqual([
      { token_hash: sha256(token), token_type: 'keyward_api_key', label: 'true_positive' },
    ]);
    await eventually('second report processed', async () => {
      const { rows } = await asOperator.query(
        `SELECT 1 FROM audit_events WHERE action = 'key.leak_reported' AND detail->>'outcome' = 'already_revoked'`,
      );
      return rows.length > 0 ? true : undefined;
    });
  });

  it('keeps the webhook to appending: its role cannot read reports back or revoke keys', async () => {
    const denied = async (sql: string): Promise<string> =>
      asWebhook.query(sql).then(
        () => 'ok',
        (err: { code?: string }) => err.code ?? 'error',
      );
    expect(await denied('SELECT * FROM leak_reports')).toBe('42501');
    expect(await denied('UPDATE leak_reports SET processed_at = now()')).toBe('42501');
    expect(await denied('UPDATE api_keys SET revoked_at = now()')).toBe('42501');
  });

  it('limits how often an authenticated caller may report', async () => {
    let limited: Response | undefined;
    for (let i = 0; i < 80 && !limited; i++) {
      const res = await report([match('kw_nope')]);
      if (res.status === 429) limited = res;
      else expect(res.status).toBe(200);
    }
    expect(limited?.status).toBe(429);
    expect(Number(limited?.headers.get('retry-after'))).toBeGreaterThan(0);
  });
});
