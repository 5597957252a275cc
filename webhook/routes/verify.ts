import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isValidScope } from '../../api/scopes.js';
import { readSubject, SUBJECT_SCOPE_MESSAGE, subjectDenial } from '../acting.js';
import { type DenyReason, denyMessage, MISSING_MESSAGE } from '../decision.js';
import { type LimitCheck, rateLimitedMessage } from '../limits.js';
import { refuseLongUrl, startRequest } from '../request-start.js';
import type { Outcome } from '../verification.js';

const REALM = 'Bearer realm="keyward"';
const REQUIRED_SCOPE_HEADER = 'x-keyward-required-scope';
const BEARER = /^[Bb][Ee][Aa][Rr][Ee][Rr] +/;
const BEARER_PREFIX = 'Bearer ';
const SPACE = 0x20;
const FORBIDDEN_DESCRIPTION = 'The API key does not grant the required scope.';
/**
 * On every /verify answer, allow or deny. The webhook itself drops a revoked key at once (NOTIFY),
 * so any time an ingress kept an answer would only lengthen that window: a proxy that caches
 * auth subrequests (ingress-nginx `auth-cache-key`, nginx `proxy_cache`) must not store this one.
 * docs/ingress/README.md#the-auth-cache-trap.
 */
const VERIFY_CACHE_CONTROL = 'no-store';

/**
 * `ANY /verify` and `ANY /verify/*`. Everything a proxy sends besides credentials (original URL
 * and method, forwarded-for chains, the Envoy path suffix) is accepted and ignored: the decision
 * depends only on the token and the required scopes, so every proxy gets the same answer.
 * A request body is refused (413, connection closed) before a byte of it is read: no proxy
 * needs to forward one (Envoy's with_request_body and Traefik's forwardBody are off by default),
 * and reading one would let a client hold a connection and the event loop for as long as it likes.
 */
export async function verifyRoutes(app: FastifyInstance): Promise<void> {
  // With no body there is nothing to parse, whatever the content type says.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
  const { maxUrlBytes } = app.keyward.config;
  // Callback style: an async hook would cost a promise on every request.
  const log = app.log;
  app.addHook('onRequest', (request, reply, done) => {
    startRequest(request, reply, log);
    if (refuseLongUrl(request, reply, maxUrlBytes)) return;
    reply.header('cache-control', VERIFY_CACHE_CONTROL);
    if (hasBody(request)) {
      reply
        .code(413)
        .header('connection', 'close')
        .send({ error: 'payload_too_large', error_description: 'The verification request takes no body.' });
      return;
    }
    done();
  });
  app.all('/verify', verifyHandler);
  app.all('/verify/*', verifyHandler);
}

