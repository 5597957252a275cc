// The baseline of the throughput benchmark: a bare Fastify route that answers /verify with 200 and
// the same identity headers as the webhook, without looking anything up. Listens on $PORT.
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.all('/verify', async (request, reply) => {
  const authorization = request.headers.authorization ?? '';
  return reply
    .code(authorization.startsWith('Bearer ') ? 200 : 401)
    .header('x-keyward-user', 'bench-user')
    .header('x-keyward-key-id', 'key_0000000000000001')
    .header('x-keyward-scopes', 'projects:*')
    .header('x-keyward-groups', 'team-a,ops')
    .send();
});
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 8081) });
