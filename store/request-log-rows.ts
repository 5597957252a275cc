import type { RequestLogRow } from './request-log.js';

/** A request_log row without its time: what the decisions of one client with one key share. */
export type RequestLogFieldValues = Omit<RequestLogRow, 'at'>;

// COPY text format: these four would end a field or a row, or start an escape.
const COPY_SPECIAL = /[\\\t\n\r]/g;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };
const COPY_NULL = '\\N';

function copyField(value: string | null): string {
  if (value === null) return COPY_NULL;
  return value.replace(COPY_SPECIAL, (c) => COPY_ESCAPES[c]!);
}

/**
 * The fields of a row but its time, with their COPY and JSON encodings worked out once. The
 * recorder hands the same object to every record that has the same fields (a busy client repeats
 * them request after request), so a queued record costs a time stamp and a reference, not an
 * object and a string of its own that the garbage collector copies until the flush.
 */
export class RequestLogFields {
  #copy: string | undefined;
  #json: string | undefined;

  constructor(readonly values: RequestLogFieldValues) {}

  /** Columns route … reason of COPY text format, tab-separated (COPY_COLUMNS in request-log.ts). */
  get copyText(): string {
    if (this.#copy === undefined) {
      const v = this.values;
      this.#copy = [
        v.route,
        v.key_id,
        v.username,
        v.actor,
        v.subject,
        v.method,
        v.path,
        v.client_address,
        v.result,
        v.reason,
      ]
        .map(copyField)
        .join('\t');
    }
    return this.#copy;
  }

  /** The members after "at" of the row's JSON object, in column order. */
  get jsonText(): string {
    this.#json ??= JSON.stringify(this.values).slice(1, -1);
    return this.#json;
  }
}

/** The row as one JSON object, the text a JSON-lines sink writes. */
export function rowJson(at: number, fields: RequestLogFields): string {
  return `{"at":"${formatAt(at)}",${fields.jsonText}}`;
}

// toISOString costs more than the rest of a row; its first 20 characters change once a second.
let cachedSecond = Number.NaN;
let cachedPrefix = '';

/** `new Date(ms).toISOString()` (RFC 3339 UTC, milliseconds), reusing the date and time of day within a second. */
function formatAt(ms: number): string {
  const millis = ms % 1000;
  const second = ms - millis;
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedPrefix = new Date(second).toISOString().slice(0, 20);
  }
  return `${cachedPrefix}${millis < 10 ? '00' : millis < 100 ? '0' : ''}${millis}Z`;
}

/** Records taken off a queue: times (epoch milliseconds) and fields, index by index. */
export interface RecordBatch {
  readonly at: readonly number[];
  readonly fields: readonly RequestLogFields[];
}

/**
 * Records waiting for a sink, column by column: an array of numbers (held unboxed by V8) and an
 * array of shared field objects, so a queue of 100,000 records is two flat arrays and no garbage.
 * Holds at most `max`; `push` refuses beyond it.
 */
export class RecordQueue {
  #at: number[] = [];
  #fields: RequestLogFields[] = [];

  constructor(private readonly max: number) {}

  get length(): number {
    return this.#at.length;
  }

  /** False when the queue is full (the caller counts the record dropped). */
  push(at: number, fields: RequestLogFields): boolean {
    if (this.#at.length >= this.max) return false;
    this.#at.push(at);
    this.#fields.push(fields);
    return true;
  }

  /** Removes and returns the oldest `count` records. */
  take(count: number): RecordBatch {
    return { at: this.#at.splice(0, count), fields: this.#fields.splice(0, count) };
  }

  /** Puts a batch back in front; returns how many of the newest no longer fit and were dropped. */
  putBack(batch: RecordBatch): number {
    this.#at = batch.at.concat(this.#at);
    this.#fields = batch.fields.concat(this.#fields);
    const excess = this.#at.length - this.max;
    if (excess <= 0) return 0;
    this.#at.length = this.max;
    this.#fields.length = this.max;
    return excess;
  }
}

/** A record in COPY text format, one line. */
export function copyLine(at: number, fields: RequestLogFields): string {
  return `${formatAt(at)}\t${fields.copyText}\n`;
}

/** The batch's records as `line` writes them, in UTF-8 chunks of about `chunkChars` characters. */
export function* textChunks(
  batch: RecordBatch,
  line: (at: number, fields: RequestLogFields) => string,
  chunkChars: number,
): Generator<Buffer> {
  let text = '';
  // A busy client's records come in runs with the same fields and millisecond: one line for the run.
  let lastAt = Number.NaN;
  let lastFields: RequestLogFields | undefined;
  let lastLine = '';
  for (let i = 0; i < batch.at.length; i++) {
    const at = batch.at[i]!;
    const fields = batch.fields[i]!;
    if (at !== lastAt || fields !== lastFields) {
      lastAt = at;
      lastFields = fields;
      lastLine = line(at, fields);
    }
    text += lastLine;
    if (text.length >= chunkChars) {
      yield Buffer.from(text);
      text = '';
    }
  }
  if (text !== '') yield Buffer.from(text);
}
