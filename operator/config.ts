import { hostname } from 'node:os';
import { z } from 'zod';
import { storeUrlFromEnv } from '../store/url.js';

/**
 * Operator configuration, read once from the environment (the chart sets these) and validated
 * here, so a typo fails at start-up with the variable's name instead of later in a reconcile.
 * docs/configuration.md is generated from the descriptions.
 */
export const operatorEnvSchema = z.object({
  KEYWARD_STORE_URL: z
    .string({ error: 'is required (postgres://…)' })
    .min(1, 'is required (postgres://…)')
    .describe(
      "Postgres URL of the credential store, as the operator's role (it writes users, keys and audit events).",
    ),
  KEYWARD_WATCH_NAMESPACES: z
    .string()
    .default('')
    .describe(
      'Comma-separated namespaces to reconcile, each through its own informers, so the operator needs Roles in those namespaces instead of cluster-wide rights on Secrets. Empty: every namespace.',
    ),
  KEYWARD_WATCH_NAMESPACE: z
    .string()
    .default('')
    .describe(
      'The single-namespace form of earlier releases; an alias of KEYWARD_WATCH_NAMESPACES (both set and different: refused).',
    ),
  KEYWARD_TOKEN_PREFIX: z
    .string()
    .regex(/^[a-z]{1,8}$/, 'KEYWARD_TOKEN_PREFIX must be 1-8 lowercase letters')
    .default('kw')
    .describe('Prefix of the tokens the operator mints (`kw_…`), 1-8 lowercase letters.'),
  KEYWARD_NAMESPACE: z
    .string()
    .min(1)
    .default('keyward-system')
    .describe("Namespace of the leader-election Lease (the chart sets the pod's own namespace)."),
  KEYWARD_LEASE_NAME: z
    .string()
    .min(1)
    .default('keyward-operator')
    .describe('Name of the leader-election Lease.'),
  KEYWARD_IDENTITY: z
    .string()
    .min(1)
    .optional()
    .describe("This replica's name in the Lease. Unset: `<hostname>-<pid>` (the chart sets the pod name)."),
  KEYWARD_LEASE_DURATION_SECONDS: z.coerce
    .number()
    .int()
    .min(2)
    .max(600)
    .default(15)
    .describe('How long a leader holds the Lease without renewing it; a standby takes over after this.'),
  KEYWARD_METRICS_LISTEN: z
    .string()
    .regex(/^[^:]*:[0-9]{1,5}$/, 'KEYWARD_METRICS_LISTEN must be host:port')
    .default('0.0.0.0:9090')
    .describe('`host:port` of /metrics, /healthz and /readyz.'),
  KEYWARD_WORKERS: z.coerce
    .number()
    .int()
    .min(1)
    .max(64)
    // ApiKey passes wait on the store and the API server: 2,000 keys at once went 22 → 40 keys/s
    // from 4 to 16 workers on the 2-vCPU bench machine (bench/README.md, operator section).
    .default(16)
    .describe(
      'Concurrent reconciles of ApiKeys (ServiceUsers get half as many); the store pool holds this many connections plus two.',
    ),
  KEYWARD_RESYNC_SECONDS: z.coerce
    .number()
    .int()
    .min(10)
    .max(86_400)
    .default(600)
    .describe('Every object is reconciled again at least this often, even without a change.'),
  KEYWARD_RESTART_DEBOUNCE_SECONDS: z.coerce
    .number()
    .int()
    .min(1)
    .max(3_600)
    .default(10)
    .describe(
      'Token changes of one ApiKey this close together give one restart of its spec.restartTargets, after the last change.',
    ),
  KEYWARD_LAST_USED_REFRESH_SECONDS: z.coerce
    .number()
    .int()
    .min(1)
    .max(3_600)
    .default(60)
    .describe(
      "How often the store is asked which ApiKeys were used lately (one query for all keys); those whose status.lastUsedAt is behind are reconciled, so it lags a verification by at most this plus the webhook's KEYWARD_USAGE_FLUSH_INTERVAL. Ready keys with a quota are also reconciled this often, for status.quota.",
    ),
  KEYWARD_REQUEST_LOG_RETENTION_DAYS: z.coerce
    .number()
    .int()
    .min(1)
    .max(3650)
    .default(30)
    .describe(
      "Days the request audit log (the store's `request_log`, written by the webhooks) is kept: the leader drops each day's partition once it is older, and keeps partitions a week ahead (docs/request-log.md).",
    ),
  KEYWARD_CHANGE_LOG_RETENTION_SECONDS: z.coerce
    .number()
    .int()
    .min(60)
    .max(30 * 86_400)
    .default(86_400)
    .describe(
      'The leader deletes change-log rows older than this (the newest row always stays). A webhook cut off from the store for longer drops its cache on return instead of catching up (docs/read-replicas.md).',
    ),
  KEYWARD_FAILPOINTS: z
    .string()
    .default('')
    .describe(
      'Comma-separated failpoints (operator/failpoints.ts) at which the operator kills itself; for crash-point tests only. Empty: none.',
    ),
  KEYWARD_LOG_LEVEL: z
    .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal'])
    .default('info')
    .describe('pino log level.'),
});

