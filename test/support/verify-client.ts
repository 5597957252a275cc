import type { CoreV1Api } from '@kubernetes/client-node';
import { eventually } from '../../devenv/poll.js';
import { RESTRICTED_CONTAINER } from './node.js';

/**
 * A client pod on a real node that calls the webhook the way a workload does: the keyward image's
 * node (static busybox wget segfaults in these containers), an ApiKey's Secret mounted as a volume,
 * each request made with `kubectl exec`.
 */
export interface VerifyClient {
  /** GET `url` with the mounted token, or with `token`; the status and X-Keyward-User. */
  verify(url: string, token?: string): Promise<{ status: number; user: string | null }>;
}

export interface VerifyClientOptions {
  core: CoreV1Api;
  kubectl: (args: string[]) => Promise<string>;
  namespace: string;
  image: string;
  /** The ApiKey's Secret; its `token` key is what the client sends. */
  secretName: string;
  name?: string;
}

const TOKEN_DIR = '/var/run/keyward';
const START_TIMEOUT_MS = 60_000;
// As PID 1, node has no default SIGTERM action: exit on it rather than after the grace period.
const IDLE_SCRIPT = "process.on('SIGTERM', () => process.exit(0)); setInterval(() => {}, 1 << 30);";
const VERIFY_SCRIPT = `
import { readFileSync } from 'node:fs';
const [url, token] = process.argv.slice(1);
const bearer = token || readFileSync('${TOKEN_DIR}/token', 'utf8').trim();
const res = await fetch(url, { headers: { authorization: 'Bearer ' + bearer } });
console.log(JSON.stringify({ status: res.status, user: res.headers.get('x-keyward-user') }));
`;

/** Creates the client pod under the restricted profile and resolves once it runs. */
export async function startVerifyClient(opts: VerifyClientOptions): Promise<VerifyClient> {
  const name = opts.name ?? 'verify-client';
  const { core, namespace } = opts;
  await core.createNamespacedPod({
    namespace,
    body: {
      metadata: { name },
      spec: {
        automountServiceAccountToken: false,
        enableServiceLinks: false,
        securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
        containers: [
          {
            name: 'client',
            image: opts.image,
            imagePullPolicy: 'Never',
            command: ['node', '-e', IDLE_SCRIPT],
            volumeMounts: [{ name: 'key', mountPath: TOKEN_DIR, readOnly: true }],
            securityContext: RESTRICTED_CONTAINER,
          },
        ],
        volumes: [{ name: 'key', secret: { secretName: opts.secretName } }],
      },
    },
  });
  await eventually(
    `the client pod ${namespace}/${name} to run`,
    async () => {
      const pod = await core.readNamespacedPod({ name, namespace });
      return pod.status?.containerStatuses?.[0]?.ready ? true : undefined;
    },
    START_TIMEOUT_MS,
  );
  return {
    async verify(url, token) {
      const out = await opts.kubectl([
        '-n',
        namespace,
        'exec',
        name,
        '--',
        'node',
        '--input-type=module',
        '-e',
        VERIFY_SCRIPT,
        url,
        ...(token ? [token] : []),
      ]);
      return JSON.parse(out.trim().split('\n').pop() ?? '{}');
    },
  };
}
