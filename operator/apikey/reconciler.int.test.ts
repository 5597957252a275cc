import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type InProcess, startInProcess } from '../../test/support/inprocess.js';
import { argoHealth, condition, kstatus } from '../../test/support/status.js';
import { tokenVerifies } from '../../test/support/store.js';

/**
 * The ApiKey reconciler in this process against the run's real kube-apiserver and Postgres, with an
 * injected clock: what a user observes (status, Secret, Events, whether the token verifies at the
 * clock's time) after the operator has done all it would.
 */
let env: InProcess;
const HOUR = 3_600_000;

beforeAll(async () => {
  env = await startInProcess('akr');
});
// The store counts ttl and grace by the database's clock: each test starts the injected one at now.
beforeEach(() => env.resetClock());
afterAll(async () => {
  await env?.stop();
});

async function user(name: string, spec: object = {}): Promise<void> {
  await env.objects.create('serviceusers', {
    kind: 'ServiceUser',
    metadata: { name },
    spec: { scopes: ['projects:a', 'projects:b'], ...spec },
  });
}

async function key(name: string, userName: string, spec: object = {}, annotations?: object): Promise<void> {
  await env.objects.create('apikeys', {
    kind: 'ApiKey',
    metadata: { name, ...(annotations && { annotations }) },
    spec: { serviceUserRef: { name: userName }, ...spec },
  });
}

/** Creates user and key, converges, and returns the token once Ready. */
async function readyToken(name: string, spec: object = {}, annotations?: object): Promise<string> {
  await user(name);
  await key(name, name, spec, annotations);
  const { key: k } = await env.converge(name);
  expect(condition(k, 'Ready')).toMatchObject({ status: 'True' });
  const token = (await env.tokenOf(name)) ?? '';
  expect(await env.verifies(token)).toBe(true);
  return token;
}

const ready = (k: { status?: Record<string, unknown> }) => condition(k, 'Ready');

