// Revocation end to end: what a `kubectl delete apikey` or a `kubectl patch serviceuser` setting
// `spec.suspended` does, timed from the API call's return to the webhook answering 401. The path:
// API server → the operator's watch → workqueue → reconcile → store commit → NOTIFY → webhook.
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api } from '@kubernetes/client-node';
import pg from 'pg';
import { startOperatorCluster } from '../../devenv/operator.js';
import { eventually } from '../../devenv/poll.js';
import type { PinnedProcesses } from '../lib/processes.js';
import { epochMs } from '../lib/samples.js';
import { startWebhook, verifyStatus } from '../lib/webhook.js';

/** How often a trial asks the webhook whether the token is refused yet (the brief's "~5 ms"). */
const REFUSAL_POLL_MS = 5;
/** How often set-up steps (Ready, Secret, resumed) are checked: not timed, so not too eager. */
const SETUP_POLL_MS = 10;
/** Far beyond the 1 s target; only stops a trial whose revocation never arrives. */
const TRIAL_TIMEOUT_MS = 30_000;
const USER = 'revocation-user';
const SUSPEND_USER = 'suspend-user';
const SUSPEND_KEY = 'suspend-key';

export interface Trial {
  /** From the API call's return to the webhook's first 401 (ms). */
  total: number;
  /** From the API call's return to the start of the store transaction that revoked (ms). */
  toStore: number;
  /** From that transaction's start to the webhook's first 401 (ms). */
  storeTo401: number;
}

export interface EndToEndResult {
  deletes: Trial[];
  suspends: Trial[];
  /** Mean reconcile time per controller over the run, from the operator's metrics (ms). */
  reconcileMeanMs: Record<string, number>;
  operatorLog: string;
}

type Obj = {
  metadata?: { generation?: number };
  status?: {
    observedGeneration?: number;
    secretName?: string;
    conditions?: Array<{ type: string; status: string; reason?: string }>;
  };
};

function condition(obj: Obj, type: string): { status: string; reason?: string } | undefined {
  return obj.status?.conditions?.find((c) => c.type === type);
}

/** What a stuck wait shows of an object: its generations and conditions. */
function statusLine(kind: string, obj: Obj | undefined): string {
  if (obj === undefined) return `${kind}: not read`;
  const conditions = (obj.status?.conditions ?? []).map((c) => `${c.type}=${c.status}/${c.reason}`);
  return `${kind}: generation ${obj.metadata?.generation}, observed ${obj.status?.observedGeneration}, ${conditions.join(' ')}`;
}

function settled(obj: Obj, reason: string): boolean {
  const ready = condition(obj, 'Ready');
  return obj.status?.observedGeneration === obj.metadata?.generation && ready?.reason === reason;
}

