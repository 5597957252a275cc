import type { KubernetesObject, V1Secret } from '@kubernetes/client-node';
import { ROTATE_ANNOTATION } from '../../api/apikey.js';

/**
 * What this process's own writes produced, per ApiKey uid. Informers lag: the ApiKey's status
 * event can arrive before the event of the Secret written just before it, and a decision taken on
 * the older Secret would rotate again (RotationResumed) or re-issue a token just written
 * (SecretLost). So a Secret from the informer is used only while it is the version this process
 * last wrote; any other version is read from the API server instead (gather.ts).
 *
 * A fresh process remembers nothing; gather.ts then reads the API server before any
 * RotationResumed or SecretLost action, which is the case that matters.
 */
export class WriteMemory {
  readonly #secretVersions = new Map<string, string>();
  readonly #failures = new Map<string, { fingerprint: string; message: string }>();
  readonly #limits = new Map<string, string>();

  /** Records the newest version of the Secret this process knows: the answer to a write or a read. */
  knowSecret(uid: string, secret: V1Secret | undefined): void {
    // NONE: read, and there was none; the informer may still show one it has not seen deleted.
    this.#secretVersions.set(uid, secret?.metadata?.resourceVersion ?? NONE);
  }

  /** Whether this process wrote or read a Secret of this key (or read that there is none). */
  knowsSecretOf(uid: string): boolean {
    return this.#secretVersions.has(uid);
  }

  /**
   * Whether this is the very version of the key's Secret this process last wrote or read: a pass
   * already decided from it, so its watch event brings nothing new to decide (the echo of a write).
   */
  isKnownVersion(uid: string, secret: V1Secret): boolean {
    const version = secret.metadata?.resourceVersion;
    return version !== undefined && this.#secretVersions.get(uid) === version;
  }

  /** Whether the informer's copy may be older than the version this process last wrote or read. */
  mayBeStale(uid: string, fromInformer: V1Secret | undefined): boolean {
    const written = this.#secretVersions.get(uid);
    return written !== undefined && fromInformer?.metadata?.resourceVersion !== written;
  }

  /**
   * A permanent refusal of the Secret write (400/413/422) for this version of the object: the same
   * write is not tried again until the spec or the rotate request changes.
   */
  failed(raw: KubernetesObject, message: string): void {
    this.#failures.set(raw.metadata?.uid ?? '', { fingerprint: fingerprint(raw), message });
  }

  /** The message of a permanent write failure of this very version of the object, if any. */
  failure(raw: KubernetesObject): string | undefined {
    const uid = raw.metadata?.uid ?? '';
    const found = this.#failures.get(uid);
    if (!found) return undefined;
    if (found.fingerprint === fingerprint(raw)) return found.message;
    this.#failures.delete(uid);
    return undefined;
  }

  /**
   * Whether this process already stored exactly these rate limit definitions for the key. Only the
   * leader writes them and a new leader starts with an empty memory, so a definition remembered here
   * is the one the store holds; skipping the write saves a store round trip on every pass.
   */
  limitsStored(uid: string, definitions: string): boolean {
    return this.#limits.get(uid) === definitions;
  }

  knowLimits(uid: string, definitions: string): void {
    this.#limits.set(uid, definitions);
  }

  forget(uid: string): void {
    this.#secretVersions.delete(uid);
    this.#failures.delete(uid);
    this.#limits.delete(uid);
  }
}

/** The version remembered for a key whose Secret was read and found absent: no informer copy matches it. */
const NONE = '';

/** What a user changes to move a key past a refused write: the spec (generation) or the rotate request. */
function fingerprint(raw: KubernetesObject): string {
  return `${raw.metadata?.generation ?? 0}\n${raw.metadata?.annotations?.[ROTATE_ANNOTATION] ?? ''}`;
}
