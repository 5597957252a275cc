import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { parseDuration } from '../api/duration.js';

/**
 * Webhook configuration, read once from the environment at start-up (12-factor, and what a
 * Deployment's `env`/`envFrom` gives). Every variable is optional except KEYWARD_STORE_URL. Each
 * one's meaning is in its `.describe()` below, from which docs/configuration.md is generated.
 */
export interface WebhookConfig {
  readonly storeUrl: string;
  readonly listen: { readonly host: string; readonly port: number };
  /** Lower-case header name, or null for `Authorization` only. */
  readonly tokenHeader: string | null;
  readonly tokenPrefix: string | undefined;
  readonly cache: {
    readonly maxEntries: number;
    readonly ttlMs: number;
    readonly staleIfErrorMs: number;
    readonly negativeMaxEntries: number;
    readonly negativeTtlMs: number;
  };
  readonly introspectCredentials: ReadonlyArray<{ readonly clientId: string; readonly secret: string }>;
  /** Lower-case header name, or null to use the peer address. */
  readonly trustedClientIpHeader: string | null;
  readonly failedAttempts: { readonly limit: number; readonly windowMs: number };
  readonly maxHeaderBytes: number;
  readonly maxUrlBytes: number;
  readonly usageFlushIntervalMs: number;
  readonly tokenReviewScope: string | undefined;
  /** Prepended to every group /tokenreview returns; '' for none. */
  readonly tokenReviewGroupsPrefix: string;
  readonly storePoolSize: number;
  readonly storeTimeoutMs: number;
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

const listen = z
  .string()
  .default('0.0.0.0:8080')
  .transform((text, ctx) => {
    const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(text.trim());
    const port = Number(match?.[3]);
    if (!match || port > 65535) {
      ctx.addIssue({ code: 'custom', message: `want host:port or [ipv6]:port, got ${JSON.stringify(text)}` });
      return z.NEVER;
    }
    return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
  });

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
  KEYWARD_WEBHOOK_LISTEN: listen.describe('`host:port` to listen on (`[::]:8080` for IPv6).'),
  KEYWARD_TOKEN_HEADER: z
    .union([z.literal('none'), headerName])
    .default('x-api-key')
    .describe(
      'Header that carries a bare token, besides `Authorization: Bearer`. `none` accepts only `Authorization`.',
    ),
  KEYWARD_TOKEN_PREFIX: z
    .string()
    .regex(/^[a-z]{1,8}$/, 'token prefix is 1-8 lowercase ASCII letters')
    .optional()
    .describe(
      'Accept only tokens with this prefix; others are rejected without a lookup. Unset: any prefix.',
    ),
  KEYWARD_CACHE_MAX_ENTRIES: count(100_000, 10_000_000)
    .refine((n) => n > 0, 'must be at least 1')
    .describe('Positive cache size (LRU).'),
  KEYWARD_CACHE_TTL: duration('60s').describe(
    'Backstop: a cached key is re-read from the store at least this often, even without a notification.',
  ),
  KEYWARD_CACHE_STALE_IF_ERROR: duration('5m').describe(
    'While the store cannot answer, a cached key verified within this window is still served. `0s` disables.',
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
  KEYWARD_TRUSTED_CLIENT_IP_HEADER: headerName
    .optional()
    .describe(
      'Header the ingress sets to the client address (`x-real-ip`, `x-forwarded-for`: its last element is used). Only set it when every request comes through that ingress. Unset: the peer address.',
    ),
  KEYWARD_FAILED_ATTEMPTS_LIMIT: count(30, 1_000_000).describe(
    'Failed verifications a client address may make in a burst before getting 429. `0` disables the limit.',
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
  KEYWARD_TOKENREVIEW_SCOPE: z
    .string()
    .min(1)
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
    .describe('Postgres connections for lookups.'),
  KEYWARD_STORE_TIMEOUT: duration('2s')
    .refine((ms) => ms > 0, 'must be longer than 0s')
    .describe('Connect and statement timeout of a lookup.'),
  KEYWARD_SHUTDOWN_DELAY: duration('0s').describe(
    'After SIGTERM, keep serving (readiness false) this long so endpoints drop the pod first.',
  ),
  KEYWARD_SHUTDOWN_TIMEOUT: duration('15s').describe('Then wait at most this long for in-flight requests.'),
  KEYWARD_LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .default('info')
    .describe('pino level.'),
});

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

  const parsed = webhookEnvSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`invalid webhook configuration:\n  ${problems.join('\n  ')}`);
  }
  const c = parsed.data;
  return {
    storeUrl: c.KEYWARD_STORE_URL,
    listen: c.KEYWARD_WEBHOOK_LISTEN,
    tokenHeader: c.KEYWARD_TOKEN_HEADER === 'none' ? null : c.KEYWARD_TOKEN_HEADER,
    tokenPrefix: c.KEYWARD_TOKEN_PREFIX,
    cache: {
      maxEntries: c.KEYWARD_CACHE_MAX_ENTRIES,
      ttlMs: c.KEYWARD_CACHE_TTL,
      staleIfErrorMs: c.KEYWARD_CACHE_STALE_IF_ERROR,
      negativeMaxEntries: c.KEYWARD_NEGATIVE_CACHE_MAX_ENTRIES,
      negativeTtlMs: c.KEYWARD_NEGATIVE_CACHE_TTL,
    },
    introspectCredentials: c.KEYWARD_INTROSPECT_CREDENTIALS,
    trustedClientIpHeader: c.KEYWARD_TRUSTED_CLIENT_IP_HEADER ?? null,
    failedAttempts: { limit: c.KEYWARD_FAILED_ATTEMPTS_LIMIT, windowMs: c.KEYWARD_FAILED_ATTEMPTS_WINDOW },
    maxHeaderBytes: c.KEYWARD_MAX_HEADER_BYTES,
    maxUrlBytes: c.KEYWARD_MAX_URL_BYTES,
    usageFlushIntervalMs: c.KEYWARD_USAGE_FLUSH_INTERVAL,
    tokenReviewScope: c.KEYWARD_TOKENREVIEW_SCOPE,
    tokenReviewGroupsPrefix: c.KEYWARD_TOKENREVIEW_GROUPS_PREFIX,
    storePoolSize: c.KEYWARD_STORE_POOL_SIZE,
    storeTimeoutMs: c.KEYWARD_STORE_TIMEOUT,
    shutdownDelayMs: c.KEYWARD_SHUTDOWN_DELAY,
    shutdownTimeoutMs: c.KEYWARD_SHUTDOWN_TIMEOUT,
    logLevel: c.KEYWARD_LOG_LEVEL,
  };
}
