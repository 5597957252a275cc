import { describe, expect, it } from 'vitest';
import { copyLine, decisionsIn, RecordQueue, RequestLogFields, rowJson } from './request-log-rows.js';

const fields = (path: string): RequestLogFields =>
  new RequestLogFields({
    route: 'verify',
    key_id: 'key_0000000000000001',
    username: 'alice',
    actor: 'alice',
    subject: null,
    method: 'GET',
    path,
    client_address: '10.1.2.3',
    result: 'allow',
    reason: 'ok',
  });

const T = Date.parse('2026-12-01T10:00:00.000Z');

describe('RecordQueue', () => {
  it('counts like decisions of one millisecond in one row, and starts a row for another field set or millisecond', () => {
    const q = new RecordQueue(10);
    const a = fields('/a');
    const b = fields('/b');
    for (const [at, f] of [
      [T, a],
      [T, b],
      [T, a],
      [T, a],
      [T + 1, a],
      [T + 1, b],
      [T + 1, b],
    ] as const)
      expect(q.push(at, f)).toBe(true);
    expect(q.length).toBe(4);
    expect(q.decisions).toBe(7);
    const batch = q.take(10);
    expect(batch.at).toEqual([T, T, T + 1, T + 1]);
    expect(batch.fields).toEqual([a, b, a, b]);
    expect(batch.count).toEqual([3, 1, 1, 2]);
    expect(decisionsIn(batch)).toBe(7);
    expect(q.decisions).toBe(0);
  });

  it('refuses only new rows when full: a like decision still counts in its row', () => {
    const q = new RecordQueue(2);
    const [a, b, c] = [fields('/a'), fields('/b'), fields('/c')];
    expect(q.push(T, a)).toBe(true);
    expect(q.push(T, b)).toBe(true);
    expect(q.push(T, c)).toBe(false);
    expect(q.push(T, a)).toBe(true);
    expect([q.length, q.decisions]).toEqual([2, 3]);
  });

  it('after a take, counts later decisions in rows of their own (the taken rows may be in flight)', () => {
    const q = new RecordQueue(10);
    const a = fields('/a');
    q.push(T, a);
    const first = q.take(1);
    q.push(T, a);
    expect(first.count).toEqual([1]);
    expect(q.take(1).count).toEqual([1]);
  });

  it('puts a batch back in front and drops the newest rows beyond its bound, returning their decisions', () => {
    const q = new RecordQueue(3);
    const [a, b, c] = [fields('/a'), fields('/b'), fields('/c')];
    q.push(T, a);
    q.push(T, a);
    q.push(T, b);
    const batch = q.take(2);
    q.push(T + 1, c);
    q.push(T + 1, c);
    q.push(T + 2, b);
    q.push(T + 2, b);
    // Back: [a×2, b] + [c×2, b×2]: the last row (2 decisions) no longer fits.
    expect(q.putBack(batch)).toBe(2);
    expect([q.length, q.decisions]).toEqual([3, 5]);
    expect(q.take(3).count).toEqual([2, 1, 2]);
  });
});

describe('row text', () => {
  it('ends each COPY line and JSON line with the count', () => {
    const f = fields('/x\ty');
    expect(copyLine(T + 7, f, 4)).toBe(
      '2026-12-01T10:00:00.007Z\tverify\tkey_0000000000000001\talice\talice\t\\N\tGET\t/x\\ty\t10.1.2.3\tallow\tok\t4\n',
    );
    expect(JSON.parse(rowJson(T + 7, f, 4))).toEqual({
      at: '2026-12-01T10:00:00.007Z',
      ...f.values,
      count: 4,
    });
  });
});
