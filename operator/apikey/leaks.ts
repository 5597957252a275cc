import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { OperatorStore } from '../../store/operator-store.js';
import type { EventRecorder } from '../kube/events.js';
import type { SharedInformer } from '../kube/informer.js';
import { LEAKED } from './reasons.js';

/**
 * How often pending leak reports are looked for. The webhook only records them (its store role
 * may not revoke); a report waits at most this long before the key stops verifying.
 */
const LEAK_POLL_MS = 2_000;

export interface LeakWatcherDeps {
  readonly store: OperatorStore;
  readonly apiKeys: SharedInformer<KubernetesObject>;
  readonly events: EventRecorder;
  readonly logger: Logger;
  /** null: every namespace. */
  readonly namespaces: readonly string[] | null;
  /** Reconciles the ApiKey `namespace/name` (its status then says Ready=False, Leaked). */
  readonly enqueue: (key: string) => void;
  readonly intervalMs?: number;
}

/**
 * Acts on leak reports: the store revokes each reported live key (with its audit events); this
 * records a Warning Event on the ApiKey and has it reconciled, so its status shows the reason.
 */
export class LeakWatcher {
  readonly #d: LeakWatcherDeps;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(deps: LeakWatcherDeps) {
    this.#d = deps;
  }

  start(): void {
    this.#schedule(0);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.#poll().finally(() => this.#schedule(this.#d.intervalMs ?? LEAK_POLL_MS));
    }, ms);
  }

  async #poll(): Promise<void> {
    const d = this.#d;
    let revoked: Awaited<ReturnType<OperatorStore['processLeakReports']>>;
    try {
      revoked = await d.store.processLeakReports(d.namespaces);
    } catch (err) {
      d.logger.warn({ err: (err as Error).message }, 'leak reports could not be processed; retrying');
      return;
    }
    for (const key of revoked) {
      const id = `${key.namespace}/${key.name}`;
      d.logger.warn(
        { keyId: key.keyId, apiKey: id, source: key.source },
        'key revoked: its token was reported leaked',
      );
      const obj = d.apiKeys.get(id);
      if (obj) {
        d.events.record(obj, {
          type: 'Warning',
          reason: LEAKED,
          message: `key ${key.keyId} was revoked: a secret scanner reported its token in public${key.source ? ` (${key.source})` : ''}; re-create the ApiKey to issue a new one`,
        });
      }
      d.enqueue(id);
    }
  }
}
