import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import type { ControlPlane, ControlPlaneOptions } from '../../devenv/controlplane/controlplane.js';
import { createCa, issueCertificate, type KeyPairFiles } from '../../devenv/pki.js';
import { eventually } from '../../devenv/poll.js';
import { type RunningWebhook, runWebhook } from '../../webhook/server.js';
import { testConfig } from './webhook.js';

/** A webhook kube-apiserver can use for TokenReview, and what a test needs to call it itself. */
export interface TokenReviewWebhook {
  readonly webhook: RunningWebhook;
  /** Pass as `startControlPlane({ authnWebhook })`. */
  readonly authnWebhook: NonNullable<ControlPlaneOptions['authnWebhook']>;
  /** The CA of the webhook's serving certificate and of the callers it accepts. */
  readonly ca: KeyPairFiles;
  /** The client certificate kube-apiserver presents. */
  readonly apiserverClient: KeyPairFiles;
}

/**
 * Runs the webhook over TLS with a client CA, as a cluster deploys it for kube-apiserver: the API
 * server authenticates with a client certificate (it sends a bearer credential only over https,
 * and /tokenreview answers nobody else). Certificates go into `dir`.
 */
export async function startTokenReviewWebhook(
  storeUrl: string,
  dir: string,
  env: Record<string, string> = {},
): Promise<TokenReviewWebhook> {
  const ca = await createCa(dir, 'keyward-webhook-ca');
  const [serving, apiserverClient] = await Promise.all([
    issueCertificate(dir, ca, {
      name: 'webhook',
      commonName: 'keyward-webhook',
      usage: 'server',
      subjectAltNames: ['IP:127.0.0.1'],
    }),
    issueCertificate(dir, ca, { name: 'kube-apiserver', commonName: 'kube-apiserver', usage: 'client' }),
  ]);
  const webhook = await runWebhook({
    config: testConfig(storeUrl, {
      KEYWARD_TOKEN_HEADER: 'none',
      KEYWARD_TLS_CERT_FILE: serving.cert,
      KEYWARD_TLS_KEY_FILE: serving.key,
      KEYWARD_TLS_CLIENT_CA_FILE: ca.cert,
      ...env,
    }),
    handleSignals: false,
    defaultMetrics: false,
  });
  await eventually(
    'webhook ready',
    async () => (await webhook.app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200,
    10_000,
  );
  return {
    webhook,
    authnWebhook: { url: `${webhook.url}/tokenreview`, caFile: ca.cert, clientCertificate: apiserverClient },
    ca,
    apiserverClient,
  };
}

/**
 * A kubeconfig with the control plane's cluster and no credentials, so that every kubectl call
 * authenticates with the `--token` it passes: the API key under test, through TokenReview.
 */
export async function tokenOnlyKubeconfig(cp: ControlPlane, path: string): Promise<string> {
  await writeFile(
    path,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: cp.server, 'certificate-authority': cp.caFile } }],
      users: [{ name: 'u', user: {} }],
      contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'c',
    }),
  );
  return path;
}

export interface KubectlResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the control plane's kubectl as its admin, or with only a bearer token (`tokenKubeconfig`,
 * from tokenOnlyKubeconfig) so kube-apiserver asks the webhook. A failing kubectl is a result, not
 * a throw: tests assert on its exit code and stderr.
 */
export function kubectlFor(
  cp: ControlPlane,
  tokenKubeconfig: string,
): (args: string[], token?: string) => Promise<KubectlResult> {
  const run = promisify(execFile);
  return async (args, token) => {
    const auth =
      token === undefined
        ? ['--kubeconfig', cp.kubeconfigPath]
        : ['--kubeconfig', tokenKubeconfig, '--token', token];
    try {
      const { stdout, stderr } = await run(join(cp.binDir, 'kubectl'), [...auth, ...args], {
        timeout: 30_000,
      });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return {
        code: typeof e.code === 'number' ? e.code : 1,
        stdout: e.stdout ?? '',
        stderr: e.stderr ?? '',
      };
    }
  };
}
