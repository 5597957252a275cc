import { createHash, timingSafeEqual } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';

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
 * `token`). Nothing configured: everyone is refused. Only digests are kept in memory.
 */
export class Callers {
  readonly #introspect: readonly Buffer[];
  readonly #tokenReview: readonly Buffer[];

  constructor(options: {
    readonly introspect: ReadonlyArray<{ readonly clientId: string; readonly secret: string }>;
    readonly tokenReview: readonly string[];
  }) {
    this.#introspect = options.introspect.map((c) => digest(`${c.clientId}:${c.secret}`));
    this.#tokenReview = options.tokenReview.map(digest);
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
    if (typeof header !== 'string' || this.#tokenReview.length === 0) return false;
    const match = BEARER.exec(header);
    return match?.[1] !== undefined && matchesAny(match[1], this.#tokenReview);
  }
}
