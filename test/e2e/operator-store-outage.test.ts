import { CustomObjectsApi, EventsV1Api, type KubeConfig } from '@kubernetes/client-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace } from '../../devenv/kube.js';
import {
  applyAccessPolicy,
  KeywardObjects,
  type OperatorProcess,
  operatorKubeconfig,
  startOperator,
} from '../../devenv/operator.js';
import { eventually } from '../../devenv/poll.js';
import { startPostgres, type TestPostgres } from '../../devenv/postgres.js';
import { migrate } from '../../store/migrate.js';
import { testKubeConfig } from '../harness/kube.js';
import { condition } from '../support/status.js';

/**
 * The store goes away under a running operator: healthy keys keep Ready, work that needs the store
 * reports StoreUnavailable and retries with backoff, and everything converges once Postgres is back.
 * What tenants read in status and Events says no more than that: not the store's host, port, role
 * or database, which the driver's error text names. A private Postgres, so stopping it does not
 * disturb other suites; its role and database have names a leak would be recognised by.
 */
const ROLE = 'kw_outage_operator_role';
const DATABASE = 'kw_outage_store_db';
const PASSWORD = 'kw-outage-password-7f3a';
let kc: KubeConfig;
let ns: string;
let objects: KeywardObjects;
let postgres: TestPostgres;
let operator: OperatorProcess;
let storeUrl: string;

