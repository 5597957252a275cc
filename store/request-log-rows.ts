import type { RequestLogRow } from './request-log.js';

/**
 * A request_log row without its time, key, path and count: what the decisions of one client on
 * behalf of one user share. The key and the path are apart because they vary request by request
 * (an API's ids are in its paths; on the miss path nearly every request is another key), and a
 * shared object per key or path would be an object per request, held until the flush: under
 * uniformly random keys that made the request log the largest source of the old generation's
 * garbage (bench/README.md, the miss path).
 */
export type RequestLogFieldValues = Omit<RequestLogRow, 'at' | 'key_id' | 'path' | 'count'>;

// COPY text format: these four would end a field or a row, or start an escape.
const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIALS = /[\\\t\n\r]/g;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };
const COPY_NULL = '\\N';

function copyField(value: string | null): string {
  if (value === null) return COPY_NULL;
  // Nearly no value has one: the test spares a replace (and its new string) per field.
  return COPY_SPECIAL.test(value) ? value.replace(COPY_SPECIALS, (c) => COPY_ESCAPES[c]!) : value;
}

/**
 * The fields of a row but its time, key and path, with their COPY and JSON encodings worked out once.
 * The recorder hands the same object to every record that has the same fields (a busy client
 * repeats them request after request), so a queued record costs a time stamp, a path and a
 * reference, not an object and a string of its own that the garbage collector copies until the
 * flush.
 */
export class RequestLogFields {
  #copy: string | undefined;
  #json: string | undefined;

  constructor(readonly values: RequestLogFieldValues) {}

  /** Columns route … reason of COPY text format, tab-separated (COPY_COLUMNS in request-log.ts). */
  get copyText(): string {
    if (this.#copy === undefined) {
      const v = this.values;
      this.#copy = [v.route, v.username, v.actor, v.subject, v.method, v.client_address, v.result, v.reason]
        .map(copyField)
        .join('\t');
    }
    return this.#copy;
  }

  /** The members between "key_id" and "path" of the row's JSON object. */
  get jsonText(): string {
    this.#json ??= JSON.stringify(this.values).slice(1, -1);
    return this.#json;
  }
}

/** How a sink writes one row (copyLine, a JSON line). */
export type RowText = (
  at: number,
  keyId: string | null,
  fields: RequestLogFields,
  path: string | null,
  count: number,
) => string;

/** The row as one JSON object, the text a JSON-lines sink writes. */
export const rowJson: RowText = (at, keyId, fields, path, count) =>
  `{"at":"${formatAt(at)}","key_id":${jsonString(keyId)},${fields.jsonText},"path":${jsonString(path)},"count":${count}}`;

const jsonString = (text: string | null): string => (text === null ? 'null' : JSON.stringify(text));

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

/** Rows taken off a queue: times (epoch milliseconds), keys, fields, paths and decision counts, index by index. */
export interface RecordBatch {
  readonly at: readonly number[];
  readonly keyId: readonly (string | null)[];
  readonly fields: readonly RequestLogFields[];
  readonly path: readonly (string | null)[];
  readonly count: readonly number[];
}

/** Decisions in a batch (each row stands for `count` of them). */
export function decisionsIn(batch: RecordBatch, from = 0): number {
  let sum = 0;
  for (let i = from; i < batch.count.length; i++) sum += batch.count[i]!;
  return sum;
}

/**
 * Rows waiting for a sink, column by column: arrays of numbers (held unboxed by V8), of key ids
 * and paths (the strings the recorder was handed, nothing copied) and of shared field objects,
 * so a queue of 100,000 rows is five flat arrays and no objects of its own.
 *
 * Decisions alike in every field within one millisecond are one row with a count: they cannot be
 * told apart, so nothing is lost, and a client that sends the same request thousands of times a
 * second (a busy service, or a flood of bad tokens) costs the store at most a row per
 * millisecond per distinct set of fields instead of a row per request. Holds at most `max` rows;
 * `push` refuses a new row beyond it.
 */
export class RecordQueue {
  #at: number[] = [];
  #keyId: (string | null)[] = [];
  #fields: RequestLogFields[] = [];
  #path: (string | null)[] = [];
  #count: number[] = [];
  #decisions = 0;
  // The newest row of each field set in the newest millisecond: where a like decision is counted.
  #slotAt = Number.NaN;
  readonly #slots = new Map<RequestLogFields, number>();
  // The newest row of that millisecond (-1: none) and what it holds, copied here so that a run of
  // like decisions (one client, one key) is counted by reading this object and one array alone:
  // in a server sharing its core, every other array touched is another likely cache miss.
  #newest = -1;
  #newestKeyId: string | null = null;
  #newestFields: RequestLogFields | undefined;
  #newestPath: string | null = null;

