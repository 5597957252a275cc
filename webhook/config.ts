import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { parseDuration } from '../api/duration.js';
import { isValidScope } from '../api/scopes.js';
import { parseCidr } from './client-address.js';

/**
 * Webhook configuration, read once from the environment at start-up (12-factor, and what a
 * Deployment's `env`/`envFrom` gives). Every variable is optional except KEYWARD_STORE_URL. Each
 * one's meaning is in its `.describe()` below, from which docs/configuration.md is generated.
 */
export interface WebhookConfig {
  readonly storeUrl: string;
  /** Where usage and leak reports are written when storeUrl is a read replica; undefined: storeUrl. */
  readonly storeWriteUrl: string | undefined;
  /** How often the change log is polled when the store is a read replica (NOTIFY cannot arrive). */
  readonly changePollIntervalMs: number;
  readonly listen: { readonly host: string; readonly port: number };
  /** Lower-case header name, or null for `Authorization` only. */
  readonly tokenHeader: string | null;
  readonly tokenPrefix: string | undefined;
  /** Lower-case name of the header that names the subject a key acts on behalf of. */
  readonly subjectHeader: string;
  readonly cache: {
    readonly maxEntries: number;
    readonly ttlMs: number;
    readonly staleIfErrorMs: number;
    readonly negativeMaxEntries: number;
    readonly negativeTtlMs: number;
  };
  readonly introspectCredentials: ReadonlyArray<{ readonly clientId: string; readonly secret: string }>;
  /** Bearer credentials accepted from callers of /tokenreview. */
  readonly tokenReviewCredentials: readonly string[];
  /** Bearer credentials accepted from callers of /leaks. */
  readonly leakReportCredentials: readonly string[];
  /** Proxies whose client-address header is believed; CIDR text as configured. */
  readonly trustedProxies: readonly string[];
  /** Lower-case header name a trusted proxy sets to the client address. */
  readonly clientIpHeader: string;
  readonly failedAttempts: { readonly limit: number; readonly windowMs: number };
  readonly maxHeaderBytes: number;
  readonly maxUrlBytes: number;
  readonly usageFlushIntervalMs: number;
  /** The request audit log (docs/request-log.md). */
  readonly requestLog: {
    readonly store: boolean;
    /** null: no JSON lines. */
    readonly json: 'stdout' | { readonly file: string } | null;
    readonly flushIntervalMs: number;
    readonly maxPending: number;
  };
  /** How often rate-limit counts are exchanged with the store (docs/rate-limits.md). */
  readonly rateLimitSyncIntervalMs: number;
  readonly tokenReviewScope: string | undefined;
  /** Prepended to every group /tokenreview returns; '' for none. */
  readonly tokenReviewGroupsPrefix: string;
  readonly storePoolSize: number;
  readonly storeTimeoutMs: number;
  readonly lookups: { readonly maxConcurrent: number; readonly maxQueued: number; readonly maxBatch: number };
  readonly http: {
    readonly headersTimeoutMs: number;
    readonly requestTimeoutMs: number;
    readonly keepAliveTimeoutMs: number;
    readonly maxConnections: number;
  };
  readonly metricsListen: { readonly host: string; readonly port: number };
  /** File paths; null serves plain HTTP. */
  readonly tls: {
    readonly certFile: string;
    readonly keyFile: string;
    readonly clientCaFile: string | null;
    readonly reloadIntervalMs: number;
  } | null;
  readonly shutdownDelayMs: number;
  readonly shutdownTimeoutMs: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

const duration = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      const ms = parseDuration(text.trim());
      if (ms === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `not a duration like 90s, 5m, 1h30m: ${JSON.stringify(text)}`,
        });
        return z.NEVER;
      }
      return ms;
    });

const count = (fallback: number, max: number) => z.coerce.number().int().min(0).max(max).default(fallback);

const headerName = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^[a-z0-9!#$%&'*+.^_`|~-]+$/, 'not an HTTP header name');

const listen = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(text.trim());
      const port = Number(match?.[3]);
      if (!match || port > 65535) {
        ctx.addIssue({
          code: 'custom',
          message: `want host:port or [ipv6]:port, got ${JSON.stringify(text)}`,
        });
        return z.NEVER;
      }
      return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
    });

