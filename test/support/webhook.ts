import { randomUUID } from 'node:crypto';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import pg from 'pg';
import { generateToken } from '../../credentials/token.js';
import { eventually } from '../../devenv/poll.js';
import { migrate } from '../../store/migrate.js';
import { OperatorStore, type ServiceUserSpec } from '../../store/operator-store.js';
import { type AppOptions, buildApp } from '../../webhook/app.js';
import { loadConfig, type WebhookConfig } from '../../webhook/config.js';
import { createLogger } from '../../webhook/logger.js';
import { type RunningWebhook, runWebhook } from '../../webhook/server.js';

/**
 * Webhook test support: a real store (migrated), the operator's store API to create users and
 * keys exactly as the operator would, and apps built against it. Product code never imports it.
 */
export interface StoreFixture {
  readonly url: string;
  readonly pool: pg.Pool;
  readonly store: OperatorStore;
  createUser(options?: UserOptions): Promise<TestUser>;
  issueKey(user: TestUser, options?: KeyOptions): Promise<TestKey>;
  /** Suspends or resumes the user the way the operator does: the same spec, `suspended` flipped. */
  setSuspended(user: TestUser, suspended: boolean): Promise<void>;
  close(): Promise<void>;
}

export interface UserOptions {
  username?: string;
  groups?: string[];
  scopes?: string[];
  suspended?: boolean;
  namespace?: string;
  /** What an AccessPolicy would grant: the user's keys authenticate on /tokenreview. Default false. */
  kubernetesAuthentication?: boolean;
}

export interface TestUser {
  readonly id: string;
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly username: string;
}

export interface KeyOptions {
  scopes?: string[] | null;
  expiresAt?: Date | null;
  disabled?: boolean;
}

export interface TestKey {
  readonly token: string;
  readonly keyId: string;
  readonly apiKeyId: string;
  readonly uid: string;
  readonly user: TestUser;
}

let counter = 0;

/**
 * Migrates the store at `url` (as that URL's role) and opens the operator's store API on it, or
 * on `operatorUrl` when the operator runs as another role.
 */
export async function storeFixture(url: string, poolSize = 5, operatorUrl = url): Promise<StoreFixture> {
  await migrate(url);
  const pool = new pg.Pool({ connectionString: operatorUrl, max: poolSize });
  pool.on('error', () => undefined);
  const store = new OperatorStore(pool, { actor: 'webhook-tests' });
  const specs = new Map<string, ServiceUserSpec>();
  const upsert = async (spec: ServiceUserSpec): Promise<string> => {
    const result = await store.upsertServiceUser(spec);
    if (result.kind !== 'ok') throw new Error(`upsertServiceUser: ${result.kind}`);
    specs.set(spec.ref.uid, spec);
    return result.user.id;
  };
  return {
    url,
    pool,
    store,
    async createUser(options: UserOptions = {}): Promise<TestUser> {
      counter += 1;
      const username = options.username ?? `user-${process.pid}-${counter}-${randomUUID().slice(0, 8)}`;
      const ref = {
        namespace: options.namespace ?? 'tests',
        name: username.toLowerCase(),
        uid: randomUUID(),
      };
      const id = await upsert({
        ref,
        username,
        description: 'webhook test user',
        contact: null,
        groups: options.groups ?? ['team-a'],
        scopes: options.scopes ?? ['projects:*'],
        suspended: options.suspended ?? false,
        kubernetesAuthentication: options.kubernetesAuthentication ?? false,
      });
      return { id, uid: ref.uid, namespace: ref.namespace, name: ref.name, username };
    },
    async issueKey(user: TestUser, options: KeyOptions = {}): Promise<TestKey> {
      counter += 1;
      const generated = generateToken();
      const ref = {
        namespace: user.namespace,
        name: `key-${counter}-${randomUUID().slice(0, 8)}`,
        uid: randomUUID(),
      };
      const result = await store.issueKey({
        ref,
        serviceUserName: user.name,
        hash: generated.hash,
        displayPrefix: generated.displayPrefix,
        scopes: options.scopes ?? null,
        expiresAt: options.expiresAt ?? null,
        disabled: options.disabled ?? false,
      });
      if (result.kind !== 'ok') throw new Error(`issueKey: ${result.kind}`);
      return { token: generated.token, keyId: result.key.keyId, apiKeyId: result.key.id, uid: ref.uid, user };
    },
    async setSuspended(user: TestUser, suspended: boolean): Promise<void> {
      const spec = specs.get(user.uid);
      if (!spec) throw new Error(`setSuspended: ${user.username} was not created by this fixture`);
      await upsert({ ...spec, suspended });
    },
    async close(): Promise<void> {
      await pool.end();
    },
  };
}

/** Config for an app under test: the given store, quick timings, no limit unless asked. */
export function testConfig(storeUrl: string, env: Record<string, string> = {}): WebhookConfig {
  return loadConfig({
    KEYWARD_STORE_URL: storeUrl,
    KEYWARD_WEBHOOK_LISTEN: '127.0.0.1:0',
    KEYWARD_METRICS_LISTEN: '127.0.0.1:0',
    KEYWARD_FAILED_ATTEMPTS_LIMIT: '0',
    KEYWARD_STORE_TIMEOUT: '2s',
    KEYWARD_LOG_LEVEL: 'silent',
    ...env,
  });
}

/** Builds an app, waits for its listener to attach (ready), and returns it. */
export async function readyApp(
  config: WebhookConfig,
  options: Omit<AppOptions, 'config'> = {},
): Promise<FastifyInstance> {
  const app = await buildApp({
    config,
    logger: options.logger ?? createLogger({ level: config.logLevel }),
    defaultMetrics: false,
    listener: { initialBackoffMs: 50, maxBackoffMs: 500, heartbeatMs: 1000 },
    ...options,
  });
  await app.ready();
  await eventually('webhook ready', async () => (await app.keyward.readiness()).ready, 10_000);
  return app;
}

/** Runs the whole webhook (its HTTP listener on `config`'s address) and waits until /readyz is 200. */
export async function runReadyWebhook(config: WebhookConfig): Promise<RunningWebhook> {
  const webhook = await runWebhook({ config, handleSignals: false, defaultMetrics: false });
  await eventually(
    'webhook ready',
    async () => (await fetch(`${webhook.url}/readyz`)).status === 200,
    10_000,
  );
  return webhook;
}

export function verify(
  app: FastifyInstance,
  token: string | undefined,
  options: { scope?: string; headers?: Record<string, string>; path?: string } = {},
): Promise<LightMyRequestResponse> {
  const headers: Record<string, string> = { ...options.headers };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const path = options.path ?? '/verify';
  return app.inject({
    method: 'GET',
    url: options.scope === undefined ? path : `${path}?scope=${encodeURIComponent(options.scope)}`,
    headers,
  });
}

/** What the metrics port would serve for this app. */
export function metricsText(app: FastifyInstance): Promise<string> {
  return app.keyward.renderMetrics();
}
