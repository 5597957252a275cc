import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { forwardAuthMiddleware } from '../../test/harness/traefik.js';
import { IDENTITY_HEADERS } from '../../test/support/ingress.js';

/**
 * The recipes in this folder are what the suites run (Traefik, Caddy) or what the contract suite
 * assumes (Envoy, Istio, Gateway API): every block parses, every recipe copies exactly the
 * webhook's identity headers, and the Traefik and Caddy recipes match the tested configuration.
 */

const dir = import.meta.dirname;
const recipes = readdirSync(dir).filter((f) => f.endsWith('.md') && f !== 'README.md');
const text = (file: string): string => readFileSync(join(dir, file), 'utf8');
const lower = IDENTITY_HEADERS.map((h) => h.toLowerCase());
const WEBHOOK = 'http://keyward-webhook.keyward.svc.cluster.local:8080';

function blocks(file: string, lang: string): string[] {
  return [...text(file).matchAll(new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, 'g'))].map((m) => m[1]!);
}

function yamlDocuments(file: string): unknown[] {
  return blocks(file, 'yaml').flatMap((block) =>
    parseAllDocuments(block).map((doc) => {
      expect(doc.errors, `${file}: ${doc.errors.join('; ')}`).toEqual([]);
      return doc.toJS() as unknown;
    }),
  );
}

/** Every value under `key` anywhere in `value`. */
function findAll(value: unknown, key: string): unknown[] {
  if (Array.isArray(value)) return value.flatMap((v) => findAll(v, key));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => (k === key ? [v, ...findAll(v, key)] : findAll(v, key)));
}

describe('docs/ingress recipes', () => {
  it('has one recipe per proxy, each linked from the README', () => {
    expect(recipes.sort()).toEqual([
      'caddy.md',
      'envoy.md',
      'gateway-api.md',
      'istio.md',
      'nginx.md',
      'traefik.md',
    ]);
    for (const file of recipes) expect(text('README.md')).toContain(`](${file})`);
  });

  it.each(recipes)('%s: its YAML parses and names every identity header', (file) => {
    yamlDocuments(file);
    for (const header of lower) expect(text(file).toLowerCase(), header).toContain(header);
  });

  it('traefik.md: both Middleware forms are the one the Traefik suite runs', () => {
    const docs = yamlDocuments('traefik.md');
    const middlewares = findAll(docs, 'forwardAuth').map((forwardAuth) => ({ forwardAuth }));
    expect(middlewares).toHaveLength(2);
    const expected = forwardAuthMiddleware(`${WEBHOOK}/verify?scope=projects:alpha`, IDENTITY_HEADERS);
    for (const m of middlewares) expect(m).toEqual(expected);
  });

  it('caddy.md: identity headers are deleted before forward_auth, and all of them copied', () => {
    const [caddyfile] = blocks('caddy.md', 'caddyfile');
    const lines = caddyfile!.split('\n').map((l) => l.trim());
    const forwardAuth = lines.findIndex((l) => l.startsWith('forward_auth '));
    expect(forwardAuth).toBeGreaterThan(0);
    for (const header of IDENTITY_HEADERS) {
      const deletion = lines.indexOf(`request_header -${header}`);
      expect(deletion, header).toBeGreaterThanOrEqual(0);
      expect(deletion, header).toBeLessThan(forwardAuth);
    }
    expect(lines).toContain(`copy_headers ${IDENTITY_HEADERS.join(' ')}`);
  });

  it.each([
    ['envoy.md', 'allowed_upstream_headers'],
    ['istio.md', 'headersToUpstreamOnAllow'],
    ['gateway-api.md', 'allowedResponseHeaders'],
    ['gateway-api.md', 'headersToBackend'],
  ])('%s: %s is exactly the identity headers', (file, key) => {
    const [list] = findAll(yamlDocuments(file), key);
    const names = Array.isArray(list)
      ? list
      : findAll(list, 'patterns').flatMap((p) => (p as Array<{ exact: string }>).map((e) => e.exact));
    expect(names).toEqual(lower);
  });

  it.each([
    ['envoy.md', 'path_prefix'],
    ['istio.md', 'pathPrefix'],
    ['gateway-api.md', 'path'],
  ])('%s: %s is /verify, the prefix the contract suite checks', (file, key) => {
    const values = findAll(yamlDocuments(file), key).filter((v) => typeof v === 'string');
    expect(values.length).toBeGreaterThan(0);
    for (const v of values) expect(v).toBe('/verify');
  });
});
