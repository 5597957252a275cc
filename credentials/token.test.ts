import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checksumPasses,
  DEFAULT_TOKEN_PREFIX,
  generateKeyId,
  generateToken,
  isKeyId,
  MAX_TOKEN_LENGTH,
  parseToken,
  type RandomSource,
  tokenHash,
} from './token.js';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const prefixArb = fc.stringMatching(/^[a-z]{1,8}$/);
const bytesArb = fc.uint8Array({ minLength: 32, maxLength: 32 });
const fixed =
  (bytes: Uint8Array): RandomSource =>
  () =>
    bytes;

function base62ToBigInt(text: string): bigint {
  let n = 0n;
  for (const ch of text) n = n * 62n + BigInt(ALPHABET.indexOf(ch));
  return n;
}

describe('generateToken', () => {
  it('has the documented shape, with a default kw prefix', () => {
    const { token, hash, displayPrefix } = generateToken();
    expect(token).toMatch(/^kw_[0-9A-Za-z]{49}$/);
    expect(token.length).toBe(52);
    expect(hash).toEqual(createHash('sha256').update(token).digest());
    expect(displayPrefix).toBe(token.slice(0, 7));
    expect(DEFAULT_TOKEN_PREFIX).toBe('kw');
  });

  it('encodes exactly the 32 random bytes as base62 and the CRC32 (zlib) as 6 base62 chars', () => {
    fc.assert(
      fc.property(prefixArb, bytesArb, (prefix, bytes) => {
        const { token } = generateToken({ prefix, random: fixed(bytes) });
        const body = token.slice(prefix.length + 1, -6);
        expect(body).toHaveLength(43);
        expect(base62ToBigInt(body)).toBe(BigInt(`0x${Buffer.from(bytes).toString('hex')}`));
        const head = token.slice(0, -6);
        expect(base62ToBigInt(token.slice(-6))).toBe(BigInt(crc32(head)));
      }),
    );
  });

  it('encodes the extremes of the 256-bit range', () => {
    const zero = generateToken({ random: fixed(new Uint8Array(32)) }).token;
    expect(zero.slice(3, 46)).toBe('0'.repeat(43));
    const max = generateToken({ random: fixed(new Uint8Array(32).fill(255)) }).token;
    expect(base62ToBigInt(max.slice(3, 46))).toBe(2n ** 256n - 1n);
  });

  it('rejects a bad prefix and a short random source', () => {
    expect(() => generateToken({ prefix: 'KW' })).toThrow(/prefix/);
    expect(() => generateToken({ prefix: 'abcdefghi' })).toThrow(/prefix/);
    expect(() => generateToken({ prefix: '' })).toThrow(/prefix/);
    expect(() => generateToken({ random: () => new Uint8Array(31) })).toThrow(/31 bytes/);
  });

  it('maps distinct random bytes to distinct tokens', () => {
    fc.assert(
      fc.property(bytesArb, bytesArb, (a, b) => {
        fc.pre(Buffer.compare(a, b) !== 0);
        expect(generateToken({ random: fixed(a) }).token).not.toBe(generateToken({ random: fixed(b) }).token);
      }),
    );
  });

  it('never repeats a token in 10^6 draws from crypto randomness', () => {
    const draws = 1_000_000;
    // One big read instead of 10^6 small ones keeps this test at a few seconds.
    const pool = randomBytes(32 * draws);
    let offset = 0;
    const random: RandomSource = (size) => {
      const slice = pool.subarray(offset, offset + size);
      offset += size;
      return slice;
    };
    const seen = new Set<string>();
    for (let i = 0; i < draws; i++) seen.add(generateToken({ random }).token);
    expect(seen.size).toBe(draws);
  }, 30_000);
});

