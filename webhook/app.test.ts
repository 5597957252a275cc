import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../credentials/token.js';
import { eventually } from '../devenv/poll.js';
import { testDatabase } from '../test/harness/database.js';
import {
  metricsText,
  readyApp,
  type StoreFixture,
  storeFixture,
  testConfig,
  verify,
} from '../test/support/webhook.js';
import { buildApp } from './app.js';
import { createLogger } from './logger.js';

const HOUR = 3_600_000;
const TOKENREVIEW_CALLER = 'kube-apiserver-0123456789abcdef';

let fx: StoreFixture;
let app: FastifyInstance;
const clock = { offset: 0 };
const logLines: string[] = [];

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logLines.push(String(chunk));
      done();
    },
  });
  app = await readyApp(
    testConfig(fx.url, {
      KEYWARD_INTROSPECT_CREDENTIALS: 'gateway:gw-secret-123',
      KEYWARD_TOKENREVIEW_CREDENTIALS: TOKENREVIEW_CALLER,
      KEYWARD_LOG_LEVEL: 'debug',
      KEYWARD_USAGE_FLUSH_INTERVAL: '1m',
    }),
    { logger: createLogger({ level: 'debug' }, sink), now: () => Date.now() + clock.offset },
  );
});

afterAll(async () => {
  await app?.close();
  await fx?.close();
});

/** Waits until a key's answer changes: NOTIFY is asynchronous, so allow it a moment. */
async function eventuallyStatus(token: string, status: number, scope?: string): Promise<void> {
  await eventually(
    `status ${status}`,
    async () => (await verify(app, token, scope === undefined ? {} : { scope })).statusCode === status,
    2000,
  );
}