export interface OperatorConfig {
  storeUrl: string;
  /** undefined: all namespaces; otherwise the namespaces reconciled, each with its own informers. */
  watchNamespaces: string[] | undefined;
  tokenPrefix: string;
  namespace: string;
  leaseName: string;
  identity: string;
  leaseDurationMs: number;
  metricsHost: string;
  metricsPort: number;
  workers: number;
  resyncMs: number;
  restartDebounceMs: number;
  lastUsedRefreshMs: number;
  requestLogRetentionDays: number;
  changeLogRetentionMs: number;
  logLevel: string;
  failpoints: string[];
}

export function loadOperatorConfig(env: NodeJS.ProcessEnv = process.env): OperatorConfig {
  const parsed = operatorEnvSchema.safeParse({ ...env, KEYWARD_STORE_URL: storeUrlFromEnv(env) });
  if (!parsed.success) {
    throw new Error(
      `invalid operator configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  const c = parsed.data;
  const [metricsHost = '0.0.0.0', metricsPort = '9090'] = splitHostPort(c.KEYWARD_METRICS_LISTEN);
  return {
    storeUrl: c.KEYWARD_STORE_URL,
    watchNamespaces: watchNamespaces(c.KEYWARD_WATCH_NAMESPACES, c.KEYWARD_WATCH_NAMESPACE),
    tokenPrefix: c.KEYWARD_TOKEN_PREFIX,
    namespace: c.KEYWARD_NAMESPACE,
    leaseName: c.KEYWARD_LEASE_NAME,
    identity: c.KEYWARD_IDENTITY ?? `${hostname()}-${process.pid}`,
    leaseDurationMs: c.KEYWARD_LEASE_DURATION_SECONDS * 1000,
    changeLogRetentionMs: c.KEYWARD_CHANGE_LOG_RETENTION_SECONDS * 1000,
    metricsHost,
    metricsPort: Number(metricsPort),
    workers: c.KEYWARD_WORKERS,
    resyncMs: c.KEYWARD_RESYNC_SECONDS * 1000,
    restartDebounceMs: c.KEYWARD_RESTART_DEBOUNCE_SECONDS * 1000,
    lastUsedRefreshMs: c.KEYWARD_LAST_USED_REFRESH_SECONDS * 1000,
    requestLogRetentionDays: c.KEYWARD_REQUEST_LOG_RETENTION_DAYS,
    logLevel: c.KEYWARD_LOG_LEVEL,
    failpoints: c.KEYWARD_FAILPOINTS.split(',')
      .map((n) => n.trim())
      .filter((n) => n !== ''),
  };
}

const NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

function watchNamespaces(list: string, alias: string): string[] | undefined {
  const parse = (value: string): string[] =>
    value
      .split(',')
      .map((n) => n.trim())
      .filter((n) => n !== '');
  const names = parse(list);
  const aliased = parse(alias);
  if (names.length > 0 && aliased.length > 0 && names.join() !== aliased.join()) {
    throw new Error(
      'invalid operator configuration: KEYWARD_WATCH_NAMESPACES and KEYWARD_WATCH_NAMESPACE disagree; set only KEYWARD_WATCH_NAMESPACES',
    );
  }
  const chosen = names.length > 0 ? names : aliased;
  const invalid = chosen.filter((n) => !NAMESPACE_NAME.test(n));
  if (invalid.length > 0) {
    throw new Error(
      `invalid operator configuration: KEYWARD_WATCH_NAMESPACES: ${invalid.map((n) => JSON.stringify(n)).join(', ')} is not a namespace name`,
    );
  }
  return chosen.length > 0 ? [...new Set(chosen)] : undefined;
}

function splitHostPort(value: string): [string, string] {
  const at = value.lastIndexOf(':');
  return [value.slice(0, at), value.slice(at + 1)];
}
