import diagnostics from 'node:diagnostics_channel';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { testKubeConfig } from '../../test/harness/kube.js';
import { PooledKubeConfig } from './connections.js';

// Against the run's real kube-apiserver (test/harness/global-setup.ts).

const CALLS = 20;

describe('PooledKubeConfig against the API server', () => {
  let admin: KubeConfig;
  let opened = 0;
  const onSocket = (): void => {
    opened++;
  };

  beforeAll(() => {
    admin = testKubeConfig();
  });
  afterEach(() => {
    diagnostics.unsubscribe('net.client.socket', onSocket);
  });

  /** TCP connections opened by CALLS sequential reads through a generated client made from `kc`. */
  const connectionsFor = async (kc: KubeConfig): Promise<number> => {
    opened = 0;
    diagnostics.subscribe('net.client.socket', onSocket);
    const core = kc.makeApiClient(CoreV1Api);
    for (let i = 0; i < CALLS; i++) await core.readNamespace({ name: 'default' });
    diagnostics.unsubscribe('net.client.socket', onSocket);
    return opened;
  };

  it('sends sequential calls over one kept-alive connection, where client-node opens one per call', async () => {
    const pooled = new PooledKubeConfig();
    pooled.loadFromString(admin.exportConfig());
    expect(await connectionsFor(admin)).toBe(CALLS);
    expect(await connectionsFor(pooled)).toBe(1);
  });

  it('still sends the credentials with every call: an unknown token is refused', async () => {
    const pooled = new PooledKubeConfig();
    pooled.loadFromString(admin.exportConfig());
    pooled.users = pooled.users.map((u) => ({ name: u.name, token: 'not-a-token' }));
    await expect(pooled.makeApiClient(CoreV1Api).readNamespace({ name: 'default' })).rejects.toMatchObject({
      code: 401,
    });
  });
});