describe('/verify', () => {
  it('allows a valid key with exactly 200 and the identity headers, on every proxy form', async () => {
    const user = await fx.createUser({ groups: ['team-a', 'ops'], scopes: ['projects:*', 'reports:read'] });
    const key = await fx.issueKey(user);
    for (const request of [
      { method: 'GET' as const, url: '/verify', headers: { authorization: `Bearer ${key.token}` } },
      // ingress-nginx auth-url
      {
        method: 'GET' as const,
        url: '/verify',
        headers: {
          authorization: `bearer ${key.token}`,
          'x-original-url': 'https://app.example.com/a?b=c',
          'x-original-method': 'DELETE',
          'x-sent-from': 'nginx-ingress-controller',
        },
      },
      // Traefik ForwardAuth adds X-Forwarded-* (and forwards no body unless told to)
      {
        method: 'POST' as const,
        url: '/verify',
        headers: {
          'x-api-key': key.token,
          'x-forwarded-method': 'POST',
          'x-forwarded-uri': '/x',
          'content-type': 'application/json',
          'content-length': '0',
        },
      },
      // Envoy ext_authz HTTP with path_prefix
      {
        method: 'PUT' as const,
        url: '/verify/api/v1/things/7?x=1',
        headers: { authorization: `Bearer ${key.token}` },
      },
      { method: 'PROPFIND' as const, url: '/verify/dav/', headers: { authorization: `Bearer ${key.token}` } },
    ]) {
      const res = await app.inject(request);
      expect(res.statusCode, JSON.stringify(request.headers)).toBe(200);
      expect(res.headers['x-keyward-user']).toBe(user.username);
      expect(res.headers['x-keyward-key-id']).toBe(key.keyId);
      expect(res.headers['x-keyward-scopes']).toBe('projects:*,reports:read');
      expect(res.headers['x-keyward-groups']).toBe('team-a,ops');
      expect(res.body).toBe('');
    }
  });

  it('answers 401 with a challenge for missing, garbage, bad checksum and unknown tokens', async () => {
    const missing = await verify(app, undefined);
    expect(missing.statusCode).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="keyward"');
    expect(missing.json()).toEqual({
      error: 'unauthorized',
      error_description: 'Authentication credentials were not provided.',
    });
    const basic = await app.inject({ url: '/verify', headers: { authorization: 'Basic dXNlcjpwYXNz' } });
    expect(basic.statusCode).toBe(401);

    const real = generateToken().token;
    const typo = `${real.slice(0, 10)}${real[10] === 'a' ? 'b' : 'a'}${real.slice(11)}`;
    for (const token of ['garbage', 'kw_short', typo, real, `${real}x`, 'ünïcödé']) {
      const res = await verify(app, token);
      expect(res.statusCode, token).toBe(401);
      expect(res.headers['www-authenticate']).toBe(
        'Bearer realm="keyward", error="invalid_token", error_description="The API key is invalid."',
      );
      expect(res.headers['x-keyward-user']).toBeUndefined();
    }
  });

  it('answers 403 insufficient_scope from ?scope= or the header, and requires both when both are set', async () => {
    const user = await fx.createUser({ scopes: ['projects:*'] });
    const key = await fx.issueKey(user, { scopes: ['projects:alpha'] });
    expect((await verify(app, key.token, { scope: 'projects:alpha' })).statusCode).toBe(200);
    const denied = await verify(app, key.token, { scope: 'projects:beta' });
    expect(denied.statusCode).toBe(403);
    expect(denied.headers['www-authenticate']).toBe(
      'Bearer realm="keyward", error="insufficient_scope", error_description="The API key does not grant the required scope.", scope="projects:beta"',
    );
    const header = await verify(app, key.token, { headers: { 'x-keyward-required-scope': 'projects:beta' } });
    expect(header.statusCode).toBe(403);
    const both = await verify(app, key.token, {
      scope: 'projects:alpha',
      headers: { 'x-keyward-required-scope': 'billing' },
    });
    expect(both.statusCode).toBe(403);
    const weird = await verify(app, key.token, { scope: 'a"b\r\n' });
    expect(weird.statusCode).toBe(403);
    expect(weird.headers['www-authenticate']).not.toMatch(/scope="/);
  });

  it('rejects at once on suspend, disable, revoke, and accepts again on resume', async () => {
    const user = await fx.createUser();
    const key = await fx.issueKey(user);
    const other = await fx.issueKey(await fx.createUser());
    expect((await verify(app, key.token)).statusCode).toBe(200);
    expect((await verify(app, other.token)).statusCode).toBe(200);

    await fx.setSuspended(user, true);
    await eventuallyStatus(key.token, 401);
    expect((await verify(app, key.token)).headers['www-authenticate']).toMatch(
      /service user of this API key is suspended/,
    );
    expect((await verify(app, other.token)).statusCode).toBe(200);
    await fx.setSuspended(user, false);
    await eventuallyStatus(key.token, 200);

    await fx.store.updateKey(key.uid, { disabled: true });
    await eventuallyStatus(key.token, 401);
    expect((await verify(app, key.token)).json().error_description).toBe('The API key is disabled.');
    await fx.store.updateKey(key.uid, { disabled: false });
    await eventuallyStatus(key.token, 200);

    await fx.store.revokeKey(key.uid);
    await eventuallyStatus(key.token, 401);
    expect((await verify(app, key.token)).json().error_description).toBe('The API key has been revoked.');
  });

  it('honours expiry and the end of a rotation grace period by the clock alone, on cached entries', async () => {
    const user = await fx.createUser();
    const expiring = await fx.issueKey(user, { expiresAt: new Date(Date.now() + HOUR) });
    const rotating = await fx.issueKey(user);
    expect((await verify(app, expiring.token)).statusCode).toBe(200);
    const next = generateToken();
    const rotated = await fx.store.rotateKey({
      uid: rotating.uid,
      newHash: next.hash,
      displayPrefix: next.displayPrefix,
      graceSeconds: 1800,
      reason: 'test',
    });
    expect(rotated.kind).toBe('ok');
    await eventuallyStatus(next.token, 200);
    expect((await verify(app, rotating.token)).statusCode).toBe(200);
    const lookupsBefore = await storeLookups();

    try {
      clock.offset = HOUR / 2 + 1000;
      const old = await verify(app, rotating.token);
      expect(old.statusCode).toBe(401);
      expect(old.json().error_description).toMatch(/grace period/);
      expect((await verify(app, next.token)).statusCode).toBe(200);
      clock.offset = HOUR + 1000;
      const expired = await verify(app, expiring.token);
      expect(expired.statusCode).toBe(401);
      expect(expired.json().error_description).toBe('The API key has expired.');
    } finally {
      clock.offset = 0;
    }
    // All of it from the cache (the TTL backstop is 60 s of the same clock, but the decisions came first).
    expect(await storeLookups()).toBeLessThanOrEqual(lookupsBefore + 3);
  });

  it('looks an unknown hash up once, then answers from the negative cache', async () => {
    const token = generateToken().token;
    const before = await storeLookups();
    for (let i = 0; i < 20; i++) expect((await verify(app, token)).statusCode).toBe(401);
    expect(await storeLookups()).toBe(before + 1);
  });

  it('sees a key issued after its hash was negatively cached', async () => {
    const user = await fx.createUser();
    const generated = generateToken();
    expect((await verify(app, generated.token)).statusCode).toBe(401);
    await fx.store.issueKey({
      ref: { namespace: user.namespace, name: `late-${Date.now()}`, uid: crypto.randomUUID() },
      serviceUserName: user.name,
      hash: generated.hash,
      displayPrefix: generated.displayPrefix,
    });
    await eventuallyStatus(generated.token, 200);
  });

  it('counts usage per key and writes it in a batch', async () => {
    const key = await fx.issueKey(await fx.createUser());
    for (let i = 0; i < 5; i++) await verify(app, key.token);
    await verify(app, key.token, { scope: 'nope:x' });
    await app.usage.flush();
    const { rows } = await fx.pool.query<{ allowed: string; denied: string; last_used_at: Date | null }>(
      `SELECT sum(u.allowed) AS allowed, sum(u.denied) AS denied, max(k.last_used_at) AS last_used_at
         FROM api_key_usage u JOIN api_keys k ON k.id = u.api_key_id WHERE k.key_id = $1`,
      [key.keyId],
    );
    expect(rows[0]).toMatchObject({ allowed: '5', denied: '1' });
    expect(rows[0]?.last_used_at).toBeInstanceOf(Date);
  });

  it('limits URL length and never answers bad input with a 5xx', async () => {
    const long = await app.inject({ url: `/verify/${'a'.repeat(9000)}` });
    expect(long.statusCode).toBe(414);
    const odd = await app.inject({
      method: 'POST',
      url: '/verify',
      headers: { 'content-type': 'multipart/form-data; boundary=x', 'content-encoding': 'gzip' },
    });
    expect(odd.statusCode).toBe(401);
  });

  it('refuses a request body with 413 and closes the connection, even with a valid key', async () => {
    const key = await fx.issueKey(await fx.createUser());
    for (const payload of ['{not json', Buffer.from([0xff, 0x00, 0x1f, 0x8b])]) {
      const res = await app.inject({
        method: 'POST',
        url: '/verify/upload',
        headers: { authorization: `Bearer ${key.token}`, 'content-type': 'application/json' },
        payload,
      });
      expect(res.statusCode).toBe(413);
      expect(res.headers.connection).toBe('close');
      expect(res.headers['x-keyward-user']).toBeUndefined();
    }
  });
});

describe('/tokenreview', () => {
  const caller = { authorization: `Bearer ${TOKENREVIEW_CALLER}` };
  const review = (
    token: unknown,
    apiVersion = 'authentication.k8s.io/v1',
    headers: Record<string, string> = caller,
  ) =>
    app.inject({
      method: 'POST',
      url: '/tokenreview',
      headers,
      payload: { apiVersion, kind: 'TokenReview', spec: { token } },
    });

  it('answers only an authenticated caller, and tells others nothing about the token', async () => {
    const key = await fx.issueKey(await fx.createUser({ kubernetesAuthentication: true }));
    const attempts: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer kube-apiserver-wrong-credential' },
      { authorization: `Basic ${Buffer.from(`x:${TOKENREVIEW_CALLER}`).toString('base64')}` },
      { authorization: `Bearer ${key.token}` },
    ];
    for (const headers of attempts) {
      const res = await review(key.token, 'authentication.k8s.io/v1', headers);
      expect(res.statusCode, JSON.stringify(headers)).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Bearer realm="keyward-tokenreview"');
      expect(res.json()).toEqual({
        error: 'unauthorized',
        error_description: 'The caller is not authenticated.',
      });
    }
    expect((await review(key.token)).json().status.authenticated).toBe(true);
  });

  it('authenticates a key its AccessPolicy lets onto Kubernetes as keyward:<username>, groups keyward:-prefixed', async () => {
    const user = await fx.createUser({
      groups: ['viewers', 'deployers'],
      scopes: ['k8s:*'],
      kubernetesAuthentication: true,
    });
    const key = await fx.issueKey(user);
    const res = await review(key.token);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      status: {
        authenticated: true,
        user: {
          username: `keyward:${user.username}`,
          uid: user.id,
          groups: ['keyward:viewers', 'keyward:deployers'],
          extra: { 'keyward.dev/key-id': [key.keyId], 'keyward.dev/scopes': ['k8s:*'] },
        },
      },
    });
    expect((await review(key.token, 'authentication.k8s.io/v1beta1')).json().apiVersion).toBe(
      'authentication.k8s.io/v1beta1',
    );
  });

  it('does not authenticate a valid key unless its AccessPolicy allows Kubernetes authentication', async () => {
    const user = await fx.createUser({ groups: ['viewers'] });
    const key = await fx.issueKey(user);
    expect((await verify(app, key.token)).statusCode).toBe(200);
    expect((await review(key.token)).json().status).toEqual({
      authenticated: false,
      error: 'The API key is not allowed to authenticate to Kubernetes.',
    });
  });

  it('stops authenticating as soon as the store withdraws Kubernetes authentication', async () => {
    const user = await fx.createUser({ kubernetesAuthentication: true });
    const key = await fx.issueKey(user);
    expect((await review(key.token)).json().status.authenticated).toBe(true);
    const withdrawn = await fx.store.upsertServiceUser({
      ref: { namespace: user.namespace, name: user.name, uid: user.uid },
      username: user.username,
      description: 'webhook test user',
      contact: null,
      groups: ['team-a'],
      scopes: ['projects:*'],
      suspended: false,
      kubernetesAuthentication: false,
    });
    expect(withdrawn.kind).toBe('ok');
    await eventually(
      'withdrawal',
      async () => (await review(key.token)).json().status.authenticated === false,
      2000,
    );
  });

  it('takes the group prefix from KEYWARD_TOKENREVIEW_GROUPS_PREFIX', async () => {
    const other = await readyApp(
      testConfig(fx.url, {
        KEYWARD_TOKENREVIEW_GROUPS_PREFIX: 'kw-',
        KEYWARD_TOKENREVIEW_CREDENTIALS: TOKENREVIEW_CALLER,
      }),
    );
    try {
      const key = await fx.issueKey(await fx.createUser({ groups: ['ops'], kubernetesAuthentication: true }));
      const res = await other.inject({
        method: 'POST',
        url: '/tokenreview',
        headers: caller,
        payload: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: key.token } },
      });
      expect(res.json().status.user.groups).toEqual(['kw-ops']);
    } finally {
      await other.close();
    }
  });

  it('the store refuses a system: group whatever writes it', async () => {
    await expect(fx.createUser({ groups: ['system:masters'] })).rejects.toThrow();
  });

  it('answers authenticated:false for bad tokens and 400 for what is not a TokenReview', async () => {
    const bad = await review('nope');
    expect(bad.statusCode).toBe(200);
    expect(bad.json().status).toEqual({ authenticated: false, error: 'The API key is invalid.' });
    const user = await fx.createUser({ suspended: true });
    const key = await fx.issueKey(user);
    expect((await review(key.token)).json().status.error).toMatch(/suspended/);
    expect((await review(42)).statusCode).toBe(400);
    expect((await review('x', 'v1')).statusCode).toBe(400);
    const notJson = await app.inject({
      method: 'POST',
      url: '/tokenreview',
      headers: { ...caller, 'content-type': 'application/json' },
      payload: '{"apiVersion": ',
    });
    expect(notJson.statusCode).toBe(400);
    expect(notJson.json().error_description).toBe('The request is not valid.');
    const text = await app.inject({
      method: 'POST',
      url: '/tokenreview',
      payload: 'a=b',
      headers: { ...caller, 'content-type': 'text/plain' },
    });
    expect(text.statusCode).toBe(400);
    const xml = await app.inject({
      method: 'POST',
      url: '/tokenreview',
      payload: '<a/>',
      headers: { ...caller, 'content-type': 'application/xml' },
    });
    expect(xml.statusCode).toBe(415);
  });
});

