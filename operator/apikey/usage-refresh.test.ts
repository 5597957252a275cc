import { randomUUID } from 'node:crypto';
import type { KubernetesObject } from '@kubernetes/client-node';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken } from '../../credentials/token.js';
import { migrate } from '../../store/migrate.js';
import { type ApiKeyState, OperatorStore } from '../../store/operator-store.js';
import { UsageBatcher } from '../../store/usage.js';
import { testDatabase } from '../../test/harness/database.js';
import { UsageRefresh } from './usage-refresh.js';

let pool: pg.Pool;
let store: OperatorStore;

beforeAll(async () => {
  const url = await testDatabase();
  await migrate(url);
  pool = new pg.Pool({ connectionString: url, max: 4 });
  store = new OperatorStore(pool);
});

afterAll(async () => {
  await pool?.end();
});

async function keysIn(namespace: string, names: string[]): Promise<ApiKeyState[]> {
  await store.upsertServiceUser({
    ref: { namespace, name: 'svc', uid: randomUUID() },
    username: namespace,
    description: '',
    contact: null,
    groups: [],
    scopes: ['*'],
    suspended: false,
  });
  const keys: ApiKeyState[] = [];
  for (const name of names) {
    const t = generateToken();
    const result = await store.issueKey({
      ref: { namespace, name, uid: randomUUID() },
      serviceUserName: 'svc',
      hash: t.hash,
      displayPrefix: t.displayPrefix,
    });
    if (result.kind !== 'ok') throw new Error(result.kind);
    keys.push(result.key);
  }
  return keys;
}

async function use(key: ApiKeyState, at: Date): Promise<void> {
  const usage = new UsageBatcher(pool, { flushIntervalMs: 3_600_000, now: () => at.getTime() });
  usage.record(key.id, 'allowed');
  await usage.close();
}

/** What the informer would hold: the ApiKey with the lastUsedAt its status shows. */
function cached(namespace: string, name: string, lastUsedAt?: Date): KubernetesObject {
  return {
    metadata: { namespace, name },
    ...(lastUsedAt && { status: { lastUsedAt: lastUsedAt.toISOString() } }),
  } as KubernetesObject;
}

describe('UsageRefresh', () => {
  it('queues exactly the keys whose status.lastUsedAt is behind a recent use in the store', async () => {
    const namespace = `ns-${randomUUID().slice(0, 8)}`;
    const [used, shown, idle, old] = await keysIn(namespace, ['used', 'shown', 'idle', 'old']);
    const now = Date.now();
    const recent = new Date(now - 5_000);
    await use(used as ApiKeyState, recent);
    await use(shown as ApiKeyState, recent);
    // Used, but long before the look-back: its status was brought up to date back then.
    await use(old as ApiKeyState, new Date(now - 3_600_000));
    const informer = new Map([
      [`${namespace}/used`, cached(namespace, 'used', new Date(now - 60_000))],
      [`${namespace}/shown`, cached(namespace, 'shown', recent)],
      [`${namespace}/idle`, cached(namespace, 'idle')],
      [`${namespace}/old`, cached(namespace, 'old')],
    ]);
    const queued: string[] = [];
    const refresh = new UsageRefresh({
      store,
      apiKeys: { get: (key) => informer.get(key) },
      logger: pino({ level: 'silent' }),
      namespaces: [namespace],
      enqueue: (key) => queued.push(key),
      intervalMs: 30_000,
    });
    await refresh.poll();
    expect(queued).toEqual([`${namespace}/used`]);
    expect(idle).toBeDefined();
  });

  it('looks only at the namespaces it watches and never at revoked keys', async () => {
    const watched = `ns-${randomUUID().slice(0, 8)}`;
    const other = `ns-${randomUUID().slice(0, 8)}`;
    const [mine, revoked] = await keysIn(watched, ['mine', 'revoked']);
    const [theirs] = await keysIn(other, ['theirs']);
    const at = new Date(Date.now() - 1_000);
    for (const k of [mine, revoked, theirs]) await use(k as ApiKeyState, at);
    await store.revokeKey((revoked as ApiKeyState).ref.uid);
    const queued: string[] = [];
    const refresh = new UsageRefresh({
      store,
      apiKeys: { get: () => undefined },
      logger: pino({ level: 'silent' }),
      namespaces: [watched],
      enqueue: (key) => queued.push(key),
      intervalMs: 30_000,
    });
    await refresh.poll();
    expect(queued).toEqual([`${watched}/mine`]);
  });
});
