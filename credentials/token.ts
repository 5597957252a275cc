import { createHash, randomBytes } from 'node:crypto';

/**
 * Token format (DESIGN.md §3): `<prefix>_<body><checksum>`.
 * - prefix: `[a-z]{1,8}`, `kw` by default.
 * - body: 32 random bytes as fixed-width base62, 43 chars (62^43 > 2^256).
 * - checksum: CRC32 of `<prefix>_<body>` as fixed-width base62, 6 chars (62^6 > 2^32).
 * Fixed widths keep the encoding injective and let a scanner match `[a-z]{1,8}_[0-9A-Za-z]{49}`.
 */

/** Source of random bytes; injectable so tests can drive generation deterministically. */
export type RandomSource = (size: number) => Uint8Array;

export const DEFAULT_TOKEN_PREFIX = 'kw';
const PREFIX_PATTERN = /^[a-z]{1,8}$/;
const BODY_BYTES = 32;
const BODY_LENGTH = 43;
const CHECKSUM_LENGTH = 6;
const MAX_PREFIX_LENGTH = 8;
/** Longest possible token; anything longer is rejected before any other work. */
export const MAX_TOKEN_LENGTH = MAX_PREFIX_LENGTH + 1 + BODY_LENGTH + CHECKSUM_LENGTH;
const MIN_TOKEN_LENGTH = 1 + 1 + BODY_LENGTH + CHECKSUM_LENGTH;
/** Body characters shown in logs and status; ~24 of 256 bits, useless for guessing. */
const DISPLAY_BODY_CHARS = 4;

/** The shape of a token, unanchored, as regex source: what scanners and redaction look for. */
export const TOKEN_SHAPE = '[a-z]{1,8}_[0-9A-Za-z]{49}';

/**
 * A token anywhere in text: the prefix must start a word and the checksum must end one, so a
 * longer base62 run is not cut into a candidate. Candidates still need parseToken() (the
 * checksum) before they count as tokens. `keyward scan` uses it; docs/secret-scanning.md gives
 * its RE2 form (the lookarounds as explicit boundary groups), which its test checks against this.
 */
