// A reported baseline of the throughput benchmark: bare Node `http`, no framework, answering
// /verify with the webhook's cache-hit answer (status 200, no body, the same response headers and
// keep-alive timeout as bench/bare-fastify.ts). What it leaves to the Fastify baseline is
// Fastify's own cost per request. Listens on $PORT.
import { createServer } from 'node:http';

/** The webhook's default KEYWARD_HTTP_KEEPALIVE_TIMEOUT: it is echoed in every Keep-Alive header. */
const KEEP_ALIVE_TIMEOUT_MS = 75_000;

const ALLOW_HEADERS = {
  'cache-control': 'no-store',
  'x-keyward-user': 'bench-user',
  'x-keyward-actor': '',
  'x-keyward-key-id': 'key_0000000000000001',
  'x-keyward-scopes': 'projects:*',
  'x-keyward-groups': 'team-a,ops',
  'content-length': '0',
};

const server = createServer({ keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS }, (request, response) => {
  const path = request.url?.split('?', 1)[0];
  if (path !== '/verify') {
    response.writeHead(404, { 'content-length': '0' }).end();
    return;
  }
  const authorization = request.headers.authorization ?? '';
  if (!authorization.startsWith('Bearer ')) {
    response.writeHead(401, { 'content-length': '0' }).end();
    return;
  }
  response.writeHead(200, ALLOW_HEADERS).end();
});
// Exit on SIGTERM (rather than die of it) so that a run under `node --cpu-prof` writes its profile.
process.once('SIGTERM', () => server.close(() => process.exit(0)));
server.listen(Number(process.env.PORT ?? 8082), '127.0.0.1');
