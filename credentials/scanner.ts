import { MAX_TOKEN_LENGTH, parseToken, TOKEN_CANDIDATE } from './token.js';

/** A token found in scanned text. The token itself is handed to `onToken` and never kept here. */
export interface Finding {
  /** 1-based line of the token's first character. */
  readonly line: number;
  /** 1-based column (in bytes, as the text was read as latin1). */
  readonly column: number;
  readonly displayPrefix: string;
}

/**
 * Carried from one chunk to the next: a whole candidate plus the character before it (the
 * lookbehind), so a token split across a chunk boundary is seen whole, and memory stays bounded
 * whatever the line length.
 */
const CARRY = MAX_TOKEN_LENGTH + 1;

/**
 * Finds tokens (shape and checksum) in a byte stream fed chunk by chunk. Bytes are read as latin1,
 * so binary input cannot fail decoding and non-ASCII bytes never match. Memory is one chunk plus
 * CARRY characters, however long the lines are.
 */
export class TokenScanner {
  #carry = '';
  /** Absolute offset of #carry[0]. */
  #offset = 0;
  /** Line number at #carry[0]. */
  #line = 1;
  /** Offset of the last newline before #carry[0] (-1: none), for columns. */
  #lineStart = -1;
  /** Matches starting before this absolute offset were already decided. */
  #decidedUpTo = 0;

  constructor(private readonly onToken: (finding: Finding, token: string) => void) {}

  /** Feeds the next chunk. */
  push(chunk: Buffer): void {
    this.#scan(this.#carry + chunk.toString('latin1'), false);
  }

  /** The stream ended: decides the candidate the last chunk may have ended with. */
  end(): void {
    this.#scan(this.#carry, true);
    this.#carry = '';
  }

  #scan(text: string, final: boolean): void {
    let line = this.#line;
    let lineStart = this.#lineStart;
    let counted = 0;
    const advance = (to: number): void => {
      for (let i = text.indexOf('\n', counted); i !== -1 && i < to; i = text.indexOf('\n', i + 1)) {
        line++;
        lineStart = this.#offset + i;
      }
      counted = to;
    };
    const pattern = new RegExp(TOKEN_CANDIDATE.source, 'g');
    for (let m = pattern.exec(text); m !== null; m = pattern.exec(text)) {
      const start = this.#offset + m.index;
      const end = m.index + m[0].length;
      // Without the next character the lookahead has not really been checked: wait for more.
      if (!final && end >= text.length) break;
      // The carry's first character is context only; a match there was decided last time.
      if (start < this.#decidedUpTo || (m.index === 0 && this.#offset > 0)) continue;
      this.#decidedUpTo = this.#offset + end;
      const parsed = parseToken(m[0]);
      if (!parsed.ok) continue;
      advance(m.index);
      this.onToken({ line, column: start - lineStart, displayPrefix: parsed.value.displayPrefix }, m[0]);
    }
    if (final) return;
    const keep = Math.max(0, text.length - CARRY);
    // Lines are counted afresh up to the cut: the matches' counting may have run past it.
    line = this.#line;
    lineStart = this.#lineStart;
    counted = 0;
    advance(keep);
    this.#carry = text.slice(keep);
    this.#offset += keep;
    this.#line = line;
    this.#lineStart = lineStart;
  }
}
