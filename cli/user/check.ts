import { ApiextensionsV1Api, CoordinationV1Api } from '@kubernetes/client-node';
import pg from 'pg';
import { requestTimeout } from '../../operator/objects.js';
import { apiErrorMessage } from './errors.js';
import { type KubeOptions, kubeTarget } from './kube.js';
import { EXIT_FAILED, EXIT_OK, emit, type OutputFormat, table } from './output.js';
import { webhookFetch, webhookUrl } from './webhook-client.js';

export interface CheckOptions extends KubeOptions {
  readonly output: OutputFormat;
  readonly webhookUrl?: string;
  readonly storeUrl?: string;
  readonly leaseNamespace: string;
  readonly leaseName: string;
}

interface Result {
  readonly check: string;
  readonly status: 'ok' | 'failed' | 'skipped';
  readonly detail: string;
}

const CRDS = ['serviceusers.keyward.dev', 'apikeys.keyward.dev', 'accesspolicies.keyward.dev'];
const TIMEOUT_MS = 10_000;

async function checkCrds(api: ApiextensionsV1Api): Promise<Result[]> {
  return Promise.all(
    CRDS.map(async (name): Promise<Result> => {
      try {
        const crd = await api.readCustomResourceDefinition({ name }, requestTimeout(TIMEOUT_MS));
        const established = crd.status?.conditions?.find((c) => c.type === 'Established')?.status === 'True';
        return {
          check: `crd ${name}`,
          status: established ? 'ok' : 'failed',
          detail: established ? 'established' : 'not established',
        };
      } catch (err) {
        return { check: `crd ${name}`, status: 'failed', detail: apiErrorMessage(err) };
      }
    }),
  );
}

async function checkLease(api: CoordinationV1Api, namespace: string, name: string): Promise<Result> {
  const check = `operator leader (Lease ${namespace}/${name})`;
  try {
    const lease = await api.readNamespacedLease({ namespace, name }, requestTimeout(TIMEOUT_MS));
    const holder = lease.spec?.holderIdentity ?? '';
    if (holder === '') return { check, status: 'failed', detail: 'no operator holds the Lease' };
    const renewed = lease.spec?.renewTime ?? lease.spec?.acquireTime;
    const renewedMs = renewed ? new Date(renewed as unknown as string).getTime() : 0;
    const expiresMs = renewedMs + (lease.spec?.leaseDurationSeconds ?? 0) * 1000;
    if (expiresMs < Date.now())
      return {
        check,
        status: 'failed',
        detail: `held by ${holder} but not renewed since ${new Date(renewedMs).toISOString()}`,
      };
    return { check, status: 'ok', detail: `held by ${holder}` };
  } catch (err) {
    return { check, status: 'failed', detail: apiErrorMessage(err) };
  }
}

async function checkWebhook(url: string | undefined): Promise<Result> {
  const check = 'webhook ready';
  if (url === undefined)
    return { check, status: 'skipped', detail: 'no --webhook-url or $KEYWARD_WEBHOOK_URL' };
  try {
    const res = await webhookFetch(`${url}/readyz`);
    const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    const detail = Object.entries(body)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(' ');
    return {
      check,
      status: res.status === 200 ? 'ok' : 'failed',
      detail: `HTTP ${res.status} ${detail}`.trim(),
    };
  } catch (err) {
    return { check, status: 'failed', detail: `cannot reach ${url}: ${(err as Error).message}` };
  }
}

async function checkStore(url: string | undefined): Promise<Result> {
  const check = 'store reachable';
  if (url === undefined) return { check, status: 'skipped', detail: 'no --store-url or $KEYWARD_STORE_URL' };
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: TIMEOUT_MS });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return { check, status: 'ok', detail: 'reachable' };
  } catch (err) {
    // pg's messages can quote the connection string's host, never its password.
    return { check, status: 'failed', detail: (err as Error).message };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** `keyward check`: 0 when every check that ran passed, 1 otherwise. */
export async function checkCommand(options: CheckOptions): Promise<number> {
  const { kc } = kubeTarget({ ...options, allNamespaces: true });
  const storeUrl = options.storeUrl ?? process.env.KEYWARD_STORE_URL;
  const results = [
    ...(await checkCrds(kc.makeApiClient(ApiextensionsV1Api))),
    await checkLease(kc.makeApiClient(CoordinationV1Api), options.leaseNamespace, options.leaseName),
    await checkWebhook(webhookUrl(options.webhookUrl)),
    await checkStore(storeUrl === '' ? undefined : storeUrl),
  ];
  emit(options.output, { checks: results }, () =>
    table(results, [
      { header: 'CHECK', value: (r) => r.check },
      { header: 'STATUS', value: (r) => r.status },
      { header: 'DETAIL', value: (r) => r.detail },
    ]),
  );
  return results.some((r) => r.status === 'failed') ? EXIT_FAILED : EXIT_OK;
}
