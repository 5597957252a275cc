import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isValidScope } from '../../api/scopes.js';
import { type DenyReason, decide, denyMessage, MISSING_MESSAGE } from '../decision.js';
import type { Resolution } from '../verifier.js';

const REALM = 'Bearer realm="keyward"';
const REQUIRED_SCOPE_HEADER = 'x-keyward-required-scope';
const BEARER = /^[Bb][Ee][Aa][Rr][Ee][Rr] +/;

/**
 * `ANY /verify` and `ANY /verify/*`. Everything a proxy sends besides credentials (original URL
 * and method, forwarded-for chains, the Envoy path suffix) is accepted and ignored: the decision
 * depends only on the token and the required scopes, so every proxy gets the same answer.
 */
export async function verifyRoutes(app: FastifyInstance): Promise<void> {
  // The body of the proxied request (Envoy and Traefik may forward it) is never needed: drain
  // it unparsed, so no content type, size or encoding can turn into a 4xx or 5xx here.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => {
    payload.resume();
    done(null, undefined);
  });
  app.all('/verify', verifyHandler);
  app.all('/verify/*', verifyHandler);
}

function verifyHandler(
  this: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply | Promise<FastifyReply> {
  const k = this.keyward;
  const token = bearerToken(request, k.config.tokenHeader);
  if (token === undefined) return deny(this, reply, 'missing');
  const required = requiredScopes(request);
  const client = k.clientAddress(request);
  const blockedMs = k.limiter.blockedFor(client);
  const first = k.verifier.resolveCached(token);
  if (blockedMs > 0) {
    // A limited address still gets answers for keys already cached as valid, so a legitimate
    // client behind the same NAT as an attacker keeps working; nothing else reaches the store.
    if (first.kind !== 'key' || decide(first.entry, k.now(), required).result !== 'allow') {
      return limited(this, reply, blockedMs);
    }
  }
  if (first.kind === 'pending') {
    return k.verifier
      .complete(first)
      .then((resolution) => answer(this, request, reply, resolution, required, client));
  }
  return answer(this, request, reply, first, required, client);
}

function answer(
  app: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
  resolution: Resolution,
  required: readonly string[],
  client: string,
): FastifyReply {
  const k = app.keyward;
  if (resolution.kind === 'unavailable') {
    k.metrics.decision('verify', 'unavailable', 'store_unavailable');
    observe(app, reply);
    return reply.code(503).header('retry-after', '1').send({
      error: 'temporarily_unavailable',
      error_description: 'Verification is temporarily unavailable.',
    });
  }
  if (resolution.kind === 'invalid') {
    k.limiter.recordFailure(client);
    if (resolution.displayPrefix !== undefined) {
      request.log.debug(
        { tokenPrefix: resolution.displayPrefix, reason: resolution.reason },
        'token rejected',
      );
    }
    return deny(app, reply, resolution.reason);
  }
  const { entry } = resolution;
  const decision = decide(entry, k.now(), required);
  const key = entry.key;
  if (decision.result === 'allow') {
    k.usage.record(key.apiKeyId, 'allowed');
    k.metrics.decision('verify', 'allow', 'ok');
    observe(app, reply);
    return reply
      .header('x-keyward-user', key.username)
      .header('x-keyward-key-id', key.keyId)
      .header('x-keyward-scopes', entry.scopesHeader)
      .header('x-keyward-groups', entry.groupsHeader)
      .code(200)
      .send();
  }
  k.usage.record(key.apiKeyId, 'denied');
  if (decision.result === 'forbidden') {
    request.log.debug({ keyId: key.keyId, tokenPrefix: resolution.displayPrefix }, 'insufficient scope');
    k.metrics.decision('verify', 'forbidden', 'insufficient_scope');
    observe(app, reply);
    const description = 'The API key does not grant the required scope.';
    // Echo the scope only when it is grammatical: it comes from the request, and a header value
    // built from arbitrary input could be made to carry anything.
    const scope = isValidScope(decision.requiredScope) ? `, scope="${decision.requiredScope}"` : '';
    return reply
      .code(403)
      .header(
        'www-authenticate',
        `${REALM}, error="insufficient_scope", error_description="${description}"${scope}`,
      )
      .send({ error: 'insufficient_scope', error_description: description });
  }
  k.limiter.recordFailure(client);
  request.log.debug(
    { keyId: key.keyId, tokenPrefix: resolution.displayPrefix, reason: decision.reason },
    'key rejected',
  );
  return deny(app, reply, decision.reason);
}

function deny(app: FastifyInstance, reply: FastifyReply, reason: DenyReason): FastifyReply {
  app.keyward.metrics.decision('verify', 'deny', reason);
  observe(app, reply);
  const message = denyMessage(reason);
  if (reason === 'missing') {
    // RFC 6750 §3.1: a request without credentials gets the challenge without an error code.
    return reply
      .code(401)
      .header('www-authenticate', REALM)
      .send({ error: 'unauthorized', error_description: MISSING_MESSAGE });
  }
  return reply
    .code(401)
    .header('www-authenticate', `${REALM}, error="invalid_token", error_description="${message}"`)
    .send({ error: 'invalid_token', error_description: message });
}

function limited(app: FastifyInstance, reply: FastifyReply, blockedMs: number): FastifyReply {
  app.keyward.metrics.decision('verify', 'limited', 'too_many_failures');
  observe(app, reply);
  return reply
    .code(429)
    .header('retry-after', String(Math.max(1, Math.ceil(blockedMs / 1000))))
    .send({ error: 'too_many_requests', error_description: 'Too many failed attempts; retry later.' });
}

function observe(app: FastifyInstance, reply: FastifyReply): void {
  app.keyward.metrics.observe('verify', reply.elapsedTime / 1000);
}

/**
 * The presented token: `Authorization: Bearer <token>`, else the configured header's whole value.
 * An Authorization header with another scheme (Basic from a browser) does not hide the token
 * header. Whitespace around the token is tolerated; anything else is the parser's to reject.
 */
export function bearerToken(request: FastifyRequest, tokenHeader: string | null): string | undefined {
  const authorization = request.headers.authorization;
  if (typeof authorization === 'string') {
    const scheme = BEARER.exec(authorization);
    if (scheme) return authorization.slice(scheme[0].length).trim();
  }
  if (tokenHeader !== null) {
    const value = request.headers[tokenHeader];
    if (typeof value === 'string' && value !== '') return value.trim();
    // A repeated header arrives as an array (or joined with ", "): ambiguous, so invalid.
    if (Array.isArray(value)) return value.join(',');
  }
  return undefined;
}

function requiredScopes(request: FastifyRequest): string[] {
  const out: string[] = [];
  const query = (request.query as Record<string, unknown> | undefined)?.scope;
  if (typeof query === 'string') out.push(query);
  else if (Array.isArray(query)) for (const q of query) if (typeof q === 'string') out.push(q);
  const header = request.headers[REQUIRED_SCOPE_HEADER];
  if (typeof header === 'string') {
    for (const part of header.split(',')) {
      const scope = part.trim();
      if (scope !== '') out.push(scope);
    }
  }
  return out;
}
