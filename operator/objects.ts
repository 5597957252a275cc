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
import type { OwnStatusWrites } from './kube/own-writes.js';
import { managedFieldsMigration } from './secret.js';

/** Field manager of status and finalizer writes; Secrets have one per ApiKey (secret.ts). */
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
  readonly #ownWrites: Partial<Record<Plural, OwnStatusWrites>>;

  /** `ownWrites`: per kind, where status writes are recorded so their echo can be skipped (own-writes.ts). */
  constructor(kc: KubeConfig, ownWrites: Partial<Record<Plural, OwnStatusWrites>> = {}) {
    this.#custom = kc.makeApiClient(CustomObjectsApi);
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#ownWrites = ownWrites;
  }

  /** Returns the object as stored, or undefined when the write was stale (409). */
  async patchStatus(
    plural: Plural,
    obj: KubernetesObject,
    status: object,
  ): Promise<KubernetesObject | undefined> {
    const own = this.#ownWrites[plural];
    own?.writing(obj, status);
    const stored: KubernetesObject | undefined = await this.#custom
      .patchNamespacedCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          plural,
          namespace: obj.metadata?.namespace ?? '',
          name: obj.metadata?.name ?? '',
          // The resourceVersion makes the merge patch conditional: a reconcile that decided from a
          // cache older than the last status write gets 409 and retries instead of rewriting
          // conditions (with fresh transition times) it did not see.
          body: { metadata: { resourceVersion: obj.metadata?.resourceVersion }, status },
          fieldManager: FIELD_MANAGER,
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch, requestTimeout()),
      )
      .catch((err: unknown) => {
        // Stale: the newer version is on its way to the informer and brings the object back to the
        // queue (or, should it be this process's own write, whose echo is skipped, own.stale does),
        // so this is not a failure to retry or to log.
        if (statusCodeOf(err) !== 409) {
          own?.failed(obj);
          throw err;
        }
        own?.stale(obj);
        return undefined;
      });
    return stored;
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

  /** The Secret as the API server has it now, or undefined; for Secrets the informer does not see. */
  async readSecret(namespace: string, name: string): Promise<V1Secret | undefined> {
    try {
      return await this.#core.readNamespacedSecret({ namespace, name }, requestTimeout());
    } catch (err) {
      if (statusCodeOf(err) === 404) return undefined;
      throw err;
    }
  }

  /**
   * Creates the Secret; false when one of that name already exists. A create, not an apply: an
   * apply would merge into a Secret someone created a moment ago, a create cannot, so of two
   * ApiKeys (or a key and a tenant) racing for one name exactly one gets it. Returns the Secret as
   * created, or undefined when one of that name exists.
   */
  async createSecret(secret: V1Secret, fieldManager: string, dryRun = false): Promise<V1Secret | undefined> {
    try {
      return await this.#core.createNamespacedSecret(
        {
          namespace: secret.metadata?.namespace ?? '',
          body: secret,
          fieldManager,
          ...(dryRun && { dryRun: 'All' }),
        },
        requestTimeout(),
      );
    } catch (err) {
      if (statusCodeOf(err) === 409) return undefined;
      throw err;
    }
  }

  /**
   * Server-side applies `secret` over `current`, a version of it the caller found controlled by
   * the ApiKey. Forced, so a token someone edited is repaired, yet pinned to current's
   * resourceVersion: if the Secret changed since (deleted and re-created by someone else, say), the
   * API server refuses with 409 and the reconcile retries on fresh state. `dryRun`: validated and
   * admitted as a real write would be, nothing stored (a rotation asks before it commits a hash).
   * Returns the Secret as the API server stored (or would store) it.
   */
  async applyOwnSecret(
    secret: V1Secret,
    current: V1Secret,
    fieldManager: string,
    dryRun = false,
  ): Promise<V1Secret> {
    const namespace = current.metadata?.namespace ?? '';
    const name = current.metadata?.name ?? '';
    let resourceVersion = current.metadata?.resourceVersion;
    const migration = dryRun ? undefined : managedFieldsMigration(current, fieldManager, new Date());
    if (migration) {
      const migrated = await this.#core.patchNamespacedSecret(
        { namespace, name, body: migration, fieldManager },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch, requestTimeout()),
      );
      resourceVersion = migrated.metadata?.resourceVersion;
    }
    return await this.#core.patchNamespacedSecret(
      {
        name,
        namespace,
        body: { ...secret, metadata: { ...secret.metadata, resourceVersion } },
        fieldManager,
        force: true,
        ...(dryRun && { dryRun: 'All' }),
      },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply, requestTimeout()),
    );
  }

  /**
   * Deletes the Secret only if it is still controlled by the given ApiKey uid; returns whether it
   * did. A Secret someone else controls stays, whatever its name or labels.
   */
  async deleteSecret(namespace: string, name: string, ownerUid: string): Promise<boolean> {
    const current = await this.readSecret(namespace, name);
    const owned = current?.metadata?.ownerReferences?.some((r) => r.controller && r.uid === ownerUid);
    if (!current || !owned) return false;
    await this.#core
      .deleteNamespacedSecret(
        { namespace, name, body: { preconditions: { uid: current.metadata?.uid } } },
        requestTimeout(),
      )
      .catch((err: unknown) => {
        if (statusCodeOf(err) !== 404) throw err;
      });
    return true;
  }
}
