import type { ApiKey } from '../../api/apikey.js';
import { parseDuration } from '../../api/duration.js';
import type { ApiKeyState, KeyPatch, OperatorStore } from '../../store/operator-store.js';
import { sameList, sameTime } from '../../store/rows.js';
import { type Grants, grantedExpiry } from '../accesspolicy/grants.js';
import type { EventRecorder } from '../kube/events.js';
import { fromStore } from '../status.js';
import type { KeyFacts } from './gather.js';
import { desiredExpiry } from './policy.js';
import * as R from './reasons.js';

/** The store's mutable fields of a key (description, scopes, disabled, expiry) and their Events. */
export class KeyFields {
  constructor(private readonly d: { store: OperatorStore; events: EventRecorder }) {}

  /** Applies what makes the key stricter while it is blocked (checks.ts reductions). */
  async reduce(f: KeyFacts, patch: KeyPatch, notPermitted: boolean): Promise<ApiKeyState | null> {
    const result = await fromStore(() =>
      this.d.store.updateKey(f.uid, { ...patch, ...(notPermitted && { notPermitted: true }) }),
    );
    if (result.kind !== 'ok') return f.state;
    this.#disabledEvent(f, result.changed, result.key);
    return result.key;
  }

  /** Brings the store's mutable fields in line with the spec; returns the key as stored now. */
  async syncFields(f: KeyFacts, state: ApiKeyState): Promise<ApiKeyState> {
    const from = state.rotatedAt ?? state.issuedAt;
    const patch = {
      description: f.apiKey.spec.description ?? '',
      scopes: f.apiKey.spec.scopes ?? null,
      disabled: f.apiKey.spec.disabled === true,
      // Only reached when the key fits the grants (checks.ts notPermitted).
      notPermitted: false,
      expiresAt: grantedExpiry(desiredExpiry(f.apiKey.spec, from), f.grants, from),
    };
    // The state was read (or written) by this pass: when it already holds the spec, as after every
    // issue, the store's answer is known and its transaction (three round trips) is skipped.
    if (holds(state, patch)) return state;
    const result = await fromStore(() => this.d.store.updateKey(f.uid, patch));
    if (result.kind !== 'ok')
      throw new Error(
        `update of ${f.apiKey.metadata.namespace}/${f.apiKey.metadata.name} refused by the store: ${result.kind}`,
      );
    this.#disabledEvent(f, result.changed, result.key);
    return result.key;
  }

  #disabledEvent(f: KeyFacts, changed: string[], key: ApiKeyState): void {
    if (!changed.includes('disabled')) return;
    this.d.events.record(f.raw, {
      type: 'Normal',
      reason: key.disabled ? R.DISABLED : R.ENABLED,
      message: `key ${key.keyId} ${key.disabled ? 'disabled' : 'enabled again'} by spec.disabled`,
    });
  }
}

/** Whether the stored key already has these fields, compared as updateKey compares them. */
function holds(
  state: ApiKeyState,
  patch: Required<Omit<KeyPatch, 'scopes'>> & Pick<KeyPatch, 'scopes'>,
): boolean {
  return (
    state.description === patch.description &&
    sameList(state.scopes, patch.scopes ?? null) &&
    state.disabled === patch.disabled &&
    state.notPermitted === patch.notPermitted &&
    sameTime(state.expiresAt, patch.expiresAt)
  );
}

/**
 * The expiry of a secret created now, for the store to count from its own clock: the same
 * instant syncFields derives from the stored rotatedAt, so no spurious key.updated follows.
 */
export function storeExpiry(
  apiKey: ApiKey,
  grants: Grants,
): { expiresAt: Date | null; lifetimeSeconds: number | null } {
  const lifetimes = [
    apiKey.spec.ttl ? parseDuration(apiKey.spec.ttl) : undefined,
    grants.maxKeyLifetimeMs ?? undefined,
  ].filter((ms): ms is number => ms !== undefined);
  return {
    expiresAt: apiKey.spec.expiresAt ? new Date(apiKey.spec.expiresAt) : null,
    lifetimeSeconds: lifetimes.length > 0 ? Math.min(...lifetimes) / 1000 : null,
  };
}
