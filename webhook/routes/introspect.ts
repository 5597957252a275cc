import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { decide } from '../decision.js';

const BASIC = /^[Bb][Aa][Ss][Ii][Cc] +([A-Za-z0-9+/=]{1,1024}) *$/;
const INACTIVE = { active: false } as const;

/**
 * `POST /introspect`, RFC 7662. Callers authenticate with HTTP Basic against
 * KEYWARD_INTROSPECT_CREDENTIALS (client_secret_basic, as OAuth gateways do by default); with
 * none configured every call is refused. Any token that does not verify gets `{"active":false}`
 * and nothing else, as §2.2 requires. Failed caller authentications count towards the caller's
 * failed-attempt limit; the tokens it asks about do not (they are its clients' failures).
 */
export async function introspectRoutes(app: FastifyInstance): Promise<void> {
  const digests = app.keyward.config.introspectCredentials.map((c) => digest(`${c.clientId}:${c.secret}`));
  app.post(
    '/introspect',
    { bodyLimit: 16 * 1024 },
    async function introspect(request, reply): Promise<FastifyReply> {
      const k = this.keyward;
      reply.header('cache-control', 'no-store');
      const client = k.clientAddress(request);
      const blockedMs = k.limiter.blockedFor(client);
      if (blockedMs > 0) {
        k.metrics.decision('introspect', 'limited', 'too_many_failures');
        return reply
          .code(429)
          .header('retry-after', String(Math.max(1, Math.ceil(blockedMs / 1000))))
          .send({ error: 'too_many_requests', error_description: 'Too many failed attempts; retry later.' });
      }
      if (!callerAuthenticated(request, digests)) {
        k.limiter.recordFailure(client);
        k.metrics.decision('introspect', 'unauthorized', 'caller');
        return reply
          .code(401)
          .header('www-authenticate', 'Basic realm="keyward-introspect"')
          .send({ error: 'invalid_client', error_description: 'Client authentication failed.' });
      }
      const token = (request.body as Record<string, unknown> | null | undefined)?.token;
      if (typeof token !== 'string' || token === '') {
        k.metrics.decision('introspect', 'invalid_request', 'no_token');
        return reply
          .code(400)
          .send({ error: 'invalid_request', error_description: 'The token parameter is required.' });
      }
      const resolution = await k.verifier.resolve(token);
      k.metrics.observe('introspect', reply.elapsedTime / 1000);
      if (resolution.kind === 'unavailable') {
        k.metrics.decision('introspect', 'unavailable', 'store_unavailable');
        return reply.code(503).header('retry-after', '1').send({
          error: 'temporarily_unavailable',
          error_description: 'Introspection is temporarily unavailable.',
        });
      }
      if (resolution.kind === 'invalid') {
        k.metrics.decision('introspect', 'deny', resolution.reason);
        return reply.code(200).send(INACTIVE);
      }
      const { entry } = resolution;
      const key = entry.key;
      const decision = decide(entry, k.now());
      if (decision.result !== 'allow') {
        k.metrics.decision(
          'introspect',
          'deny',
          decision.result === 'deny' ? decision.reason : 'insufficient_scope',
        );
        return reply.code(200).send(INACTIVE);
      }
      k.metrics.decision('introspect', 'allow', 'ok');
      const issued = key.rotatedAt ?? key.issuedAt;
      return reply.code(200).send({
        active: true,
        scope: entry.scopes.join(' '),
        username: key.username,
        sub: key.userId,
        client_id: key.keyId,
        token_type: 'Bearer',
        ...(Number.isFinite(entry.deadline) ? { exp: Math.floor(entry.deadline / 1000) } : {}),
        iat: Math.floor(issued.getTime() / 1000),
      });
    },
  );
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Compares against every configured credential, in constant time per comparison. */
function callerAuthenticated(request: FastifyRequest, digests: readonly Buffer[]): boolean {
  const header = request.headers.authorization;
  if (typeof header !== 'string' || digests.length === 0) return false;
  const match = BASIC.exec(header);
  if (!match?.[1]) return false;
  const presented = digest(Buffer.from(match[1], 'base64').toString('utf8'));
  let ok = false;
  for (const expected of digests) ok = timingSafeEqual(presented, expected) || ok;
  return ok;
}
