import type { EventHandler, SharedInformer } from './informer.js';
import type { KubeObject } from './object.js';

/**
 * One informer per namespace behind the interface of a single one. An operator restricted to a
 * list of namespaces lists and watches each of them on its own, which a namespaced Role allows,
 * where one watch across namespaces would need a ClusterRole.
 */
export class NamespacedInformers<T extends KubeObject> implements SharedInformer<T> {
  readonly #byNamespace: ReadonlyMap<string, SharedInformer<T>>;

  constructor(byNamespace: ReadonlyMap<string, SharedInformer<T>>) {
    this.#byNamespace = byNamespace;
  }

  addEventHandler(handler: EventHandler<T>): void {
    for (const informer of this.#byNamespace.values()) informer.addEventHandler(handler);
  }

  start(): void {
    for (const informer of this.#byNamespace.values()) informer.start();
  }

  async stop(): Promise<void> {
    await Promise.all([...this.#byNamespace.values()].map((i) => i.stop()));
  }

  hasSynced(): boolean {
    return [...this.#byNamespace.values()].every((i) => i.hasSynced());
  }

  async waitForSync(signal?: AbortSignal): Promise<void> {
    await Promise.all([...this.#byNamespace.values()].map((i) => i.waitForSync(signal)));
  }

  /** Objects of namespaces outside the list are simply not there. */
  get(key: string): T | undefined {
    const slash = key.indexOf('/');
    return slash < 0 ? undefined : this.#byNamespace.get(key.slice(0, slash))?.get(key);
  }

  list(): T[] {
    return [...this.#byNamespace.values()].flatMap((i) => i.list());
  }
}
