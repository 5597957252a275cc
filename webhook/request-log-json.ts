import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import {
  decisionsIn,
  type RecordBatch,
  RecordQueue,
  type RequestLogFields,
  type RowText,
  rowJson,
  textChunks,
} from '../store/request-log-rows.js';
import type { RowSink } from './request-log.js';

/** Characters of JSON lines per write. */
const CHUNK_CHARS = 64 * 1024;
const jsonLine: RowText = (at, keyId, fields, path, count) => `${rowJson(at, keyId, fields, path, count)}\n`;

/**
 * JSON lines of the request log (docs/request-log.md) to stdout or a file, written once per
 * flush interval in chunks, not per request; like decisions of one millisecond are one line with
 * a count (RecordQueue). A stream that cannot keep up holds at most maxPending lines; the
 * decisions beyond are dropped and counted.
 */
export class JsonLinesSink implements RowSink {
  readonly #queue: RecordQueue;
  #writing: Promise<void> | undefined;
  #dropped = 0;
  #written = 0;
  readonly #stream: Writable;
  readonly #ownsStream: boolean;
  readonly #timer: NodeJS.Timeout;
  readonly #beforeFlush: (() => void) | undefined;

  constructor(
    target: 'stdout' | { readonly file: string },
    options: {
      readonly flushIntervalMs: number;
      readonly maxPending: number;
      /** The file cannot be opened or written; its lines are counted as dropped. */
      readonly onError?: (err: Error) => void;
      /** Called as each flush starts: where decisions still held elsewhere (the recorder's open run) are added. */
      readonly beforeFlush?: () => void;
    },
  ) {
    this.#queue = new RecordQueue(options.maxPending);
    this.#beforeFlush = options.beforeFlush;
    this.#ownsStream = target !== 'stdout';
    this.#stream = target === 'stdout' ? process.stdout : createWriteStream(target.file, { flags: 'a' });
    if (this.#ownsStream) this.#stream.on('error', (err) => options.onError?.(err));
    // A write still under way when the timer fires takes the new lines on its next turn.
    this.#timer = setInterval(() => {
      if (!this.#writing) void this.flush();
    }, options.flushIntervalMs);
    this.#timer.unref();
  }

  add(at: number, keyId: string | null, fields: RequestLogFields, path: string | null, count = 1): void {
    if (!this.#queue.push(at, keyId, fields, path, count)) this.#dropped += count;
  }

  /** Decisions waiting. */
  get pending(): number {
    return this.#queue.decisions;
  }

  get written(): number {
    return this.#written;
  }

  get dropped(): number {
    return this.#dropped;
  }

  /**
   * Writes what is pending, unless the stream still holds the last write (then the lines wait for
   * the next flush); resolves once the stream has taken them. A stream error loses the batch.
   */
  flush(force = false): Promise<void> {
    this.#beforeFlush?.();
    if (this.#writing) return this.#writing.then(() => this.flush(force));
    const count = this.#queue.length;
    if (count === 0 || (this.#stream.writableNeedDrain && !force)) return Promise.resolve();
    this.#writing = this.#write(this.#queue.take(count)).finally(() => {
      this.#writing = undefined;
    });
    return this.#writing;
  }

  /**
   * In chunks, each handed over once the last is taken: one string of a whole second's lines
   * would be megabytes for the GC to move, and building it would hold up requests for as long.
   */
  async #write(batch: RecordBatch): Promise<void> {
    try {
      for (const chunk of textChunks(batch, jsonLine, CHUNK_CHARS)) {
        await new Promise<void>((resolve, reject) =>
          this.#stream.write(chunk, (err) => (err ? reject(err) : resolve())),
        );
      }
      this.#written += decisionsIn(batch);
    } catch {
      this.#dropped += decisionsIn(batch);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush(true);
    if (this.#ownsStream) await new Promise<void>((resolve) => this.#stream.end(() => resolve()));
  }
}