describe('defect 1: a change that reduces a key applies whatever blocks it', () => {
  const blocks = [
    {
      block: 'its user’s scopes shrank',
      reason: 'ScopeNotGranted',
      spec: { scopes: ['projects:b'] },
      blockWith: (name: string) =>
        env.objects.patch('serviceusers', name, { spec: { scopes: ['projects:a'] } }),
      user: true,
    },
    {
      block: 'its user is being deleted',
      reason: 'ServiceUserNotFound',
      spec: {},
      blockWith: async (name: string) => {
        // A second finalizer keeps the user in deletion; its reconciler is not run (user: false).
        await env.objects.patch('serviceusers', name, {
          metadata: { finalizers: ['keyward.dev/revoke', 'test/hold'] },
        });
        await env.objects.delete('serviceusers', name);
      },
      user: false,
    },
    {
      block: 'its Secret was taken out of keyward’s hands',
      reason: 'SecretConflict',
      spec: {},
      // The ownerReference edited away: the Secret (and the token in it) is no longer the key's to write.
      blockWith: (name: string) =>
        env.core.patchNamespacedSecret(
          { namespace: env.ns, name, body: { metadata: { ownerReferences: null } } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        ),
      user: true,
    },
  ];
  const changes = [
    {
      change: 'spec.disabled',
      apply: (name: string) => env.objects.patch('apikeys', name, { spec: { disabled: true } }),
      after: async () => undefined,
      flag: 'Disabled',
    },
    {
      change: 'a ttl that has passed',
      apply: (name: string) => env.objects.patch('apikeys', name, { spec: { ttl: '1h' } }),
      after: () => env.clock.advance(2 * HOUR),
      flag: 'Expired',
    },
    {
      change: 'deletion (revocation)',
      apply: (name: string) => env.objects.delete('apikeys', name),
      after: async () => undefined,
      flag: undefined,
    },
  ];
  const rows = blocks.flatMap((b) => changes.map((c) => ({ ...b, ...c })));
  let n = 0;
  it.each(rows)('$change applies while $block', async (row) => {
    const name = `b${++n}`;
    const token = await readyToken(name, row.spec);
    await row.blockWith(name);
    const { key: blocked } = await env.converge(name, { user: row.user });
    expect(ready(blocked)).toMatchObject({ status: 'False', reason: row.reason });
    // Blocked, yet the token still verifies: the block alone takes nothing away.
    expect(await env.verifies(token)).toBe(true);

    await row.apply(name);
    await row.after();
    const { key: after } = await env.converge(name, { user: row.user });
    expect(await env.verifies(token)).toBe(false);
    if (row.flag) {
      expect(ready(after)).toMatchObject({ status: 'False', reason: row.reason });
      expect(condition(after, row.flag)?.status).toBe('True');
    }
    if (!row.user) await env.objects.patch('serviceusers', name, { metadata: { finalizers: null } });
  });
});

describe('defect 3: a deleted and re-created ServiceUser', () => {
  it('gets its keys back, Ready with fresh secrets, and an Event says so', async () => {
    const before = await readyToken('rc');
    const keyId = (await env.objects.get('apikeys', 'rc')).status?.keyId;
    expect(keyId).toBeTruthy();
    await env.objects.delete('serviceusers', 'rc');
    const { key: orphaned } = await env.converge('rc');
    expect(ready(orphaned)).toMatchObject({ status: 'False', reason: 'ServiceUserDeleted' });
    expect(condition(orphaned, 'Stalled')?.status).toBe('True');
    expect(await env.verifies(before)).toBe(false);

    await user('rc');
    const { key: back } = await env.converge('rc');
    expect(ready(back)).toMatchObject({ status: 'True', reason: 'Issued' });
    expect(back.status?.keyId).toBe(keyId);
    const after = (await env.tokenOf('rc')) ?? '';
    expect(after).not.toBe(before);
    expect(await env.verifies(after)).toBe(true);
    expect(await env.verifies(before)).toBe(false);
    expect(await env.eventReasons('rc')).toContain('Reissued');
  });
});

describe('defect 2 and Stalled: an expired key', () => {
  it('is Stalled (kstatus Failed), stays expired past its schedule, and a manual rotation renews it', async () => {
    const first = await readyToken('exp', { ttl: '1h', rotation: { every: '2h' } });
    await env.clock.advance(1.5 * HOUR);
    const { key: expired } = await env.converge('exp');
    expect(ready(expired)).toMatchObject({ status: 'False', reason: 'Expired' });
    expect(condition(expired, 'Stalled')).toMatchObject({ status: 'True', reason: 'Expired' });
    expect(await kstatus(expired)).toBe('Failed');
    expect((await argoHealth('ApiKey', expired)).status).toBe('Degraded');
    expect(await env.verifies(first)).toBe(false);

    // Past rotation.every: a scheduled rotation never revives it.
    await env.clock.advance(HOUR);
    await env.converge('exp');
    expect(await env.tokenOf('exp')).toBe(first);
    expect(await env.eventReasons('exp')).not.toContain('Rotated');

    // The documented decision (docs/rotation.md): a manual rotation renews an expired ttl key, and
    // the expired token gets no grace period.
    await env.objects.patch('apikeys', 'exp', {
      metadata: { annotations: { 'keyward.dev/rotate': 'renew' } },
    });
    const { key: renewed } = await env.converge('exp');
    const second = (await env.tokenOf('exp')) ?? '';
    expect(second).not.toBe(first);
    expect(
      Date.parse(String(renewed.status?.expiresAt)) - Date.parse(String(renewed.status?.rotatedAt)),
    ).toBe(HOUR);
    // The store counts the renewed ttl from its own clock (the real time), so the tokens are judged
    // at that time, and the injected clock goes back to it.
    const storeNow = new Date(Date.now() + 1000);
    expect(await tokenVerifies(env.pool, second, storeNow)).toBeDefined();
    expect(await tokenVerifies(env.pool, first, storeNow)).toBeUndefined();
    env.resetClock();
    const { key: back } = await env.converge('exp');
    expect(ready(back)).toMatchObject({ status: 'True' });
    expect(condition(back, 'Stalled')?.status).toBe('False');
  });

  it('a disabled key is not Stalled: switched off on purpose (Argo CD Suspended, kstatus InProgress)', async () => {
    await readyToken('off');
    await env.objects.patch('apikeys', 'off', { spec: { disabled: true } });
    const { key: off } = await env.converge('off');
    expect(ready(off)).toMatchObject({ status: 'False', reason: 'Disabled' });
    expect(condition(off, 'Stalled')?.status).toBe('False');
    expect(await kstatus(off)).toBe('InProgress');
    expect((await argoHealth('ApiKey', off)).status).toBe('Suspended');
  });
});
