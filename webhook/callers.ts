import { createHash, timingSafeEqual } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import type { Route } from './metrics.js';

const BASIC = /^[Bb][Aa][Ss][Ii][Cc] +([A-Za-z0-9+/=]{1,1024}) *$/;
const BEARER = /^[Bb][Ee][Aa][Rr][Ee][Rr] +(\S{1,4096}) *$/;

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Compares against every configured digest, in constant time per comparison. */
function matchesAny(presented: string, digests: readonly Buffer[]): boolean {
  const actual = digest(presented);
  let ok = false;
  for (const expected of digests) ok = timingSafeEqual(actual, expected) || ok;
  return ok;
}

/**
 * Who may call the routes that are not for ingress controllers. /introspect: HTTP Basic with a
 * configured `client:secret` (client_secret_basic, as OAuth gateways do by default). /tokenreview:
 * a client certificate verified against KEYWARD_TLS_CLIENT_CA_FILE (kube-apiserver's
 * `client-certificate` in its webhook kubeconfig), or a configured bearer credential (its
 * `token`). /leaks: a configured bearer credential. Nothing configured: everyone is refused. Only digests are kept in memory.
 */
export class Callers {
  readonly #introspect: readonly Buffer[];
  readonly #tokenReview: readonly Buffer[];
  readonly #leakReport: readonly Buffer[];

  constructor(options: {
    readonly introspect: ReadonlyArray<{ readonly clientId: string; readonly secret: string }>;
    readonly tokenReview: readonly string[];
    readonly leakReport?: readonly string[];
  }) {
    this.#introspect = options.introspect.map((c) => digest(`${c.clientId}:${c.secret}`));
    this.#tokenReview = options.tokenReview.map(digest);
    this.#leakReport = (options.leakReport ?? []).map(digest);
  }

  introspection(request: FastifyRequest): boolean {
    const header = request.headers.authorization;
    if (typeof header !== 'string' || this.#introspect.length === 0) return false;
    const match = BASIC.exec(header);
    if (!match?.[1]) return false;
    return matchesAny(Buffer.from(match[1], 'base64').toString('utf8'), this.#introspect);
  }

  tokenReview(request: FastifyRequest): boolean {
    // Set only on a TLS socket whose client certificate the configured CA verified.
    if ((request.raw.socket as Partial<TLSSocket>).authorized === true) return true;
    const header = request.headers.authorization;
    return typeof header === 'string' && bearerMatches(header, this.#tokenReview);
  }

  /** /leaks: a configured bearer credential (a relay that has checked GitHub's signature). */
  leakReport(request: FastifyRequest): boolean {
    const header = request.headers.authorization;
    return typeof header === 'string' && bearerMatches(header, this.#leakReport);
  }
}

function bearerMatches(header: string, digests: readonly Buffer[]): boolean {
  if (digests.length === 0) return false;
  const match = BEARER.exec(header);
  return match?.[1] !== undefined && matchesAny(match[1], digests);
}

export interface CallerGate {
  readonly route: Exclude<Route, 'verify'>;
  /** Which check of Callers applies. */
  readonly accepts: (callers: Callers, request: FastifyRequest) => boolean;
  /** WWW-Authenticate of the 401. */
  readonly challenge: string;
  readonly error: { readonly error: string; readonly error_description: string };
}

/**
 * An onRequest hook that lets only an authenticated caller through, before the body is read.
 * A failed authentication counts against the caller's address; an address over its limit gets
 * 429 without being checked at all.
 */
export function requireCaller(gate: CallerGate): onRequestHookHandler {
  return function check(this: FastifyInstance, request: FastifyRequest, reply: FastifyReply, done): void {
    const k = this.keyward;
    const client = k.clientAddress(request);
    const blockedMs = k.limiter.blockedFor(client);
    if (blockedMs > 0) {
      k.metrics.decision(gate.route, 'limited', 'too_many_failures');
      reply
        .code(429)
        .header('retry-after', String(Math.max(1, Math.ceil(blockedMs / 1000))))
        .send({ error: 'too_many_requests', error_description: 'Too many failed attempts; retry later.' });
      return;
    }
    if (!gate.accepts(k.callers, request)) {
      k.limiter.recordFailure(client);
      k.metrics.decision(gate.route, 'unauthorized', 'caller');
      reply.code(401).header('www-authenticate', gate.challenge).send(gate.error);
      return;
    }
    done();
  };
}