// Secrets are never echoed in errors, so the pattern says what is allowed instead.
const BEARER_CREDENTIAL = /^[A-Za-z0-9._~+/=-]{16,4096}$/;

const credentialPair = z.string().transform((pair, ctx) => {
  const at = pair.indexOf(':');
  // Secrets are never echoed back, not even in a config error.
  if (at <= 0 || at === pair.length - 1) {
    ctx.addIssue({ code: 'custom', message: 'each introspection credential must be client:secret' });
    return z.NEVER;
  }
  return { clientId: pair.slice(0, at), secret: pair.slice(at + 1) };
});

export const webhookEnvSchema = z.object({
  KEYWARD_STORE_URL: z
    .string()
    .trim()
    .min(1, 'KEYWARD_STORE_URL (or KEYWARD_STORE_URL_FILE) is required')
    .describe(
      'Postgres URL of the credential store. `KEYWARD_STORE_URL_FILE` reads it from a file instead (a mounted Secret).',
    ),
  KEYWARD_STORE_WRITE_URL: z
    .string()
    .optional()
    .describe(
      'Postgres URL of the primary, for the writes a webhook makes (usage counts, last-used times, leak reports) when KEYWARD_STORE_URL is a read replica. `KEYWARD_STORE_WRITE_URL_FILE` reads it from a file. Unset: those writes go to KEYWARD_STORE_URL, and fail (logged, counts kept for the next flush) if it is a replica (docs/read-replicas.md).',
    ),
  KEYWARD_CHANGE_POLL_INTERVAL_MS: z.coerce
    .number()
    .int()
    .min(10)
    .max(60_000)
    .default(500)
    .describe(
      'On a read replica NOTIFY never arrives: how often (milliseconds) the change log is read instead. A revocation reaches the webhook within replication lag plus this. On a primary the log is read only after a gap and on the 15 s heartbeat.',
    ),
  KEYWARD_WEBHOOK_LISTEN: listen('0.0.0.0:8080').describe('`host:port` to listen on (`[::]:8080` for IPv6).'),
  KEYWARD_METRICS_LISTEN: listen('0.0.0.0:9090').describe(
    '`host:port` of the Prometheus `/metrics` endpoint (not served on the verification port).',
  ),
  KEYWARD_TOKEN_HEADER: z
    .union([z.literal('none'), headerName])
    .default('x-api-key')
    .describe(
      'Header that carries a bare token, besides `Authorization: Bearer`. `none` accepts only `Authorization`.',
    ),
  KEYWARD_SUBJECT_HEADER: headerName
    .default('x-keyward-subject')
    .describe(
      "Header naming the subject a key acts on behalf of: a ServiceUser username, or an external subject id (one with a character a username cannot have, such as `:` or `@`). Allowed only within the key's ServiceUser `spec.actAs`; otherwise 403, never ignored.",
    ),
  KEYWARD_TOKEN_PREFIX: z
    .string()
    .regex(/^[a-z]{1,8}$/, 'token prefix is 1-8 lowercase ASCII letters')
    .optional()
    .describe('Accept only tokens with this prefix; others are rejected without a lookup. Unset: any.'),
  KEYWARD_CACHE_MAX_ENTRIES: count(100_000, 10_000_000)
    .refine((n) => n > 0, 'must be at least 1')
    .describe(
      "Positive cache size (LRU). A cached key takes about 140 bytes outside V8's heap (reserved for this many at start-up, resident as they fill) and 0.1 KiB on it.",
    ),
  KEYWARD_CACHE_TTL: duration('60s').describe(
    'Backstop: a cached key is re-read from the store at least this often, even without a notification.',
  ),
  KEYWARD_CACHE_STALE_IF_ERROR: duration('5m').describe(
    'While the store cannot answer, a cached key confirmed within this window is still served — but never one confirmed before a listener gap the change log could not bridge (docs/webhook-security.md). `0s` disables.',
  ),
  KEYWARD_NEGATIVE_CACHE_MAX_ENTRIES: count(10_000, 10_000_000).describe(
    'How many unknown hashes are remembered.',
  ),
  KEYWARD_NEGATIVE_CACHE_TTL: duration('5s').describe('How long an unknown hash is remembered.'),
  KEYWARD_INTROSPECT_CREDENTIALS: z
    .array(credentialPair)
    .default([])
    .describe(
      'Comma-separated `client:secret` pairs callers of /introspect present with HTTP Basic. `KEYWARD_INTROSPECT_CREDENTIALS_FILE`: one pair per line. Unset: /introspect refuses everyone.',
    ),
  KEYWARD_TOKENREVIEW_CREDENTIALS: z
    .array(
      z
        .string()
        .regex(
          BEARER_CREDENTIAL,
          'each /tokenreview credential is 16+ characters of A-Z a-z 0-9 . _ ~ + / = -',
        ),
    )
    .default([])
    .describe(
      'Comma-separated bearer credentials (16+ characters each) that may call /tokenreview. `KEYWARD_TOKENREVIEW_CREDENTIALS_FILE`: one per line. With neither and no client CA, /tokenreview refuses everyone.',
    ),
  KEYWARD_LEAK_REPORT_CREDENTIALS: z
    .array(
      z
        .string()
        .regex(BEARER_CREDENTIAL, 'each /leaks credential is 16+ characters of A-Z a-z 0-9 . _ ~ + / = -'),
    )
    .default([])
    .describe(
      'Comma-separated bearer credentials (16+ characters each) that may report leaked tokens to `POST /leaks` (GitHub secret-scanning partner payloads, see docs/secret-scanning.md). `KEYWARD_LEAK_REPORT_CREDENTIALS_FILE`: one per line. Unset: /leaks refuses everyone.',
    ),
  KEYWARD_TRUSTED_PROXIES: z
    .string()
    .default('')
    .transform((text, ctx) => {
      const items = text
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item !== '');
      for (const item of items) {
        if (parseCidr(item) === undefined) {
          ctx.addIssue({ code: 'custom', message: `not a CIDR or IP address: ${JSON.stringify(item)}` });
        }
      }
      return items;
    })
    .describe(
      'Comma-separated CIDRs (or addresses) of the proxies in front of the webhook. Only a request whose TCP peer is in this list has its client address read from KEYWARD_CLIENT_IP_HEADER; from any other peer the header is ignored.',
    ),
  KEYWARD_CLIENT_IP_HEADER: headerName
    .default('x-forwarded-for')
    .describe(
      'Where a trusted proxy puts the client address: `x-forwarded-for` (the right-most hop that is not a trusted proxy), or a header holding one address (`x-real-ip`).',
    ),
  KEYWARD_TRUSTED_CLIENT_IP_HEADER: z
    .undefined({
      error:
        'replaced by KEYWARD_TRUSTED_PROXIES (who may set it) and KEYWARD_CLIENT_IP_HEADER (which header)',
    })
    .optional()
    .describe(
      'Removed: set KEYWARD_TRUSTED_PROXIES (who may set the client address) and KEYWARD_CLIENT_IP_HEADER (which header) instead; setting it stops start-up.',
    ),
  KEYWARD_FAILED_ATTEMPTS_LIMIT: count(30, 1_000_000).describe(
    'Malformed or unknown tokens a client address may present in a burst before such requests get 429. A real key (valid, expired, disabled…) is never limited. `0` disables the limit.',
  ),
  KEYWARD_FAILED_ATTEMPTS_WINDOW: duration('1m')
    .refine((ms) => ms > 0, 'must be longer than 0s')
    .describe('The burst refills at LIMIT per WINDOW.'),
  KEYWARD_MAX_HEADER_BYTES: count(16_384, 1_048_576)
    .refine((n) => n >= 1024, 'must be at least 1024')
    .describe('Request line and header block limit (431 beyond; Node counts the URL in it too).'),
  KEYWARD_MAX_URL_BYTES: count(8_192, 1_048_576)
    .refine((n) => n >= 256, 'must be at least 256')
    .describe('Request URL limit (414 beyond).'),
  KEYWARD_USAGE_FLUSH_INTERVAL: duration('5s')
    .refine((ms) => ms >= 100, 'must be at least 100 ms')
    .describe('How often usage counts are written to the store.'),
  KEYWARD_REQUEST_LOG_STORE: z
    .enum(['true', 'false'])
    .default('true')
    .transform((v) => v === 'true')
    .describe(
      'Record every decision of /verify, /tokenreview and /introspect in the store table `request_log` (docs/request-log.md): time, key id, user, actor and subject, method, path without query, client address, result and reason; never a token. `false` turns it off.',
    ),
  KEYWARD_REQUEST_LOG_JSON: z
    .string()
    .trim()
    .default('off')
    .refine(
      (v) => v === 'off' || v === 'stdout' || v.startsWith('/'),
      'want off, stdout or an absolute file path',
    )
    .describe(
      'Also write each request log record as a JSON line: `stdout`, or an absolute file path (appended to). `off`: not at all.',
    ),
  KEYWARD_REQUEST_LOG_FLUSH_INTERVAL: duration('1s')
    .refine((ms) => ms >= 100, 'must be at least 100 ms')
    .describe('How often request log records are written to the store and the JSON lines.'),
  KEYWARD_REQUEST_LOG_BUFFER: count(100_000, 10_000_000)
    .refine((n) => n > 0, 'must be at least 1')
    .describe(
      "Request log rows held per sink while the store is unreachable (or the JSON stream cannot keep up); a row is one decision, or like decisions of one millisecond with their count. Decisions needing a row beyond it are dropped and counted in keyward_webhook_request_log_dropped_total. A request never waits for the log. Retention is the operator's KEYWARD_REQUEST_LOG_RETENTION_DAYS.",
    ),
  KEYWARD_RATE_LIMIT_SYNC_INTERVAL: duration('1s')
    .refine((ms) => ms >= 1000, 'must be at least 1s')
    .describe(
      'How often each replica adds its rate-limit and quota counts to the store and reads the totals back; ' +
        'with N replicas, a limit can be exceeded by at most (N-1) x what one replica admits in two intervals.',
    ),
  KEYWARD_TOKENREVIEW_SCOPE: z
    .string()
    .refine(isValidScope, 'not a scope (e.g. kubernetes, projects:alpha); nothing would grant it')
    .optional()
    .describe('If set, /tokenreview authenticates only keys granted this scope (e.g. `kubernetes`).'),
  // `-` stands for "no prefix", as for --oidc-groups-prefix: an empty value means unset here.
  KEYWARD_TOKENREVIEW_GROUPS_PREFIX: z
    .string()
    .trim()
    .default('keyward:')
    .transform((p) => (p === '-' ? '' : p))
    .refine((p) => !p.startsWith('system:'), 'must not start with system: (Kubernetes reserves it)')
    .describe(
      "Prefix of every group /tokenreview returns, like kube-apiserver's `--oidc-groups-prefix`; `-` for none. Groups starting with `system:` are never returned.",
    ),
  KEYWARD_STORE_POOL_SIZE: count(10, 1000)
    .refine((n) => n > 0, 'must be at least 1')
    .describe(
      'Postgres connections for lookups and the readiness probe. Usage, request log and rate-limit writes have 3 connections of their own.',
    ),
  KEYWARD_STORE_TIMEOUT: duration('2s')
    .refine((ms) => ms > 0, 'must be longer than 0s')
    .describe('Connect and statement timeout of a lookup, and the longest a lookup waits in the queue.'),
  KEYWARD_STORE_MAX_CONCURRENT_LOOKUPS: z.coerce
    .number()
    .int()
    .min(1)
    .max(1000)
    .optional()
    .describe(
      'Store lookups in flight at once; the rest of the pool stays free for the readiness probe. At most KEYWARD_STORE_POOL_SIZE. Unset: the pool size − 1, at least 1.',
    ),
  KEYWARD_STORE_LOOKUP_QUEUE: count(256, 100_000).describe(
    'Lookups that may wait for a slot. Beyond it, lookups of hashes the cache has never seen are shed first (503); re-reads of cached keys displace them.',
  ),
  KEYWARD_STORE_LOOKUP_BATCH: count(64, 1000)
    .refine((n) => n > 0, 'must be at least 1')
    .describe(
      'Most cache misses one store round trip looks up (`= ANY($1)`). Misses that wait for a lookup slot, or arrive in the same event-loop turn, share one; `1` looks each up alone. docs/webhook-lookups.md.',
    ),
  KEYWARD_HTTP_HEADERS_TIMEOUT: duration('5s')
    .refine((ms) => ms >= 100, 'must be at least 100 ms')
    .describe('Time a client has to send the request headers.'),
  KEYWARD_HTTP_REQUEST_TIMEOUT: duration('10s')
    .refine((ms) => ms >= 100, 'must be at least 100 ms')
    .describe('Time a client has to send the whole request (headers and body).'),
  KEYWARD_HTTP_KEEPALIVE_TIMEOUT: duration('75s')
    .refine((ms) => ms >= 100, 'must be at least 100 ms')
    .describe(
      "An idle keep-alive connection is closed after this (longer than the ingress' upstream idle timeout, so the proxy closes first).",
    ),
  KEYWARD_HTTP_MAX_CONNECTIONS: count(4096, 1_000_000)
    .refine((n) => n > 0, 'must be at least 1')
    .describe('Open connections on the verification port; more are refused.'),
  KEYWARD_TLS_CERT_FILE: z
    .string()
    .trim()
    .min(1)
    .optional()
    .describe(
      'Serve HTTPS with this PEM certificate chain and key. Both files are re-read when they change, without a restart. Unset: plain HTTP.',
    ),
  KEYWARD_TLS_KEY_FILE: z
    .string()
    .trim()
    .min(1)
    .optional()
    .describe(
      'Serve HTTPS with this PEM certificate chain and key. Both files are re-read when they change, without a restart. Unset: plain HTTP.',
    ),
  KEYWARD_TLS_CLIENT_CA_FILE: z
    .string()
    .trim()
    .min(1)
    .optional()
    .describe(
      "PEM CA bundle; a client certificate it verifies authenticates a caller of /tokenreview (kube-apiserver's `client-certificate`). Requires TLS.",
    ),
  KEYWARD_TLS_RELOAD_INTERVAL: duration('10s')
    .refine((ms) => ms >= 100, 'must be at least 100 ms')
    .describe('How often the TLS files are checked for changes.'),
  KEYWARD_SHUTDOWN_DELAY: duration('0s').describe(
    'After SIGTERM, keep serving (readiness false) this long so endpoints drop the pod first.',
  ),
  KEYWARD_SHUTDOWN_TIMEOUT: duration('15s').describe('Then wait at most this long for in-flight requests.'),
  KEYWARD_LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .default('info')
    .describe('pino level.'),
});

