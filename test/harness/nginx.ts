import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, ManagedProcess, requireTool } from '../../devenv/process.js';
import { servingProxy, type TestProxy } from './proxy.js';

export interface NginxLocation {
  /** Location prefix clients use, e.g. `/` or `/scoped/`. */
  readonly path: string;
  /** The ingress `auth-url`, e.g. `http://127.0.0.1:8080/verify?scope=projects:alpha`. */
  readonly authUrl: string;
  /**
   * ingress-nginx's `auth-keepalive`: idle connections kept to the auth service, rendered as the
   * controller does (an `upstream` block with `keepalive`, HTTP/1.1, an empty `Connection`).
   * Unset: a new connection per subrequest, the controller's default.
   */
  readonly authKeepalive?: number;
}

export interface NginxOptions {
  readonly locations: readonly NginxLocation[];
  /** Where allowed requests go (`http://127.0.0.1:<port>`). */
  readonly upstream: string;
  /** Headers copied from the auth response to the upstream request (ingress `auth-response-headers`). */
  readonly authResponseHeaders: readonly string[];
  /** ingress-nginx's `auth-cache-key` / `auth-cache-duration`: auth answers kept in a proxy_cache. */
  readonly authCache?: AuthCache;
  /** Extra directives inside each protected location, and at server level (e.g. `include …;`). */
  readonly locationSnippet?: string;
  readonly serverSnippet?: string;
}

interface AuthCache {
  /** nginx variables naming one cached answer, e.g. `$http_authorization`. */
  readonly key: string;
  /** `proxy_cache_valid` arguments, e.g. `200 202 401 5m` (ingress-nginx's default). */
  readonly valid: string;
  /** `proxy_ignore_headers Cache-Control`: what makes the cache outlive a revocation. */
  readonly ignoreCacheControl?: boolean;
}

/** The nginx a suite started; its logFile is nginx's error log. */
export type TestNginx = TestProxy;

/**
 * Real nginx (Debian `nginx-light` has auth_request) in a temp prefix on a free loopback port,
 * configured the way ingress-nginx renders `nginx.ingress.kubernetes.io/auth-url` and
 * `auth-response-headers`: an internal auth location that proxies the original request's headers
 * (not its body) with X-Original-URL / X-Original-Method / X-Real-IP, and `auth_request_set` +
 * `proxy_set_header` per response header, which also overwrites any such header the client sent.
 * One process (`master_process off`), so it runs as the caller and dies with its process group.
 */
export async function startNginx(options: NginxOptions): Promise<TestNginx> {
  const nginx = requireTool('nginx', 'apt-get install -y nginx-light', ['/usr/sbin']);
  const dir = await mkdtemp(join(tmpdir(), 'keyward-nginx-'));
  await mkdir(join(dir, 'tmp'));
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  await writeFile(conf, renderConfig(dir, port, options));
  const logFile = join(dir, 'nginx.log');
  const proc = new ManagedProcess({
    name: 'nginx',
    command: nginx,
    args: ['-p', dir, '-c', conf, '-e', join(dir, 'error.log'), '-g', 'daemon off;'],
    logFile,
  });
  return servingProxy(proc, {
    dir,
    port,
    healthPath: '/-/nginx-health',
    timeoutMs: 15_000,
    logFile: join(dir, 'error.log'),
  });
}

function renderConfig(dir: string, port: number, options: NginxOptions): string {
  const tmp = join(dir, 'tmp');
  const locations = options.locations.map((location, i) => {
    const authLocation = `/_external-auth-${i}`;
    const copy = options.authResponseHeaders.map((header, h) => {
      const variable = `$upstream_http_${header.toLowerCase().replace(/-/g, '_')}`;
      return `      auth_request_set $authHeader${h} ${variable};\n      proxy_set_header '${header}' $authHeader${h};`;
    });
    return `
    location = ${authLocation} {
      internal;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Proto "";
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Sent-From "nginx-ingress-controller";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Auth-Request-Redirect $request_uri;
${authCacheDirectives(options.authCache)}
      proxy_buffer_size 4k;
      proxy_buffers 4 4k;
      proxy_request_buffering on;
      proxy_http_version 1.1;
      proxy_pass_request_headers on;
      client_max_body_size 1m;
${authTarget(location, i)}
    }

    location ${location.path} {
      auth_request ${authLocation};
      auth_request_set $auth_cookie $upstream_http_set_cookie;
      ${options.locationSnippet ?? ''}
${copy.join('\n')}
      proxy_set_header X-Request-ID $request_id;
      proxy_http_version 1.1;
      proxy_pass ${options.upstream};
    }`;
  });
  const upstreams = options.locations.flatMap((location, i) => {
    if (location.authKeepalive === undefined) return [];
    return [
      `  upstream ${authUpstream(i)} { server ${new URL(location.authUrl).host}; keepalive ${location.authKeepalive}; }`,
    ];
  });
  return `
worker_processes 1;
master_process off;
pid ${join(dir, 'nginx.pid')};
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  proxy_cache_path ${tmp}/auth-cache levels=1:2 keys_zone=auth_cache:1m max_size=8m inactive=30m use_temp_path=off;
${upstreams.join('\n')}
  server {
    listen 127.0.0.1:${port};
    location = /-/nginx-health { return 200 "ok"; }
    ${options.serverSnippet ?? ''}
${locations.join('\n')}
  }
}
`;
}

const authUpstream = (i: number): string => `external-auth-${i}`;

/** Where the auth location sends the subrequest: the URL itself, or its keep-alive upstream. */
function authTarget(location: NginxLocation, i: number): string {
  if (location.authKeepalive === undefined) {
    return `      set $target ${location.authUrl};\n      proxy_pass $target;`;
  }
  const url = new URL(location.authUrl);
  return [
    '      proxy_set_header Connection "";',
    `      set $target http://${authUpstream(i)}${url.pathname}${url.search};`,
    '      proxy_pass $target;',
  ].join('\n');
}

/** The auth location's caching, as ingress-nginx renders it when `auth-cache-key` is set. */
function authCacheDirectives(cache: AuthCache | undefined): string {
  if (!cache) return '      proxy_buffering off;';
  return [
    '      proxy_cache auth_cache;',
    `      proxy_cache_valid ${cache.valid};`,
    `      proxy_cache_key "${cache.key}";`,
    '      proxy_buffering on;',
    ...(cache.ignoreCacheControl ? ['      proxy_ignore_headers Cache-Control;'] : []),
  ].join('\n');
}
