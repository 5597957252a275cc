import type { Logger } from 'pino';
import { Backoff, type BackoffOptions } from '../../lib/backoff.js';
import { type Clock, type Random, realClock, type Timer } from './clock.js';
import { KubeStatusError, statusCodeOf } from './errors.js';
import type { ListWatch } from './listwatch.js';
import { type KubeObject, objectKey } from './object.js';

/** Called synchronously from the informer; handlers should only enqueue keys. */
export interface EventHandler<T> {
  onAdd?(obj: T): void;
  /** Also called with old === obj for every cached object on each periodic resync. */
  onUpdate?(old: T, obj: T): void;
  /** obj is the last state seen; after a relist it may predate the deletion by a while. */
  onDelete?(obj: T): void;
}

/**
 * What controllers use of an informer: one Informer over a whole collection, or one per namespace
 * behind a NamespacedInformers (namespaced.ts) when the operator may only read some namespaces.
 */
export interface SharedInformer<T> {
  addEventHandler(handler: EventHandler<T>): void;
  start(): void;
  stop(): Promise<void>;
  hasSynced(): boolean;
  waitForSync(signal?: AbortSignal): Promise<void>;
  /** The cached object under "namespace/name" (or "name" when cluster-scoped). */
  get(key: string): T | undefined;
  list(): T[];
}

/** Why a watch ended and was restarted. */
export type RestartReason = 'closed' | 'expired' | 'error' | 'watchdog';

export interface InformerMetrics {
  watchRestart(reason: RestartReason): void;
}

export interface InformerOptions<T extends KubeObject = KubeObject> {
  /** Names the informer in logs, e.g. 'apikeys'. */
  name: string;
  clock?: Clock;
  random?: Random;
  logger?: Logger;
  metrics?: InformerMetrics;
  /** Period of re-emitting update for every cached object; 0 disables. Default 10 min. */
  resyncMs?: number;
  /**
   * A watch silent for this long is restarted. The API server sends a bookmark about once a
   * minute, so the default of 3 min only fires on a stream that is really stuck.
   */
  watchdogMs?: number;
  /** Backoff between restarts; default 800 ms doubling to 30 s, as client-go's reflector. */
  backoff?: BackoffOptions;
  /** A list taking longer than this is abandoned and retried. Default 60 s. */
  listTimeoutMs?: number;
  /** Server-side watch timeout is drawn from [min, 2·min), spreading reconnects. Default 300 s. */
  minWatchTimeoutSeconds?: number;
  /**
   * Applied to every object before it is cached and handed to handlers, e.g. to drop fields no
   * reader uses (withoutManagedFields): what it removes is never seen by the controllers.
   */
  transform?: (obj: T) => T;
}

/**
 * Drops metadata.managedFields: several entries per object (who set which field), read by nothing
 * the operator does with ApiKeys and ServiceUsers, and the largest part of each cached object.
 * Secrets keep theirs: the Secret writes decide from them (secret.ts).
 */
export function withoutManagedFields<T extends KubeObject>(obj: T): T {
  const metadata = obj.metadata as (KubeObject['metadata'] & { managedFields?: unknown }) | undefined;
  if (metadata?.managedFields === undefined) return obj;
  const { managedFields: _dropped, ...kept } = metadata;
  return { ...obj, metadata: kept };
}

export type Change<T> =
  | { type: 'add'; obj: T }
  | { type: 'update'; old: T; obj: T }
  | { type: 'delete'; obj: T };

function sameVersion(a: KubeObject, b: KubeObject): boolean {
  const rv = a.metadata?.resourceVersion;
  return rv !== undefined && rv === b.metadata?.resourceVersion;
}

/** The informer's cache. Each mutation returns the changes handlers should see. */
export class Store<T extends KubeObject> {
  #items = new Map<string, T>();

  get(key: string): T | undefined {
    return this.#items.get(key);
  }

  list(): T[] {
    return [...this.#items.values()];
  }

  get size(): number {
    return this.#items.size;
  }

  /** Applies one watch event. A replayed event (same resourceVersion) yields no change. */
  apply(type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: T): Change<T> | undefined {
    const key = objectKey(obj);
    const old = this.#items.get(key);
    if (type === 'DELETED') {
      this.#items.delete(key);
      return { type: 'delete', obj };
    }
    if (old && sameVersion(old, obj)) return undefined;
    this.#items.set(key, obj);
    return old ? { type: 'update', old, obj } : { type: 'add', obj };
  }

  /**
   * Replaces the content with a fresh list. Objects missing from it were deleted while no watch
   * was looking, so they come back as deletes.
   */
  replace(items: readonly T[]): Change<T>[] {
    const next = new Map<string, T>();
    const changes: Change<T>[] = [];
    for (const obj of items) {
      const key = objectKey(obj);
      next.set(key, obj);
      const old = this.#items.get(key);
      if (!old) changes.push({ type: 'add', obj });
      else if (!sameVersion(old, obj)) changes.push({ type: 'update', old, obj });
    }
    for (const [key, old] of this.#items) {
      if (!next.has(key)) changes.push({ type: 'delete', obj: old });
    }
    this.#items = next;
    return changes;
  }
}

/** Calls onSilent once if kick() is not called for timeoutMs. */
export class Watchdog {
  #last: number;
  #timer: Timer | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly timeoutMs: number,
    private readonly onSilent: () => void,
  ) {
    this.#last = clock.now();
    this.#arm(timeoutMs);
  }