  constructor(private readonly max: number) {}

  /** Rows waiting. */
  get length(): number {
    return this.#at.length;
  }

  /** Decisions those rows stand for. */
  get decisions(): number {
    return this.#decisions;
  }

  /** `count` like decisions; false when a new row was needed and the queue is full (the caller counts them dropped). */
  push(at: number, keyId: string | null, fields: RequestLogFields, path: string | null, count = 1): boolean {
    if (at === this.#slotAt) {
      if (
        this.#newest >= 0 &&
        fields === this.#newestFields &&
        keyId === this.#newestKeyId &&
        path === this.#newestPath
      ) {
        this.#count[this.#newest]! += count;
        this.#decisions += count;
        return true;
      }
      const row = this.#slots.get(fields);
      if (row !== undefined && this.#keyId[row] === keyId && this.#path[row] === path) {
        this.#count[row]! += count;
        this.#decisions += count;
        return true;
      }
    } else {
      this.#slotAt = at;
      this.#slots.clear();
      this.#newest = -1;
    }
    if (this.#at.length >= this.max) return false;
    this.#newest = this.#at.length;
    this.#newestKeyId = keyId;
    this.#newestFields = fields;
    this.#newestPath = path;
    this.#slots.set(fields, this.#at.length);
    this.#at.push(at);
    this.#keyId.push(keyId);
    this.#fields.push(fields);
    this.#path.push(path);
    this.#count.push(count);
    this.#decisions += count;
    return true;
  }

  /** Removes and returns the oldest `rows` rows. */
  take(rows: number): RecordBatch {
    const batch = {
      at: this.#at.splice(0, rows),
      keyId: this.#keyId.splice(0, rows),
      fields: this.#fields.splice(0, rows),
      path: this.#path.splice(0, rows),
      count: this.#count.splice(0, rows),
    };
    this.#decisions -= decisionsIn(batch);
    this.#forgetSlots();
    return batch;
  }

  /** Puts a batch back in front; returns how many decisions of the newest rows no longer fit and were dropped. */
  putBack(batch: RecordBatch): number {
    this.#at = batch.at.concat(this.#at);
    this.#keyId = batch.keyId.concat(this.#keyId);
    this.#fields = batch.fields.concat(this.#fields);
    this.#path = batch.path.concat(this.#path);
    this.#count = batch.count.concat(this.#count);
    this.#decisions += decisionsIn(batch);
    this.#forgetSlots();
    const excess = this.#at.length - this.max;
    if (excess <= 0) return 0;
    const dropped = decisionsIn(this.#rows(), this.max);
    this.#at.length = this.max;
    this.#keyId.length = this.max;
    this.#fields.length = this.max;
    this.#path.length = this.max;
    this.#count.length = this.max;
    this.#decisions -= dropped;
    return dropped;
  }

  #rows(): RecordBatch {
    return { at: this.#at, keyId: this.#keyId, fields: this.#fields, path: this.#path, count: this.#count };
  }

  // Row indexes moved: later decisions of this millisecond start a row of their own.
  #forgetSlots(): void {
    this.#slotAt = Number.NaN;
    this.#slots.clear();
    this.#newest = -1;
  }
}

/** A row in COPY text format, one line (columns as COPY_COLUMNS in request-log.ts lists them). */
export const copyLine: RowText = (at, keyId, fields, path, count) =>
  `${formatAt(at)}\t${copyField(keyId)}\t${fields.copyText}\t${copyField(path)}\t${count}\n`;

/** The batch's rows as `line` writes them, in UTF-8 chunks of about `chunkChars` characters. */
export function* textChunks(batch: RecordBatch, line: RowText, chunkChars: number): Generator<Buffer> {
  let text = '';
  for (let i = 0; i < batch.at.length; i++) {
    text += line(batch.at[i]!, batch.keyId[i]!, batch.fields[i]!, batch.path[i]!, batch.count[i]!);
    if (text.length >= chunkChars) {
      yield Buffer.from(text);
      text = '';
    }
  }
  if (text !== '') yield Buffer.from(text);
}
