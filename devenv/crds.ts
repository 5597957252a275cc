import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  loadYaml,
  PatchStrategy,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { eventually } from './poll.js';
import { repoRoot } from './repo.js';

/** The API server establishes a CRD within a second or two; this is far beyond that. */
const CRD_ESTABLISH_TIMEOUT_MS = 20_000;

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
    let conditions: unknown;
    await eventually(
      `CRD ${name} to be established`,
      async () => {
        const current = await extensions.readCustomResourceDefinition({ name });
        conditions = current.status?.conditions;
        return current.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
      },
      CRD_ESTABLISH_TIMEOUT_MS,
      { diagnostics: () => `last conditions: ${JSON.stringify(conditions)}` },
    );
  }
  // Established is not yet served: until the resource's storage has initialized, lists of it
  // answer 429 "storage is (re)initializing", which a suite's first read would take for a failure.
  const custom = kc.makeApiClient(CustomObjectsApi);
  for (const crd of crds) {
    const { group = '', names, versions = [] } = crd.spec ?? {};
    const version = versions.find((v) => v.storage)?.name ?? versions[0]?.name ?? '';
    await eventually(
      `CRD ${crd.metadata?.name ?? ''} to be served`,
      async () => {
        await custom.listClusterCustomObject({ group, version, plural: names?.plural ?? '', limit: 1 });
        return true;
      },
      CRD_ESTABLISH_TIMEOUT_MS,
    );
  }
}
