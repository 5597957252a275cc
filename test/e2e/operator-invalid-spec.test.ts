import type { V1CustomResourceDefinition } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { committedCrds } from '../../devenv/crds.js';
import {
  type KeywardObjects,
  type OperatorCluster,
  type OperatorProcess,
  startOperatorCluster,
} from '../../devenv/operator.js';
import { eventually } from '../../devenv/poll.js';
import { testDatabase } from '../harness/database.js';
import { argoHealth, condition, kstatusAll } from '../support/status.js';

/**
 * Objects the operator's schema rejects although the API server stored them: what an older or
 * hand-edited CRD lets in. A private control plane whose CRDs accept any spec, so the operator's
 * own validation is all that stands between them and the store.
 */
let cluster: OperatorCluster;
let objects: KeywardObjects;
let operator: OperatorProcess;

function loosened(crd: V1CustomResourceDefinition): V1CustomResourceDefinition {
  for (const version of crd.spec.versions) {
    const schema = version.schema?.openAPIV3Schema;
    if (!schema?.properties) continue;
    schema.properties.spec = { type: 'object', x_kubernetes_preserve_unknown_fields: true };
    delete schema.x_kubernetes_validations;
  }
  return crd;
}

beforeAll(async () => {
  cluster = await startOperatorCluster({
    name: 'invalid-spec',
    storeUrl: await testDatabase(),
    crds: committedCrds().map(loosened),
    accessPolicy: { usernames: ['*'], scopes: ['projects:*'] },
  });
  ({ objects, operator } = cluster);
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

async function readyCondition(plural: 'serviceusers' | 'apikeys', name: string) {
  return await eventually(`${name} to get a Ready condition`, async () =>
    condition(await objects.get(plural, name), 'Ready'),
  );
}

describe('objects that fail the operator schema', () => {
  it('get Ready=False InvalidSpec naming the field, and the operator keeps working on the rest', async () => {
    await objects.create('serviceusers', {
      kind: 'ServiceUser',
      metadata: { name: 'bad-user' },
      spec: { scopes: ['projects:alpha'], maxKeys: -3 },
    });
    await objects.create('serviceusers', {
      kind: 'ServiceUser',
      metadata: { name: 'good-user' },
      spec: { scopes: ['projects:*'] },
    });
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'bad-key' },
      spec: { serviceUserRef: { name: 'good-user' }, scopes: ['Not A Scope!'], ttl: 'forever' },
    });
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name: 'good-key' },
      spec: { serviceUserRef: { name: 'good-user' }, scopes: ['projects:alpha'] },
    });

    const badUser = await readyCondition('serviceusers', 'bad-user');
    expect(badUser).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
    expect(badUser?.message).toMatch(/spec\.maxKeys/);
    const badKey = await readyCondition('apikeys', 'bad-key');
    expect(badKey).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
    expect(badKey?.message).toMatch(/spec\.scopes\[0\]/);
    expect(badKey?.message).toMatch(/spec\.ttl/);
    expect(condition(await objects.get('apikeys', 'bad-key'), 'Stalled')).toMatchObject({ status: 'True' });
    // Stalled: kstatus says Failed (Flux `wait` gives up), Argo CD says Degraded with the reason.
    const [badUserObj, badKeyObj] = [
      await objects.get('serviceusers', 'bad-user'),
      await objects.get('apikeys', 'bad-key'),
    ];
    expect((await kstatusAll([badUserObj, badKeyObj])).map((v) => v.status)).toEqual(['Failed', 'Failed']);
    expect(await argoHealth('ServiceUser', badUserObj)).toEqual({
      status: 'Degraded',
      message: badUser?.message,
    });
    expect(await argoHealth('ApiKey', badKeyObj)).toEqual({ status: 'Degraded', message: badKey?.message });

    await eventually('good-key to be Ready', async () => {
      const ready = condition(await objects.get('apikeys', 'good-key'), 'Ready');
      return ready?.status === 'True' ? ready : undefined;
    });
    expect(operator.process.hasExited).toBe(false);
  });
});
