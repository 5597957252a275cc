import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { requireCaller } from '../callers.js';
import { type ActiveIntrospection, introspectionRequest } from '../schemas/introspection.js';
import type { Outcome } from '../verification.js';

const INACTIVE = { active: false } as const;

const CALLER = requireCaller({
  route: 'introspect',
  accepts: (callers, request) => callers.introspection(request),
  challenge: 'Basic realm="keyward-introspect"',
  error: { error: 'invalid_client', error_description: 'Client authentication failed.' },
});

/** §2.2: introspection answers, the 401 included, must not be cached. */
function noStore(_request: FastifyRequest, reply: FastifyReply, done: () => void): void {
  reply.header('cache-control', 'no-store');
  done();
}

/**
 * `POST /introspect`, RFC 7662. Callers authenticate with HTTP Basic against
 * KEYWARD_INTROSPECT_CREDENTIALS; with none configured every call is refused. Any token that
 * does not verify gets `{"active":false}` and nothing else, as §2.2 requires. Failed caller
 * authentications count towards the caller's failed-attempt limit; the tokens it asks about do
 * not (they are its clients' failures).
 */
export async function introspectRoutes(app: FastifyInstance): Promise<void> {
  app.post('/introspect', { bodyLimit: 16 * 1024, onRequest: [noStore, CALLER] }, introspect);
}

function introspect(
  this: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply | Promise<FastifyReply> {
  const k = this.keyward;
  const parsed = introspectionRequest.safeParse(request.body);
  if (!parsed.success) {
    k.metrics.decision('introspect', 'invalid_request', 'no_token');
    return reply
      .code(400)
      .send({ error: 'invalid_request', error_description: 'The token parameter is required.' });
  }
  const outcome = k.verification.run(
    {
      route: 'introspect',
      token: parsed.data.token,
      requiredScopes: [],
      client: undefined,
      origin: request.raw,
    },
    request,
  );
  return outcome instanceof Promise ? outcome.then((o) => answer(reply, o)) : answer(reply, outcome);
}

function answer(reply: FastifyReply, outcome: Outcome): FastifyReply {
  if (outcome.kind === 'unavailable') {
    return reply.code(503).header('retry-after', '1').send({
      error: 'temporarily_unavailable',
      error_description: 'Introspection is temporarily unavailable.',
    });
  }
  if (outcome.kind !== 'allow') return reply.code(200).send(INACTIVE);
  const { entry } = outcome;
  const { key } = entry;
  const issued = key.rotatedAt ?? key.issuedAt;
  const body: ActiveIntrospection = {
    active: true,
    scope: entry.scopes.join(' '),
    username: key.username,
    sub: key.userId,
    client_id: key.keyId,
    token_type: 'Bearer',
    ...(Number.isFinite(entry.deadline) ? { exp: Math.floor(entry.deadline / 1000) } : {}),
    iat: Math.floor(issued.getTime() / 1000),
  };
  return reply.code(200).send(body);
}