  kick(): void {
    this.#last = this.clock.now();
  }

  stop(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  // One timer re-armed lazily instead of one per event: a burst of thousands of events costs nothing.
  #arm(ms: number): void {
    this.#timer = this.clock.setTimer(ms, () => {
      const silent = this.clock.now() - this.#last;
      if (silent >= this.timeoutMs) {
        this.#timer = undefined;
        this.onSilent();
      } else {
        this.#arm(this.timeoutMs - silent);
      }
    });
  }
}

type WatchEnd = { reason: 'closed' | 'expired' | 'watchdog' } | { reason: 'error'; err: unknown };

/** How a watch or list failure is handled: 410 Gone means our resourceVersion is too old. */
export function watchEndOf(err: unknown): WatchEnd {
  if (err === null || err === undefined) return { reason: 'closed' };
  return statusCodeOf(err) === 410 ? { reason: 'expired' } : { reason: 'error', err };
}

// A watch that lived this long was healthy; the next restart starts from the smallest backoff.
const HEALTHY_WATCH_MS = 60_000;

/**
 * Lists, then watches from the list's resourceVersion, keeping a local cache and telling handlers
 * about changes. Restarts the watch with jittered backoff whenever it ends, relists on 410 Gone,
 * restarts watches silent past the watchdog timeout and periodically resyncs.
 *
 * Written on client-node's Watch rather than wrapping its ListWatch: that one stops for good on
 * any error other than 410 and has no backoff, watchdog or resync.
 */
export class Informer<T extends KubeObject> implements SharedInformer<T> {
  readonly #lw: ListWatch<T>;
  readonly #name: string;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #logger: Logger | undefined;
  readonly #metrics: InformerMetrics | undefined;
  readonly #resyncMs: number;
  readonly #watchdogMs: number;
  readonly #listTimeoutMs: number;
  readonly #minWatchTimeoutSeconds: number;
  readonly #backoff: Backoff;
  readonly #transform: (obj: T) => T;

  readonly #store = new Store<T>();
  readonly #handlers: EventHandler<T>[] = [];
  readonly #stop = new AbortController();
  #resourceVersion: string | undefined;
  #synced = false;
  #syncWaiters: Array<{ resolve(): void; reject(err: Error): void }> = [];
  #resyncTimer: Timer | undefined;
  #loop: Promise<void> | undefined;

  constructor(lw: ListWatch<T>, opts: InformerOptions<T>) {
    this.#lw = lw;
    this.#name = opts.name;
    this.#clock = opts.clock ?? realClock;
    this.#random = opts.random ?? Math.random;
    this.#logger = opts.logger?.child({ informer: opts.name });
    this.#metrics = opts.metrics;
    this.#resyncMs = opts.resyncMs ?? 600_000;
    this.#watchdogMs = opts.watchdogMs ?? 180_000;
    this.#listTimeoutMs = opts.listTimeoutMs ?? 60_000;
    this.#minWatchTimeoutSeconds = opts.minWatchTimeoutSeconds ?? 300;
    this.#backoff = new Backoff(opts.backoff ?? { baseMs: 800, capMs: 30_000 }, this.#random);
    this.#transform = opts.transform ?? ((obj) => obj);
  }

