import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  Observable,
  type ObservableMiddleware,
  PatchStrategy,
  setHeaderOptions,
  type V1Secret,
} from '@kubernetes/client-node';
import { GROUP, VERSION } from '../api/common.js';
import { statusCodeOf } from './kube/errors.js';

export const FIELD_MANAGER = 'keyward';
export const FINALIZER = 'keyward.dev/revoke';

export type Plural = 'serviceusers' | 'apikeys';

type Options = ReturnType<typeof setHeaderOptions>;

/**
 * Request options that abort a call after `ms`. client-node sets no timeout of its own, so a
 * request caught by an API server restart can otherwise hang and pin a worker (and its key) forever.
 */
export function requestTimeout(ms = 30_000, opt?: Options): Options {
  const middleware: ObservableMiddleware = {
    pre: (context) => {
      context.setSignal(AbortSignal.timeout(ms));
      return new Observable(Promise.resolve(context));
    },
    post: (response) => new Observable(Promise.resolve(response)),
  };
  return { ...opt, middleware: [...(opt?.middleware ?? []), middleware], middlewareMergeStrategy: 'append' };
}

/**
 * The operator's writes to the API server. Status and finalizers go through JSON patches guarded by
 * resourceVersion, so a write based on a stale cache fails (409/422) and the key is retried
 * instead of clobbering a newer object.
 */
export class KubeWriter {
  readonly #custom: CustomObjectsApi;
  readonly #core: CoreV1Api;

  constructor(kc: KubeConfig) {
    this.#custom = kc.makeApiClient(CustomObjectsApi);
    this.#core = kc.makeApiClient(CoreV1Api);
  }

  async patchStatus(plural: Plural, obj: KubernetesObject, status: object): Promise<void> {
    await this.#custom.patchNamespacedCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural,
        namespace: obj.metadata?.namespace ?? '',
        name: obj.metadata?.name ?? '',
        body: { status },
        fieldManager: FIELD_MANAGER,
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch, requestTimeout()),
    );
  }

  async addFinalizer(plural: Plural, obj: KubernetesObject): Promise<void> {
    const finalizers = obj.metadata?.finalizers;
    const ops = [
      { op: 'test', path: '/metadata/resourceVersion', value: obj.metadata?.resourceVersion },
      finalizers
        ? { op: 'add', path: '/metadata/finalizers/-', value: FINALIZER }
        : { op: 'add', path: '/metadata/finalizers', value: [FINALIZER] },
    ];
    await this.#patchObject(plural, obj, ops);
  }

  async removeFinalizer(plural: Plural, obj: KubernetesObject): Promise<void> {
    const index = obj.metadata?.finalizers?.indexOf(FINALIZER) ?? -1;
    if (index < 0) return;
    await this.#patchObject(plural, obj, [
      { op: 'test', path: '/metadata/resourceVersion', value: obj.metadata?.resourceVersion },
      { op: 'remove', path: `/metadata/finalizers/${index}` },
    ]).catch((err: unknown) => {
      // Already gone: the finalizer was the last thing holding it.
      if (statusCodeOf(err) !== 404) throw err;
    });
  }

  async #patchObject(plural: Plural, obj: KubernetesObject, ops: object[]): Promise<void> {
    await this.#custom.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural,
        namespace: obj.metadata?.namespace ?? '',
        name: obj.metadata?.name ?? '',
        body: ops,
        fieldManager: FIELD_MANAGER,
      },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch, requestTimeout()),
    );
  }

  /** Server-side apply, forced: keyward owns the token entry even if someone edited it. */
  async applySecret(secret: V1Secret): Promise<void> {
    await this.#core.patchNamespacedSecret(
      {
        name: secret.metadata?.name ?? '',
        namespace: secret.metadata?.namespace ?? '',
        body: secret,
        fieldManager: FIELD_MANAGER,
        force: true,
      },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply, requestTimeout()),
    );
  }

  /** Deletes the Secret only if it is still the one owned by the given ApiKey uid. */
  async deleteSecret(namespace: string, name: string, ownerUid: string): Promise<void> {
    let current: V1Secret;
    try {
      current = await this.#core.readNamespacedSecret({ namespace, name }, requestTimeout());
    } catch (err) {
      if (statusCodeOf(err) === 404) return;
      throw err;
    }
    const owned = current.metadata?.ownerReferences?.some((r) => r.controller && r.uid === ownerUid);
    if (!owned) return;
    await this.#core
      .deleteNamespacedSecret(
        { namespace, name, body: { preconditions: { uid: current.metadata?.uid } } },
        requestTimeout(),
      )
      .catch((err: unknown) => {
        if (statusCodeOf(err) !== 404) throw err;
      });
  }
}
