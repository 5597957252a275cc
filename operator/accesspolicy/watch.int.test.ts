import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace } from '../../devenv/kube.js';
import { applyAccessPolicy, deleteAccessPolicy } from '../../devenv/operator.js';
import { eventually } from '../../devenv/poll.js';
import { testKubeConfig } from '../../test/harness/kube.js';
import { AccessPolicyWatch } from './watch.js';

// Against the run's real kube-apiserver: which namespaces a policy or label change reports.

let kc: KubeConfig;
let watch: AccessPolicyWatch;
let a: string;
let b: string;
const reported: Array<ReadonlySet<string>> = [];

/** Whether some report since `from` named `namespace`. */
function reportedSince(from: number, namespace: string): boolean {
  return reported.slice(from).some((set) => set.has(namespace));
}

async function setLabels(name: string, labels: Record<string, string>): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  const ns = await core.readNamespace({ name });
  ns.metadata = { ...ns.metadata, labels: { ...ns.metadata?.labels, ...labels } };
  await core.replaceNamespace({ name, body: ns });
}

beforeAll(async () => {
  kc = testKubeConfig();
  a = await createTestNamespace(kc, 'policy-watch-a');
  b = await createTestNamespace(kc, 'policy-watch-b');
  watch = new AccessPolicyWatch(kc, {
    watchNamespaces: undefined,
    logger: pino({ level: 'silent' }),
    informerOptions: (name) => ({ name }),
    onChange: (namespaces) => reported.push(namespaces),
  });
  watch.start();
  await watch.waitForSync();
});

afterAll(async () => {
  await watch?.stop();
});

describe('AccessPolicyWatch', () => {
  it('reports the namespaces a policy selected before and after a change, and their grants', async () => {
    const policy = `${a}-watch`;
    let mark = reported.length;
    await applyAccessPolicy(kc, policy, { namespaces: [a], groups: ['g1'] });
    await eventually('the new policy to report a', async () => (reportedSince(mark, a) ? true : undefined));
    expect(watch.grants(a).groups).toEqual(['g1']);
    expect(watch.grants(b).groups).toEqual([]);

    // Moving the policy from a to b affects both: a loses its grant, b gains it.
    mark = reported.length;
    await applyAccessPolicy(kc, policy, { namespaces: [b], groups: ['g1'] });
    await eventually('the move to report a and b', async () =>
      reportedSince(mark, a) && reportedSince(mark, b) ? true : undefined,
    );
    expect(watch.grants(a).groups).toEqual([]);
    expect(watch.grants(b).groups).toEqual(['g1']);

    mark = reported.length;
    await deleteAccessPolicy(kc, policy);
    await eventually('the deletion to report b', async () => (reportedSince(mark, b) ? true : undefined));
    expect(watch.grants(b).groups).toEqual([]);
  });

  it('reports a namespace whose labels change, and a selector follows them', async () => {
    const policy = `${a}-selector`;
    await applyAccessPolicy(kc, policy, {
      namespaceSelector: { matchLabels: { 'keyward.dev/watch-test': a } },
      kubernetesAuthentication: true,
    });
    expect(watch.grants(a).kubernetesAuthentication).toBe(false);
    const mark = reported.length;
    await setLabels(a, { 'keyward.dev/watch-test': a });
    await eventually('the label change to report a', async () => (reportedSince(mark, a) ? true : undefined));
    await eventually('the selector to match a', async () =>
      watch.grants(a).kubernetesAuthentication ? true : undefined,
    );
    expect(watch.grants(b).kubernetesAuthentication).toBe(false);
    await deleteAccessPolicy(kc, policy);
  });

  it('refuses to answer for a namespace it has not seen', () => {
    expect(() => watch.grants('no-such-namespace-here')).toThrow(/not in the informer cache/);
  });
});