describe('/introspect', () => {
  const basic = (pair: string): string => `Basic ${Buffer.from(pair).toString('base64')}`;
  const introspect = (token: string, authorization?: string) =>
    app.inject({
      method: 'POST',
      url: '/introspect',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        ...(authorization ? { authorization } : {}),
      },
      payload: `token=${encodeURIComponent(token)}&token_type_hint=access_token`,
    });

  it('requires the caller credential', async () => {
    const key = await fx.issueKey(await fx.createUser());
    for (const auth of [
      undefined,
      basic('gateway:wrong'),
      basic('other:gw-secret-123'),
      `Bearer ${key.token}`,
    ]) {
      const res = await introspect(key.token, auth);
      expect(res.statusCode).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Basic realm="keyward-introspect"');
      expect(res.body).not.toMatch(/active/);
    }
  });

  it('describes an active key per RFC 7662 and says only active:false otherwise', async () => {
    const user = await fx.createUser({ scopes: ['projects:*', 'reports:read'] });
    const expiresAt = new Date(Date.now() + 10 * HOUR);
    const key = await fx.issueKey(user, { expiresAt });
    const res = await introspect(key.token, basic('gateway:gw-secret-123'));
    expect(res.statusCode).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    const body = res.json();
    expect(body).toMatchObject({
      active: true,
      scope: 'projects:* reports:read',
      username: user.username,
      sub: user.id,
      client_id: key.keyId,
      token_type: 'Bearer',
      exp: Math.floor(expiresAt.getTime() / 1000),
    });
    expect(typeof body.iat).toBe('number');
    await fx.store.revokeKey(key.uid);
    await eventuallyStatus(key.token, 401);
    for (const token of [key.token, 'garbage', generateToken().token]) {
      const inactive = await introspect(token, basic('gateway:gw-secret-123'));
      expect(inactive.statusCode).toBe(200);
      expect(inactive.body).toBe('{"active":false}');
    }
    const noToken = await app.inject({
      method: 'POST',
      url: '/introspect',
      headers: {
        authorization: basic('gateway:gw-secret-123'),
        'content-type': 'application/x-www-form-urlencoded',
      },
      payload: 'foo=bar',
    });
    expect(noToken.statusCode).toBe(400);
  });
});

