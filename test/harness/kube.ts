import { KubeConfig } from '@kubernetes/client-node';
import { inject } from 'vitest';

/** Admin KubeConfig of the run's control plane (started by test/harness/global-setup.ts). */
export function testKubeConfig(): KubeConfig {
  const path = inject('kubeconfigPath');
  if (!path) {
    throw new Error(
      'no test control plane in this run: KEYWARD_TEST_KUBE=0 skips it; unset KEYWARD_TEST_KUBE to run suites that need Kubernetes',
    );
  }
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}