describe('parseToken', () => {
  it('round-trips every generated token', () => {
    fc.assert(
      fc.property(prefixArb, bytesArb, (prefix, bytes) => {
        const generated = generateToken({ prefix, random: fixed(bytes) });
        const parsed = parseToken(generated.token, { prefix });
        expect(parsed).toEqual({
          ok: true,
          value: { token: generated.token, prefix, displayPrefix: generated.displayPrefix },
        });
        expect(parseToken(generated.token).ok).toBe(true);
      }),
    );
  });

  it('catches every single-character change', () => {
    const anyAscii = fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c));
    fc.assert(
      fc.property(prefixArb, bytesArb, fc.nat(), anyAscii, (prefix, bytes, at, replacement) => {
        const { token } = generateToken({ prefix, random: fixed(bytes) });
        const i = at % token.length;
        fc.pre(token[i] !== replacement);
        const changed = token.slice(0, i) + replacement + token.slice(i + 1);
        expect(parseToken(changed).ok).toBe(false);
      }),
      { numRuns: 5_000 },
    );
  });

  it('catches every single-character change at every position of one token', () => {
    const { token } = generateToken();
    for (let i = 0; i < token.length; i++) {
      for (let c = 0x20; c <= 0x7e; c++) {
        const ch = String.fromCharCode(c);
        if (ch === token[i]) continue;
        expect(parseToken(token.slice(0, i) + ch + token.slice(i + 1)).ok, `position ${i} -> ${ch}`).toBe(
          false,
        );
      }
    }
  });

  it('never throws on arbitrary input, and accepts nothing random', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.anything()), (input) => {
        const result = parseToken(input);
        expect(result.ok).toBe(false);
      }),
      { numRuns: 5_000 },
    );
  });

  it('rejects well-shaped strings with a wrong checksum as bad_checksum', () => {
    fc.assert(
      fc.property(prefixArb, fc.stringMatching(/^[0-9A-Za-z]{49}$/), (prefix, rest) => {
        const candidate = `${prefix}_${rest}`;
        const result = parseToken(candidate);
        // A random 49-char tail carries the right checksum with probability 2^-32.
        fc.pre(!result.ok);
        expect(result).toEqual({ ok: false, reason: 'bad_checksum' });
      }),
    );
  });

  it('checksumPasses lets every token parseToken accepts through, and stops only malformed or bad_checksum ones', () => {
    const anyAscii = fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c));
    const candidates = fc.oneof(
      // real tokens, and real tokens with one character replaced
      fc
        .tuple(prefixArb, bytesArb)
        .map(([prefix, bytes]) => generateToken({ prefix, random: () => bytes }).token),
      fc.tuple(prefixArb, bytesArb, fc.nat(), anyAscii).map(([prefix, bytes, at, c]) => {
        const token = generateToken({ prefix, random: () => bytes }).token;
        const i = at % token.length;
        return token.slice(0, i) + c + token.slice(i + 1);
      }),
      fc.stringMatching(/^[a-z]{1,8}_[0-9A-Za-z]{49}$/),
      fc.string({ maxLength: 70 }),
    );
    fc.assert(
      fc.property(candidates, (candidate) => {
        const parsed = parseToken(candidate, { prefix: 'kw' });
        if (parsed.ok || parsed.reason === 'wrong_prefix') expect(checksumPasses(candidate)).toBe(true);
        // A wrong checksum passes with probability 2^-32, so for these strings never.
        if (!parsed.ok && parsed.reason === 'bad_checksum') expect(checksumPasses(candidate)).toBe(false);
      }),
      { numRuns: 20_000 },
    );
  });

  it('rejects another installation prefix when one is required', () => {
    const { token } = generateToken({ prefix: 'acme' });
    expect(parseToken(token, { prefix: 'kw' })).toEqual({ ok: false, reason: 'wrong_prefix' });
  });

  it('rejects input longer than any token as malformed', () => {
    const { token } = generateToken();
    const huge = token + 'x'.repeat(50_000_000);
    expect(parseToken(huge)).toEqual({ ok: false, reason: 'malformed' });
    expect(parseToken(`${token}a`)).toEqual({ ok: false, reason: 'malformed' });
    expect(MAX_TOKEN_LENGTH).toBe(58);
  });

  it('rejects near misses', () => {
    const { token } = generateToken();
    for (const bad of [
      token.slice(1),
      `Kw${token.slice(2)}`,
      token.replace('_', '-'),
      `${token.slice(0, 10)}é${token.slice(11)}`,
      ` ${token}`,
      `${token}\n`,
      `Bearer ${token}`,
      '',
    ]) {
      expect(parseToken(bad).ok).toBe(false);
    }
  });
});

describe('tokenHash', () => {
  it('is SHA-256 of the token', () => {
    expect(tokenHash('kw_x').toString('hex')).toBe(createHash('sha256').update('kw_x').digest('hex'));
    expect(tokenHash('kw_x')).toHaveLength(32);
  });
});

describe('keyId', () => {
  it('is key_ + 16 base62 chars and recognised by isKeyId', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        let call = 0;
        // The first read may be rejected byte-by-byte; later reads come from crypto.
        const id = generateKeyId((n) => (call++ === 0 ? bytes : randomBytes(n)));
        expect(id).toMatch(/^key_[0-9A-Za-z]{16}$/);
        expect(isKeyId(id)).toBe(true);
      }),
    );
    expect(isKeyId('key_123')).toBe(false);
    expect(isKeyId(42)).toBe(false);
    expect(isKeyId(`${generateKeyId()}\n`)).toBe(false);
  });

  it('draws every character about equally often', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      for (const ch of generateKeyId().slice(4)) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    }
    expect(counts.size).toBe(62);
    const expected = (20_000 * 16) / 62;
    for (const n of counts.values()) expect(Math.abs(n - expected) / expected).toBeLessThan(0.1);
  });
});

describe('GeneratedToken', () => {
  it('does not print its secret through JSON or util.inspect', async () => {
    const { inspect } = await import('node:util');
    const generated = generateToken();
    expect(JSON.stringify({ generated })).not.toContain(generated.token);
    expect(inspect(generated)).not.toContain(generated.token);
    expect(inspect(generated)).toContain(generated.displayPrefix);
  });
});
