import { isDeepStrictEqual } from 'node:util';
import type { KubeObject } from './object.js';
import { objectKey } from './object.js';

/**
 * The status writes of this process, per object, until their watch event comes back. A reconcile
 * that wrote status has already decided from everything that status says; the update event its own
 * write causes would only run the same reconcile again and find nothing to do. With thousands of
 * new ApiKeys that echo was a third of all passes, each a round of store reads (bench/README.md).
 * So an update is skipped when it differs from the previous version in status alone and its status
 * holds exactly what this process wrote. The write is recorded before it is sent: the watch event
 * often arrives before the response. Anyone else's change, a spec, label, annotation, finalizer or
 * deletion change, and a periodic resync still queue the object.
 *
 * A pass that starts while a write's echo is still on its way decides from the informer's copy
 * from before that write: finding that copy already as it would make it, it writes nothing, and
 * the skipped echo would leave the object as the earlier write left it (a key still Suspended
 * after its user resumed). So a pass's start forgets the write, and its echo queues the object.
 */
export class OwnStatusWrites {
  /** Object key → the status fields this process is writing or wrote last (JSON, null = removed). */
  readonly #written = new Map<string, Record<string, unknown>>();
  #onStale: (key: string) => void = () => undefined;

  /** Called with the key of an object whose status write was refused as stale (409). */
  onStale(requeue: (key: string) => void): void {
    this.#onStale = requeue;
  }

  /** Records the status fields a merge patch is about to write to `obj`. */
  writing(obj: KubeObject, status: object): void {
    this.#written.set(objectKey(obj), JSON.parse(JSON.stringify(status)) as Record<string, unknown>);
  }

  /** The write failed: whatever comes next is not its echo. */
  failed(obj: KubeObject): void {
    this.#written.delete(objectKey(obj));
  }

  /**
   * A status write was refused because the object changed since it was read. The newer version
   * may be this process's own earlier write, whose echo was skipped, so the object is queued here
   * rather than left to an event that may never queue it.
   */
  stale(obj: KubeObject): void {
    this.failed(obj);
    this.#onStale(objectKey(obj));
  }

  /** Whether the update old → obj is the echo of this process's own status write (and forgets it). */
  isEcho(old: KubeObject, obj: KubeObject): boolean {
    if (old === obj) return false;
    const key = objectKey(obj);
    const written = this.#written.get(key);
    if (written === undefined) return false;
    // Watch events of one object arrive in order: whatever comes next settles the entry.
    this.#written.delete(key);
    return sameButStatus(old, obj) && holds((obj as { status?: unknown }).status, written);
  }

  forget(obj: KubeObject): void {
    this.#written.delete(objectKey(obj));
  }

  /**
   * A pass of this object begins. Were its last write's echo still to come, the informer's copy
   * predates that write (the informer stores a version before it tells anyone of it), so that
   * echo must bring the object back to be decided again.
   */
  passStarts(key: string): void {
    this.#written.delete(key);
  }

  get size(): number {
    return this.#written.size;
  }
}

/** Whether `status` has every field of the merge patch `written` as written (null: absent). */
function holds(status: unknown, written: Record<string, unknown>): boolean {
  const actual = (status ?? {}) as Record<string, unknown>;
  return Object.entries(written).every(([field, value]) =>
    value === null ? !(field in actual) : isDeepStrictEqual(actual[field], value),
  );
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
