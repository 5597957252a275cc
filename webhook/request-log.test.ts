import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { generateToken } from '../credentials/token.js';
import { rowJson } from '../store/request-log-rows.js';
import { ClientAddress } from './client-address.js';
import { loadConfig } from './config.js';
import { logPath, RequestRecorder } from './request-log.js';
import type { Outcome } from './verification.js';

describe('logPath', () => {
  it('keeps the path of a request target or a whole URL, without query string or fragment', () => {
    expect(logPath('/api/items')).toBe('/api/items');
    expect(logPath('/api/items?page=2&sig=abc')).toBe('/api/items');
    expect(logPath('/docs#section?x')).toBe('/docs');
    expect(logPath('https://app.example:8443/api/v1/things?x=1')).toBe('/api/v1/things');
    expect(logPath('http://app.example')).toBe('/');
  });

  it('replaces anything shaped like a token, whatever its prefix, and keeps the rest', () => {
    const token = generateToken().token;
    const other = generateToken({ prefix: 'acme' }).token;
    expect(logPath(`/download/${token}/file`)).toBe('/download/[redacted]/file');
    expect(logPath(`/a/${token}${other}`)).not.toContain(token.slice(3));
    expect(logPath(`/k/${other}`)).toBe('/k/[redacted]');
    expect(logPath('/snake_case/paths_stay')).toBe('/snake_case/paths_stay');
  });

  it('drops control characters and cuts at the column bound', () => {
    expect(logPath('/a\u0000b\r\nc\u007f')).toBe('/abc');
    expect(logPath(`/${'x'.repeat(5000)}`)).toHaveLength(2048);
  });
});

describe('RequestRecorder', () => {
  const request = {
    url: '/verify',
    method: 'GET',
    headers: { 'x-original-uri': '/x' },
    socket: { remoteAddress: '10.0.0.1' },
  } as unknown as IncomingMessage;
  const outcome = { kind: 'invalid', reason: 'unknown' } as Outcome;

  it('stamps each record with its time in RFC 3339 UTC, to the millisecond', () => {
    const lines: string[] = [];
    let now = 0;
    const recorder = new RequestRecorder({
      sinks: [{ add: (at, keyId, fields, path) => lines.push(rowJson(at, keyId, fields, path, 1)) }],
      addresses: new ClientAddress({ trustedProxies: [], header: 'x-forwarded-for' }),
      clientIpHeader: 'x-forwarded-for',
      now: () => now,
    });
    const times = [
      Date.parse('2026-12-01T09:59:59.000Z'),
      Date.parse('2026-12-01T09:59:59.007Z'),
      Date.parse('2026-12-01T09:59:59.999Z'),
      Date.parse('2026-12-01T10:00:00.042Z'),
      Date.parse('2027-01-01T00:00:00.100Z'),
    ];
    for (const t of times) {
      now = t;
      recorder.record('verify', outcome, 'deny', 'unknown', request);
    }
    expect(lines.map((l) => JSON.parse(l).at)).toEqual(times.map((t) => new Date(t).toISOString()));
    expect(JSON.parse(lines[0]!)).toMatchObject({ path: '/x', client_address: '10.0.0.1', key_id: null });
  });
});

describe('RequestRecorder identity', () => {
  const request = {
    url: '/verify',
    method: 'GET',
    headers: {},
    socket: { remoteAddress: '10.0.0.1' },
  } as unknown as IncomingMessage;
  const key = { keyId: 'key_0123456789abcdef', username: 'ci-bot' };
  const acting = (subject: string, subjectKind: 'service-user' | 'external') => ({
    actor: 'ci-bot',
    subject,
    subjectKind,
    scopes: [],
    scopesHeader: '',
    groupsHeader: '',
  });
  const record = (outcome: unknown): Record<string, unknown> => {
    const lines: string[] = [];
    new RequestRecorder({
      sinks: [{ add: (at, keyId, fields, path) => lines.push(rowJson(at, keyId, fields, path, 1)) }],
      addresses: new ClientAddress({ trustedProxies: [], header: 'x-forwarded-for' }),
      clientIpHeader: 'x-forwarded-for',
      now: () => 0,
    }).record('verify', outcome as Outcome, 'allow', 'ok', request);
    return JSON.parse(lines[0]!);
  };

  it('is the key’s user, acting for itself', () => {
    expect(record({ kind: 'allow', entry: { key } })).toMatchObject({
      key_id: key.keyId,
      username: 'ci-bot',
      actor: 'ci-bot',
      subject: null,
    });
  });

  it('names the subject a key acted for: a ServiceUser becomes the user, an external id stays the subject', () => {
    expect(record({ kind: 'allow', entry: { key }, acting: acting('alice', 'service-user') })).toMatchObject({
      username: 'alice',
      actor: 'ci-bot',
      subject: 'alice',
    });
    expect(
      record({ kind: 'allow', entry: { key }, acting: acting('tenant-42/user\n7', 'external') }),
    ).toMatchObject({
      username: 'ci-bot',
      actor: 'ci-bot',
      subject: 'tenant-42/user7',
    });
  });
});