  /** Adds a handler; if the cache is already filled, it first gets an add for every object. */
  addEventHandler(handler: EventHandler<T>): void {
    this.#handlers.push(handler);
    if (this.#synced) for (const obj of this.#store.list()) this.#call(handler, { type: 'add', obj });
  }

  start(): void {
    if (this.#loop || this.#stop.signal.aborted) return;
    this.#loop = this.#run();
  }

  /** Closes the watch and resolves when the informer has stopped; it cannot be restarted. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#resyncTimer?.cancel();
    for (const w of this.#syncWaiters.splice(0)) w.reject(new Error(`informer ${this.#name} stopped`));
    await this.#loop;
  }

  /** True once the first list is in the cache and its adds were delivered. */
  hasSynced(): boolean {
    return this.#synced;
  }

  /** Resolves when synced; rejects if the informer stops or signal aborts first. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.#synced) return Promise.resolve();
    if (this.#stop.signal.aborted) return Promise.reject(new Error(`informer ${this.#name} stopped`));
    if (signal?.aborted)
      return Promise.reject(new Error(`waiting for informer ${this.#name} to sync was aborted`));
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.#syncWaiters = this.#syncWaiters.filter((w) => w !== waiter);
        reject(new Error(`waiting for informer ${this.#name} to sync was aborted`));
      };
      // Detach from the caller's signal once settled; it may live as long as the process.
      const settled = (): void => signal?.removeEventListener('abort', onAbort);
      const waiter = {
        resolve: (): void => {
          settled();
          resolve();
        },
        reject: (err: Error): void => {
          settled();
          reject(err);
        },
      };
      this.#syncWaiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The cached object under "namespace/name" (or "name" when cluster-scoped). */
  get(key: string): T | undefined {
    return this.#store.get(key);
  }

  list(): T[] {
    return this.#store.list();
  }

  async #run(): Promise<void> {
    const stopped = this.#stop.signal;
    while (!stopped.aborted) {
      const started = this.#clock.now();
      let end: WatchEnd;
      try {
        if (this.#resourceVersion === undefined) await this.#relist(stopped);
        end = await this.#watch(stopped);
      } catch (err) {
        end = watchEndOf(err);
      }
      if (stopped.aborted) break;
      if (end.reason === 'expired') this.#resourceVersion = undefined;
      this.#metrics?.watchRestart(end.reason);
      if (end.reason === 'error') {
        this.#logger?.warn({ err: end.err }, 'list/watch failed; retrying');
      } else {
        this.#logger?.debug({ reason: end.reason }, 'restarting watch');
      }
      if (this.#clock.now() - started >= HEALTHY_WATCH_MS) this.#backoff.reset();
      await this.#clock.sleep(this.#backoff.next(), stopped);
    }
  }

  async #relist(stopped: AbortSignal): Promise<void> {
    const timeout = new AbortController();
    const timer = this.#clock.setTimer(this.#listTimeoutMs, () =>
      timeout.abort(new Error(`list took longer than ${this.#listTimeoutMs} ms`)),
    );
    try {
      const result = await this.#lw.list(AbortSignal.any([stopped, timeout.signal]));
      if (stopped.aborted) return;
      const changes = this.#store.replace(result.items.map(this.#transform));
      this.#resourceVersion = result.resourceVersion;
      this.#dispatch(changes);
    } finally {
      timer.cancel();
    }
    if (!this.#synced) {
      this.#synced = true;
      for (const w of this.#syncWaiters.splice(0)) w.resolve();
      this.#scheduleResync();
    }
  }

  #watch(stopped: AbortSignal): Promise<WatchEnd> {
    if (stopped.aborted) return Promise.resolve({ reason: 'closed' });
    return new Promise((resolve) => {
      let finished = false;
      let close: (() => void) | undefined;
      const finish = (end: WatchEnd): void => {
        if (finished) return;
        finished = true;
        watchdog.stop();
        stopped.removeEventListener('abort', onStop);
        close?.();
        resolve(end);
      };
      const onStop = (): void => finish({ reason: 'closed' });
      // Also covers a watch request that never gets response headers.
      const watchdog = new Watchdog(this.#clock, this.#watchdogMs, () => finish({ reason: 'watchdog' }));
      stopped.addEventListener('abort', onStop, { once: true });

      const timeoutSeconds = Math.floor(this.#minWatchTimeoutSeconds * (1 + this.#random()));
      this.#lw
        .watch(
          { resourceVersion: this.#resourceVersion ?? '', timeoutSeconds },
          (type, object) => {
            if (finished) return;
            watchdog.kick();
            const end = this.#onWatchEvent(type, object);
            if (end) finish(end);
          },
          (err) => finish(watchEndOf(err)),
        )
        .then(
          (closeStream) => {
            close = closeStream;
            if (finished) closeStream();
          },
          (err: unknown) => finish(watchEndOf(err)),
        );
    });
  }

  /** Applies one event; returns how the watch ended if the event ends it. */
  #onWatchEvent(type: string, object: unknown): WatchEnd | undefined {
    if (type === 'ERROR') {
      const status = object as { code?: number; message?: string; reason?: string };
      const code = status.code ?? 500;
      return watchEndOf(new KubeStatusError(code, status.message ?? `watch error ${code}`, status.reason));
    }
    const obj = object as T;
    const rv = obj?.metadata?.resourceVersion;
    if (type === 'BOOKMARK') {
      if (rv) this.#resourceVersion = rv;
      return undefined;
    }
    if ((type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED') || !obj?.metadata?.name) {
      this.#logger?.warn({ type }, 'ignoring malformed watch event');
      return undefined;
    }
    const change = this.#store.apply(type, this.#transform(obj));
    if (rv) this.#resourceVersion = rv;
    if (change) this.#dispatch([change]);
    return undefined;
  }

  #scheduleResync(): void {
    if (this.#resyncMs <= 0 || this.#stop.signal.aborted) return;
    this.#resyncTimer = this.#clock.setTimer(this.#resyncMs, () => {
      this.#dispatch(this.#store.list().map((obj) => ({ type: 'update', old: obj, obj })));
      this.#scheduleResync();
    });
  }

  #dispatch(changes: readonly Change<T>[]): void {
    for (const change of changes) for (const h of this.#handlers) this.#call(h, change);
  }

  #call(handler: EventHandler<T>, change: Change<T>): void {
    try {
      if (change.type === 'add') handler.onAdd?.(change.obj);
      else if (change.type === 'update') handler.onUpdate?.(change.old, change.obj);
      else handler.onDelete?.(change.obj);
    } catch (err) {
      this.#logger?.error({ err, key: objectKey(change.obj) }, 'event handler threw');
    }
  }
}
