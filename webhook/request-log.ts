import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { TOKEN_SHAPE } from '../credentials/token.js';
import { RequestLogFields } from '../store/request-log-rows.js';
import type { CacheEntry } from './cache.js';
import type { ClientAddress } from './client-address.js';
import type { Route } from './metrics.js';
import type { Outcome } from './verification.js';

/** Told of every decision, synchronously on the request path: must not block or throw. */
export interface DecisionRecorder {
  /** `at`: when the decision was made (epoch milliseconds), the time the verification read. */
  record(
    route: Route,
    outcome: Outcome,
    result: string,
    reason: string,
    origin: IncomingMessage,
    at: number,
  ): void;
}

/** Where records go: the store's batched writer, a JSON-lines stream. */
export interface RowSink {
  /**
   * `count` like decisions: their time (epoch milliseconds), their key, their other fields
   * (shared with like records) and their path.
   */
  add(at: number, keyId: string | null, fields: RequestLogFields, path: string | null, count: number): void;
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

// Where the original request's path comes from (RequestLines.read): nginx `auth_request` recipes
// set X-Original-URI, Traefik ForwardAuth and Caddy forward_auth set X-Forwarded-Uri,
// ingress-nginx sets the whole X-Original-URL; Envoy and Istio append the path to /verify.
// Proxies overwrite these headers, so a client cannot choose what is logged for it behind any of
// the documented recipes. Each header is read by its literal name: a loop over the names would
// make one look-up site see them all, which V8 serves from its slower megamorphic cache.

/** The identity fields of a decision but its key: who the key belongs to, and whom it acted for. */
interface Identity {
  readonly username: string | null;
  readonly actor: string | null;
  readonly subject: string | null;
}

const NO_IDENTITY: Identity = { username: null, actor: null, subject: null };

/**
 * A decision's identity. Acting on behalf of a ServiceUser, `username` is the subject (the
 * effective user) and `actor` the key's own; an external subject stays only the subject, since
 * keyward holds no user of that name. A refused subject is recorded as the subject asked for.
 */
function identityOf(outcome: Outcome): Identity {
  if (!('entry' in outcome)) return NO_IDENTITY;
  const { key } = outcome.entry;
  const own = { username: key.username, actor: key.username };
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

/** A header's value, or undefined when absent, empty or repeated (Node joins or lists repeats). */
function given(value: string | string[] | undefined): string | undefined {
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

/**
 * Method and path of the request each decision was asked for, as far as the webhook can tell.
 * A busy proxy asks for the same path again and again: the last one's clean-up is reused.
 */
class RequestLines {
  /** Of the request last given to `read` (no object per request). */
  method: string | null = null;
  path: string | null = null;
  #target: string | undefined;
  #cleanPath = '';
  #rawMethod: string | undefined;
  #cleanMethod = '';

  /** Reads the request's method and path; false when both are what the last request had. */
  read(route: Route, request: IncomingMessage): boolean {
    // The API server and an introspecting gateway do not say what their client asked for.
    if (route !== 'verify') {
      const changed = this.path !== null || this.method !== null;
      this.method = null;
      this.path = null;
      return changed;
    }
    const headers: IncomingHttpHeaders = request.headers;
    let target =
      given(headers['x-original-uri']) ??
      given(headers['x-forwarded-uri']) ??
      given(headers['x-original-url']);
    if (target === undefined) {
      const url = request.url ?? '/';
      // Envoy's path_prefix form: /verify/<original path>.
      target = url.startsWith(`${VERIFY_PREFIX}/`) ? url.slice(VERIFY_PREFIX.length) : url;
    }
    const method =
      given(headers['x-original-method']) ?? given(headers['x-forwarded-method']) ?? request.method ?? '';
    let changed = this.path === null;
    if (target !== this.#target) {
      this.#target = target;
      this.#cleanPath = logPath(target);
      changed = true;
    }
    if (method !== this.#rawMethod) {
      this.#rawMethod = method;
      this.#cleanMethod = clean(method, MAX_METHOD);
      changed = true;
    }
    this.method = this.#cleanMethod;
    this.path = this.#cleanPath;
    return changed;
  }
}

/** Distinct field sets remembered for reuse; past it the memory starts over (hostile variety cannot grow it). */
const MAX_SHARED_FIELDS = 1024;

/**
 * The entry of an outcome whose identity is its key's own (`null`: an outcome without a key), or
 * undefined when the key acted, or asked to act, on behalf of a subject.
 */
function ownEntry(outcome: Outcome): CacheEntry | null | undefined {
  if (!('entry' in outcome)) return null;
  if (outcome.kind === 'subject_refused') return undefined;
  if ((outcome.kind === 'allow' || outcome.kind === 'forbidden') && outcome.acting) return undefined;
  return outcome.entry;
}

/**
 * Turns each decision into a record (its time and its fields) for every sink. Nothing of the
 * request is copied but the path (cut as logPath says), the method, and the client address
 * (client-address.ts, the same the failed-attempt limit uses); the token is never looked at.
 *
 * A busy client sends the same method on behalf of the same user again and again: the recorder
 * hands out one shared RequestLogFields per distinct set (the key and the path, which vary, travel
 * beside it, as the strings the cache entry and the request's header already are), so a record
 * allocates nothing that outlives the request, whether the key is hot or every request brings
 * another (request-log-rows.ts).
 *
 * Decisions alike in everything within one millisecond are one record with a count (the sinks
 * keep them so, RecordQueue). The recorder counts the run it is in itself: a decision that
 * repeats the last one (the same cache entry, route, result, client and raw method and path in
 * the same millisecond, the usual case under load) touches this object and the request's headers
 * and nothing else. Sharing a core with other work, every further object read on the request
 * path is another likely cache miss: with each decision passed through to the sinks' queues, the
 * request log's code held 2.2 % of the webhook's CPU samples on cache hits, with runs 0.8 %
 * (perf, 2026-12-03; bench/README.md, request log cost). `settle` hands the open run over; the
 * sinks call it before each flush.
 */
export class RequestRecorder implements DecisionRecorder {
  readonly #sinks: readonly RowSink[];
  readonly #addresses: ClientAddress;
  readonly #clientHeader: string;
  // Most requests come through a handful of proxies: remember the last address worked out.
  #lastPeer: string | undefined;
  #lastForwarded: string | string[] | undefined;
  #lastAddress = '';
  readonly #lines = new RequestLines();
  #last: RequestLogFields | undefined;
  #own: Identity = NO_IDENTITY;
  #shared = new Map<string, RequestLogFields>();
  // The open run: like decisions counted, not yet handed to the sinks (#runCount 0: none).
  #runCount = 0;
  #runAt = Number.NaN;
  #runRoute: Route | undefined;
  #runEntry: CacheEntry | null | undefined;
  #runResult = '';
  #runReason = '';
  #runKeyId: string | null = null;
  #runFields: RequestLogFields | undefined;
  #runPath: string | null = null;

  constructor(options: { sinks: readonly RowSink[]; addresses: ClientAddress; clientIpHeader: string }) {
    this.#sinks = options.sinks;
    this.#addresses = options.addresses;
    this.#clientHeader = options.clientIpHeader;
  }

  record(
    route: Route,
    outcome: Outcome,
    result: string,
    reason: string,
    origin: IncomingMessage,
    at: number,
  ): void {
    if (route === 'leaks' || this.#sinks.length === 0) return;
    const entry = ownEntry(outcome);
    const lineChanged = this.#lines.read(route, origin);
    const peer = origin.socket.remoteAddress;
    const forwarded = origin.headers[this.#clientHeader];
    if (
      at === this.#runAt &&
      entry !== undefined &&
      entry === this.#runEntry &&
      route === this.#runRoute &&
      result === this.#runResult &&
      reason === this.#runReason &&
      !lineChanged &&
      peer === this.#lastPeer &&
      forwarded === this.#lastForwarded
    ) {
      this.#runCount += 1;
      return;
    }
    this.settle();
    const identity = entry === undefined ? identityOf(outcome) : this.#ownIdentity(entry);
    const clientAddress = this.#clientAddress(peer, forwarded, origin.headers);
    this.#runCount = 1;
    this.#runAt = at;
    this.#runRoute = route;
    this.#runEntry = entry;
    this.#runResult = result;
    this.#runReason = reason;
    this.#runKeyId = 'entry' in outcome ? outcome.entry.key.keyId : null;
    this.#runFields = this.#fields(route, identity, this.#lines.method, clientAddress, result, reason);
    this.#runPath = this.#lines.path;
  }

  /** Hands the open run, if any, to every sink. */
  settle(): void {
    const count = this.#runCount;
    if (count === 0) return;
    const at = this.#runAt;
    const fields = this.#runFields!;
    this.#runCount = 0;
    // No later decision can join a run already handed over.
    this.#runAt = Number.NaN;
    for (const sink of this.#sinks) sink.add(at, this.#runKeyId, fields, this.#runPath, count);
  }

  #fields(
    route: Exclude<Route, 'leaks'>,
    identity: Identity,
    method: string | null,
    clientAddress: string,
    result: string,
    reason: string,
  ): RequestLogFields {
    const last = this.#last?.values;
    if (
      last !== undefined &&
      last.route === route &&
      last.username === identity.username &&
      last.actor === identity.actor &&
      last.subject === identity.subject &&
      last.method === method &&
      last.client_address === clientAddress &&
      last.result === result &&
      last.reason === reason
    )
      return this.#last!;
    // Control characters are gone from every part (clean), so \x01 cannot occur inside one.
    const id = `${route}\x01${identity.username}\x01${identity.actor}\x01${identity.subject}\x01${method}\x01${clientAddress}\x01${result}\x01${reason}`;
    let fields = this.#shared.get(id);
    if (fields === undefined) {
      fields = new RequestLogFields({
        route,
        username: identity.username,
        actor: identity.actor,
        subject: identity.subject,
        method,
        client_address: clientAddress,
        result,
        reason,
      });
      if (this.#shared.size >= MAX_SHARED_FIELDS) this.#shared.clear();
      this.#shared.set(id, fields);
    }
    this.#last = fields;
    return fields;
  }

  /** identityOf for an entry acting for its own user (nearly every one), without a new object per request. */
  #ownIdentity(entry: CacheEntry | null): Identity {
    if (entry === null) return NO_IDENTITY;
    const { username } = entry.key;
    if (this.#own.username !== username) this.#own = { username, actor: username, subject: null };
    return this.#own;
  }

  #clientAddress(
    peer: string | undefined,
    forwarded: string | string[] | undefined,
    headers: IncomingHttpHeaders,
  ): string {
    if (peer !== this.#lastPeer || forwarded !== this.#lastForwarded) {
      this.#lastPeer = peer;
      this.#lastForwarded = forwarded;
      this.#lastAddress = this.#addresses.of(peer, headers);
    }
    return this.#lastAddress;
  }
}