describe('RequestRecorder on a stream of decisions', () => {
  const requestFor = (path: string, peer: string, method = 'GET'): IncomingMessage =>
    ({
      url: '/verify',
      method: 'GET',
      headers: { 'x-original-uri': path, 'x-original-method': method },
      socket: { remoteAddress: peer },
    }) as unknown as IncomingMessage;
  const alice = { keyId: 'key_aaaaaaaaaaaaaaaa', username: 'alice' };
  const bob = { keyId: 'key_bbbbbbbbbbbbbbbb', username: 'bob' };
  const alicesOther = { keyId: 'key_cccccccccccccccc', username: 'alice' };

  it('gives every record its own fields, however records that share them are held', () => {
    const lines: string[] = [];
    const recorder = new RequestRecorder({
      sinks: [{ add: (at, keyId, fields, path) => lines.push(rowJson(at, keyId, fields, path, 1)) }],
      addresses: new ClientAddress({ trustedProxies: [], header: 'x-forwarded-for' }),
      clientIpHeader: 'x-forwarded-for',
      now: () => 0,
    });
    const acting = {
      actor: 'alice',
      subject: 'carol',
      subjectKind: 'service-user',
      scopes: [],
      scopesHeader: '',
      groupsHeader: '',
    };
    const decisions: Array<[unknown, string, string, IncomingMessage]> = [
      [{ kind: 'allow', entry: { key: alice } }, 'allow', 'ok', requestFor('/a', '10.0.0.1')],
      [{ kind: 'allow', entry: { key: alice } }, 'allow', 'ok', requestFor('/a', '10.0.0.1')],
      [{ kind: 'allow', entry: { key: alicesOther } }, 'allow', 'ok', requestFor('/a', '10.0.0.1')],
      [{ kind: 'allow', entry: { key: bob } }, 'allow', 'ok', requestFor('/a', '10.0.0.1')],
      [{ kind: 'allow', entry: { key: alice } }, 'allow', 'ok', requestFor('/b?token=x', '10.0.0.1')],
      [{ kind: 'allow', entry: { key: alice } }, 'allow', 'ok', requestFor('/b', '10.0.0.2', 'POST')],
      [{ kind: 'allow', entry: { key: alice }, acting }, 'allow', 'ok', requestFor('/b', '10.0.0.2', 'POST')],
      [{ kind: 'invalid', reason: 'unknown' }, 'deny', 'unknown', requestFor('/b', '10.0.0.2', 'POST')],
      [{ kind: 'allow', entry: { key: alice } }, 'allow', 'ok', requestFor('/a', '10.0.0.1')],
    ];
    for (const [outcome, result, reason, request] of decisions)
      recorder.record('verify', outcome as Outcome, result, reason, request);
    const rows = lines.map((l) => JSON.parse(l));
    const pick = ({
      key_id,
      username,
      actor,
      subject,
      method,
      path,
      client_address,
      result,
    }: Record<string, unknown>) =>
      [key_id, username, actor, subject, method, path, client_address, result].join(' ');
    expect(rows.map(pick)).toEqual([
      'key_aaaaaaaaaaaaaaaa alice alice  GET /a 10.0.0.1 allow',
      'key_aaaaaaaaaaaaaaaa alice alice  GET /a 10.0.0.1 allow',
      'key_cccccccccccccccc alice alice  GET /a 10.0.0.1 allow',
      'key_bbbbbbbbbbbbbbbb bob bob  GET /a 10.0.0.1 allow',
      'key_aaaaaaaaaaaaaaaa alice alice  GET /b 10.0.0.1 allow',
      'key_aaaaaaaaaaaaaaaa alice alice  POST /b 10.0.0.2 allow',
      'key_aaaaaaaaaaaaaaaa carol alice carol POST /b 10.0.0.2 allow',
      '    POST /b 10.0.0.2 deny',
      'key_aaaaaaaaaaaaaaaa alice alice  GET /a 10.0.0.1 allow',
    ]);
  });
});

describe('request log configuration', () => {
  const base = { KEYWARD_STORE_URL: 'postgres://x@127.0.0.1/x' };

  it('records to the store by default, JSON lines only when asked', () => {
    expect(loadConfig(base).requestLog).toEqual({
      store: true,
      json: null,
      flushIntervalMs: 1000,
      maxPending: 100_000,
    });
    expect(
      loadConfig({
        ...base,
        KEYWARD_REQUEST_LOG_STORE: 'false',
        KEYWARD_REQUEST_LOG_JSON: '/var/log/keyward/requests.jsonl',
        KEYWARD_REQUEST_LOG_FLUSH_INTERVAL: '5s',
        KEYWARD_REQUEST_LOG_BUFFER: '10',
      }).requestLog,
    ).toEqual({
      store: false,
      json: { file: '/var/log/keyward/requests.jsonl' },
      flushIntervalMs: 5000,
      maxPending: 10,
    });
    expect(loadConfig({ ...base, KEYWARD_REQUEST_LOG_JSON: 'stdout' }).requestLog.json).toBe('stdout');
  });

  it('names the variable of a bad value', () => {
    expect(() => loadConfig({ ...base, KEYWARD_REQUEST_LOG_JSON: 'requests.jsonl' })).toThrow(
      /KEYWARD_REQUEST_LOG_JSON: want off, stdout or an absolute file path/,
    );
    expect(() => loadConfig({ ...base, KEYWARD_REQUEST_LOG_STORE: 'yes' })).toThrow(
      /KEYWARD_REQUEST_LOG_STORE/,
    );
    expect(() => loadConfig({ ...base, KEYWARD_REQUEST_LOG_BUFFER: '0' })).toThrow(
      /KEYWARD_REQUEST_LOG_BUFFER: must be at least 1/,
    );
    expect(() => loadConfig({ ...base, KEYWARD_REQUEST_LOG_FLUSH_INTERVAL: 'soon' })).toThrow(
      /KEYWARD_REQUEST_LOG_FLUSH_INTERVAL/,
    );
  });
});
