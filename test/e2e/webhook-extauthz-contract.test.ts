import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { runReadyWebhook, type StoreFixture, storeFixture, testConfig } from '../support/webhook.js';

/**
 * Envoy's ext_authz HTTP service, Istio's envoyExtAuthzHttp provider and the Gateway API
 * ExternalAuth filter (Envoy Gateway's SecurityPolicy extAuth) cannot run on this machine, so
 * this suite sends the webhook exactly the check requests they send (docs/ingress/envoy.md,
 * istio.md, gateway-api.md) and asserts what they act on:
 * - the check request keeps the client's method, and its path is the configured prefix with the
 *   client's whole path and query appended (`path_prefix: /verify` → `/verify/app/items?page=2`);
 *   it carries Host, Authorization, `Content-Length: 0`, the headers in `allowed_headers`, and the
 *   headers the proxy adds (`headers_to_add` / `includeAdditionalHeadersInCheck`);
 * - only status 200 allows: Envoy then copies the response headers that `allowed_upstream_headers`
 *   (`headersToUpstreamOnAllow`, `allowedResponseHeaders`, `headersToBackend`) name onto the
 *   upstream request; any other status is a denial that the client receives with its headers.
 */

const IDENTITY = ['x-keyward-user', 'x-keyward-key-id', 'x-keyward-scopes', 'x-keyward-groups'];
const PREFIX = '/verify';

let fx: StoreFixture;
let webhook: RunningWebhook;

beforeAll(async () => {
  fx = await storeFixture(await testDatabase());
  webhook = await runReadyWebhook(testConfig(fx.url, { KEYWARD_TRUSTED_PROXIES: '127.0.0.1/32' }));
});

afterAll(async () => {
  await webhook?.close();
  await fx?.close();
});

interface CheckAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
}

/**
 * One check request as Envoy's HTTP ext_authz client writes it: the client's method, the prefix
 * plus the client's path, `Content-Length: 0` (no `with_request_body`), the client's Host and the
 * x-envoy/x-forwarded headers it adds itself, then the headers the configuration lets through.
 */
