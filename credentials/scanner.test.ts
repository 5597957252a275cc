import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Finding, TokenScanner } from './scanner.js';
import { generateToken } from './token.js';

function scan(text: string, chunkSize = 64 * 1024): Array<Finding & { token: string }> {
  const found: Array<Finding & { token: string }> = [];
  const scanner = new TokenScanner((f, token) => found.push({ ...f, token }));
  const bytes = Buffer.from(text, 'latin1');
  for (let i = 0; i < bytes.length; i += chunkSize) scanner.push(bytes.subarray(i, i + chunkSize));
  scanner.end();
  return found;
}

const seeded = (seed: number) => (size: number) => {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (seed * 31 + i * 17) & 0xff;
  return out;
};

describe('TokenScanner', () => {
  const a = generateToken({ random: seeded(1) }).token;
  const b = generateToken({ prefix: 'acme', random: seeded(2) }).token;

  it('finds tokens with their line, column and display prefix, in any delimiter', () => {
    const text = `first line\nAPI_KEY=${a}\n  "key": "${b}", other ${a}\n`;
    const found = scan(text);
    expect(found.map((f) => [f.line, f.column, f.displayPrefix])).toEqual([
      [2, 9, a.slice(0, 7)],
      [3, 11, b.slice(0, 9)],
      [3, 11 + b.length + 9, a.slice(0, 7)],
    ]);
  });

  it('ignores near misses: a wrong checksum, a cut-off or longer run, a glued prefix, non-ASCII', () => {
    const wrong = `${a.slice(0, -1)}${a.endsWith('A') ? 'B' : 'A'}`;
    const text = [
      wrong,
      a.slice(0, -1),
      `${a}x`,
      `x${a}`,
      `9${a}`,
      `${a}_`,
      a.toUpperCase(),
      `${a.slice(0, 10)}é${a.slice(11)}`,
    ].join('\n');
    expect(scan(text)).toEqual([]);
  });

  it('finds a token split across any chunk boundary exactly once, with the right line', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 0, max: 300 }), (chunk, pad) => {
        const text = `${'x\n'.repeat(pad % 7)}${' '.repeat(pad)}${a} ${b}\n${a}`;
        const found = scan(text, chunk);
        expect(found.map((f) => f.token)).toEqual([a, b, a]);
        expect(found.map((f) => f.line)).toEqual([1 + (pad % 7), 1 + (pad % 7), 2 + (pad % 7)]);
      }),
      { numRuns: 300 },
    );
  });

  it('reads binary input without failing', () => {
    const noise = Buffer.alloc(256 * 1024);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919) & 0xff;
    const found: string[] = [];
    const scanner = new TokenScanner((_f, t) => found.push(t));
    scanner.push(noise);
    scanner.push(Buffer.from(`\0${a}\0`, 'latin1'));
    scanner.end();
    expect(found).toEqual([a]);
  });
});
