import type { FastifyInstance } from 'fastify';

/** Liveness and readiness: cheap, unauthenticated, for the kubelet. Metrics are on their own port. */
export async function healthRoutes(app: FastifyInstance): Promise<void> {
  // Liveness says only that the event loop answers: restarting the webhook fixes neither a
  // store outage nor a lost listener, and would throw away the cache that bridges the outage.
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async function readyz(_request, reply) {
    const state = await this.keyward.readiness();
    return reply.code(state.ready ? 200 : 503).send(state);
  });
}
