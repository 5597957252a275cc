import type { FastifyInstance } from 'fastify';

/** Liveness, readiness and metrics: cheap, unauthenticated, for the kubelet and Prometheus. */
export async function healthRoutes(app: FastifyInstance): Promise<void> {
  // Liveness says only that the event loop answers: restarting the webhook fixes neither a
  // store outage nor a lost listener, and would throw away the cache that bridges the outage.
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async function readyz(_request, reply) {
    const state = await this.keyward.readiness();
    return reply.code(state.ready ? 200 : 503).send(state);
  });

  app.get('/metrics', async function metrics(_request, reply) {
    const k = this.keyward;
    k.metrics.cacheEntries.labels('positive').set(k.cache.size);
    k.metrics.cacheEntries.labels('negative').set(k.cache.negativeSize);
    const text = await k.metrics.registry.metrics();
    return reply.header('content-type', k.metrics.registry.contentType).send(text);
  });
}