async function check(
  clientPath: string,
  headers: Record<string, string>,
  options: { method?: string; body?: string } = {},
): Promise<CheckAnswer> {
  const url = new URL(webhook.url);
  const body = options.body ?? '';
  return await new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method: options.method ?? 'GET',
        path: `${PREFIX}${clientPath}`,
        headers: {
          host: 'app.example.com',
          'content-length': String(Buffer.byteLength(body)),
          'x-forwarded-for': '198.51.100.7',
          'x-forwarded-proto': 'https',
          'x-envoy-expected-rq-timeout-ms': '200',
          'x-request-id': '5f0c2f4e-0d4a-4a61-9d8e-3f1f7b0c9a11',
          ...headers,
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

interface ContractCase {
  readonly name: string;
  arrange(fx: StoreFixture): Promise<{
    clientPath: string;
    method?: string;
    headers: Record<string, string>;
    body?: string;
    /** 200: allowed with these identity headers. Anything else: denied with that status. */
    expect: { status: 200; identity: Record<string, string> } | { status: number; challenge?: RegExp };
  }>;
}

async function keyFor(
  options: { groups?: string[]; scopes?: string[]; keyScopes?: string[] } = {},
): Promise<{ token: string; identity: Record<string, string> }> {
  const user = await fx.createUser({
    groups: options.groups ?? ['team-a'],
    scopes: options.scopes ?? ['projects:*'],
  });
  const key = await fx.issueKey(user, { scopes: options.keyScopes ?? null });
  return {
    token: key.token,
    identity: {
      'x-keyward-user': user.username,
      'x-keyward-key-id': key.keyId,
      'x-keyward-scopes': (options.keyScopes ?? options.scopes ?? ['projects:*']).join(','),
      'x-keyward-groups': (options.groups ?? ['team-a']).join(','),
    },
  };
}

const CASES: readonly ContractCase[] = [
  {
    name: 'path prefix + the client path and query: 200 with the identity headers',
    async arrange() {
      const { token, identity } = await keyFor({ groups: ['team-a', 'ops'] });
      return {
        clientPath: '/app/items?page=2&sort=-created',
        headers: { authorization: `Bearer ${token}` },
        expect: { status: 200, identity },
      };
    },
  },
  {
    name: 'every identity header is in every 200, empty when there is nothing to say, so the copy overrides a client value',
    async arrange() {
      const { token, identity } = await keyFor({ groups: [] });
      return {
        clientPath: '/x',
        headers: { authorization: `Bearer ${token}` },
        expect: { status: 200, identity },
      };
    },
  },
  {
    name: 'the client path is the root: /verify/ answers like /verify',
    async arrange() {
      const { token, identity } = await keyFor();
      return {
        clientPath: '/',
        headers: { authorization: `Bearer ${token}` },
        expect: { status: 200, identity },
      };
    },
  },
  {
    name: 'odd client paths (repeated slashes, dot segments, encoded bytes, a nested /verify) still get a decision',
    async arrange() {
      const { token, identity } = await keyFor();
      return {
        clientPath: '//a/../b/%2e%2e/%2F/verify/verify?x=%00&y=%ZZ',
        headers: { authorization: `Bearer ${token}` },
        expect: { status: 200, identity },
      };
    },
  },
  {
    name: 'a long client path (4 KiB) still gets a decision',
    async arrange() {
      const { token, identity } = await keyFor();
      return {
        clientPath: `/${'segment/'.repeat(512)}`,
        headers: { authorization: `Bearer ${token}` },
        expect: { status: 200, identity },
      };
    },
  },
  ...['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'].map(
    (method): ContractCase => ({
      name: `the client's method is kept (${method}, Content-Length: 0): decided by the token alone`,
      async arrange() {
        const { token, identity } = await keyFor();
        return {
          clientPath: '/app/items/7',
          method,
          headers: { authorization: `Bearer ${token}` },
          expect: { status: 200, identity },
        };
      },
    }),
  ),
  {
    name: 'X-API-Key, when allowed_headers lets it through: 200',
    async arrange() {
      const { token, identity } = await keyFor();
      return { clientPath: '/x', headers: { 'x-api-key': token }, expect: { status: 200, identity } };
    },
  },
  {
    name: 'missing credentials (X-API-Key left out of allowed_headers looks the same): 401, a denial',
    async arrange() {
      return {
        clientPath: '/x',
        headers: {},
        expect: { status: 401, challenge: /^Bearer realm="keyward"$/ },
      };
    },
  },
  {
    name: 'invalid key: 401 invalid_token',
    async arrange() {
      return {
        clientPath: '/x',
        headers: { authorization: 'Bearer kw_not-a-real-token' },
        expect: { status: 401, challenge: /error="invalid_token"/ },
      };
    },
  },
  {
    name: 'suspended service user: 401',
    async arrange(f) {
      const user = await f.createUser();
      const key = await f.issueKey(user);
      await f.setSuspended(user, true);
      return {
        clientPath: '/x',
        headers: { authorization: `Bearer ${key.token}` },
        expect: { status: 401, challenge: /suspended/ },
      };
    },
  },
  {
    name: 'required scope added by the proxy (headers_to_add), key has it: 200',
    async arrange() {
      const { token, identity } = await keyFor({ keyScopes: ['projects:alpha'] });
      return {
        clientPath: '/alpha/x',
        headers: { authorization: `Bearer ${token}`, 'x-keyward-required-scope': 'projects:alpha' },
        expect: { status: 200, identity },
      };
    },
  },
  {
    name: 'required scope added by the proxy, key lacks it: 403 insufficient_scope',
    async arrange() {
      const { token } = await keyFor({ keyScopes: ['projects:beta'] });
      return {
        clientPath: '/alpha/x',
        headers: { authorization: `Bearer ${token}`, 'x-keyward-required-scope': 'projects:alpha' },
        expect: { status: 403, challenge: /error="insufficient_scope".*scope="projects:alpha"/ },
      };
    },
  },
  {
    name: "a ?scope= in the client's own query only adds a requirement, it never removes the proxy's",
    async arrange() {
      const { token } = await keyFor({ keyScopes: ['projects:beta'] });
      return {
        clientPath: '/alpha/x?scope=projects:beta',
        headers: { authorization: `Bearer ${token}`, 'x-keyward-required-scope': 'projects:alpha' },
        expect: { status: 403, challenge: /insufficient_scope/ },
      };
    },
  },
  {
    name: 'with_request_body turned on: 413, a denial, never an allow',
    async arrange() {
      const { token } = await keyFor();
      return {
        clientPath: '/upload',
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body: '{"a":1}',
        expect: { status: 413 },
      };
    },
  },
  // Rate-limited (429 with Retry-After and RateLimit headers, which the recipes' client-header
  // lists name) and acting-on-behalf-of-a-subject (X-Keyward-Subject in allowed_headers,
  // X-Keyward-Actor in allowed_upstream_headers) rows go here once those features land.
];

describe('ext_authz HTTP contract (Envoy, Istio, Gateway API ExternalAuth)', () => {
  for (const testCase of CASES) {
    it(testCase.name, async () => {
      const arranged = await testCase.arrange(fx);
      const answer = await check(arranged.clientPath, arranged.headers, {
        method: arranged.method,
        body: arranged.body,
      });
      expect(answer.status).toBe(arranged.expect.status);
      // No ingress cache may keep any answer, allow or deny (docs/ingress/README.md).
      expect(answer.headers['cache-control']).toBe('no-store');
      if ('identity' in arranged.expect) {
        const identity = Object.fromEntries(IDENTITY.map((h) => [h, answer.headers[h]]));
        expect(identity).toEqual(arranged.expect.identity);
      } else {
        // A denial carries no identity for a misconfigured proxy to copy anywhere.
        for (const h of IDENTITY) expect(answer.headers[h], h).toBeUndefined();
        if (arranged.expect.challenge)
          expect(answer.headers['www-authenticate']).toMatch(arranged.expect.challenge);
      }
    });
  }
});
