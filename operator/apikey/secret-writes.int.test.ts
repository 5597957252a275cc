import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type InProcess, startInProcess } from '../../test/support/inprocess.js';
import { condition } from '../../test/support/status.js';

/**
 * The ApiKey's Secret writes, in this process against the real kube-apiserver and Postgres: what
 * informer lag, a refused write, and edits that keep the token do to the token workloads hold.
 */
let env: InProcess;

beforeAll(async () => {
  env = await startInProcess('aksw');
});
beforeEach(() => env.resetClock());
afterAll(async () => {
  await env?.stop();
});

async function readyToken(name: string, spec: object = {}, annotations?: object): Promise<string> {
  await env.objects.create('serviceusers', { kind: 'ServiceUser', metadata: { name }, spec: {} });
  await env.objects.create('apikeys', {
    kind: 'ApiKey',
    metadata: { name, ...(annotations && { annotations }) },
    spec: { serviceUserRef: { name }, ...spec },
  });
  const { key } = await env.converge(name);
  expect(condition(key, 'Ready')).toMatchObject({ status: 'True' });
  return (await env.tokenOf(name, (spec as { secret?: { tokenKey?: string } }).secret?.tokenKey)) ?? '';
}

const rotate = (name: string, value: string) =>
  env.objects.patch('apikeys', name, { metadata: { annotations: { 'keyward.dev/rotate': value } } });

const patchSecret = (name: string, body: object) =>
  env.core.patchNamespacedSecret(
    { namespace: env.ns, name, body },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );

const rotations = async (name: string): Promise<number> =>
  (await env.eventReasons(name)).filter((r) => r === 'Rotated' || r === 'SecretLost').length;

describe('defect 5: informer lag never rotates a second time', () => {
  it('the status event arriving before the Secret’s (the Secret informer never catches up)', async () => {
    const secrets = await env.secretInformer();
    const reconciler = env.keyReconciler(secrets);
    await env.objects.create('serviceusers', { kind: 'ServiceUser', metadata: { name: 'lag' }, spec: {} });
    await env.objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'lag' },
      spec: { serviceUserRef: { name: 'lag' } },
    });
    await env.converge('lag', { reconciler });
    const first = (await env.tokenOf('lag')) ?? '';
    await secrets.stop();
    await rotate('lag', 'v1');
    await env.converge('lag', { reconciler });
    const second = (await env.tokenOf('lag')) ?? '';
    expect(second).not.toBe(first);
    expect(await rotations('lag')).toBe(1);
    expect(await env.verifies(first)).toBe(true);
    expect(await env.verifies(second)).toBe(true);
  });

  it('a restarted operator whose informer still holds the Secret from before a rotation', async () => {
    await readyToken('lag2');
    const stale = await env.secretInformer();
    await stale.stop();
    await rotate('lag2', 'v1');
    await env.converge('lag2');
    const rotated = (await env.tokenOf('lag2')) ?? '';
    await env.converge('lag2', { reconciler: env.keyReconciler(stale) });
    expect(await env.tokenOf('lag2')).toBe(rotated);
    expect(await rotations('lag2')).toBe(1);
  });
});

/** Spec annotations the API server refuses on a Secret: more than its 256 KiB for all annotations. */
const TOO_LONG = Object.fromEntries([1, 2, 3, 4, 5].map((i) => [`example.com/a${i}`, 'x'.repeat(60_000)]));

