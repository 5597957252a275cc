import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { TOKEN_SHAPE } from '../credentials/token.js';
import type { RequestLogRow } from '../store/request-log.js';
import type { ClientAddress } from './client-address.js';
import type { Route } from './metrics.js';
import type { Outcome } from './verification.js';

/** Told of every decision, synchronously on the request path: must not block or throw. */
export interface DecisionRecorder {
  record(route: Route, outcome: Outcome, result: string, reason: string, origin: FastifyRequest): void;
}

/** Where finished rows go: the store's batched writer, a JSON-lines stream. */
export interface RowSink {
  add(json: string): void;
}

// Column bounds of request_log; longer values are cut, never refused (a refused row would cost
// the whole batch it travels in).
const MAX_PATH = 2048;
const MAX_METHOD = 32;
const MAX_SUBJECT = 256;
const REDACTED = '[redacted]';
const VERIFY_PREFIX = '/verify';
/** Anything shaped like a token in a path is cut out: a client may have put its key in the URL. */
const TOKEN_IN_TEXT = new RegExp(TOKEN_SHAPE, 'g');
// Postgres text cannot hold NUL, and no control character belongs in a method or a path.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
const CONTROL = /[\x00-\x1f\x7f]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
const CONTROLS = /[\x00-\x1f\x7f]/g;

/**
 * Where the original request's path comes from: nginx `auth_request` recipes set X-Original-URI,
 * Traefik ForwardAuth and Caddy forward_auth set X-Forwarded-Uri, ingress-nginx sets the whole
 * X-Original-URL; Envoy and Istio append the path to /verify. Proxies overwrite these headers,
 * so a client cannot choose what is logged for it behind any of the documented recipes.
 */
const PATH_HEADERS = ['x-original-uri', 'x-forwarded-uri', 'x-original-url'] as const;
const METHOD_HEADERS = ['x-original-method', 'x-forwarded-method'] as const;

/** The identity fields of a decision: who the key belongs to, and whom it acted for. */
interface Identity {
  readonly keyId: string | null;
  readonly username: string | null;
  readonly actor: string | null;
  readonly subject: string | null;
}

const NO_IDENTITY: Identity = { keyId: null, username: null, actor: null, subject: null };

/**
 * A decision's identity. Acting on behalf of a ServiceUser, `username` is the subject (the
 * effective user) and `actor` the key's own; an external subject stays only the subject, since
 * keyward holds no user of that name. A refused subject is recorded as the subject asked for.
 */
function identityOf(outcome: Outcome): Identity {
  if (!('entry' in outcome)) return NO_IDENTITY;
  const { key } = outcome.entry;
  const own = { keyId: key.keyId, username: key.username, actor: key.username };
  if (outcome.kind === 'subject_refused')
    return {
      ...own,
      subject: outcome.subject === undefined ? null : clean(outcome.subject, MAX_SUBJECT) || null,
    };
  const acting = outcome.kind === 'allow' || outcome.kind === 'forbidden' ? outcome.acting : undefined;
  if (!acting) return { ...own, subject: null };
  const subject = clean(acting.subject, MAX_SUBJECT) || null;
  return { ...own, username: acting.subjectKind === 'service-user' ? acting.subject : key.username, subject };
}

