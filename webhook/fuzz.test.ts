import fc from 'fast-check';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../credentials/token.js';
import { testDatabase } from '../test/harness/database.js';
import { readyApp, type StoreFixture, storeFixture, testConfig } from '../test/support/webhook.js';

/**
 * Property tests over the three public routes, against a real store: whatever arrives, the
 * webhook answers below 500 and accepts nothing but a real, valid token. 100,000 requests in all.
 */
const RUNS = { verify: 60_000, tokenreview: 20_000, introspect: 20_000 };
const CALLER = 'gateway:fuzz-caller-secret';
const TOKENREVIEW_CALLER = 'fuzz-kube-apiserver-credential';

let fx: StoreFixture;
let app: FastifyInstance;
/** token → keyId of every key that may be accepted. */
const valid = new Map<string, string>();
/** Real keys that must be refused (suspended user, revoked key). */
const refused: string[] = [];

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  app = await readyApp(
    testConfig(fx.url, {
      KEYWARD_INTROSPECT_CREDENTIALS: CALLER,
      KEYWARD_TOKENREVIEW_CREDENTIALS: TOKENREVIEW_CALLER,
    }),
  );
  const user = await fx.createUser({ scopes: ['projects:*', 'read'], kubernetesAuthentication: true });
  for (const scopes of [null, ['projects:alpha']]) {
    const key = await fx.issueKey(user, { scopes });
    valid.set(key.token, key.keyId);
  }
  refused.push((await fx.issueKey(await fx.createUser({ suspended: true }))).token);
  const revoked = await fx.issueKey(user);
  await fx.store.revokeKey(revoked.uid);
  refused.push(revoked.token);
}, 60_000);

afterAll(async () => {
  await app?.close();
  await fx?.close();
});

/** What a real HTTP server hands over: UTF-8 bytes read as latin1, without CR, LF or NUL. */
const headerSafe = (s: string): string =>
  Buffer.from(s, 'utf8')
    .toString('latin1')
    .replace(/[\r\n\0]/g, ' ');

/** Tokens from every direction: real ones, near misses of real ones, random and huge strings. */
function tokenArb(): fc.Arbitrary<string> {
  const known = fc.constantFrom(...valid.keys(), ...refused);
  const nearMiss = fc.tuple(known, fc.nat(), fc.string({ minLength: 1, maxLength: 3 })).map(([t, i, s]) => {
    const at = i % t.length;
    switch (i % 4) {
      case 0:
        return t.slice(0, at) + s + t.slice(at + 1); // substitution
      case 1:
        return t.slice(0, at); // truncation
      case 2:
        return t + s; // extension
      default:
        return t.toUpperCase();
    }
  });
  return fc.oneof(
    { arbitrary: known, weight: 2 },
    { arbitrary: nearMiss, weight: 4 },
    { arbitrary: fc.constant('').map(() => generateToken().token), weight: 1 },
    { arbitrary: fc.string({ maxLength: 80, unit: 'binary' }), weight: 3 },
    { arbitrary: fc.string({ minLength: 8_000, maxLength: 20_000, unit: 'grapheme-ascii' }), weight: 1 },
    { arbitrary: fc.constantFrom('', ' ', 'null', 'kw_', 'Bearer', '\t'), weight: 1 },
  );
}

const scopeArb = fc.oneof(
  fc.constantFrom('projects:alpha', 'projects:beta', 'read', 'projects:*', '*', 'write'),
  fc.string({ maxLength: 300, unit: 'binary' }),
);

interface Presented {
  readonly tokens: readonly string[];
}

/** The keyId a 200 may carry: one of the valid tokens the request actually presented. */
function acceptable(presented: Presented): Set<string> {
  const ids = new Set<string>();
  for (const t of presented.tokens) {
    const id = valid.get(t.trim());
    if (id) ids.add(id);
  }
  return ids;
}

function expectSafe(res: LightMyRequestResponse): void {
  expect(res.statusCode, res.body.slice(0, 200)).toBeLessThan(500);
  for (const token of [...valid.keys(), ...refused]) expect(res.body).not.toContain(token);
}