export const TOKEN_CANDIDATE = new RegExp(`(?<![0-9A-Za-z_])${TOKEN_SHAPE}(?![0-9A-Za-z_])`, 'g');

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** 0–61 for a base62 character code, -1 otherwise. */
const BASE62_VALUE = (() => {
  const table = new Int8Array(128).fill(-1);
  for (let i = 0; i < ALPHABET.length; i++) table[ALPHABET.charCodeAt(i)] = i;
  return table;
})();

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE, as zlib) of an ASCII string, or of its first `end` characters. */
function crc32(ascii: string, end = ascii.length): number {
  let crc = 0xffffffff;
  for (let i = 0; i < end; i++) {
    crc = CRC_TABLE[(crc ^ ascii.charCodeAt(i)) & 0xff]! ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** The fixed-width base62 number ending `token` (its checksum), or -1 if a character is not base62. */
function decodeChecksum(token: string): number {
  let value = 0;
  for (let i = token.length - CHECKSUM_LENGTH; i < token.length; i++) {
    const c = token.charCodeAt(i);
    const digit = c < 128 ? BASE62_VALUE[c]! : -1;
    if (digit < 0) return -1;
    value = value * 62 + digit;
  }
  return value;
}

function encodeChecksum(value: number): string {
  let out = '';
  let rest = value;
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = ALPHABET[rest % 62]! + out;
    rest = Math.floor(rest / 62);
  }
  return out;
}

const BASE62_POW5 = 62 ** 5;

/**
 * Fixed-width base62 of 32 big-endian bytes by long division over 16-bit words, five digits per
 * pass: BigInt would be ~5x slower, and the 10^6-draw uniqueness test runs this a million times.
 */
function encodeBody(bytes: Uint8Array): string {
  const words = new Float64Array(BODY_BYTES / 2);
  for (let w = 0; w < words.length; w++) words[w] = (bytes[2 * w]! << 8) | bytes[2 * w + 1]!;
  // 9 passes give 45 digits; 62^43 > 2^256 so the two leading ones are always 0 and dropped.
  const chunks = new Array<number>(9);
  let first = 0;
  for (let pass = chunks.length - 1; pass >= 0; pass--) {
    let remainder = 0;
    for (let w = first; w < words.length; w++) {
      // remainder * 2^16 + word < 62^5 * 2^16 < 2^53: exact in a double.
      const current = remainder * 0x10000 + words[w]!;
      const quotient = Math.floor(current / BASE62_POW5);
      words[w] = quotient;
      remainder = current - quotient * BASE62_POW5;
    }
    while (first < words.length && words[first] === 0) first++;
    chunks[pass] = remainder;
  }
  let out = '';
  for (const chunk of chunks) {
    let rest = chunk;
    let group = '';
    for (let k = 0; k < 5; k++) {
      group = ALPHABET[rest % 62]! + group;
      rest = Math.floor(rest / 62);
    }
    out += group;
  }
  return out.slice(2);
}

function assertPrefix(prefix: string): void {
  if (!PREFIX_PATTERN.test(prefix)) throw new Error('token prefix must be 1-8 lowercase ASCII letters');
}

/** A freshly generated token and everything derived from it that may be stored or shown. */
export class GeneratedToken {
  #hash: Buffer | undefined;

  constructor(
    /** The secret: goes into the Kubernetes Secret and nowhere else. */
    readonly token: string,
    /** Non-secret first characters, for logs and status (e.g. `kw_5Jq4`). */
    readonly displayPrefix: string,
  ) {}

  /** SHA-256 of the token: what the store keeps. Computed on first use. */
  get hash(): Buffer {
    this.#hash ??= tokenHash(this.token);
    return this.#hash;
  }

  /** Keeps the secret out of logs and error messages that serialise the object. */
  toJSON(): { displayPrefix: string } {
    return { displayPrefix: this.displayPrefix };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `GeneratedToken(${this.displayPrefix}…)`;
  }
}

/** Generates a token: `<prefix>_` + 32 random bytes in base62 + 6-char base62 CRC32. */
export function generateToken(options: { prefix?: string; random?: RandomSource } = {}): GeneratedToken {
  const prefix = options.prefix ?? DEFAULT_TOKEN_PREFIX;
  assertPrefix(prefix);
  const bytes = (options.random ?? randomBytes)(BODY_BYTES);
  if (bytes.length !== BODY_BYTES)
    throw new Error(`random source returned ${bytes.length} bytes, want ${BODY_BYTES}`);
  const head = `${prefix}_${encodeBody(bytes)}`;
  const token = head + encodeChecksum(crc32(head));
  return new GeneratedToken(token, displayPrefixOf(prefix, head));
}

export type TokenRejection =
  /** Not a string, or longer than any token can be (checked before anything else). */
  | 'malformed'
  /** Right shape, but the checksum does not match: a typo or a made-up string. */
  | 'bad_checksum'
  /** A well-formed token with another installation's prefix. */
  | 'wrong_prefix';

export interface ParsedToken {
  readonly token: string;
  readonly prefix: string;
  readonly displayPrefix: string;
}

export type ParseResult =
  | { readonly ok: true; readonly value: ParsedToken }
  | { readonly ok: false; readonly reason: TokenRejection };

/**
 * Checks shape and checksum without touching any store. Never throws; work is bounded by
 * MAX_TOKEN_LENGTH whatever the input's size, and nothing is allocated for rejected input.
 * With `prefix`, a token minted under another prefix is rejected as `wrong_prefix`.
 */
export function parseToken(input: unknown, options: { prefix?: string } = {}): ParseResult {
  if (typeof input !== 'string' || !wellShaped(input)) return { ok: false, reason: 'malformed' };
  // The checksum is derivable from the token itself, so it is not a secret: plain compare is fine.
  if (!checksumMatches(input)) return { ok: false, reason: 'bad_checksum' };
  const separator = input.length - BODY_LENGTH - CHECKSUM_LENGTH - 1;
  const head = input.slice(0, input.length - CHECKSUM_LENGTH);
  const prefix = input.slice(0, separator);
  if (options.prefix !== undefined && prefix !== options.prefix) return { ok: false, reason: 'wrong_prefix' };
  return { ok: true, value: { token: input, prefix, displayPrefix: displayPrefixOf(prefix, head) } };
}

function wellShaped(input: string): boolean {
  if (input.length > MAX_TOKEN_LENGTH || input.length < MIN_TOKEN_LENGTH) return false;
  const separator = input.length - BODY_LENGTH - CHECKSUM_LENGTH - 1;
  if (input.charCodeAt(separator) !== 0x5f /* _ */) return false;
  for (let i = 0; i < separator; i++) {
    const c = input.charCodeAt(i);
    if (c < 0x61 || c > 0x7a) return false;
  }
  for (let i = separator + 1; i < input.length; i++) {
    const c = input.charCodeAt(i);
    if (c > 127 || BASE62_VALUE[c] === -1) return false;
  }
  return true;
}

function checksumMatches(token: string): boolean {
  return crc32(token, token.length - CHECKSUM_LENGTH) === decodeChecksum(token);
}

/**
 * Whether the token has a token's length and its checksum matches, with nothing allocated and its
 * shape unchecked (parseToken does that): every token parseToken accepts passes, and one that
 * fails is malformed or bad_checksum to parseToken. So a made-up token can be refused before
 * the SHA-256 and cache lookup a real one needs, and garbage costs less than a cache hit.
 */
export function checksumPasses(token: string): boolean {
  if (token.length > MAX_TOKEN_LENGTH || token.length < MIN_TOKEN_LENGTH) return false;
  return checksumMatches(token);
}

/** The display prefix of a token that parseToken() accepted before (e.g. one found in a cache). */
export function displayPrefixOfValid(token: string): string {
  return token.slice(0, token.length - BODY_LENGTH - CHECKSUM_LENGTH + DISPLAY_BODY_CHARS);
}

function displayPrefixOf(prefix: string, head: string): string {
  return head.slice(0, prefix.length + 1 + DISPLAY_BODY_CHARS);
}

/** SHA-256 of the token's UTF-8 bytes: the store's lookup key. */
export function tokenHash(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

const KEY_ID_PATTERN = /^key_[0-9A-Za-z]{16}$/;
const KEY_ID_CHARS = 16;

/** A public key identifier, `key_` + 16 base62 chars (~95 bits), unbiased by rejection sampling. */
export function generateKeyId(random: RandomSource = randomBytes): string {
  let out = 'key_';
  while (out.length < 4 + KEY_ID_CHARS) {
    for (const byte of random(KEY_ID_CHARS)) {
      // 248 = 4 * 62: bytes at or above it would favour the first 8 characters.
      if (byte < 248 && out.length < 4 + KEY_ID_CHARS) out += ALPHABET[byte % 62];
    }
  }
  return out;
}

export function isKeyId(value: unknown): value is string {
  return typeof value === 'string' && value.length === 4 + KEY_ID_CHARS && KEY_ID_PATTERN.test(value);
}