describe('health and metrics', () => {
  it('reports liveness, readiness and metrics from the app-owned registry', async () => {
    expect((await app.inject('/healthz')).json()).toEqual({ status: 'ok' });
    const ready = await app.inject('/readyz');
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ ready: true, draining: false, store: 'reachable', listener: 'attached' });
    // Not on the verification port: that one is open to every client of every ingress.
    expect((await app.inject('/metrics')).statusCode).toBe(404);
    const metrics = { body: await metricsText(app) };
    for (const name of [
      'keyward_webhook_decisions_total{route="verify",result="allow",reason="ok"}',
      'keyward_webhook_request_duration_seconds_bucket',
      'keyward_webhook_cache_lookups_total{outcome="hit"}',
      'keyward_webhook_cache_evictions_total',
      'keyward_webhook_cache_entries{cache="positive"}',
      'keyward_webhook_listener_reconnects_total',
      'keyward_webhook_listener_attached 1',
      'keyward_webhook_store_lookups{state="in_flight"} 0',
      'keyward_webhook_store_lookups{state="queued"} 0',
    ]) {
      expect(metrics.body).toContain(name);
    }
  });
});

describe('request timing and URL limits', () => {
  it('times every decision it counts, on /verify and on /introspect', async () => {
    const key = await fx.issueKey(await fx.createUser());
    const series = async (route: string) => {
      const body = await metricsText(app);
      const read = (name: string) =>
        Number(new RegExp(`^${name}\\{route="${route}"\\} (\\S+)$`, 'm').exec(body)?.[1] ?? 0);
      return {
        count: read('keyward_webhook_request_duration_seconds_count'),
        sum: read('keyward_webhook_request_duration_seconds_sum'),
      };
    };
    const before = await series('verify');
    for (let i = 0; i < 3; i++) expect((await verify(app, key.token)).statusCode).toBe(200);
    expect((await verify(app, undefined)).statusCode).toBe(401);
    const after = await series('verify');
    expect(after.count - before.count).toBe(4);
    // A real duration, not zero: well under a second per request, but not nothing.
    expect(after.sum - before.sum).toBeGreaterThan(0);
    expect(after.sum - before.sum).toBeLessThan(4);
    const introspected = await series('introspect');
    await app.inject({
      method: 'POST',
      url: '/introspect',
      headers: {
        authorization: `Basic ${Buffer.from('gateway:gw-secret-123').toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      payload: `token=${key.token}`,
    });
    const introspectedAfter = await series('introspect');
    expect(introspectedAfter.count - introspected.count).toBe(1);
    expect(introspectedAfter.sum - introspected.sum).toBeGreaterThan(0);
  });

  it("hands Fastify's own per-request logging to keyward's logger, on /verify and on the other routes", async () => {
    const seen: boolean[] = [];
    const own = await buildApp({
      config: testConfig(fx.url),
      logger: createLogger({ level: 'silent' }),
      defaultMetrics: false,
    });
    // Where Fastify writes "Reply was already sent" and stream errors: the request's and reply's log.
    own.addHook('onResponse', (request, reply, done) => {
      seen.push(request.log === own.log && reply.log === own.log);
      done();
    });
    try {
      await own.ready();
      await own.inject({ url: '/verify' });
      await own.inject({ url: '/healthz' });
      expect(seen).toEqual([true, true]);
    } finally {
      await own.close();
    }
  });

  it('answers an overlong URL with 414 on every route, known or not', async () => {
    const tail = 'a'.repeat(9000);
    for (const url of [
      `/verify?x=${tail}`,
      `/healthz?x=${tail}`,
      `/introspect?x=${tail}`,
      `/nothing/${tail}`,
    ]) {
      const res = await app.inject({ url, method: url.startsWith('/introspect') ? 'POST' : 'GET' });
      expect(res.statusCode, url.slice(0, 12)).toBe(414);
      expect(res.json()).toEqual({
        error: 'uri_too_long',
        error_description: 'The request URL is too long.',
      });
    }
    // Only /verify's answers carry cache-control, and a 414 is decided before it is set.
    const verified = await app.inject({ url: `/verify/${tail}` });
    expect(verified.statusCode).toBe(414);
    expect(verified.headers['cache-control']).toBeUndefined();
  });
});

describe('secrets', () => {
  it('never writes a token, or its hash, to the log or the metrics', async () => {
    const key = await fx.issueKey(await fx.createUser());
    const stranger = generateToken().token;
    await verify(app, key.token);
    await verify(app, stranger);
    await verify(app, `${key.token.slice(0, -1)}A`);
    await app.inject({ url: '/verify', headers: { 'x-api-key': key.token } });
    await app.inject({ url: `/nope?token=${key.token}`, headers: { authorization: `Bearer ${key.token}` } });
    await app.inject({
      method: 'POST',
      url: '/tokenreview',
      headers: { authorization: `Bearer ${TOKENREVIEW_CALLER}` },
      payload: { apiVersion: 'x', spec: { token: key.token } },
    });
    app.log.info(
      { req: { headers: { authorization: `Bearer ${key.token}`, 'x-api-key': key.token } } },
      'probe',
    );
    const metrics = await metricsText(app);
    const everything = logLines.join('') + metrics;
    expect(logLines.length).toBeGreaterThan(0);
    for (const secret of [key.token, stranger, key.token.slice(7, 30)])
      expect(everything).not.toContain(secret);
  });
});

async function storeLookups(): Promise<number> {
  const values = (await app.keyward.metrics.storeLookups.get()).values;
  return values.filter((v) => v.labels.outcome !== 'error').reduce((sum, v) => sum + v.value, 0);
}

describe('failed-attempt limit', () => {
  it('limits only unknown and malformed tokens, per client address from a trusted proxy', async () => {
    const now = { t: Date.now() };
    const limitedApp = await readyApp(
      testConfig(fx.url, {
        KEYWARD_FAILED_ATTEMPTS_LIMIT: '3',
        KEYWARD_FAILED_ATTEMPTS_WINDOW: '1m',
        KEYWARD_TRUSTED_PROXIES: '10.0.0.0/8',
      }),
      { now: () => now.t },
    );
    try {
      const user = await fx.createUser();
      const key = await fx.issueKey(user);
      const expired = await fx.issueKey(user, { expiresAt: new Date(now.t - 1000) });
      // Behind the trusted proxy 10.0.0.2; the client is the right-most hop it appended.
      const from = (ip: string) => ({ 'x-forwarded-for': `203.0.113.250, ${ip}` });
      const via = (token: string | undefined, ip: string) =>
        limitedApp.inject({
          url: '/verify',
          remoteAddress: '10.0.0.2',
          headers: { ...from(ip), ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
        });
      // The key's own `issued` notification may land after a first lookup and drop it: cache it after that.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect((await via(key.token, '198.51.100.7')).statusCode).toBe(200);
      // Missing credentials and refusals of a real key are not guesses and never count.
      for (let i = 0; i < 5; i++) expect((await via(undefined, '198.51.100.7')).statusCode).toBe(401);
      for (let i = 0; i < 10; i++) expect((await via(expired.token, '198.51.100.7')).statusCode).toBe(401);
      expect((await via(key.token, '198.51.100.7')).statusCode).toBe(200);
      for (let i = 0; i < 3; i++) {
        expect((await via(generateToken().token, '198.51.100.7')).statusCode).toBe(401);
      }
      const limited = await via(generateToken().token, '198.51.100.7');
      expect(limited.statusCode).toBe(429);
      expect(limited.headers['retry-after']).toBe('20');
      expect((await via('garbage', '198.51.100.7')).statusCode).toBe(429);
      // Over its limit, the address still gets every answer about real keys: cached or not, valid or not.
      expect((await via(key.token, '198.51.100.7')).statusCode).toBe(200);
      const fresh = await fx.issueKey(user);
      await eventually(
        'new key',
        async () => (await via(fresh.token, '198.51.100.7')).statusCode === 200,
        2000,
      );
      expect((await via(expired.token, '198.51.100.7')).json().error_description).toBe(
        'The API key has expired.',
      );
      // Another client behind the same proxy is not affected.
      expect((await via('garbage', '198.51.100.8')).statusCode).toBe(401);
      // A peer that is not a trusted proxy cannot pose as another client: its header is ignored.
      for (let i = 0; i < 4; i++) {
        await limitedApp.inject({
          url: '/verify',
          remoteAddress: '192.0.2.66',
          headers: { ...from('198.51.100.9'), authorization: 'Bearer garbage' },
        });
      }
      expect((await via('garbage', '198.51.100.9')).statusCode).toBe(401);
      now.t += 20_000;
      expect((await via('garbage', '198.51.100.7')).statusCode).toBe(401);
      expect((await via('garbage', '198.51.100.7')).statusCode).toBe(429);
      expect(await metricsText(limitedApp)).toMatch(
        /keyward_webhook_decisions_total\{route="verify",result="limited",reason="too_many_failures"\} [1-9]/,
      );
    } finally {
      await limitedApp.close();
    }
  });
});
