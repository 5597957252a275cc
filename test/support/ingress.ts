import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect, it } from 'vitest';
import { ActAsStore } from '../../store/act-as.js';
import { RateLimitDefinitions } from '../../store/rate-limits.js';
import type { TestProxy } from '../harness/proxy.js';
import type { StoreFixture } from './webhook.js';

/**
 * The ingress suites' shared parts (test/e2e/webhook-traefik.test.ts, webhook-caddy.test.ts): the
 * application behind the proxy, which echoes what reached it, and one table of cases every real
 * proxy must pass, each asserting what the client and the application observe.
 */

/** The headers the webhook answers an allowed request with, copied to the upstream by the proxy. */
export const IDENTITY_HEADERS = [
  'X-Keyward-User',
  'X-Keyward-Actor',
  'X-Keyward-Key-Id',
  'X-Keyward-Scopes',
  'X-Keyward-Groups',
];

/** What the upstream saw of one request. */
interface Echo {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string | undefined>;
}

export interface EchoUpstream {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** Every request that reached the application, in order. */
  readonly seen: readonly Echo[];
  close(): Promise<void>;
}

/** A real HTTP server that answers each request with a JSON echo of its method, URL and headers. */
export async function startEchoUpstream(): Promise<EchoUpstream> {
  const seen: Echo[] = [];
  const server: Server = createServer((req, res) => {
    const echo = { method: req.method ?? '', url: req.url ?? '', headers: flatHeaders(req.headers) };
    seen.push(echo);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(echo));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function flatHeaders(headers: NodeJS.Dict<string | string[]>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  // A header that reached the application twice is joined, so a test sees the duplicate.
  for (const [name, value] of Object.entries(headers))
    out[name] = Array.isArray(value) ? value.join(' | ') : value;
  return out;
}

/** The locations every ingress suite configures: one without a required scope, one with. */
export function ingressLocations(webhookUrl: string): Array<{ path: string; authUrl: string }> {
  return [
    { path: '/', authUrl: `${webhookUrl}/verify` },
    { path: '/alpha/', authUrl: `${webhookUrl}/verify?scope=projects:alpha` },
  ];
}

/** What a case sends through the proxy. The path gets a unique prefix-preserving suffix. */
interface ClientRequest {
  readonly path: string;
  readonly method?: string;
  readonly headers: Record<string, string>;
}

/** An allowed request: the application is reached, with exactly these identity headers. */
interface Allowed {
  readonly status: 200;
  /** Lower-case header name → value the application must see; undefined: it must see none. */
  readonly upstreamHeaders: Record<string, string | undefined>;
}

/** A denied request: the application is never reached; the client gets the webhook's answer. */
interface Denied {
  readonly status: 401 | 403 | 429;
  /** Response headers the client must get, by lower-case name. */
  readonly clientHeaders: Record<string, RegExp>;
}

interface Arranged {
  readonly request: ClientRequest;
  /** Identical requests sent first, each expected to reach the application (to use up a limit). */
  readonly allowedBefore?: number;
  readonly expect: Allowed | Denied;
}

export interface IngressCase {
  readonly name: string;
  /** Creates what the case needs in the real store and says what must be observed. */
  arrange(fx: StoreFixture): Promise<Arranged>;
}

const CHALLENGE = /^Bearer realm="keyward"/;
const SPOOF = {
  'x-keyward-user': 'cluster-admin',
  'x-keyward-actor': 'cluster-admin',
  'x-keyward-key-id': 'kw-forged',
  'x-keyward-scopes': '*',
  'x-keyward-groups': 'system:masters',
};

function identityOf(
  user: { username: string },
  key: { keyId: string },
  scopes: string,
  groups: string,
): Record<string, string> {
  return {
    'x-keyward-user': user.username,
    'x-keyward-actor': '',
    'x-keyward-key-id': key.keyId,
    'x-keyward-scopes': scopes,
    'x-keyward-groups': groups,
  };
}

/**
 * Every real proxy in front of the webhook passes these. New request-path features add their rows
 * here, so each proxy is tested for them at once.
 */
const INGRESS_CASES: readonly IngressCase[] = [
  {
    name: 'valid key (Authorization: Bearer): 200, method and URL kept, identity headers at the upstream',
    async arrange(fx) {
      const user = await fx.createUser({ groups: ['team-a', 'ops'], scopes: ['projects:*'] });
      const key = await fx.issueKey(user);
      return {
        request: {
          path: '/app/items?page=2',
          method: 'DELETE',
          headers: { authorization: `Bearer ${key.token}` },
        },
        expect: { status: 200, upstreamHeaders: identityOf(user, key, 'projects:*', 'team-a,ops') },
      };
    },
  },
  {
    name: 'valid key (X-API-Key): 200 with identity headers',
    async arrange(fx) {
      const user = await fx.createUser();
      const key = await fx.issueKey(user, { scopes: ['projects:alpha'] });
      return {
        request: { path: '/x', headers: { 'x-api-key': key.token } },
        expect: { status: 200, upstreamHeaders: identityOf(user, key, 'projects:alpha', 'team-a') },
      };
    },
  },
  {
    name: 'missing key: 401 with the bare challenge',
    async arrange() {
      return {
        request: { path: '/anything', headers: {} },
        expect: { status: 401, clientHeaders: { 'www-authenticate': /^Bearer realm="keyward"$/ } },
      };
    },
  },
  {
    name: 'invalid key: 401 invalid_token',
    async arrange() {
      return {
        request: { path: '/anything', headers: { authorization: 'Bearer kw_not-a-real-token' } },
        expect: {
          status: 401,
          clientHeaders: {
            'www-authenticate': /error="invalid_token", error_description="The API key is invalid."/,
          },
        },
      };
    },
  },
  {
    name: 'suspended service user: 401 naming the suspension',
    async arrange(fx) {
      const user = await fx.createUser();
      const key = await fx.issueKey(user);
      await fx.setSuspended(user, true);
      return {
        request: { path: '/anything', headers: { authorization: `Bearer ${key.token}` } },
        expect: { status: 401, clientHeaders: { 'www-authenticate': /suspended/ } },
      };
    },
  },
  {
    name: 'revoked key: 401 naming the revocation',
    async arrange(fx) {
      const key = await fx.issueKey(await fx.createUser());
      await fx.store.revokeKey(key.uid);
      return {
        request: { path: '/anything', headers: { authorization: `Bearer ${key.token}` } },
        expect: { status: 401, clientHeaders: { 'www-authenticate': /revoked/ } },
      };
    },
  },
  {
    name: 'scoped location, key with the scope: 200',
    async arrange(fx) {
      const user = await fx.createUser({ scopes: ['projects:*'] });
      const key = await fx.issueKey(user, { scopes: ['projects:alpha'] });
      return {
        request: { path: '/alpha/x', headers: { authorization: `Bearer ${key.token}` } },
        expect: { status: 200, upstreamHeaders: identityOf(user, key, 'projects:alpha', 'team-a') },
      };
    },
  },
  {
    name: 'scoped location, key without the scope: 403 insufficient_scope',
    async arrange(fx) {
      const key = await fx.issueKey(await fx.createUser({ scopes: ['projects:*'] }), {
        scopes: ['projects:beta'],
      });
      return {
        request: { path: '/alpha/x', headers: { authorization: `Bearer ${key.token}` } },
        expect: {
          status: 403,
          clientHeaders: { 'www-authenticate': /error="insufficient_scope".*scope="projects:alpha"/ },
        },
      };
    },
  },
  {
    name: 'scoped location: a client cannot loosen the requirement with X-Keyward-Required-Scope',
    async arrange(fx) {
      const key = await fx.issueKey(await fx.createUser({ scopes: ['projects:*'] }), {
        scopes: ['projects:beta'],
      });
      return {
        request: {
          path: '/alpha/x',
          headers: { authorization: `Bearer ${key.token}`, 'x-keyward-required-scope': 'projects:beta' },
        },
        expect: { status: 403, clientHeaders: { 'www-authenticate': /insufficient_scope/ } },
      };
    },
  },
  {
    name: 'client-supplied identity headers with a valid key: replaced by the real identity',
    async arrange(fx) {
      const user = await fx.createUser();
      const key = await fx.issueKey(user);
      return {
        request: { path: '/spoof', headers: { ...SPOOF, authorization: `Bearer ${key.token}` } },
        expect: { status: 200, upstreamHeaders: identityOf(user, key, 'projects:*', 'team-a') },
      };
    },
  },
  {
    name: 'client-supplied identity headers, the webhook answering one of them empty: the client value is gone',
    async arrange(fx) {
      const user = await fx.createUser({ groups: [] });
      const key = await fx.issueKey(user);
      return {
        request: { path: '/spoof', headers: { ...SPOOF, authorization: `Bearer ${key.token}` } },
        expect: { status: 200, upstreamHeaders: identityOf(user, key, 'projects:*', '') },
      };
    },
  },
  {
    name: 'client-supplied identity headers without a key: 401, the upstream never reached',
    async arrange() {
      return {
        request: { path: '/spoof', headers: SPOOF },
        expect: { status: 401, clientHeaders: { 'www-authenticate': CHALLENGE } },
      };
    },
  },
  {
    name: 'acting on behalf of a subject: the subject as X-Keyward-User, the key user as X-Keyward-Actor, spoofed copies gone',
    async arrange(fx) {
      const actor = await fx.createUser({ scopes: ['gateway:ping'], groups: [] });
      const subject = await fx.createUser({ scopes: ['projects:alpha'], groups: ['readers'] });
      await new ActAsStore(fx.pool, { actor: 'ingress-tests' }).set(actor.id, {
        serviceUsers: [subject.username],
        externalSubjects: [],
      });
      const key = await fx.issueKey(actor);
      return {
        request: {
          path: '/alpha/x',
          headers: { ...SPOOF, authorization: `Bearer ${key.token}`, 'x-keyward-subject': subject.username },
        },
        expect: {
          status: 200,
          upstreamHeaders: {
            ...identityOf(subject, key, 'projects:alpha', 'readers'),
            'x-keyward-actor': actor.username,
          },
        },
      };
    },
  },
  {
    name: 'a subject header on a key whose user may not act: 403, the upstream never reached',
    async arrange(fx) {
      const key = await fx.issueKey(await fx.createUser());
      return {
        request: {
          path: '/x',
          headers: { authorization: `Bearer ${key.token}`, 'x-keyward-subject': 'team_x' },
        },
        expect: { status: 403, clientHeaders: {} },
      };
    },
  },
  {
    name: 'over its rate limit: 429 with Retry-After and the RateLimit headers, the upstream never reached',
    async arrange(fx) {
      const key = await fx.issueKey(await fx.createUser());
      await new RateLimitDefinitions(fx.pool).define({
        uid: key.uid,
        kind: 'ApiKey',
        rateLimits: [{ name: 'hourly', limit: 2, periodMs: 3_600_000 }],
        quota: null,
      });
      return {
        request: { path: '/limited', headers: { authorization: `Bearer ${key.token}` } },
        allowedBefore: 2,
        expect: {
          status: 429,
          clientHeaders: {
            'retry-after': /^[1-9][0-9]*$/,
            'ratelimit-policy': /"key:hourly";q=2;w=3600/,
            ratelimit: /"key:hourly";r=0;t=[0-9]+/,
          },
        },
      };
    },
  },
];

/**
 * Registers one test per row of INGRESS_CASES against a started proxy. `context()` is read when
 * a test runs, after the suite's beforeAll has started everything.
 */
export function ingressCases(
  context: () => { proxy: TestProxy; upstream: EchoUpstream; fx: StoreFixture },
  cases: readonly IngressCase[] = INGRESS_CASES,
): void {
  for (const testCase of cases) {
    it(testCase.name, async () => {
      const { proxy, upstream, fx } = context();
      const arranged = await testCase.arrange(fx);
      for (let i = 0; i < (arranged.allowedBefore ?? 0); i++) {
        const before = await fetch(`${proxy.url}${withMarker(arranged.request.path)}`, {
          headers: arranged.request.headers,
        });
        expect(before.status, `request ${i + 1} before the one under test`).toBe(200);
        await before.arrayBuffer();
      }
      const path = withMarker(arranged.request.path);
      const res = await fetch(`${proxy.url}${path}`, {
        method: arranged.request.method ?? 'GET',
        headers: arranged.request.headers,
      });
      const body = await res.text();
      const reached = upstream.seen.filter((e) => e.url === path);
      expect(res.status, `${body}\n(proxy log: ${proxy.logFile})`).toBe(arranged.expect.status);
      if (arranged.expect.status === 200) {
        const expected = arranged.expect.upstreamHeaders;
        expect(reached).toHaveLength(1);
        const echo = JSON.parse(body) as Echo;
        expect(echo.url).toBe(path);
        expect(echo.method).toBe(arranged.request.method ?? 'GET');
        const observed = Object.fromEntries(Object.keys(expected).map((name) => [name, echo.headers[name]]));
        expect(observed).toEqual(expected);
      } else {
        expect(reached, 'a denied request reached the upstream').toEqual([]);
        for (const [name, pattern] of Object.entries(arranged.expect.clientHeaders)) {
          expect(res.headers.get(name), name).toMatch(pattern);
        }
      }
    });
  }
}

/** Makes each request's URL unique, so the upstream's log tells whether this one reached it. */
function withMarker(path: string): string {
  const marker = `kw-case=${randomUUID().slice(0, 8)}`;
  return path.includes('?') ? `${path}&${marker}` : `${path}?${marker}`;
}

/**
 * Sequential allowed requests through the proxy reach the webhook over one kept-alive connection
 * (a second only if the proxy closed one): a connection per request costs the webhook a TCP
 * set-up on every check, which the nginx recipe had to be taught to avoid.
 */
export function keepAliveCase(
  context: () => { proxy: TestProxy; fx: StoreFixture; webhook: { app: { server: Server } } },
): void {
  it('keeps its connection to the webhook alive from one request to the next', async () => {
    const { proxy, fx, webhook } = context();
    const key = await fx.issueKey(await fx.createUser({ scopes: ['projects:*'] }));
    let accepted = 0;
    let checks = 0;
    const onConnection = (): void => {
      accepted += 1;
    };
    const onRequest = (): void => {
      checks += 1;
    };
    webhook.app.server.on('connection', onConnection);
    webhook.app.server.on('request', onRequest);
    try {
      for (let i = 0; i < 20; i++) {
        const res = await fetch(`${proxy.url}${withMarker('/kept')}`, {
          headers: { authorization: `Bearer ${key.token}` },
        });
        expect(res.status).toBe(200);
        await res.arrayBuffer();
      }
    } finally {
      webhook.app.server.off('connection', onConnection);
      webhook.app.server.off('request', onRequest);
    }
    // Every check reached this server (so the connections counted are the proxy's to it).
    expect(checks).toBe(20);
    expect(accepted).toBeLessThanOrEqual(2);
  });
}
