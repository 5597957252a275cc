// The nginx side of bench/nginx-auth.ts: one pinned nginx per role, and the front server that
// applies docs/ingress/nginx.md's recipe to whichever auth service it is given.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ManagedProcess } from '../../devenv/process.js';
import type { PinnedProcesses } from '../lib/processes.js';
import { nginxBin } from '../lib/tools.js';

/** An nginx of its own: one worker, no master, so taskset pins the process that does the work. */
export async function startNginx(
  processes: PinnedProcesses,
  work: string,
  name: string,
  cpu: number,
  servers: string,
): Promise<ManagedProcess> {
  const dir = join(work, name);
  await mkdir(join(dir, 'tmp'), { recursive: true });
  const conf = join(dir, 'nginx.conf');
  await writeFile(
    conf,
    `worker_processes 1; master_process off; pid ${dir}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body; proxy_temp_path ${dir}/tmp/proxy; fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi; scgi_temp_path ${dir}/tmp/scgi;
${servers}
}
`,
  );
  return processes.start(
    name,
    cpu,
    [nginxBin(), '-p', dir, '-c', conf, '-e', join(dir, 'error.log'), '-g', 'daemon off;'],
    {},
  );
}

export const IDENTITY = [
  'x-keyward-user',
  'x-keyward-actor',
  'x-keyward-key-id',
  'x-keyward-scopes',
  'x-keyward-groups',
];

/** keyward's cache-hit answer, as nginx `add_header`s (x-keyward-actor is empty there, so absent here). */
export const FLOOR_HEADERS = [
  ['cache-control', 'no-store'],
  ['x-keyward-user', 'bench-user'],
  ['x-keyward-key-id', 'key_0000000000000001'],
  ['x-keyward-scopes', 'projects:*'],
  ['x-keyward-groups', 'team-a,ops'],
];

/**
 * One front server: the recipe of docs/ingress/nginx.md (internal auth location proxying the
 * request's headers, not its body; one auth_request_set + proxy_set_header per identity header),
 * with the auth service behind a keep-alive upstream block — or, `keepalive` false, the recipe as it
 * was before: HTTP/1.0 and a new connection per subrequest (nginx's default for proxy_pass).
 */
export function frontServer(port: number, authUpstream: string, authPath: string, keepalive = true): string {
  const copy = IDENTITY.map((h) => {
    const v = `$kw_${h.slice(2).replace(/-/g, '_')}`;
    return `      auth_request_set ${v} $upstream_http_${h.replace(/-/g, '_')};\n      proxy_set_header ${h} ${v};`;
  }).join('\n');
  return `  server {
    listen 127.0.0.1:${port};
    location = /_keyward {
      internal;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-For $remote_addr;
${keepalive ? '      proxy_http_version 1.1;\n      proxy_set_header Connection "";\n' : ''}      proxy_pass http://${authUpstream}${authPath};
    }
    location / {
      auth_request /_keyward;
${copy}
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
  }`;
}
