import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../../credentials/token.js';
import { eventually } from '../../devenv/poll.js';
import { createDatabase, startPostgres, type TestPostgres } from '../../devenv/postgres.js';
import {
  metricsText,
  readyApp,
  type StoreFixture,
  storeFixture,
  testConfig,
  verify,
} from '../support/webhook.js';

/**
 * The request audit log of a whole webhook against a real store: every decision on every route
 * (like ones of one millisecond counted in one row), never a secret, and a store outage that costs rows only beyond the buffer, never a
 * request. A private Postgres, so stopping it does not disturb other suites.
 */
const TOKENREVIEW_BEARER = 'tokenreview-caller-credential-0123456789';
const INTROSPECT_SECRET = 'introspect-caller-secret-0123456789';
const BUFFER = 50;

let postgres: TestPostgres;
let fx: StoreFixture;
let app: FastifyInstance;
let dir: string;
let jsonFile: string;

beforeAll(async () => {
  postgres = await startPostgres();
  const storeUrl = await createDatabase(postgres.adminUrl, 'keyward');
  fx = await storeFixture(storeUrl, 2);
  dir = mkdtempSync(join(tmpdir(), 'keyward-request-log-'));
  jsonFile = join(dir, 'requests.jsonl');
  app = await readyApp(
    testConfig(storeUrl, {
      KEYWARD_STORE_TIMEOUT: '1s',
      KEYWARD_REQUEST_LOG_JSON: jsonFile,
      // Flushes are driven by the tests, so what is pending at each step is known.
      KEYWARD_REQUEST_LOG_FLUSH_INTERVAL: '1h',
      KEYWARD_REQUEST_LOG_BUFFER: String(BUFFER),
      KEYWARD_TOKENREVIEW_CREDENTIALS: TOKENREVIEW_BEARER,
      KEYWARD_INTROSPECT_CREDENTIALS: `gateway:${INTROSPECT_SECRET}`,
      KEYWARD_TRUSTED_PROXIES: '127.0.0.1',
    }),
  );
});

afterAll(async () => {
  await app?.close();
  await fx?.close();
  await postgres?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Row {
  route: string;
  key_id: string | null;
  username: string | null;
  actor: string | null;
  subject: string | null;
  method: string | null;
  path: string | null;
  client_address: string | null;
  result: string;
  reason: string;
}

/** Rows of one request share a millisecond often enough that `ORDER BY at` cannot order them. */
const sorted = <T>(rows: T[]): T[] =>
  [...rows].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));

async function rowsOf(keyId: string | null, reason?: string): Promise<Row[]> {
  const { rows } = await fx.pool.query<Row>(
    `SELECT route, key_id, username, actor, subject, method, path, client_address, result, reason
       FROM request_log WHERE key_id IS NOT DISTINCT FROM $1 AND ($2::text IS NULL OR reason = $2) ORDER BY at`,
    [keyId, reason ?? null],
  );
  return rows;
}

