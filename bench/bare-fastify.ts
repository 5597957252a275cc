// The baseline of the throughput benchmark: a bare Fastify route that answers /verify the way the
// webhook answers a cache hit — status 200, no body, the same response headers (cache-control and
// the five identity headers, x-keyward-actor empty) and the same keep-alive timeout — without
// looking anything up. Listens on $PORT. Nothing more and nothing less, so the ratio is the cost
// of keyward's own work per request.
import Fastify from 'fastify';

/** The webhook's default KEYWARD_HTTP_KEEPALIVE_TIMEOUT: it is echoed in every Keep-Alive header. */
const KEEP_ALIVE_TIMEOUT_MS = 75_000;

const app = Fastify({ logger: false, keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS });
app.all('/verify', async (request, reply) => {
  const authorization = request.headers.authorization ?? '';
  return reply
    .code(authorization.startsWith('Bearer ') ? 200 : 401)
    .header('cache-control', 'no-store')
    .header('x-keyward-user', 'bench-user')
    .header('x-keyward-actor', '')
    .header('x-keyward-key-id', 'key_0000000000000001')
    .header('x-keyward-scopes', 'projects:*')
    .header('x-keyward-groups', 'team-a,ops')
    .send();
});
// Exit on SIGTERM (rather than die of it) so that a run under `node --cpu-prof` writes its profile.
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 8081) });
