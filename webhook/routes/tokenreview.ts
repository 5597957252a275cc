import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { requireCaller } from '../callers.js';
import { denyMessage, GENERIC_MESSAGE, kubernetesGroups } from '../decision.js';
import { rateLimitedMessage } from '../limits.js';
import {
  type TokenReviewRequest,
  type TokenReviewStatus,
  tokenReviewRequest,
} from '../schemas/tokenreview.js';
import type { Outcome } from '../verification.js';

const CALLER = requireCaller({
  route: 'tokenreview',
  accepts: (callers, request) => callers.tokenReview(request),
  challenge: 'Bearer realm="keyward-tokenreview"',
  error: { error: 'unauthorized', error_description: 'The caller is not authenticated.' },
});

/**
 * `POST /tokenreview` for kube-apiserver's `--authentication-token-webhook-config-file`. Only an
 * authenticated caller is answered (a client certificate from the configured CA, or a configured
 * bearer credential); anyone else gets 401, and with nothing configured that is everyone: an
 * open TokenReview endpoint would be an oracle for every key. Caller failures count as failed
 * attempts of the caller's address; the tokens under review do not (the API server relays all
 * its clients' tokens, and limiting it would lock them all out).
 *
 * The answer is always a TokenReview of the version asked, so the API server can read it; a
 * token that fails is `authenticated: false` with the reason, never an HTTP error. Only an
 * unreadable review gets 400, and only a store outage for an uncached token 503, which the API
 * server retries and otherwise treats as a failure.
 */
export async function tokenReviewRoutes(app: FastifyInstance): Promise<void> {
  app.post('/tokenreview', { bodyLimit: 64 * 1024, onRequest: CALLER }, tokenReview);
}

function tokenReview(
  this: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply | Promise<FastifyReply> {
  const k = this.keyward;
  const parsed = tokenReviewRequest.safeParse(request.body);
  if (!parsed.success) {
    k.metrics.decision('tokenreview', 'invalid_request', 'bad_review');
    return reply.code(400).send({
      error: 'invalid_request',
      error_description: 'Expected an authentication.k8s.io/v1 TokenReview with spec.token.',
    });
  }
  const review = parsed.data;
  const scope = k.config.tokenReviewScope;
  const outcome = k.verification.run(
    {
      route: 'tokenreview',
      token: review.spec.token.trim(),
      requiredScopes: scope === undefined ? [] : [scope],
      kubernetes: true,
      client: undefined,
      origin: request.raw,
    },
    request,
  );
  return outcome instanceof Promise
    ? outcome.then((o) => answer(reply, review, o, k.config.tokenReviewGroupsPrefix))
    : answer(reply, review, outcome, k.config.tokenReviewGroupsPrefix);
}

function answer(
  reply: FastifyReply,
  review: TokenReviewRequest,
  outcome: Outcome,
  groupsPrefix: string,
): FastifyReply {
  const respond = (status: TokenReviewStatus, code = 200): FastifyReply =>
    reply.code(code).send({ apiVersion: review.apiVersion, kind: 'TokenReview', status });
  switch (outcome.kind) {
    case 'allow': {
      const { key } = outcome.entry;
      return respond({
        authenticated: true,
        user: {
          username: `keyward:${key.username}`,
          uid: key.userId,
          groups: kubernetesGroups(key.groups, groupsPrefix),
          extra: { 'keyward.dev/key-id': [key.keyId], 'keyward.dev/scopes': [...outcome.entry.scopes] },
        },
      });
    }
    case 'denied':
      return respond({ authenticated: false, error: denyMessage(outcome.reason) });
    case 'forbidden':
      return respond({
        authenticated: false,
        error: `The API key does not grant the scope ${outcome.requiredScope}.`,
      });
    case 'rate_limited':
      return respond({ authenticated: false, error: rateLimitedMessage(outcome.limits) });
    case 'unavailable':
      reply.header('retry-after', '1');
      return respond({ authenticated: false, error: 'Verification is temporarily unavailable.' }, 503);
    default:
      // Token failures are not limited here (client undefined), so this is an invalid token.
      return respond({ authenticated: false, error: GENERIC_MESSAGE });
  }
}
