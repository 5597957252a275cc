import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';

describe('loadConfig', () => {
  it('has defaults for everything but the store URL', () => {
    const c = loadConfig({ KEYWARD_STORE_URL: 'postgres://x@db/keyward' });
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(c.tokenHeader).toBe('x-api-key');
    expect(c.cache).toEqual({
      maxEntries: 100_000,
      ttlMs: 60_000,
      staleIfErrorMs: 300_000,
      negativeMaxEntries: 10_000,
      negativeTtlMs: 5_000,
    });
    expect(c.introspectCredentials).toEqual([]);
    expect(c.trustedClientIpHeader).toBeNull();
    expect(c.failedAttempts).toEqual({ limit: 30, windowMs: 60_000 });
    expect(c.tokenReviewGroupsPrefix).toBe('keyward:');
  });

  it('takes a TokenReview group prefix, - for none, and refuses system:', () => {
    const prefix = (value: string) =>
      loadConfig({ KEYWARD_STORE_URL: 'x', KEYWARD_TOKENREVIEW_GROUPS_PREFIX: value })
        .tokenReviewGroupsPrefix;
    expect(prefix('kw:')).toBe('kw:');
    expect(prefix('-')).toBe('');
    expect(() => prefix('system:')).toThrow(/KEYWARD_TOKENREVIEW_GROUPS_PREFIX: must not start with system:/);
  });

  it('parses every variable', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kw-config-'));
    writeFileSync(join(dir, 'creds'), 'gw2:s3cret2\n\n');
    const c = loadConfig({
      KEYWARD_STORE_URL: 'postgres://x@db/keyward',
      KEYWARD_WEBHOOK_LISTEN: '[::1]:9000',
      KEYWARD_TOKEN_HEADER: 'X-Token',
      KEYWARD_TOKEN_PREFIX: 'acme',
      KEYWARD_CACHE_MAX_ENTRIES: '5',
      KEYWARD_CACHE_TTL: '1m30s',
      KEYWARD_CACHE_STALE_IF_ERROR: '0s',
      KEYWARD_NEGATIVE_CACHE_TTL: '2s',
      KEYWARD_INTROSPECT_CREDENTIALS: 'gw:pa:ss',
      KEYWARD_INTROSPECT_CREDENTIALS_FILE: join(dir, 'creds'),
      KEYWARD_TRUSTED_CLIENT_IP_HEADER: 'X-Real-IP',
      KEYWARD_FAILED_ATTEMPTS_LIMIT: '0',
      KEYWARD_TOKENREVIEW_SCOPE: 'kubernetes',
      KEYWARD_LOG_LEVEL: 'debug',
    });
    expect(c.listen).toEqual({ host: '::1', port: 9000 });
    expect(c.tokenHeader).toBe('x-token');
    expect(c.tokenPrefix).toBe('acme');
    expect(c.cache.ttlMs).toBe(90_000);
    expect(c.cache.staleIfErrorMs).toBe(0);
    expect(c.introspectCredentials).toEqual([
      { clientId: 'gw', secret: 'pa:ss' },
      { clientId: 'gw2', secret: 's3cret2' },
    ]);
    expect(c.trustedClientIpHeader).toBe('x-real-ip');
    expect(c.tokenReviewScope).toBe('kubernetes');
    expect(loadConfig({ KEYWARD_STORE_URL: 'x', KEYWARD_TOKEN_HEADER: 'none' }).tokenHeader).toBeNull();
    expect(loadConfig({ KEYWARD_STORE_URL: 'x', KEYWARD_WEBHOOK_LISTEN: ':81' }).listen).toEqual({
      host: '0.0.0.0',
      port: 81,
    });
  });

  it('treats empty values as unset and lists every problem without echoing secrets', () => {
    expect(loadConfig({ KEYWARD_STORE_URL: 'x', KEYWARD_CACHE_TTL: ' ' }).cache.ttlMs).toBe(60_000);
    let error: unknown;
    try {
      loadConfig({
        KEYWARD_CACHE_TTL: 'soon',
        KEYWARD_WEBHOOK_LISTEN: 'nope',
        KEYWARD_INTROSPECT_CREDENTIALS: 'no-colon-supersecret',
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toMatch(/KEYWARD_STORE_URL/);
    expect(message).toMatch(/KEYWARD_CACHE_TTL/);
    expect(message).toMatch(/KEYWARD_WEBHOOK_LISTEN/);
    expect(message).toMatch(/KEYWARD_INTROSPECT_CREDENTIALS/);
    expect(message).not.toMatch(/supersecret/);
  });
});