describe('defect 6: a Secret the API server refuses', () => {
  it('during a rotation: Ready=False with its message, no retry, no rotation; fixed, it rotates once', async () => {
    const token = await readyToken('big');
    const rotatedAt = (await env.objects.get('apikeys', 'big')).status?.rotatedAt;
    await env.objects.patch('apikeys', 'big', {
      metadata: { annotations: { 'keyward.dev/rotate': 'v1' } },
      spec: { secret: { annotations: TOO_LONG } },
    });
    const { key, result } = await env.converge('big');
    expect(condition(key, 'Ready')).toMatchObject({ status: 'False', reason: 'SecretWriteFailed' });
    expect(condition(key, 'Ready')?.message).toMatch(/Too long/);
    expect(condition(key, 'Stalled')).toMatchObject({ status: 'True', reason: 'SecretWriteFailed' });
    expect(result?.requeueAfterMs).toBeUndefined();
    expect(key.status?.rotatedAt).toBe(rotatedAt);
    expect(await env.tokenOf('big')).toBe(token);
    expect(await env.verifies(token)).toBe(true);
    expect(await rotations('big')).toBe(0);

    await env.objects.patch('apikeys', 'big', { spec: { secret: { annotations: null } } });
    const { key: fixed } = await env.converge('big');
    expect(condition(fixed, 'Ready')).toMatchObject({ status: 'True' });
    expect(await rotations('big')).toBe(1);
    expect(await env.tokenOf('big')).not.toBe(token);
  });

  it('on the first issue: Ready=False, nothing stored', async () => {
    await env.objects.create('serviceusers', { kind: 'ServiceUser', metadata: { name: 'big2' }, spec: {} });
    await env.objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'big2' },
      spec: { serviceUserRef: { name: 'big2' }, secret: { annotations: TOO_LONG } },
    });
    const { key } = await env.converge('big2');
    expect(condition(key, 'Ready')).toMatchObject({ status: 'False', reason: 'SecretWriteFailed' });
    expect(condition(key, 'Stalled')?.status).toBe('True');
    expect(key.status?.keyId).toBeUndefined();
    expect(await env.store.getKey(key.metadata?.uid ?? '')).toBeNull();
  });
});

describe('defect 7: edits that keep the token never rotate', () => {
  const rows = [
    {
      edit: 'spec.secret.tokenKey changes',
      spec: { secret: { tokenKey: 'A' } },
      change: (n: string) => env.objects.patch('apikeys', n, { spec: { secret: { tokenKey: 'B' } } }),
      check: async (n: string, token: string) => {
        expect(await env.tokenOf(n, 'B')).toBe(token);
        expect(await env.tokenOf(n, 'A')).toBeUndefined();
      },
    },
    {
      edit: 'the managed-by label is removed from the Secret',
      spec: {},
      change: (n: string) =>
        patchSecret(n, { metadata: { labels: { 'app.kubernetes.io/managed-by': null } } }),
      check: async (n: string) => {
        const s = await env.core.readNamespacedSecret({ namespace: env.ns, name: n });
        expect(s.metadata?.labels?.['app.kubernetes.io/managed-by']).toBe('keyward');
      },
    },
    {
      edit: 'the rotation-request annotation is removed from the Secret',
      spec: {},
      annotations: { 'keyward.dev/rotate': 'r1' },
      change: (n: string) =>
        patchSecret(n, { metadata: { annotations: { 'keyward.dev/rotation-request': null } } }),
      check: async () => undefined,
    },
    {
      edit: 'a label is removed from spec.secret.labels',
      spec: { secret: { labels: { team: 'a', tier: 'x' } } },
      change: (n: string) =>
        env.objects.patch('apikeys', n, { spec: { secret: { labels: { tier: null } } } }),
      check: async (n: string) => {
        const s = await env.core.readNamespacedSecret({ namespace: env.ns, name: n });
        expect(s.metadata?.labels).toMatchObject({ team: 'a' });
        expect(s.metadata?.labels?.tier).toBeUndefined();
      },
    },
  ];
  let n = 0;
  it.each(rows)('$edit', async (row) => {
    const name = `e${++n}`;
    const token = await readyToken(name, row.spec, row.annotations);
    const rotatedAt = (await env.objects.get('apikeys', name)).status?.rotatedAt;
    await row.change(name);
    const { key } = await env.converge(name);
    expect(condition(key, 'Ready')).toMatchObject({ status: 'True' });
    expect(key.status?.rotatedAt).toBe(rotatedAt);
    expect(await rotations(name)).toBe(0);
    expect(await env.verifies(token)).toBe(true);
    await row.check(name, token);
  });
});
