import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort, ManagedProcess, runBuildScript } from '../../devenv/process.js';
import { repoRoot } from '../../devenv/repo.js';
import { type ProxyOptions, servingProxy, type TestProxy } from './proxy.js';

export interface TraefikOptions extends ProxyOptions {
  /** ForwardAuth `trustForwardHeader`; false (the recipe's choice) unless a test shows the other. */
  readonly trustForwardHeader?: boolean;
  /** The entry point's `forwardedHeaders.insecure`: believe every client's X-Forwarded-* headers. */
  readonly insecureForwardedHeaders?: boolean;
}

const HEALTH_PATH = '/-/traefik-health';
let binary: Promise<string> | undefined;

/** Traefik from devenv/traefik/build.sh: built once into ~/.cache/keyward/tools, then reused. */
function traefikBinary(): Promise<string> {
  binary ??= runBuildScript(join(repoRoot(), 'devenv/traefik/build.sh')).then((r) =>
    join(r.stdout.trim(), 'traefik'),
  );
  return binary;
}

/**
 * Real Traefik on a free loopback port: static configuration as command-line flags, the routes in
 * a generated file-provider configuration the way docs/ingress/traefik.md writes them — per
 * location a router with a ForwardAuth middleware (`authResponseHeaders`, `trustForwardHeader:
 * false`) in front of one load-balancer service. It is ready when a router of that same file
 * answers (the ping service behind `/-/traefik-health`), so every route of the file is live.
 */
export async function startTraefik(options: TraefikOptions): Promise<TestProxy> {
  const traefik = await traefikBinary();
  const dir = await mkdtemp(join(tmpdir(), 'keyward-traefik-'));
  const port = await freePort();
  const routes = join(dir, 'routes.yaml');
  await writeFile(routes, stringify(dynamicConfig(options)));
  const logFile = join(dir, 'traefik.log');
  const proc = new ManagedProcess({
    name: 'traefik',
    command: traefik,
    args: [
      `--entryPoints.web.address=127.0.0.1:${port}`,
      `--providers.file.filename=${routes}`,
      '--providers.file.watch=false',
      // The ping service only where a router of ours puts it; no internal :8080 entry point.
      '--ping.manualRouting=true',
      '--global.checkNewVersion=false',
      '--global.sendAnonymousUsage=false',
      '--log.level=WARN',
      ...(options.insecureForwardedHeaders ? ['--entryPoints.web.forwardedHeaders.insecure=true'] : []),
    ],
    cwd: dir,
    logFile,
  });
  return servingProxy(proc, { dir, port, healthPath: HEALTH_PATH, timeoutMs: 30_000, logFile });
}

/** The Middleware docs/ingress/traefik.md shows (docs/ingress/recipes.test.ts compares them). */
export function forwardAuthMiddleware(
  address: string,
  authResponseHeaders: readonly string[],
  trustForwardHeader = false,
): { forwardAuth: Record<string, unknown> } {
  return {
    forwardAuth: {
      address,
      // The request to the webhook then carries Traefik's own X-Forwarded-For/-Method/-Uri/-Host,
      // never the client's (docs/ingress/traefik.md explains the choice).
      trustForwardHeader,
      authResponseHeaders: [...authResponseHeaders],
    },
  };
}

function dynamicConfig(options: TraefikOptions): unknown {
  const routers: Record<string, unknown> = {
    health: { entryPoints: ['web'], rule: `Path(\`${HEALTH_PATH}\`)`, service: 'ping@internal' },
  };
  const middlewares: Record<string, unknown> = {};
  options.locations.forEach((location, i) => {
    middlewares[`keyward-${i}`] = forwardAuthMiddleware(
      location.authUrl,
      options.authResponseHeaders,
      options.trustForwardHeader ?? false,
    );
    // Traefik orders routers by rule length: the longer prefix wins, as in nginx.
    routers[`app-${i}`] = {
      entryPoints: ['web'],
      rule: `PathPrefix(\`${location.path}\`)`,
      middlewares: [`keyward-${i}`],
      service: 'app',
    };
  });
  return {
    http: {
      routers,
      middlewares,
      services: { app: { loadBalancer: { servers: [{ url: options.upstream }] } } },
    },
  };
}