describe('fuzzing', () => {
  it(`/verify: ${RUNS.verify} requests, no 5xx, nothing but a valid key accepted`, async () => {
    const request = fc.record({
      method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'PROPFIND'),
      path: fc.oneof(
        fc.constant('/verify'),
        fc.webPath().map((p) => `/verify${p.startsWith('/') ? p : `/${p}`}`),
      ),
      scope: fc.option(scopeArb, { nil: undefined }),
      scopeHeader: fc.option(scopeArb, { nil: undefined }),
      authorization: fc.option(
        fc.tuple(fc.constantFrom('Bearer ', 'bearer ', 'Basic ', '', 'Bearer  ', 'Token '), tokenArb()),
        { nil: undefined },
      ),
      apiKey: fc.option(tokenArb(), { nil: undefined }),
      extra: fc.dictionary(
        fc.constantFrom(
          'x-original-url',
          'x-original-method',
          'x-forwarded-uri',
          'x-forwarded-method',
          'x-forwarded-host',
          'x-real-ip',
          'x-forwarded-for',
          'x-keyward-user',
          'x-keyward-subject',
          'content-type',
        ),
        fc.string({ maxLength: 200, unit: 'binary' }),
        { maxKeys: 4 },
      ),
      body: fc.option(fc.string({ maxLength: 500 }), { nil: undefined }),
    });
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(r.extra)) headers[k] = headerSafe(v);
        const tokens: string[] = [];
        if (r.authorization) {
          headers.authorization = headerSafe(r.authorization[0] + r.authorization[1]);
          if (/^bearer +/i.test(headers.authorization))
            tokens.push(headers.authorization.replace(/^\S+ +/, ''));
        }
        if (r.apiKey !== undefined) {
          headers['x-api-key'] = headerSafe(r.apiKey);
          tokens.push(headers['x-api-key']);
        }
        if (r.scopeHeader !== undefined) headers['x-keyward-required-scope'] = headerSafe(r.scopeHeader);
        const query = r.scope === undefined ? '' : `?scope=${encodeURIComponent(r.scope)}`;
        const options: InjectOptions = { method: r.method as 'GET', url: r.path + query, headers };
        if (r.body !== undefined && r.method !== 'GET' && r.method !== 'HEAD') options.payload = r.body;
        const res = await app.inject(options);
        expectSafe(res);
        if (res.statusCode === 200) {
          expect(acceptable({ tokens })).toContain(res.headers['x-keyward-key-id']);
          // No key here may act on behalf of anyone: a subject header is never silently ignored.
          expect(r.extra['x-keyward-subject']).toBeUndefined();
        } else if (res.statusCode === 401) {
          expect(res.headers['www-authenticate']).toMatch(/^Bearer realm="keyward"/);
        }
      }),
      { numRuns: RUNS.verify },
    );
  }, 300_000);

  it(`/tokenreview: ${RUNS.tokenreview} requests, no 5xx, only valid keys authenticated`, async () => {
    const structured = fc.record({
      apiVersion: fc.oneof(
        fc.constantFrom('authentication.k8s.io/v1', 'authentication.k8s.io/v1beta1'),
        fc.string({ maxLength: 40 }),
      ),
      kind: fc.oneof(fc.constant('TokenReview'), fc.string({ maxLength: 20 })),
      spec: fc.oneof(
        fc.record({ token: tokenArb(), audiences: fc.option(fc.array(fc.string()), { nil: undefined }) }),
        fc.anything(),
      ),
    });
    const request = fc.record({
      body: fc.oneof(
        { arbitrary: structured.map((o) => JSON.stringify(o)), weight: 6 },
        { arbitrary: fc.json(), weight: 2 },
        { arbitrary: fc.string({ maxLength: 300, unit: 'binary' }), weight: 2 },
      ),
      contentType: fc.constantFrom(
        'application/json',
        'application/json; charset=utf-8',
        'text/plain',
        'application/x-www-form-urlencoded',
        'application/xml',
        '',
      ),
    });
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const headers: Record<string, string> = { authorization: `Bearer ${TOKENREVIEW_CALLER}` };
        if (r.contentType) headers['content-type'] = r.contentType;
        const res = await app.inject({ method: 'POST', url: '/tokenreview', headers, payload: r.body });
        expectSafe(res);
        if (res.statusCode !== 200) return;
        const answer = res.json() as {
          status?: { authenticated?: boolean; user?: { extra?: Record<string, string[]> } };
        };
        if (answer.status?.authenticated) {
          const sent = JSON.parse(r.body) as { spec: { token: string } };
          // The route trims surrounding whitespace (as /verify does): the caller still holds the exact token.
          expect(valid.get(sent.spec.token.trim())).toBe(
            answer.status.user?.extra?.['keyward.dev/key-id']?.[0],
          );
        }
      }),
      { numRuns: RUNS.tokenreview },
    );
  }, 300_000);

  it(`/introspect: ${RUNS.introspect} requests, no 5xx, only valid keys active`, async () => {
    const basic = (pair: string): string => `Basic ${Buffer.from(pair).toString('base64')}`;
    const request = fc.record({
      authorization: fc.oneof(
        fc.constant(basic(CALLER)),
        fc.string({ maxLength: 60 }).map(basic),
        fc.string({ maxLength: 60, unit: 'binary' }).map(headerSafe),
      ),
      body: fc.oneof(
        tokenArb().map((t) => `token=${encodeURIComponent(t)}`),
        tokenArb().map((t) => `token=${encodeURIComponent(t)}&token=${encodeURIComponent(t)}`),
        fc.string({ maxLength: 300, unit: 'binary' }),
      ),
      contentType: fc.constantFrom('application/x-www-form-urlencoded', 'application/json', 'text/plain', ''),
    });
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const headers: Record<string, string> = { authorization: r.authorization };
        if (r.contentType) headers['content-type'] = r.contentType;
        const res = await app.inject({ method: 'POST', url: '/introspect', headers, payload: r.body });
        expectSafe(res);
        if (res.statusCode === 200 && (res.json() as { active?: boolean }).active) {
          expect(r.authorization).toBe(basic(CALLER));
          const token = new URLSearchParams(r.body).get('token') ?? '';
          expect(valid.get(token)).toBe((res.json() as { client_id: string }).client_id);
        }
      }),
      { numRuns: RUNS.introspect },
    );
  }, 300_000);
});
