import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ApiextensionsV1Api,
  type KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  loadYaml,
  PatchStrategy,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { repoRoot } from './repo.js';

const CRD_DIR = join(repoRoot(), 'crds');

/**
 * The committed CRDs, as a user applies them. Loaded through client-node's typed deserializer:
 * its serializer knows `x-kubernetes-validations` only as `xKubernetesValidations` and would
 * silently drop the CEL rules of a plainly parsed object.
 */
export function committedCrds(): V1CustomResourceDefinition[] {
  return readdirSync(CRD_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => loadYaml<V1CustomResourceDefinition>(readFileSync(join(CRD_DIR, f), 'utf8')));
}

/**
 * Server-side applies the committed CRDs (or `crds`, e.g. loosened copies that let invalid objects
 * in) and waits until the API server serves them.
 */
export async function installCrds(kc: KubeConfig, crds = committedCrds()): Promise<void> {
  const objects = KubernetesObjectApi.makeApiClient(kc);
  const extensions = kc.makeApiClient(ApiextensionsV1Api);
  for (const crd of crds) {
    await objects.patch(
      crd as KubernetesObject,
      undefined,
      undefined,
      'keyward-tests',
      true,
      PatchStrategy.ServerSideApply,
    );
  }
  for (const crd of crds) {
    const name = crd.metadata?.name ?? '';
    for (let attempt = 0; ; attempt++) {
      const current = await extensions.readCustomResourceDefinition({ name });
      const established = current.status?.conditions?.some(
        (c) => c.type === 'Established' && c.status === 'True',
      );
      if (established) break;
      if (attempt > 100)
        throw new Error(`CRD ${name} not established: ${JSON.stringify(current.status?.conditions)}`);
      await sleep(100);
    }
  }
}
