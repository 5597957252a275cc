// The servers keyward's throughput is compared with, each started pinned to the server CPU:
// a bare Fastify route and bare Node `http` answering /verify with the webhook's identity headers,
// and nginx `return 200` (the fastest HTTP server at hand, which also shows the generator's ceiling).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, waitUntilReady } from '../../devenv/process.js';
import { repoRoot } from '../../devenv/repo.js';
import type { PinnedProcesses } from './processes.js';
import { nginxBin, SERVER_CPU } from './tools.js';

const START_TIMEOUT_MS = 30_000;

/** A baseline server: where it listens, and its process (for its CPU time). */
export interface Baseline {
  readonly url: string;
  readonly pid: number;
}

async function startNodeScript(procs: PinnedProcesses, name: string, script: string): Promise<Baseline> {
  const port = await freePort();
  const proc = procs.start(name, SERVER_CPU, [process.execPath, join(repoRoot(), 'dist', 'bench', script)], {
    PORT: String(port),
  });
  const url = `http://127.0.0.1:${port}`;
  await waitUntilReady(
    proc,
    async () => (await fetch(`${url}/verify`)).status === 401,
    START_TIMEOUT_MS,
    'listening',
  );
  return { url, pid: proc.child.pid! };
}

export const startBareFastify = (procs: PinnedProcesses): Promise<Baseline> =>
  startNodeScript(procs, 'bare fastify', 'bare-fastify.js');

export const startBareNode = (procs: PinnedProcesses): Promise<Baseline> =>
  startNodeScript(procs, 'bare node', 'bare-node.js');

/** nginx with one worker, no access log, `return 200` on every path; its files in the work dir. */
export async function startNginxReturn200(procs: PinnedProcesses): Promise<string> {
  const work = procs.work;
  const port = await freePort();
  const conf = join(work, 'nginx-return-200.conf');
  await writeFile(
    conf,
    `worker_processes 1; master_process off; pid ${work}/nginx.pid; error_log ${work}/nginx-error.log;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path ${work}/nb; proxy_temp_path ${work}/np; fastcgi_temp_path ${work}/nf;
  uwsgi_temp_path ${work}/nu; scgi_temp_path ${work}/ns;
  server { listen 127.0.0.1:${port}; location / { return 200; } } }
`,
  );
  const proc = procs.start(
    'nginx',
    SERVER_CPU,
    [nginxBin(), '-p', work, '-c', conf, '-g', 'daemon off;'],
    {},
  );
  const url = `http://127.0.0.1:${port}`;
  await waitUntilReady(proc, async () => (await fetch(`${url}/`)).ok, START_TIMEOUT_MS, 'serving');
  return url;
}
