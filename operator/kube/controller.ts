import type { SharedInformer } from './informer.js';
import { type KubeObject, objectKey } from './object.js';
import type { HandlerResult, WorkQueue } from './workqueue.js';

/**
 * One kind's controller: its queue, its reconcile, and the watches (declared by the controller
 * itself, see watch()) that put keys of its kind on that queue.
 */
export interface Controller {
  /** The metric and log label, e.g. 'apikey'. */
  readonly name: string;
  readonly queue: WorkQueue;
  reconcile(key: string): Promise<HandlerResult | undefined>;
  /** Queues every object of this kind in these namespaces (their AccessPolicy grants changed). */
  enqueueNamespaces(namespaces: ReadonlySet<string>): void;
}

/** Which keys of a controller's kind an event about `obj` concerns; `old` is set on updates. */
export type EnqueueRule<T> = (obj: T, change: 'added' | 'updated' | 'deleted', old?: T) => Iterable<string>;

/** Queues, on every add, update and delete `informer` reports, the keys `rule` names. */
export function watch<T>(informer: SharedInformer<T>, queue: WorkQueue, rule: EnqueueRule<T>): void {
  const enqueue = (obj: T, change: 'added' | 'updated' | 'deleted', old?: T): void => {
    for (const key of rule(obj, change, old)) queue.add(key);
  };
  informer.addEventHandler({
    onAdd: (obj) => enqueue(obj, 'added'),
    onUpdate: (old, obj) => enqueue(obj, 'updated', old),
    onDelete: (obj) => enqueue(obj, 'deleted'),
  });
}

/** The rule of a controller's own kind: the object itself. */
export function self(obj: KubeObject): string[] {
  return [objectKey(obj)];
}

/** Keys of the cached objects in `namespaces`. */
export function keysInNamespaces<T extends KubeObject>(
  informer: SharedInformer<T>,
  namespaces: ReadonlySet<string>,
): string[] {
  return informer
    .list()
    .filter((obj) => namespaces.has(obj.metadata?.namespace ?? ''))
    .map(objectKey);
}