export async function measureEndToEnd(options: {
  storeUrl: string;
  processes: PinnedProcesses;
  trials: number;
  print: (line: string) => void;
}): Promise<EndToEndResult> {
  const cluster = await startOperatorCluster({
    name: 'revocation',
    storeUrl: options.storeUrl,
    env: { KEYWARD_LOG_LEVEL: 'info', KEYWARD_LEASE_DURATION_SECONDS: '15' },
    accessPolicy: { usernames: ['*'], scopes: ['projects:*'] },
  });
  const pool = new pg.Pool({ connectionString: options.storeUrl, max: 2 });
  pool.on('error', () => undefined);
  try {
    const { kc, namespace, objects, operator } = cluster;
    const core = kc.makeApiClient(CoreV1Api);
    // The polls of a revoked token fail on purpose; the failed-attempt limit would answer 429.
    // Unpinned, like the control plane and the operator it works with.
    const webhook = await startWebhook(options.processes, {
      name: 'webhook-e2e',
      storeUrl: options.storeUrl,
      cpu: null,
      env: { KEYWARD_FAILED_ATTEMPTS_LIMIT: '0' },
    });
    const diagnostics = (): string => operator.process.logTail(20);
    options.print('control plane, operator and webhook ready');

    const tokenOf = async (key: string): Promise<string> => {
      const obj = await eventually(
        `ApiKey ${key} Ready`,
        async () => {
          const o = (await objects.get('apikeys', key)) as Obj;
          return settled(o, 'Issued') && o.status?.secretName ? o : undefined;
        },
        30_000,
        { intervalMs: SETUP_POLL_MS, diagnostics },
      );
      const secret = await core.readNamespacedSecret({ namespace, name: obj.status?.secretName ?? key });
      const data = secret.data?.token;
      if (!data) throw new Error(`Secret of ${key} has no token`);
      return Buffer.from(data, 'base64').toString('utf8');
    };
    const verifiesWith = async (token: string, status: number, what: string): Promise<void> => {
      await eventually(what, async () => (await verifyStatus(webhook.url, token)) === status, 30_000, {
        intervalMs: SETUP_POLL_MS,
        diagnostics,
      });
    };
    /** The webhook's first 401 after `from`, polled every REFUSAL_POLL_MS. */
    const refusedAfter = async (token: string, from: number): Promise<number> => {
      for (;;) {
        if ((await verifyStatus(webhook.url, token)) === 401) return epochMs();
        if (epochMs() - from > TRIAL_TIMEOUT_MS)
          throw new Error(`still accepted after ${TRIAL_TIMEOUT_MS} ms`);
        await sleep(REFUSAL_POLL_MS);
      }
    };
    /** Start times (epoch ms) of the store transactions that wrote these audit events, in order. */
    const auditTimes = async (action: string, name: string | null): Promise<number[]> => {
      const { rows } = await pool.query<{ ms: number }>(
        `SELECT extract(epoch FROM at) * 1000 AS ms FROM audit_events
          WHERE action = $1 AND namespace = $2 AND ($3::text IS NULL OR name = $3) ORDER BY id`,
        [action, namespace, name],
      );
      return rows.map((r) => Number(r.ms));
    };

    for (const name of [USER, SUSPEND_USER]) {
      await objects.create('serviceusers', {
        kind: 'ServiceUser',
        metadata: { name },
        spec: { scopes: ['projects:*'], maxKeys: options.trials + 10 },
      });
    }
    const keySpec = (user: string) => ({ serviceUserRef: { name: user }, scopes: ['projects:alpha'] });

    // Deletes: a fresh key each trial, verified (and so cached) before it is deleted.
    const deletes: Trial[] = [];
    for (let i = 0; i < options.trials; i++) {
      const name = `key-${i}`;
      await objects.create('apikeys', { kind: 'ApiKey', metadata: { name }, spec: keySpec(USER) });
      const token = await tokenOf(name);
      await verifiesWith(token, 200, `${name} verifies`);
      await objects.delete('apikeys', name);
      const returned = epochMs();
      const refused = await refusedAfter(token, returned);
      const [store] = await auditTimes('key.revoked', name);
      if (store === undefined) throw new Error(`no key.revoked audit event for ${name}`);
      deletes.push({ total: refused - returned, toStore: store - returned, storeTo401: refused - store });
    }

    options.print(`${options.trials} ApiKey deletes done`);

    // Suspensions: one user and key, suspended and resumed; each trial starts from a settled,
    // cached, verifying key.
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: SUSPEND_KEY },
      spec: keySpec(SUSPEND_USER),
    });
    const token = await tokenOf(SUSPEND_KEY);
    const suspends: Trial[] = [];
    for (let i = 0; i < options.trials; i++) {
      await verifiesWith(token, 200, `${SUSPEND_KEY} verifies`);
      await objects.patch('serviceusers', SUSPEND_USER, { spec: { suspended: true } });
      const returned = epochMs();
      const refused = await refusedAfter(token, returned);
      const store = (await auditTimes('user.suspended', SUSPEND_USER)).at(-1);
      if (store === undefined) throw new Error('no user.suspended audit event');
      suspends.push({ total: refused - returned, toStore: store - returned, storeTo401: refused - store });
      await objects.patch('serviceusers', SUSPEND_USER, { spec: { suspended: false } });
      let last: { user?: Obj; key?: Obj } = {};
      await eventually(
        `${SUSPEND_USER} resumed and settled`,
        async () => {
          const [u, k] = [
            (await objects.get('serviceusers', SUSPEND_USER)) as Obj,
            (await objects.get('apikeys', SUSPEND_KEY)) as Obj,
          ];
          last = { user: u, key: k };
          return settled(u, 'Stored') && settled(k, 'Issued');
        },
        30_000,
        {
          intervalMs: SETUP_POLL_MS,
          diagnostics: () =>
            `${statusLine('ServiceUser', last.user)}\n${statusLine('ApiKey', last.key)}\n${diagnostics()}`,
        },
      );
    }

    const metrics = await (await fetch(`${operator.metricsUrl}/metrics`)).text();
    const reconcileMeanMs: Record<string, number> = {};
    for (const m of metrics.matchAll(
      /keyward_operator_reconcile_duration_seconds_sum\{controller="(\w+)"\} ([\d.e+-]+)/g,
    )) {
      const count = new RegExp(
        `keyward_operator_reconcile_duration_seconds_count\\{controller="${m[1]}"\\} (\\d+)`,
      ).exec(metrics)?.[1];
      if (count && Number(count) > 0) reconcileMeanMs[m[1]!] = (Number(m[2]) / Number(count)) * 1000;
    }
    return { deletes, suspends, reconcileMeanMs, operatorLog: operator.process.logFile };
  } finally {
    await pool.end();
    await cluster.stop();
  }
}
