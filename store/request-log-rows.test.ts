import { describe, expect, it } from 'vitest';
import { copyLine, decisionsIn, RecordQueue, RequestLogFields, rowJson } from './request-log-rows.js';

const fields = (keyId: string): RequestLogFields =>
  new RequestLogFields({
    route: 'verify',
    key_id: keyId,
    username: 'alice',
    actor: 'alice',
    subject: null,
    method: 'GET',
    client_address: '10.1.2.3',
    result: 'allow',
    reason: 'ok',
  });

const T = Date.parse('2026-12-01T10:00:00.000Z');

describe('RecordQueue', () => {
  it('counts like decisions of one millisecond in one row, and starts a row for other fields, another path or millisecond', () => {
    const q = new RecordQueue(10);
    const a = fields('key_a');
    const b = fields('key_b');
    for (const [at, f, path] of [
      [T, a, '/x'],
      [T, b, '/x'],
      [T, a, '/x'],
      [T, a, '/x'],
      [T, a, '/y'],
      [T + 1, a, '/y'],
      [T + 1, b, null],
      [T + 1, b, null],
    ] as const)
      expect(q.push(at, f, path)).toBe(true);
    expect(q.length).toBe(5);
    expect(q.decisions).toBe(8);
    const batch = q.take(10);
    expect(batch.at).toEqual([T, T, T, T + 1, T + 1]);
    expect(batch.fields).toEqual([a, b, a, a, b]);
    expect(batch.path).toEqual(['/x', '/x', '/y', '/y', null]);
    expect(batch.count).toEqual([3, 1, 1, 1, 2]);
    expect(decisionsIn(batch)).toBe(8);
    expect(q.decisions).toBe(0);
  });

  it('refuses only new rows when full: a like decision still counts in its row', () => {
    const q = new RecordQueue(2);
    const [a, b, c] = [fields('key_a'), fields('key_b'), fields('key_c')];
    expect(q.push(T, a, '/')).toBe(true);
    expect(q.push(T, b, '/')).toBe(true);
    expect(q.push(T, c, '/')).toBe(false);
    expect(q.push(T, a, '/')).toBe(true);
    expect([q.length, q.decisions]).toEqual([2, 3]);
  });

  it('after a take, counts later decisions in rows of their own (the taken rows may be in flight)', () => {
    const q = new RecordQueue(10);
    const a = fields('key_a');
    q.push(T, a, '/');
    const first = q.take(1);
    q.push(T, a, '/');
    expect(first.count).toEqual([1]);
    expect(q.take(1).count).toEqual([1]);
  });

  it('puts a batch back in front and drops the newest rows beyond its bound, returning their decisions', () => {
    const q = new RecordQueue(3);
    const [a, b, c] = [fields('key_a'), fields('key_b'), fields('key_c')];
    q.push(T, a, '/');
    q.push(T, a, '/');
    q.push(T, b, '/');
    const batch = q.take(2);
    q.push(T + 1, c, '/');
    q.push(T + 1, c, '/');
    q.push(T + 2, b, '/');
    q.push(T + 2, b, '/');
    // Back: [a×2, b] + [c×2, b×2]: the last row (2 decisions) no longer fits.
    expect(q.putBack(batch)).toBe(2);
    expect([q.length, q.decisions]).toEqual([3, 5]);
    expect(q.take(3).count).toEqual([2, 1, 2]);
  });
});

describe('row text', () => {
  it('writes COPY lines with escapes and \\N, path and count last, and JSON lines with the same', () => {
    const f = new RequestLogFields({ ...fields('key_a').values, subject: 'tab\there' });
    expect(copyLine(T + 7, f, '/x\\y', 4)).toBe(
      '2026-12-01T10:00:00.007Z\tverify\tkey_a\talice\talice\ttab\\there\tGET\t10.1.2.3\tallow\tok\t/x\\\\y\t4\n',
    );
    expect(copyLine(T, f, null, 1)).toMatch(/\tok\t\\N\t1\n$/);
    expect(JSON.parse(rowJson(T + 7, f, '/x"y', 4))).toEqual({
      at: '2026-12-01T10:00:00.007Z',
      ...f.values,
      path: '/x"y',
      count: 4,
    });
    expect(JSON.parse(rowJson(T, f, null, 1)).path).toBeNull();
  });
});
