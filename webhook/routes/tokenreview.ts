import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { anyScopeCovers } from '../../api/scopes.js';
import { decide, denyMessage, GENERIC_MESSAGE, kubernetesGroups } from '../decision.js';

/** A key whose namespace no AccessPolicy lets authenticate to Kubernetes is not a Kubernetes credential. */
const NOT_A_KUBERNETES_CREDENTIAL = 'The API key is not allowed to authenticate to Kubernetes.';

const API_VERSIONS = new Set(['authentication.k8s.io/v1', 'authentication.k8s.io/v1beta1']);

interface TokenReviewStatus {
  authenticated: boolean;
  user?: { username: string; uid: string; groups: string[]; extra: Record<string, string[]> };
  error?: string;
}

/**
 * `POST /tokenreview` for kube-apiserver's `--authentication-token-webhook-config-file`. The
 * answer is always a TokenReview of the version asked (v1, and v1beta1 which has the same
 * shape), so the API server can read it; a token that fails is `authenticated: false` with
 * the reason, never an HTTP error. Only an unreadable review gets 400, and only a store outage
 * for an uncached token 503, which the API server retries and otherwise treats as a failure.
 * status.audiences stays empty: keys are not audience-bound, and an empty list tells the API
 * server the token is valid for the audiences it asked about.
 */
export async function tokenReviewRoutes(app: FastifyInstance): Promise<void> {
  app.post('/tokenreview', { bodyLimit: 64 * 1024 }, tokenReview);
}

async function tokenReview(
  this: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const k = this.keyward;
  const body = request.body as { apiVersion?: unknown; kind?: unknown; spec?: { token?: unknown } } | null;
  const apiVersion = body?.apiVersion;
  if (
    typeof apiVersion !== 'string' ||
    !API_VERSIONS.has(apiVersion) ||
    body?.kind !== 'TokenReview' ||
    typeof body.spec !== 'object' ||
    body.spec === null ||
    typeof body.spec.token !== 'string'
  ) {
    k.metrics.decision('tokenreview', 'invalid_request', 'bad_review');
    return reply.code(400).send({
      error: 'invalid_request',
      error_description: 'Expected an authentication.k8s.io/v1 TokenReview with spec.token.',
    });
  }
  const respond = (status: TokenReviewStatus): FastifyReply => {
    k.metrics.observe('tokenreview', reply.elapsedTime / 1000);
    return reply.code(200).send({ apiVersion, kind: 'TokenReview', status });
  };
  const resolution = await k.verifier.resolve(body.spec.token.trim());
  if (resolution.kind === 'unavailable') {
    k.metrics.decision('tokenreview', 'unavailable', 'store_unavailable');
    return reply
      .code(503)
      .header('retry-after', '1')
      .send({
        apiVersion,
        kind: 'TokenReview',
        status: { authenticated: false, error: 'Verification is temporarily unavailable.' },
      });
  }
  if (resolution.kind === 'invalid') {
    k.metrics.decision('tokenreview', 'deny', resolution.reason);
    return respond({ authenticated: false, error: GENERIC_MESSAGE });
  }
  const { entry } = resolution;
  const key = entry.key;
  const decision = decide(entry, k.now());
  if (decision.result !== 'allow') {
    const reason = decision.result === 'deny' ? decision.reason : 'insufficient_scope';
    k.usage.record(key.apiKeyId, 'denied');
    k.metrics.decision('tokenreview', 'deny', reason);
    return respond({
      authenticated: false,
      error: decision.result === 'deny' ? denyMessage(decision.reason) : GENERIC_MESSAGE,
    });
  }
  if (!key.kubernetesAuthentication) {
    k.usage.record(key.apiKeyId, 'denied');
    k.metrics.decision('tokenreview', 'deny', 'kubernetes_authentication');
    return respond({ authenticated: false, error: NOT_A_KUBERNETES_CREDENTIAL });
  }
  const scope = k.config.tokenReviewScope;
  if (scope !== undefined && !anyScopeCovers(entry.scopes, scope)) {
    k.usage.record(key.apiKeyId, 'denied');
    k.metrics.decision('tokenreview', 'forbidden', 'insufficient_scope');
    return respond({ authenticated: false, error: `The API key does not grant the scope ${scope}.` });
  }
  k.usage.record(key.apiKeyId, 'allowed');
  k.metrics.decision('tokenreview', 'allow', 'ok');
  return respond({
    authenticated: true,
    user: {
      username: `keyward:${key.username}`,
      uid: key.userId,
      groups: kubernetesGroups(key.groups, k.config.tokenReviewGroupsPrefix),
      extra: { 'keyward.dev/key-id': [key.keyId], 'keyward.dev/scopes': [...entry.scopes] },
    },
  });
}
