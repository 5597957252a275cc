/**
 * The fields of an API object this machinery reads. Deliberately narrower than client-node's
 * KubernetesObject, whose metadata declares timestamps as Date: informer caches hold the JSON the
 * API server sent (timestamps are strings), and zod-derived custom resource types say so too.
 */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
  };
}

/** The cache and work-queue key client-go uses: "namespace/name", or "name" when cluster-scoped. */
export function objectKey(obj: KubeObject): string {
  const ns = obj.metadata?.namespace;
  const name = obj.metadata?.name ?? '';
  return ns ? `${ns}/${name}` : name;
}
