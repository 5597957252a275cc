import { isDeepStrictEqual } from 'node:util';
import type { KubeObject } from './object.js';
import { objectKey } from './object.js';

/**
 * The status writes of this process, per object, until their watch event comes back. A reconcile
 * that wrote status has already decided from everything that status says; the update event its own
 * write causes would only run the same reconcile again and find nothing to do. With 10,000 new
 * ApiKeys that echo was a third of all passes, each a round of store reads (bench/README.md). So
 * an update is skipped when it is exactly the version this process wrote and differs from the
 * previous version in status alone; anyone else's change, a spec, label, annotation, finalizer or
 * deletion change, and a periodic resync still queue the object.
 */
export class OwnStatusWrites {
  /** Object key → resourceVersion of the status this process wrote last. */
  readonly #written = new Map<string, string>();
  #onStale: (key: string) => void = () => undefined;

  /** Called with the key of an object whose status write was refused as stale (409). */
  onStale(requeue: (key: string) => void): void {
    this.#onStale = requeue;
  }

  /** Remembers the object as the API server stored it after this process wrote its status. */
  wrote(stored: KubeObject): void {
    const version = stored.metadata?.resourceVersion;
    if (version) this.#written.set(objectKey(stored), version);
  }

  /**
   * A status write was refused because the object changed since it was read. The newer version
   * may be this process's own earlier write, whose echo is skipped, so the object is queued here
   * rather than left to an event that may never queue it.
   */
  stale(obj: KubeObject): void {
    const key = objectKey(obj);
    this.#written.delete(key);
    this.#onStale(key);
  }

  /** Whether the update old → obj is the echo of this process's own status write (and forgets it). */
  isEcho(old: KubeObject, obj: KubeObject): boolean {
    if (old === obj) return false;
    const key = objectKey(obj);
    const written = this.#written.get(key);
    if (written === undefined) return false;
    // Watch events of one object arrive in order: whatever comes next settles the entry.
    this.#written.delete(key);
    return obj.metadata?.resourceVersion === written && sameButStatus(old, obj);
  }

  forget(obj: KubeObject): void {
    this.#written.delete(objectKey(obj));
  }

  get size(): number {
    return this.#written.size;
  }
}

/** Everything a reconcile decides from except status: metadata (bar its version and field owners) and spec. */
function sameButStatus(a: KubeObject, b: KubeObject): boolean {
  const rest = (o: KubeObject): unknown => {
    const { status: _status, metadata, ...other } = o as KubeObject & { status?: unknown };
    const { resourceVersion: _rv, managedFields: _mf, ...meta } = (metadata ?? {}) as Record<string, unknown>;
    return [meta, other];
  };
  return isDeepStrictEqual(rest(a), rest(b));
}