/** Pool connections kept free of lookups: the readiness probe's (writes have a pool of their own). */
const POOL_RESERVE = 1;

/** Comma-separated values of `name`, plus one per line of the file `name_FILE`. */
function listWithFile(raw: Record<string, unknown>, name: string): string[] {
  let items: string[] = [];
  const inline = raw[name];
  if (typeof inline === 'string') items = inline.split(',');
  const file = raw[`${name}_FILE`];
  if (typeof file === 'string') items = items.concat(readSecretFile(file, `${name}_FILE`).split('\n'));
  return items.map((item) => item.trim()).filter((item) => item !== '');
}

/** Thrown for an invalid environment; the message names every bad variable and never a value of a secret. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

function readSecretFile(path: string, variable: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(`${variable}: cannot read ${path} (${code})`);
  }
}

/** Parses the environment once; throws ConfigError listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): WebhookConfig {
  // Empty strings are how Helm renders an unset value: treat them as unset.
  const raw: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(env)) {
    if (name.startsWith('KEYWARD_') && value !== undefined && value.trim() !== '') raw[name] = value;
  }
  if (raw.KEYWARD_STORE_URL === undefined && typeof raw.KEYWARD_STORE_URL_FILE === 'string') {
    raw.KEYWARD_STORE_URL = readSecretFile(raw.KEYWARD_STORE_URL_FILE, 'KEYWARD_STORE_URL_FILE').trim();
  }
  if (raw.KEYWARD_STORE_WRITE_URL === undefined && typeof raw.KEYWARD_STORE_WRITE_URL_FILE === 'string') {
    raw.KEYWARD_STORE_WRITE_URL = readSecretFile(
      raw.KEYWARD_STORE_WRITE_URL_FILE,
      'KEYWARD_STORE_WRITE_URL_FILE',
    ).trim();
  }
  let pairs: string[] = [];
  if (typeof raw.KEYWARD_INTROSPECT_CREDENTIALS === 'string') {
    pairs = raw.KEYWARD_INTROSPECT_CREDENTIALS.split(',');
  }
  if (typeof raw.KEYWARD_INTROSPECT_CREDENTIALS_FILE === 'string') {
    const text = readSecretFile(
      raw.KEYWARD_INTROSPECT_CREDENTIALS_FILE,
      'KEYWARD_INTROSPECT_CREDENTIALS_FILE',
    );
    pairs = pairs.concat(text.split('\n'));
  }
  raw.KEYWARD_INTROSPECT_CREDENTIALS = pairs.map((p) => p.trim()).filter((p) => p !== '');
  raw.KEYWARD_TOKENREVIEW_CREDENTIALS = listWithFile(raw, 'KEYWARD_TOKENREVIEW_CREDENTIALS');
  raw.KEYWARD_LEAK_REPORT_CREDENTIALS = listWithFile(raw, 'KEYWARD_LEAK_REPORT_CREDENTIALS');

  const parsed = webhookEnvSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`invalid webhook configuration:\n  ${problems.join('\n  ')}`);
  }
  const c = parsed.data;
  const problems: string[] = [];
  if ((c.KEYWARD_TLS_CERT_FILE === undefined) !== (c.KEYWARD_TLS_KEY_FILE === undefined)) {
    problems.push('KEYWARD_TLS_CERT_FILE and KEYWARD_TLS_KEY_FILE: set both or neither');
  }
  if (c.KEYWARD_TLS_CLIENT_CA_FILE !== undefined && c.KEYWARD_TLS_CERT_FILE === undefined) {
    problems.push('KEYWARD_TLS_CLIENT_CA_FILE: client certificates need TLS (KEYWARD_TLS_CERT_FILE)');
  }
  // Node refuses a headers timeout above the request timeout.
  if (c.KEYWARD_HTTP_HEADERS_TIMEOUT > c.KEYWARD_HTTP_REQUEST_TIMEOUT) {
    problems.push('KEYWARD_HTTP_HEADERS_TIMEOUT: must not exceed KEYWARD_HTTP_REQUEST_TIMEOUT');
  }
  const maxConcurrent =
    c.KEYWARD_STORE_MAX_CONCURRENT_LOOKUPS ?? Math.max(1, c.KEYWARD_STORE_POOL_SIZE - POOL_RESERVE);
  if (maxConcurrent > c.KEYWARD_STORE_POOL_SIZE) {
    problems.push('KEYWARD_STORE_MAX_CONCURRENT_LOOKUPS: must not exceed KEYWARD_STORE_POOL_SIZE');
  }
  if (c.KEYWARD_SUBJECT_HEADER === 'authorization' || c.KEYWARD_SUBJECT_HEADER === c.KEYWARD_TOKEN_HEADER) {
    problems.push('KEYWARD_SUBJECT_HEADER: must differ from Authorization and KEYWARD_TOKEN_HEADER');
  }
  if (problems.length > 0) {
    throw new ConfigError(`invalid webhook configuration:\n  ${problems.join('\n  ')}`);
  }
  return {
    storeUrl: c.KEYWARD_STORE_URL,
    storeWriteUrl: c.KEYWARD_STORE_WRITE_URL,
    changePollIntervalMs: c.KEYWARD_CHANGE_POLL_INTERVAL_MS,
    listen: c.KEYWARD_WEBHOOK_LISTEN,
    tokenHeader: c.KEYWARD_TOKEN_HEADER === 'none' ? null : c.KEYWARD_TOKEN_HEADER,
    tokenPrefix: c.KEYWARD_TOKEN_PREFIX,
    subjectHeader: c.KEYWARD_SUBJECT_HEADER,
    cache: {
      maxEntries: c.KEYWARD_CACHE_MAX_ENTRIES,
      ttlMs: c.KEYWARD_CACHE_TTL,
      staleIfErrorMs: c.KEYWARD_CACHE_STALE_IF_ERROR,
      negativeMaxEntries: c.KEYWARD_NEGATIVE_CACHE_MAX_ENTRIES,
      negativeTtlMs: c.KEYWARD_NEGATIVE_CACHE_TTL,
    },
    introspectCredentials: c.KEYWARD_INTROSPECT_CREDENTIALS,
    tokenReviewCredentials: c.KEYWARD_TOKENREVIEW_CREDENTIALS,
    leakReportCredentials: c.KEYWARD_LEAK_REPORT_CREDENTIALS,
    trustedProxies: c.KEYWARD_TRUSTED_PROXIES,
    clientIpHeader: c.KEYWARD_CLIENT_IP_HEADER,
    failedAttempts: { limit: c.KEYWARD_FAILED_ATTEMPTS_LIMIT, windowMs: c.KEYWARD_FAILED_ATTEMPTS_WINDOW },
    maxHeaderBytes: c.KEYWARD_MAX_HEADER_BYTES,
    maxUrlBytes: c.KEYWARD_MAX_URL_BYTES,
    usageFlushIntervalMs: c.KEYWARD_USAGE_FLUSH_INTERVAL,
    requestLog: {
      store: c.KEYWARD_REQUEST_LOG_STORE,
      json:
        c.KEYWARD_REQUEST_LOG_JSON === 'off'
          ? null
          : c.KEYWARD_REQUEST_LOG_JSON === 'stdout'
            ? 'stdout'
            : { file: c.KEYWARD_REQUEST_LOG_JSON },
      flushIntervalMs: c.KEYWARD_REQUEST_LOG_FLUSH_INTERVAL,
      maxPending: c.KEYWARD_REQUEST_LOG_BUFFER,
    },
    rateLimitSyncIntervalMs: c.KEYWARD_RATE_LIMIT_SYNC_INTERVAL,
    tokenReviewScope: c.KEYWARD_TOKENREVIEW_SCOPE,
    tokenReviewGroupsPrefix: c.KEYWARD_TOKENREVIEW_GROUPS_PREFIX,
    storePoolSize: c.KEYWARD_STORE_POOL_SIZE,
    storeTimeoutMs: c.KEYWARD_STORE_TIMEOUT,
    lookups: {
      maxConcurrent,
      maxQueued: c.KEYWARD_STORE_LOOKUP_QUEUE,
      maxBatch: c.KEYWARD_STORE_LOOKUP_BATCH,
    },
    http: {
      headersTimeoutMs: c.KEYWARD_HTTP_HEADERS_TIMEOUT,
      requestTimeoutMs: c.KEYWARD_HTTP_REQUEST_TIMEOUT,
      keepAliveTimeoutMs: c.KEYWARD_HTTP_KEEPALIVE_TIMEOUT,
      maxConnections: c.KEYWARD_HTTP_MAX_CONNECTIONS,
    },
    metricsListen: c.KEYWARD_METRICS_LISTEN,
    tls:
      c.KEYWARD_TLS_CERT_FILE !== undefined && c.KEYWARD_TLS_KEY_FILE !== undefined
        ? {
            certFile: c.KEYWARD_TLS_CERT_FILE,
            keyFile: c.KEYWARD_TLS_KEY_FILE,
            clientCaFile: c.KEYWARD_TLS_CLIENT_CA_FILE ?? null,
            reloadIntervalMs: c.KEYWARD_TLS_RELOAD_INTERVAL,
          }
        : null,
    shutdownDelayMs: c.KEYWARD_SHUTDOWN_DELAY,
    shutdownTimeoutMs: c.KEYWARD_SHUTDOWN_TIMEOUT,
    logLevel: c.KEYWARD_LOG_LEVEL,
  };
}