beforeAll(async () => {
  kc = testKubeConfig();
  ns = await createTestNamespace(kc, 'store-outage');
  // What these suites create (unprefixed usernames, shared scopes) needs the cluster admin's grant.
  await applyAccessPolicy(kc, ns, { namespaces: [ns], usernames: ['*'], scopes: ['*'] });
  objects = new KeywardObjects(kc, ns);
  postgres = await startPostgres();
  const admin = new pg.Client({ connectionString: postgres.adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE ROLE ${ROLE} LOGIN PASSWORD '${PASSWORD}'`);
    // The migrating role lacks CREATEROLE, so the store's group roles are made beforehand, as a
    // DBA would (docs/store-roles.md).
    await admin.query('CREATE ROLE keyward_operator NOLOGIN');
    await admin.query('CREATE ROLE keyward_webhook NOLOGIN');
    await admin.query(`CREATE DATABASE ${DATABASE} OWNER ${ROLE}`);
  } finally {
    await admin.end();
  }
  const url = new URL(postgres.adminUrl);
  url.username = ROLE;
  url.password = PASSWORD;
  url.pathname = `/${DATABASE}`;
  storeUrl = url.toString();
  await migrate(storeUrl);
  const kubeconfigPath = await operatorKubeconfig(kc, ns);
  operator = await startOperator({
    kubeconfigPath,
    storeUrl,
    namespace: ns,
    watchNamespace: ns,
  });
});

afterAll(async () => {
  await operator?.stop();
  await postgres?.stop();
});

/**
 * Every condition of every object and every Event in the namespace, as a tenant with read access
 * sees them, names neither the store's host, port, role, database or password, nor `extra` words.
 */
async function expectNoStoreDetail(namespace: string, url: string, extra: string[]): Promise<void> {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const events = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace });
  const lists = await Promise.all(
    ['serviceusers', 'apikeys'].map((plural) =>
      custom.listNamespacedCustomObject({ group: 'keyward.dev', version: 'v1alpha1', namespace, plural }),
    ),
  );
  const everything = JSON.stringify({
    events: events.items.map((e) => ({ reason: e.reason, note: e.note })),
    status: lists.flatMap((l) => (l as { items: Array<{ status?: unknown }> }).items.map((i) => i.status)),
  });
  const store = new URL(url);
  const words = [
    store.hostname,
    `:${store.port}`,
    store.username,
    store.pathname.slice(1),
    PASSWORD,
    ...extra,
  ];
  for (const word of words) expect(everything, `status or Events mention ${word}`).not.toContain(word);
}

describe('store outage', () => {
  it('keeps healthy keys Ready, reports StoreUnavailable, and converges after Postgres returns', async () => {
    await objects.create('serviceusers', {
      kind: 'ServiceUser',
      metadata: { name: 'outage' },
      spec: { scopes: ['*'] },
    });
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'healthy' },
      spec: { serviceUserRef: { name: 'outage' } },
    });
    await eventually('healthy key Ready', async () =>
      condition(await objects.get('apikeys', 'healthy'), 'Ready')?.status === 'True' ? true : undefined,
    );

    await postgres.pause();
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'during' },
      spec: { serviceUserRef: { name: 'outage' } },
    });
    const during = await eventually(
      'StoreUnavailable on the new key',
      async () => {
        const key = await objects.get('apikeys', 'during');
        return condition(key, 'StoreAvailable')?.status === 'False' ? key : undefined;
      },
      30_000,
      () => operator.process.logTail(20),
    );
    expect(condition(during, 'StoreAvailable')).toMatchObject({
      reason: 'StoreUnavailable',
      message: 'credential store unavailable; retrying',
    });
    const events = await eventually('the StoreUnavailable Event', async () => {
      const list = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns });
      return list.items.some((e) => e.regarding?.name === 'during' && e.reason === 'StoreUnavailable')
        ? list.items
        : undefined;
    });
    expect(events.length).toBeGreaterThan(0);
    await expectNoStoreDetail(ns, storeUrl, ['ECONNREFUSED']);
    // The operator's log is where the detail goes, and the password never does.
    const log = operator.process.logTail(100_000);
    expect(log).toContain('ECONNREFUSED');
    expect(log).not.toContain(PASSWORD);
    const healthy = await objects.get('apikeys', 'healthy');
    expect(condition(healthy, 'Ready')?.status).toBe('True');

    await postgres.resume();
    const converged = await eventually(
      'the new key issued after the store returns',
      async () => {
        const key = await objects.get('apikeys', 'during');
        return condition(key, 'Ready')?.status === 'True' ? key : undefined;
      },
      60_000,
      () => operator.process.logTail(20),
    );
    expect(condition(converged, 'StoreAvailable')).toBeUndefined();
    expect(converged.status?.keyId).toMatch(/^key_/);
  });
});

describe('a store that refuses the operator', () => {
  it('reads as unavailable in status and Events, with the refusal only in the log', async () => {
    const namespace = await createTestNamespace(kc, 'store-refused');
    const refusedRole = 'kw_refused_operator_role';
    const url = new URL(storeUrl);
    url.username = refusedRole;
    const refused = await startOperator({
      kubeconfigPath: await operatorKubeconfig(kc, namespace),
      storeUrl: url.toString(),
      namespace,
      watchNamespace: namespace,
    });
    try {
      const objects = new KeywardObjects(kc, namespace);
      await objects.create('serviceusers', { kind: 'ServiceUser', metadata: { name: 'refused' }, spec: {} });
      await objects.create('apikeys', {
        kind: 'ApiKey',
        metadata: { name: 'refused-key' },
        spec: { serviceUserRef: { name: 'refused' } },
      });
      for (const [plural, name] of [
        ['serviceusers', 'refused'],
        ['apikeys', 'refused-key'],
      ] as const) {
        const obj = await eventually(
          `StoreAvailable=False on ${plural}/${name}`,
          async () => {
            const o = await objects.get(plural, name);
            return condition(o, 'StoreAvailable')?.status === 'False' ? o : undefined;
          },
          30_000,
          () => refused.process.logTail(20),
        );
        expect(condition(obj, 'StoreAvailable')?.message).toBe('credential store unavailable; retrying');
      }
      await eventually('the StoreUnavailable Events', async () => {
        const list = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace });
        return list.items.filter((e) => e.reason === 'StoreUnavailable').length >= 2 ? true : undefined;
      });
      await expectNoStoreDetail(namespace, url.toString(), ['does not exist', 'authentication']);
      const log = refused.process.logTail(100_000);
      expect(log).toContain(`role \\"${refusedRole}\\" does not exist`);
      expect(log).not.toContain(PASSWORD);
    } finally {
      await refused.stop();
    }
  });
});
