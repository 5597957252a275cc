import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { generateToken } from '../credentials/token.js';
import { rowJson } from '../store/request-log-rows.js';
import { ClientAddress } from './client-address.js';
import { loadConfig } from './config.js';
import { logPath, RequestRecorder } from './request-log.js';
import type { Outcome } from './verification.js';

/** A recorder whose one sink writes each record it is handed as a JSON line into `lines`. */
function recorderInto(lines: string[]): RequestRecorder {
  return new RequestRecorder({
    sinks: [{ add: (at, keyId, fields, path, count) => lines.push(rowJson(at, keyId, fields, path, count)) }],
    addresses: new ClientAddress({ trustedProxies: [], header: 'x-forwarded-for' }),
    clientIpHeader: 'x-forwarded-for',
  });
}

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
    const recorder = recorderInto(lines);
    const times = [
      Date.parse('2026-12-01T09:59:59.000Z'),
      Date.parse('2026-12-01T09:59:59.007Z'),
      Date.parse('2026-12-01T09:59:59.999Z'),
      Date.parse('2026-12-01T10:00:00.042Z'),
      Date.parse('2027-01-01T00:00:00.100Z'),
    ];
    for (const t of times) recorder.record('verify', outcome, 'deny', 'unknown', request, t);
    recorder.settle();
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
    const recorder = recorderInto(lines);
    recorder.record('verify', outcome as Outcome, 'allow', 'ok', request, 0);
    recorder.settle();
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

  const COLUMNS = [
    'key_id',
    'username',
    'actor',
    'subject',
    'method',
    'path',
    'client_address',
    'result',
    'count',
  ];
  // The time's milliseconds, then the columns (null as nothing).
  const pick = (row: Record<string, unknown>) =>
    [String(row.at).slice(-5), ...COLUMNS.map((column) => row[column])].join(' ');

  it('gives every record its own fields, and counts like decisions of one millisecond as one', () => {
    const lines: string[] = [];
    const recorder = recorderInto(lines);
    const acting = {
      actor: 'alice',
      subject: 'carol',
      subjectKind: 'service-user',
      scopes: [],
      scopesHeader: '',
      groupsHeader: '',
    };
    // Entries are the cache's objects: a repeated decision comes with the same one.
    const entries = { alice: { key: alice }, alicesOther: { key: alicesOther }, bob: { key: bob } };
    const decisions: Array<[number, unknown, string, string, IncomingMessage]> = [
      [0, { kind: 'allow', entry: entries.alice }, 'allow', 'ok', requestFor('/a', '10.0.0.1')],
      [0, { kind: 'allow', entry: entries.alice }, 'allow', 'ok', requestFor('/a', '10.0.0.1')],
      [0, { kind: 'allow', entry: entries.alicesOther }, 'allow', 'ok', requestFor('/a', '10.0.0.1')],
      [0, { kind: 'allow', entry: entries.bob }, 'allow', 'ok', requestFor('/a', '10.0.0.1')],
      [0, { kind: 'allow', entry: entries.alice }, 'allow', 'ok', requestFor('/b?token=x', '10.0.0.1')],
      [0, { kind: 'allow', entry: entries.alice }, 'allow', 'ok', requestFor('/b', '10.0.0.1')],
      [0, { kind: 'allow', entry: entries.alice }, 'allow', 'ok', requestFor('/b', '10.0.0.2', 'POST')],
      [
        0,
        { kind: 'allow', entry: entries.alice, acting },
        'allow',
        'ok',
        requestFor('/b', '10.0.0.2', 'POST'),
      ],
      [
        0,
        { kind: 'allow', entry: entries.alice, acting },
        'allow',
        'ok',
        requestFor('/b', '10.0.0.2', 'POST'),
      ],
      [0, { kind: 'invalid', reason: 'unknown' }, 'deny', 'unknown', requestFor('/b', '10.0.0.2', 'POST')],
      [0, { kind: 'invalid', reason: 'unknown' }, 'deny', 'unknown', requestFor('/b', '10.0.0.2', 'POST')],
      [0, { kind: 'invalid', reason: 'checksum' }, 'deny', 'checksum', requestFor('/b', '10.0.0.2', 'POST')],
      [0, { kind: 'allow', entry: entries.alice }, 'allow', 'ok', requestFor('/a', '10.0.0.1')],
      [1, { kind: 'allow', entry: entries.alice }, 'allow', 'ok', requestFor('/a', '10.0.0.1')],
      [
        1,
        { kind: 'denied', reason: 'expired', entry: entries.alice },
        'deny',
        'expired',
        requestFor('/a', '10.0.0.1'),
      ],
    ];
    for (const [at, outcome, result, reason, request] of decisions)
      recorder.record('verify', outcome as Outcome, result, reason, request, at);
    recorder.settle();
    recorder.settle();
    expect(lines.map((l) => pick(JSON.parse(l)))).toEqual([
      '.000Z key_aaaaaaaaaaaaaaaa alice alice  GET /a 10.0.0.1 allow 2',
      '.000Z key_cccccccccccccccc alice alice  GET /a 10.0.0.1 allow 1',
      '.000Z key_bbbbbbbbbbbbbbbb bob bob  GET /a 10.0.0.1 allow 1',
      // Another raw path that cleans to the same one: the same record, counted apart.
      '.000Z key_aaaaaaaaaaaaaaaa alice alice  GET /b 10.0.0.1 allow 1',
      '.000Z key_aaaaaaaaaaaaaaaa alice alice  GET /b 10.0.0.1 allow 1',
      '.000Z key_aaaaaaaaaaaaaaaa alice alice  POST /b 10.0.0.2 allow 1',
      // Acting on behalf of someone is never counted in a run (the sinks' queues still merge it).
      '.000Z key_aaaaaaaaaaaaaaaa carol alice carol POST /b 10.0.0.2 allow 1',
      '.000Z key_aaaaaaaaaaaaaaaa carol alice carol POST /b 10.0.0.2 allow 1',
      '.000Z     POST /b 10.0.0.2 deny 2',
      '.000Z     POST /b 10.0.0.2 deny 1',
      '.000Z key_aaaaaaaaaaaaaaaa alice alice  GET /a 10.0.0.1 allow 1',
      '.001Z key_aaaaaaaaaaaaaaaa alice alice  GET /a 10.0.0.1 allow 1',
      '.001Z key_aaaaaaaaaaaaaaaa alice alice  GET /a 10.0.0.1 deny 1',
    ]);
    expect(lines.map((l) => JSON.parse(l).reason).slice(-5)).toEqual([
      'unknown',
      'checksum',
      'ok',
      'ok',
      'expired',
    ]);
  });

  it('starts a new run for another client address or route, and holds nothing once settled', () => {
    const lines: string[] = [];
    const recorder = recorderInto(lines);
    const entry = { key: alice };
    const allow = { kind: 'allow', entry } as unknown as Outcome;
    const behind = (forwarded: string): IncomingMessage =>
      ({
        url: '/verify',
        method: 'GET',
        headers: { 'x-original-uri': '/a', 'x-forwarded-for': forwarded },
        socket: { remoteAddress: '10.0.0.1' },
      }) as unknown as IncomingMessage;
    recorder.record('verify', allow, 'allow', 'ok', behind('192.0.2.1'), 5);
    recorder.record('verify', allow, 'allow', 'ok', behind('192.0.2.2'), 5);
    recorder.record('introspect', allow, 'allow', 'ok', behind('192.0.2.2'), 5);
    recorder.record('introspect', allow, 'allow', 'ok', behind('192.0.2.2'), 5);
    expect(lines).toHaveLength(2);
    recorder.settle();
    expect(lines).toHaveLength(3);
    recorder.record('introspect', allow, 'allow', 'ok', behind('192.0.2.2'), 5);
    recorder.settle();
    const rows = lines.map((l) => JSON.parse(l));
    expect(rows.map((r) => [r.route, r.path, r.count])).toEqual([
      ['verify', '/a', 1],
      ['verify', '/a', 1],
      ['introspect', null, 2],
      ['introspect', null, 1],
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
