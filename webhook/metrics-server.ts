import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface MetricsEndpoint {
  /** `http://host:port` actually bound. */
  readonly url: string;
  close(): Promise<void>;
}

// Prometheus scrapes in well under these; anything slower is not a scraper.
const HEADERS_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_CONNECTIONS = 64;

/**
 * `GET /metrics` on its own port (KEYWARD_METRICS_LISTEN), like the operator's: the verification
 * port is reachable by every ingress and client in the cluster, and the metrics say how many
 * requests each route got, which keys the cache holds and how often the store failed.
 */
export async function serveMetrics(
  listen: { readonly host: string; readonly port: number },
  render: () => Promise<string>,
  contentType: string,
): Promise<MetricsEndpoint> {
  const server: Server = createServer(
    { headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS },
    (req, res) => {
      if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      render().then(
        (body) => res.writeHead(200, { 'content-type': contentType }).end(body),
        () => res.writeHead(500).end(),
      );
    },
  );
  server.maxConnections = MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