function clean(text: string, max: number): string {
  const plain = CONTROL.test(text) ? text.replace(CONTROLS, '') : text;
  return plain.length > max ? plain.slice(0, max) : plain;
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** The path of a URL or request target: no scheme and host, no query string, no fragment, no token. */
export function logPath(target: string): string {
  let path = target;
  if (path.startsWith('http://') || path.startsWith('https://')) {
    const slash = path.indexOf('/', path.indexOf('//') + 2);
    path = slash === -1 ? '/' : path.slice(slash);
  }
  const query = path.search(/[?#]/);
  if (query !== -1) path = path.slice(0, query);
  // Every token has an underscore; most paths have none, so most skip the regex.
  if (path.includes('_')) path = path.replace(TOKEN_IN_TEXT, REDACTED);
  return clean(path, MAX_PATH);
}

/** Method and path of the request the decision was asked for, as far as the webhook can tell. */
function requestLine(route: Route, request: FastifyRequest): { method: string | null; path: string | null } {
  // The API server and an introspecting gateway do not say what their client asked for.
  if (route !== 'verify') return { method: null, path: null };
  let target: string | undefined;
  for (const name of PATH_HEADERS) {
    target = header(request, name);
    if (target !== undefined) break;
  }
  if (target === undefined) {
    const url = request.url;
    // Envoy's path_prefix form: /verify/<original path>.
    target = url.startsWith(`${VERIFY_PREFIX}/`) ? url.slice(VERIFY_PREFIX.length) : url;
  }
  let method: string | undefined;
  for (const name of METHOD_HEADERS) {
    method = header(request, name);
    if (method !== undefined) break;
  }
  return { method: clean(method ?? request.method, MAX_METHOD), path: logPath(target) };
}

/**
 * Builds one request_log row per decision and hands its JSON to every sink. Nothing of the
 * request is copied but the path (cut as logPath says), the method, and the client address
 * (client-address.ts, the same the failed-attempt limit uses); the token is never looked at.
 */
export class RequestRecorder implements DecisionRecorder {
  readonly #sinks: readonly RowSink[];
  readonly #addresses: ClientAddress;
  readonly #clientHeader: string;
  readonly #now: () => number;
  // Most requests come through a handful of proxies: remember the last address worked out.
  #lastPeer: string | undefined;
  #lastForwarded: string | string[] | undefined;
  #lastAddress = '';
  // toISOString costs more than the rest of a record; its first 20 characters change once a second.
  #second = Number.NaN;
  #secondPrefix = '';

  constructor(options: {
    sinks: readonly RowSink[];
    addresses: ClientAddress;
    clientIpHeader: string;
    now: () => number;
  }) {
    this.#sinks = options.sinks;
    this.#addresses = options.addresses;
    this.#clientHeader = options.clientIpHeader;
    this.#now = options.now;
  }

  record(route: Route, outcome: Outcome, result: string, reason: string, origin: FastifyRequest): void {
    if (route === 'leaks' || this.#sinks.length === 0) return;
    const identity = identityOf(outcome);
    const { method, path } = requestLine(route, origin);
    const row: RequestLogRow = {
      at: this.#iso(this.#now()),
      route,
      key_id: identity.keyId,
      username: identity.username,
      actor: identity.actor,
      subject: identity.subject,
      method,
      path,
      client_address: this.#clientAddress(origin),
      result,
      reason,
    };
    const json = JSON.stringify(row);
    for (const sink of this.#sinks) sink.add(json);
  }

  /** `new Date(ms).toISOString()`, with the date and time of day reused within a second. */
  #iso(now: number): string {
    const ms = Math.floor(now);
    const millis = ms % 1000;
    const second = ms - millis;
    if (second !== this.#second) {
      this.#second = second;
      this.#secondPrefix = new Date(second).toISOString().slice(0, 20);
    }
    return `${this.#secondPrefix}${millis < 10 ? '00' : millis < 100 ? '0' : ''}${millis}Z`;
  }

  #clientAddress(request: FastifyRequest): string {
    const peer = request.socket.remoteAddress;
    const forwarded = request.headers[this.#clientHeader];
    if (peer !== this.#lastPeer || forwarded !== this.#lastForwarded) {
      this.#lastPeer = peer;
      this.#lastForwarded = forwarded;
      this.#lastAddress = this.#addresses.of(peer, request.headers);
    }
    return this.#lastAddress;
  }
}

/**
 * JSON lines to stdout or a file, written once per flush interval (one write per batch, not per
 * request). A stream that cannot keep up holds at most maxPending lines; the rest are dropped
 * and counted.
 */
export class JsonLinesSink implements RowSink {
  #lines: string[] = [];
  #dropped = 0;
  #written = 0;
  readonly #stream: Writable;
  readonly #ownsStream: boolean;
  readonly #timer: NodeJS.Timeout;

  constructor(
    target: 'stdout' | { readonly file: string },
    private readonly options: {
      readonly flushIntervalMs: number;
      readonly maxPending: number;
      /** The file cannot be opened or written; its lines are counted as dropped. */
      readonly onError?: (err: Error) => void;
    },
  ) {
    this.#ownsStream = target !== 'stdout';
    this.#stream = target === 'stdout' ? process.stdout : createWriteStream(target.file, { flags: 'a' });
    if (this.#ownsStream) this.#stream.on('error', (err) => options.onError?.(err));
    this.#timer = setInterval(() => void this.flush(), options.flushIntervalMs);
    this.#timer.unref();
  }

  add(json: string): void {
    if (this.#lines.length >= this.options.maxPending) {
      this.#dropped += 1;
      return;
    }
    this.#lines.push(json);
  }

  get pending(): number {
    return this.#lines.length;
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
    if (this.#lines.length === 0 || (this.#stream.writableNeedDrain && !force)) return Promise.resolve();
    const lines = this.#lines;
    this.#lines = [];
    return new Promise((resolve) =>
      this.#stream.write(`${lines.join('\n')}\n`, (err) => {
        if (err) this.#dropped += lines.length;
        else this.#written += lines.length;
        resolve();
      }),
    );
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush(true);
    if (this.#ownsStream) await new Promise<void>((resolve) => this.#stream.end(() => resolve()));
  }
}