describe('request log', () => {
  it('records each decision of /verify, /tokenreview and /introspect with who, what and from where', async () => {
    const user = await fx.createUser({ scopes: ['projects:*'], kubernetesAuthentication: true });
    const key = await fx.issueKey(user);
    const ingress = { 'x-original-method': 'POST', 'x-forwarded-for': '203.0.113.7' };

    // ingress-nginx: the whole original URL, query string included.
    const allowed = await verify(app, key.token, {
      headers: { ...ingress, 'x-original-url': 'https://app.example/api/items?page=2&sig=abc' },
    });
    expect(allowed.statusCode).toBe(200);
    // Traefik/Caddy: X-Forwarded-Uri and -Method.
    const forbidden = await verify(app, key.token, {
      scope: 'billing',
      headers: { 'x-forwarded-uri': '/billing/invoices?id=1', 'x-forwarded-method': 'DELETE' },
    });
    expect(forbidden.statusCode).toBe(403);
    // Envoy: the original path after /verify.
    expect((await verify(app, key.token, { path: '/verify/envoy/path' })).statusCode).toBe(200);
    const review = await app.inject({
      method: 'POST',
      url: '/tokenreview',
      headers: { authorization: `Bearer ${TOKENREVIEW_BEARER}` },
      payload: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: key.token } },
    });
    expect(review.json().status.authenticated).toBe(true);
    const introspection = await app.inject({
      method: 'POST',
      url: '/introspect',
      headers: { authorization: `Basic ${Buffer.from(`gateway:${INTROSPECT_SECRET}`).toString('base64')}` },
      payload: { token: key.token },
    });
    expect(introspection.json().active).toBe(true);
    await app.requestLog.flush();

    const who = { key_id: key.keyId, username: user.username, actor: user.username, subject: null };
    expect(sorted(await rowsOf(key.keyId))).toEqual(
      sorted([
        {
          route: 'verify',
          ...who,
          method: 'POST',
          path: '/api/items',
          client_address: '203.0.113.7',
          result: 'allow',
          reason: 'ok',
        },
        {
          route: 'verify',
          ...who,
          method: 'DELETE',
          path: '/billing/invoices',
          client_address: '127.0.0.1',
          result: 'forbidden',
          reason: 'insufficient_scope',
        },
        {
          route: 'verify',
          ...who,
          method: 'GET',
          path: '/envoy/path',
          client_address: '127.0.0.1',
          result: 'allow',
          reason: 'ok',
        },
        // The API server and the gateway do not say what their client asked for.
        {
          route: 'tokenreview',
          ...who,
          method: null,
          path: null,
          client_address: '127.0.0.1',
          result: 'allow',
          reason: 'ok',
        },
        {
          route: 'introspect',
          ...who,
          method: null,
          path: null,
          client_address: '127.0.0.1',
          result: 'allow',
          reason: 'ok',
        },
      ]),
    );
    // The JSON lines hold the same records, in the order they were decided.
    const lines = readFileSync(jsonFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const mine = lines.filter((l) => l.key_id === key.keyId);
    expect(mine.map((l) => [l.route, l.path, l.reason])).toEqual([
      ['verify', '/api/items', 'ok'],
      ['verify', '/billing/invoices', 'insufficient_scope'],
      ['verify', '/envoy/path', 'ok'],
      ['tokenreview', null, 'ok'],
      ['introspect', null, 'ok'],
    ]);
    expect(Date.parse(mine[0].at)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('writes a burst of like decisions as rows that count them, every request accounted for', async () => {
    const key = await fx.issueKey(await fx.createUser());
    const marker = `/burst/${Date.now()}`;
    const headers = { 'x-original-uri': marker };
    expect((await verify(app, key.token, { headers })).statusCode).toBe(200);
    const BURST = 40;
    const answers = await Promise.all(
      Array.from({ length: BURST }, () => verify(app, key.token, { headers })),
    );
    expect(answers.map((a) => a.statusCode)).toEqual(Array(BURST).fill(200));
    await app.requestLog.flush();

    const { rows } = await fx.pool.query<{ count: number }>('SELECT count FROM request_log WHERE path = $1', [
      marker,
    ]);
    expect(rows.reduce((sum, r) => sum + r.count, 0)).toBe(BURST + 1);
    // Answered within a few milliseconds of each other: most share a row.
    expect(rows.length).toBeLessThan(BURST);
    const lines = readFileSync(jsonFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((l) => l.path === marker);
    expect(lines.reduce((sum, l) => sum + l.count, 0)).toBe(BURST + 1);
  });

  it('records refusals without a key: no credentials, an unknown token, a disabled key', async () => {
    const user = await fx.createUser();
    const disabled = await fx.issueKey(user, { disabled: true });
    const marker = `/refusals/${Date.now()}`;
    const headers = { 'x-original-uri': marker };
    expect((await verify(app, undefined, { headers })).statusCode).toBe(401);
    expect((await verify(app, generateToken().token, { headers })).statusCode).toBe(401);
    expect((await verify(app, disabled.token, { headers })).statusCode).toBe(401);
    await app.requestLog.flush();
    const { rows } = await fx.pool.query<Row>(
      'SELECT key_id, username, result, reason FROM request_log WHERE path = $1',
      [marker],
    );
    expect(sorted(rows)).toEqual(
      sorted([
        { key_id: null, username: null, result: 'deny', reason: 'missing' },
        { key_id: null, username: null, result: 'deny', reason: 'unknown' },
        { key_id: disabled.keyId, username: user.username, result: 'deny', reason: 'disabled' },
      ]),
    );
  });

  it('never stores or emits a token or a caller credential, even one put in the URL', async () => {
    const user = await fx.createUser({ kubernetesAuthentication: true });
    const key = await fx.issueKey(user);
    const revokedLater = await fx.issueKey(user);
    const unknown = generateToken().token;
    const tokens = [key.token, revokedLater.token, unknown];
    for (const token of tokens) {
      await verify(app, token, { headers: { 'x-original-url': `https://app.example/p?api_key=${token}` } });
      await verify(app, token, { headers: { 'x-forwarded-uri': `/download/${token}/file` } });
      await verify(app, token, { path: `/verify/t/${token}` });
      await verify(app, undefined, {
        headers: { 'x-api-key': token, 'x-original-uri': `/k/${token}?x=${token}` },
      });
      await app.inject({
        method: 'POST',
        url: '/tokenreview',
        headers: { authorization: `Bearer ${TOKENREVIEW_BEARER}` },
        payload: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } },
      });
      await app.inject({
        method: 'POST',
        url: `/introspect?token=${token}`,
        headers: { authorization: `Basic ${Buffer.from(`gateway:${INTROSPECT_SECRET}`).toString('base64')}` },
        payload: { token },
      });
    }
    await fx.store.revokeKey(revokedLater.uid);
    await app.requestLog.flush();

    const { rows } = await fx.pool.query<{ dump: string }>(
      "SELECT string_agg(r::text, E'\\n') AS dump FROM request_log r",
    );
    const table = rows[0]!.dump;
    const json = readFileSync(jsonFile, 'utf8');
    // The rows are there (a dump of nothing would pass anything).
    expect(table).toContain(key.keyId);
    expect(json).toContain(key.keyId);
    expect(table).toContain('/download/[redacted]/file');
    for (const secret of [...tokens, TOKENREVIEW_BEARER, INTROSPECT_SECRET]) {
      expect(table).not.toContain(secret);
      expect(json).not.toContain(secret);
      // Nor the secret body without its prefix.
      const body = secret.slice(secret.indexOf('_') + 1);
      expect(table).not.toContain(body);
      expect(json).not.toContain(body);
    }
  });

  it('writes nothing to the store with KEYWARD_REQUEST_LOG_STORE=false', async () => {
    const off = await readyApp(testConfig(fx.url, { KEYWARD_REQUEST_LOG_STORE: 'false' }));
    const key = await fx.issueKey(await fx.createUser());
    try {
      expect((await verify(off, key.token)).statusCode).toBe(200);
      expect(off.requestLog.store).toBeNull();
    } finally {
      await off.close();
    }
    // The app under test, logging to the store, sees the same key.
    expect((await verify(app, key.token)).statusCode).toBe(200);
    await app.requestLog.flush();
    expect((await rowsOf(key.keyId)).map((r) => r.route)).toEqual(['verify']);
  });

  it('buffers rows up to its bound while the store is down, counts the rest dropped, never holding up a request', async () => {
    const user = await fx.createUser();
    const key = await fx.issueKey(user);
    // The issue's NOTIFY must not land after the verify below and drop the entry just cached.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await verify(app, key.token)).statusCode).toBe(200);
    await app.requestLog.flush();
    const before = (await rowsOf(key.keyId)).length;

    await postgres.pause();
    try {
      await eventually('store down', async () => !(await app.keyward.readiness()).ready, 10_000);
      // The cached key keeps verifying, and each answer comes without waiting for the log.
      const requests = BUFFER * 3;
      for (let i = 0; i < requests; i++) {
        const res = await verify(app, key.token, { headers: { 'x-original-uri': `/outage/${i}` } });
        expect(res.statusCode).toBe(200);
        // The JSON lines do not depend on the store: they keep being written through the outage.
        if (i % 25 === 24) await app.requestLog.json!.flush();
      }
      await expect(app.requestLog.flush()).rejects.toMatchObject({ transient: true });
      expect(app.requestLog.store!.pending).toBe(BUFFER);
      const metrics = await metricsText(app);
      expect(metrics).toContain(
        `keyward_webhook_request_log_dropped_total{sink="store",reason="buffer_full"} ${requests - BUFFER}`,
      );
      expect(metrics).toContain(`keyward_webhook_request_log_pending{sink="store"} ${BUFFER}`);
    } finally {
      await postgres.resume();
    }
    await eventually('readiness to return', async () => (await app.keyward.readiness()).ready, 20_000);
    await app.requestLog.flush();
    const after = await rowsOf(key.keyId);
    // The first BUFFER rows of the outage were kept and written; the rest are the counted drops.
    expect(after.length - before).toBe(BUFFER);
    expect(sorted(after.slice(before).map((r) => r.path))).toEqual(
      sorted(Array.from({ length: BUFFER }, (_, i) => `/outage/${i}`)),
    );
    // Every row went to the JSON lines, outage or not.
    const json = readFileSync(jsonFile, 'utf8');
    expect(json).toContain(`"/outage/${BUFFER * 3 - 1}"`);
  });
});