function hasBody(request: FastifyRequest): boolean {
  // Fastify's request.headers is a getter: read it once.
  const headers = request.headers;
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function verifyHandler(
  this: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply | Promise<FastifyReply> {
  const k = this.keyward;
  const token = bearerToken(request, k.config.tokenHeader);
  if (token === undefined) return answer(reply, k.verification.missing('verify', request, request.raw));
  const subject = readSubject(request.headers[k.config.subjectHeader]);
  const client = (): string => k.clientAddress(request);
  const scopes = requiredScopes(request);
  // Two literals rather than a spread: a spread of a conditional object copies it on every request.
  const outcome = k.verification.run(
    subject === undefined
      ? { route: 'verify', token, requiredScopes: scopes, client, origin: request.raw }
      : { route: 'verify', token, requiredScopes: scopes, client, subject, origin: request.raw },
    request,
  );
  return outcome instanceof Promise ? outcome.then((o) => answer(reply, o)) : answer(reply, outcome);
}

function answer(reply: FastifyReply, outcome: Outcome): FastifyReply {
  switch (outcome.kind) {
    case 'allow': {
      const { entry, acting } = outcome;
      if (outcome.limits) rateLimitHeaders(reply, outcome.limits);
      if (acting) {
        // On behalf of a subject: the subject is the user, the key's own user the actor.
        return reply
          .header('x-keyward-user', acting.subject)
          .header('x-keyward-actor', acting.actor)
          .header('x-keyward-key-id', entry.key.keyId)
          .header('x-keyward-scopes', acting.scopesHeader)
          .header('x-keyward-groups', acting.groupsHeader)
          .code(200)
          .send();
      }
      // Empty, not absent: a proxy copying the header then replaces whatever the client sent.
      return reply
        .header('x-keyward-user', entry.key.username)
        .header('x-keyward-actor', '')
        .header('x-keyward-key-id', entry.key.keyId)
        .header('x-keyward-scopes', entry.scopesHeader)
        .header('x-keyward-groups', entry.groupsHeader)
        .code(200)
        .send();
    }
    case 'subject_refused': {
      const { status, message } = subjectDenial(outcome.reason);
      return reply.code(status).send({ error: outcome.reason, error_description: message });
    }
    case 'forbidden': {
      // Echo the scope only when it is grammatical: it comes from the request, and a header value
      // built from arbitrary input could be made to carry anything.
      const scope = isValidScope(outcome.requiredScope) ? `, scope="${outcome.requiredScope}"` : '';
      const description = outcome.acting ? SUBJECT_SCOPE_MESSAGE : FORBIDDEN_DESCRIPTION;
      return reply
        .code(403)
        .header(
          'www-authenticate',
          `${REALM}, error="insufficient_scope", error_description="${description}"${scope}`,
        )
        .send({ error: 'insufficient_scope', error_description: description });
    }
    case 'limited':
      return reply
        .code(429)
        .header('retry-after', String(Math.max(1, Math.ceil(outcome.retryAfterMs / 1000))))
        .send({ error: 'too_many_requests', error_description: 'Too many failed attempts; retry later.' });
    case 'rate_limited': {
      const { limits } = outcome;
      rateLimitHeaders(reply, limits);
      // A quota that never refills has no honest Retry-After: the key stays refused until it is raised.
      if (limits.retryAfterSeconds !== undefined)
        reply.header('retry-after', String(limits.retryAfterSeconds));
      return reply.code(429).send({ error: 'rate_limited', error_description: rateLimitedMessage(limits) });
    }
    case 'unavailable':
      return reply.code(503).header('retry-after', '1').send({
        error: 'temporarily_unavailable',
        error_description: 'Verification is temporarily unavailable.',
      });
    default: {
      if (outcome.reason === 'missing') {
        // RFC 6750 §3.1: a request without credentials gets the challenge without an error code.
        return reply
          .code(401)
          .header('www-authenticate', REALM)
          .send({ error: 'unauthorized', error_description: MISSING_MESSAGE });
      }
      const message = denyMessage(outcome.reason);
      return reply
        .code(401)
        .header('www-authenticate', invalidTokenChallenge(outcome.reason, message))
        .send({ error: 'invalid_token', error_description: message });
    }
  }
}

/** One challenge string per deny reason, built once: garbage tokens all get the same 401. */
const CHALLENGES = new Map<DenyReason, string>();

function invalidTokenChallenge(reason: DenyReason, message: string): string {
  let challenge = CHALLENGES.get(reason);
  if (challenge === undefined) {
    challenge = `${REALM}, error="invalid_token", error_description="${message}"`;
    CHALLENGES.set(reason, challenge);
  }
  return challenge;
}

/** draft-ietf-httpapi-ratelimit-headers: the policies, and where the client stands in each. */
function rateLimitHeaders(reply: FastifyReply, limits: LimitCheck): void {
  reply.header('ratelimit-policy', limits.policyHeader).header('ratelimit', limits.stateHeader);
}

/**
 * The presented token: `Authorization: Bearer <token>`, else the configured header's whole value.
 * An Authorization header with another scheme (Basic from a browser) does not hide the token
 * header. Whitespace around the token is tolerated; anything else is the parser's to reject.
 */
function bearerToken(request: FastifyRequest, tokenHeader: string | null): string | undefined {
  const headers = request.headers;
  const authorization = headers.authorization;
  if (typeof authorization === 'string') {
    // What every proxy sends, without the regex: the scheme as RFC 6750 spells it and one space.
    if (authorization.startsWith(BEARER_PREFIX) && authorization.charCodeAt(BEARER_PREFIX.length) !== SPACE) {
      return authorization.slice(BEARER_PREFIX.length).trim();
    }
    const scheme = BEARER.exec(authorization);
    if (scheme) return authorization.slice(scheme[0].length).trim();
  }
  if (tokenHeader !== null) {
    const value = headers[tokenHeader];
    if (typeof value === 'string' && value !== '') return value.trim();
    // A repeated header arrives as an array (or joined with ", "): ambiguous, so invalid.
    if (Array.isArray(value)) return value.join(',');
  }
  return undefined;
}

/** Most requests name no scope: they share this one array instead of a new empty one each. */
const NO_SCOPES: readonly string[] = Object.freeze([]);

function requiredScopes(request: FastifyRequest): readonly string[] {
  const query = (request.query as Record<string, unknown> | undefined)?.scope;
  const header = request.headers[REQUIRED_SCOPE_HEADER];
  if (query === undefined && header === undefined) return NO_SCOPES;
  const out: string[] = [];
  if (typeof query === 'string') out.push(query);
  else if (Array.isArray(query)) for (const q of query) if (typeof q === 'string') out.push(q);
  if (typeof header === 'string') {
    for (const part of header.split(',')) {
      const scope = part.trim();
      if (scope !== '') out.push(scope);
    }
  }
  return out;
}
