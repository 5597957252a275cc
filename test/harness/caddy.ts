import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, ManagedProcess, requireTool } from '../../devenv/process.js';
import { type ProxyLocation, type ProxyOptions, servingProxy, type TestProxy } from './proxy.js';

/**
 * Real Caddy (Debian's `caddy` package) on a free loopback port, configured from a generated
 * Caddyfile the way docs/ingress/caddy.md tells a user to: per location, the identity headers a
 * client sent are deleted first (`request_header -…`), then `forward_auth` asks the webhook and
 * `copy_headers` copies the identity headers of a 2xx answer onto the request to the upstream.
 * The admin API is off, the site binds loopback only (a site address alone listens on every
 * interface) and Caddy's data and config directories live in the temp dir.
 */
export async function startCaddy(options: ProxyOptions): Promise<TestProxy> {
  const caddy = requireTool('caddy', 'apt-get install -y caddy', ['/usr/bin']);
  const dir = await mkdtemp(join(tmpdir(), 'keyward-caddy-'));
  const port = await freePort();
  const conf = join(dir, 'Caddyfile');
  await writeFile(conf, renderCaddyfile(port, options));
  const logFile = join(dir, 'caddy.log');
  const proc = new ManagedProcess({
    name: 'caddy',
    command: caddy,
    args: ['run', '--config', conf, '--adapter', 'caddyfile'],
    // Caddy keeps certificates and autosaved config under these; keep them in the temp dir.
    env: {
      ...process.env,
      HOME: dir,
      XDG_DATA_HOME: join(dir, 'data'),
      XDG_CONFIG_HOME: join(dir, 'config'),
    },
    logFile,
  });
  return servingProxy(proc, { dir, port, healthPath: '/-/caddy-health', timeoutMs: 15_000, logFile });
}

function renderCaddyfile(port: number, options: ProxyOptions): string {
  const upstream = new URL(options.upstream).host;
  const headers = options.authResponseHeaders.join(' ');
  // Longest path first: `handle` blocks are mutually exclusive, the first match wins.
  const locations = [...options.locations].sort((a, b) => b.path.length - a.path.length);
  const blocks = locations.map((location: ProxyLocation) => {
    const auth = new URL(location.authUrl);
    const matcher = location.path === '/' ? '' : ` ${location.path}*`;
    return `
  handle${matcher} {
    route {
${options.authResponseHeaders.map((h) => `      request_header -${h}`).join('\n')}
      forward_auth ${auth.host} {
        uri ${auth.pathname}${auth.search}
        copy_headers ${headers}
      }
      reverse_proxy ${upstream}
    }
  }`;
  });
  return `{
  admin off
  auto_https off
  log {
    level WARN
  }
}

http://127.0.0.1:${port} {
  bind 127.0.0.1
  handle /-/caddy-health {
    respond "ok" 200
  }
${blocks.join('\n')}
}
`;
}
