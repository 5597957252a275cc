import { describe, expect, it } from 'vitest';
import { copyLine, decisionsIn, RecordQueue, RequestLogFields, rowJson } from './request-log-rows.js';

const fields = (username = 'alice'): RequestLogFields =>
  new RequestLogFields({
    route: 'verify',
    username,
    actor: username,
    subject: null,
    method: 'GET',
    client_address: '10.1.2.3',
    result: 'allow',
    reason: 'ok',
  });

const T = Date.parse('2026-12-01T10:00:00.000Z');

describe('RecordQueue', () => {
  it('counts like decisions of one millisecond in one row, and starts a row for other fields, another key, path or millisecond', () => {
    const q = new RecordQueue(10);
    const a = fields('alice');
    const b = fields('bob');
    for (const [at, key, f, path] of [
      [T, 'key_a', a, '/x'],
      [T, 'key_b', b, '/x'],
      [T, 'key_a', a, '/x'],
      [T, 'key_a', a, '/x'],
      [T, 'key_a', a, '/y'],
      [T, 'key_c', a, '/y'],
      [T + 1, 'key_a', a, '/y'],
      [T + 1, null, b, null],
      [T + 1, null, b, null],
    ] as const)
      expect(q.push(at, key, f, path)).toBe(true);
    expect(q.length).toBe(6);
    expect(q.decisions).toBe(9);
    const batch = q.take(10);
    expect(batch.at).toEqual([T, T, T, T, T + 1, T + 1]);
    expect(batch.keyId).toEqual(['key_a', 'key_b', 'key_a', 'key_c', 'key_a', null]);
    expect(batch.fields).toEqual([a, b, a, a, a, b]);
    expect(batch.path).toEqual(['/x', '/x', '/y', '/y', '/y', null]);
    expect(batch.count).toEqual([3, 1, 1, 1, 1, 2]);
    expect(decisionsIn(batch)).toBe(9);
    expect(q.decisions).toBe(0);
  });

  it('refuses only new rows when full: a like decision still counts in its row', () => {
    const q = new RecordQueue(2);
    const a = fields();
    expect(q.push(T, 'key_a', a, '/')).toBe(true);
    expect(q.push(T, 'key_b', a, '/')).toBe(true);
    expect(q.push(T, 'key_c', a, '/')).toBe(false);
    expect(q.push(T, 'key_b', a, '/')).toBe(true);
    expect([q.length, q.decisions]).toEqual([2, 3]);
  });

  it('when full, never counts a decision of a new millisecond in an older row that looks like it', () => {
    const q = new RecordQueue(1);
    const a = fields();
    expect(q.push(T, 'key_a', a, '/')).toBe(true);
    expect(q.push(T + 1, 'key_a', a, '/')).toBe(false);
    expect(q.push(T + 1, 'key_a', a, '/')).toBe(false);
    expect(q.take(1)).toMatchObject({ at: [T], count: [1] });
  });

  it('after a take, counts later decisions in rows of their own (the taken rows may be in flight)', () => {
    const q = new RecordQueue(10);
    const a = fields();
    q.push(T, 'key_a', a, '/');
    const first = q.take(1);
    q.push(T, 'key_a', a, '/');
    expect(first.count).toEqual([1]);
    expect(q.take(1).count).toEqual([1]);
  });

  it('puts a batch back in front and drops the newest rows beyond its bound, returning their decisions', () => {
    const q = new RecordQueue(3);
    const [a, b, c] = [fields('alice'), fields('bob'), fields('carol')];
    q.push(T, 'key_a', a, '/');
    q.push(T, 'key_a', a, '/');
    q.push(T, 'key_b', b, '/');
    const batch = q.take(2);
    q.push(T + 1, 'key_c', c, '/');
    q.push(T + 1, 'key_c', c, '/');
    q.push(T + 2, 'key_b', b, '/');
    q.push(T + 2, 'key_b', b, '/');
    // Back: [a×2, b] + [c×2, b×2]: the last row (2 decisions) no longer fits.
    expect(q.putBack(batch)).toBe(2);
    expect([q.length, q.decisions]).toEqual([3, 5]);
    expect(q.take(3).count).toEqual([2, 1, 2]);
  });
});

describe('row text', () => {
  it('writes COPY lines with escapes and \\N, key first, path and count last, and JSON lines with the same', () => {
    const f = new RequestLogFields({ ...fields().values, subject: 'tab\there' });
    expect(copyLine(T + 7, 'key_a', f, '/x\\y', 4)).toBe(
      '2026-12-01T10:00:00.007Z\tkey_a\tverify\talice\talice\ttab\\there\tGET\t10.1.2.3\tallow\tok\t/x\\\\y\t4\n',
    );
    expect(copyLine(T, null, f, null, 1)).toMatch(/^[^\t]+\t\\N\tverify\t.*\tok\t\\N\t1\n$/);
    expect(JSON.parse(rowJson(T + 7, 'key_a', f, '/x"y', 4))).toEqual({
      at: '2026-12-01T10:00:00.007Z',
      key_id: 'key_a',
      ...f.values,
      path: '/x"y',
      count: 4,
    });
    const unknown = JSON.parse(rowJson(T, null, f, null, 1));
    expect([unknown.key_id, unknown.path]).toEqual([null, null]);
  });
});
