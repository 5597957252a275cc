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
    expect(c.trustedProxies).toEqual([]);
    expect(c.clientIpHeader).toBe('x-forwarded-for');
    expect(c.tokenReviewCredentials).toEqual([]);
    expect(c.leakReportCredentials).toEqual([]);
    expect(c.failedAttempts).toEqual({ limit: 30, windowMs: 60_000 });
    expect(c.lookups).toEqual({ maxConcurrent: 9, maxQueued: 256, maxBatch: 64 });
    expect(c.http).toEqual({
      headersTimeoutMs: 5_000,
      requestTimeoutMs: 10_000,
      keepAliveTimeoutMs: 75_000,
      maxConnections: 4096,
    });
    expect(c.metricsListen).toEqual({ host: '0.0.0.0', port: 9090 });
    expect(c.tls).toBeNull();
    expect(c.tokenReviewGroupsPrefix).toBe('keyward:');
  });

  it('takes a subject header name, never one that carries a token', () => {
    const subject = (env: Record<string, string>) =>
      loadConfig({ KEYWARD_STORE_URL: 'x', ...env }).subjectHeader;
    expect(subject({})).toBe('x-keyward-subject');
    expect(subject({ KEYWARD_SUBJECT_HEADER: 'X-On-Behalf-Of' })).toBe('x-on-behalf-of');
    expect(() => subject({ KEYWARD_SUBJECT_HEADER: 'x-api-key' })).toThrow(
      /KEYWARD_SUBJECT_HEADER: must differ from Authorization and KEYWARD_TOKEN_HEADER/,
    );
    expect(() => subject({ KEYWARD_SUBJECT_HEADER: 'Authorization' })).toThrow(/KEYWARD_SUBJECT_HEADER/);
    expect(() => subject({ KEYWARD_SUBJECT_HEADER: 'bad header' })).toThrow(/KEYWARD_SUBJECT_HEADER/);
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
    writeFileSync(join(dir, 'tokenreview'), 'second-credential-0123\n');
    writeFileSync(join(dir, 'leaks'), '\nrelay-credential-0123456\n');
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
      KEYWARD_TRUSTED_PROXIES: '10.0.0.0/8, 192.0.2.1,fd00::/8',
      KEYWARD_CLIENT_IP_HEADER: 'X-Real-IP',
      KEYWARD_TOKENREVIEW_CREDENTIALS: 'first-credential-01234',
      KEYWARD_TOKENREVIEW_CREDENTIALS_FILE: join(dir, 'tokenreview'),
      KEYWARD_LEAK_REPORT_CREDENTIALS: 'github-relay-0123456789',
      KEYWARD_LEAK_REPORT_CREDENTIALS_FILE: join(dir, 'leaks'),
      KEYWARD_STORE_POOL_SIZE: '4',
      KEYWARD_STORE_LOOKUP_QUEUE: '10',
      KEYWARD_STORE_LOOKUP_BATCH: '16',
      KEYWARD_HTTP_HEADERS_TIMEOUT: '2s',
      KEYWARD_HTTP_MAX_CONNECTIONS: '100',
      KEYWARD_METRICS_LISTEN: '127.0.0.1:9100',
      KEYWARD_TLS_CERT_FILE: '/tls/tls.crt',
      KEYWARD_TLS_KEY_FILE: '/tls/tls.key',
      KEYWARD_TLS_CLIENT_CA_FILE: '/tls/ca.crt',
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
    expect(c.trustedProxies).toEqual(['10.0.0.0/8', '192.0.2.1', 'fd00::/8']);
    expect(c.clientIpHeader).toBe('x-real-ip');
    expect(c.tokenReviewCredentials).toEqual(['first-credential-01234', 'second-credential-0123']);
    expect(c.leakReportCredentials).toEqual(['github-relay-0123456789', 'relay-credential-0123456']);
    expect(c.lookups).toEqual({ maxConcurrent: 3, maxQueued: 10, maxBatch: 16 });
    expect(c.http.headersTimeoutMs).toBe(2_000);
    expect(c.http.maxConnections).toBe(100);
    expect(c.metricsListen).toEqual({ host: '127.0.0.1', port: 9100 });
    expect(c.tls).toEqual({
      certFile: '/tls/tls.crt',
      keyFile: '/tls/tls.key',
      clientCaFile: '/tls/ca.crt',
      reloadIntervalMs: 10_000,
    });
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

  it('refuses the replaced client-IP header variable, bad CIDRs, weak credentials and half a TLS pair', () => {
    const problems = (env: Record<string, string>): string => {
      try {
        loadConfig({ KEYWARD_STORE_URL: 'x', ...env });
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
      return '';
    };
    expect(problems({ KEYWARD_TRUSTED_CLIENT_IP_HEADER: 'x-real-ip' })).toMatch(/KEYWARD_TRUSTED_PROXIES/);
    expect(problems({ KEYWARD_TRUSTED_PROXIES: '10.0.0.0/8,nginx' })).toMatch(/not a CIDR.*nginx/);
    const weak = problems({ KEYWARD_TOKENREVIEW_CREDENTIALS: 'short-secret' });
    expect(weak).toMatch(/KEYWARD_TOKENREVIEW_CREDENTIALS/);
    expect(weak).not.toMatch(/short-secret/);
    const weakLeaks = problems({ KEYWARD_LEAK_REPORT_CREDENTIALS: 'tiny-secret' });
    expect(weakLeaks).toMatch(/KEYWARD_LEAK_REPORT_CREDENTIALS/);
    expect(weakLeaks).not.toMatch(/tiny-secret/);
    expect(problems({ KEYWARD_TLS_CERT_FILE: '/a' })).toMatch(/set both or neither/);
    expect(problems({ KEYWARD_TLS_CLIENT_CA_FILE: '/ca' })).toMatch(/need TLS/);
    expect(problems({ KEYWARD_STORE_POOL_SIZE: '2', KEYWARD_STORE_MAX_CONCURRENT_LOOKUPS: '3' })).toMatch(
      /KEYWARD_STORE_MAX_CONCURRENT_LOOKUPS/,
    );
    expect(problems({ KEYWARD_HTTP_HEADERS_TIMEOUT: '20s' })).toMatch(/KEYWARD_HTTP_HEADERS_TIMEOUT/);
  });
});
