// A baseline of the throughput benchmark below Fastify: Node's own `http` answering /verify with 200
// and the same identity headers as the webhook (and bench/bare-fastify.ts), without looking
// anything up. Listens on $PORT.
import { createServer } from 'node:http';

const IDENTITY = {
  'x-keyward-user': 'bench-user',
  'x-keyward-key-id': 'key_0000000000000001',
  'x-keyward-scopes': 'projects:*',
  'x-keyward-groups': 'team-a,ops',
};

const server = createServer((request, response) => {
  const authorized = request.url === '/verify' && (request.headers.authorization ?? '').startsWith('Bearer ');
  response.writeHead(authorized ? 200 : 401, IDENTITY).end();
});
server.listen(Number(process.env.PORT ?? 8082), '127.0.0.1');
