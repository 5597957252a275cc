import type { KubernetesObject, V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { type ApiKeyStatus, secretNameOf } from '../../api/apikey.js';
import { quotaDefinition, rateLimitDefinitions } from '../../api/ratelimits.js';
import { parseApiKey } from '../../api/validate.js';
import type { RandomSource } from '../../credentials/token.js';
import type { ApiKeyState, OperatorStore } from '../../store/operator-store.js';
import type { RateLimitDefinitions } from '../../store/rate-limits.js';
import { type Grants, grantedExpiry, permittedScopes } from '../accesspolicy/grants.js';
import type { CheckFailure } from '../conditions.js';
import type { EventRecorder } from '../kube/events.js';
import type { SharedInformer } from '../kube/informer.js';
import type { HandlerResult } from '../kube/workqueue.js';
import { FINALIZER, type KubeWriter } from '../objects.js';
import {
  addFinalizerInProgress,
  fromStore,
  reportStoreUnavailable,
  StoreUnavailableError,
} from '../status.js';
import type { WorkloadRestarter } from '../workloads.js';
import {
  KeyActions,
  MaxKeysExceededError,
  SecretRefusedError,
  SecretTakenError,
  type Written,
} from './actions.js';
import {
  type Blocked,
  firstFailure,
  MAX_KEYS_RECHECK_MS,
  readyFailure,
  reductions,
  SECRET_CONFLICT_RECHECK_MS,
} from './checks.js';
import { reconcileConsumers } from './consumers.js';
import { KeyFields } from './fields.js';
import { type GatherDeps, gather, type KeyFacts, withSecretFromApiServer } from './gather.js';
import { WriteMemory } from './memory.js';
import {
  type CredentialDecision,
  decideCredentials,
  desiredExpiry,
  nextWakeup,
  type StoredKey,
} from './policy.js';
import { quotaStatus } from './quota.js';
import * as R from './reasons.js';
import { stateFlags, writeKeyStatus } from './report.js';

export interface ApiKeyReconcilerDeps {
  apiKeys: SharedInformer<KubernetesObject>;
  serviceUsers: SharedInformer<KubernetesObject>;
  secrets: SharedInformer<V1Secret>;
  kube: KubeWriter;
  store: OperatorStore;
  /** Rate limits and quota of the key (store/rate-limits.ts). */
  limits: RateLimitDefinitions;
  events: EventRecorder;
  logger: Logger;
  tokenPrefix: string;
  /** What the namespace's AccessPolicies grant now. */
  grants: (namespace: string) => Grants;
  restarter: WorkloadRestarter;
  /** Token changes this close together give one restart of the restart targets. */
  restartDebounceMs: number;
  /** A Ready key with a quota is reconciled again at least this often, so status.quota follows the store. */
  lastUsedRefreshMs?: number;
  now?: () => Date;
  random?: RandomSource;
  /** What this process wrote; shared with the controller, which skips the echoes of its writes. */
  memory?: WriteMemory;
}

/** Default of KEYWARD_LAST_USED_REFRESH_SECONDS: the bound on how far status.quota lags the store. */
const LAST_USED_REFRESH_MS = 60_000;

function storedKey(state: ApiKeyState): StoredKey {
  return {
    keyId: state.keyId,
    previousValidUntil: state.previousValidUntil,
    issuedAt: state.issuedAt,
    rotatedAt: state.rotatedAt ?? state.issuedAt,
    expiresAt: state.expiresAt,
    disabled: state.disabled,
    revokedAt: state.revokedAt,
    revokedReason: state.revokedReason,
  };
}

/**
 * Reconciles one ApiKey: gather (gather.ts) → the check chain (checks.ts) → the credential
 * decision (policy.ts) → actions in their write order (actions.ts) → status and Events.
 */
export class ApiKeyReconciler {
  readonly #d: ApiKeyReconcilerDeps;
  readonly #now: () => Date;
  readonly #gather: GatherDeps;
  readonly #act: KeyActions;
  readonly #fields: KeyFields;

  constructor(deps: ApiKeyReconcilerDeps) {
    this.#d = deps;
    this.#now = deps.now ?? ((): Date => new Date());
    const memory = deps.memory ?? new WriteMemory();
    this.#gather = { ...deps, memory };
    this.#act = new KeyActions({ ...deps, memory });
    this.#fields = new KeyFields(deps);
  }

  async reconcile(key: string): Promise<HandlerResult | undefined> {
    const raw = this.#d.apiKeys.get(key);
    if (!raw) return undefined;
    try {
      return await this.#reconcile(raw);
    } catch (err) {
      if (err instanceof StoreUnavailableError) {
        await reportStoreUnavailable({ ...this.#d, now: this.#now() }, 'apikeys', raw, err);
      }
      throw err;
    }
  }

  async #reconcile(raw: KubernetesObject): Promise<HandlerResult | undefined> {
    if (raw.metadata?.deletionTimestamp) {
      if (!raw.metadata.finalizers?.includes(FINALIZER)) return undefined;
      await this.#act.revoke(raw);
      await fromStore(() => this.#d.limits.forget(raw.metadata?.uid ?? '', 'ApiKey'));
      await this.#d.kube.removeFinalizer('apikeys', raw);
      return undefined;
    }
    const parsed = parseApiKey(raw);
    if (!parsed.ok) {
      const failure = { reason: R.INVALID_SPEC, message: parsed.errors.join('; '), stalled: true };
      await writeKeyStatus(this.#status(), raw, undefined, { failure });
      return undefined;
    }
    if (!parsed.value.metadata.finalizers?.includes(FINALIZER)) {
      // The update event this causes brings the key back, finalizer in place, before anything is issued.
      await addFinalizerInProgress({ kube: this.#d.kube, now: this.#now() }, 'apikeys', raw);
      return undefined;
    }
    const now = this.#now();
    // Before anything is issued: the key never verifies without the limits it asks for.
    const spec = parsed.value.spec;
    const limits = {
      uid: parsed.value.metadata.uid ?? '',
      kind: 'ApiKey' as const,
      rateLimits: rateLimitDefinitions(spec.rateLimits),
      quota: quotaDefinition(spec.quota),
    };
    const definitions = JSON.stringify([limits.rateLimits, limits.quota]);
    if (!this.#gather.memory.limitsStored(limits.uid, definitions)) {
      await fromStore(() => this.#d.limits.define(limits));
      this.#gather.memory.knowLimits(limits.uid, definitions);
    }
    const facts = await gather(this.#gather, raw, parsed.value, now);
    const blocked = firstFailure(facts);
    if (blocked) return await this.#blocked(facts, blocked);
    let f = facts;
    let decision = this.#decide(f);
    if (
      decision.action.kind === 'rotate' &&
      ['RotationResumed', 'SecretLost'].includes(decision.action.reason)
    ) {
      // Replacing a token workloads may hold: decide again on the Secret as the API server has it.
      f = await withSecretFromApiServer(this.#gather, f);
      const conflict = firstFailure(f);
      if (conflict) return await this.#blocked(f, conflict);
      decision = this.#decide(f);
    }
    let written: Written;
    try {
      written = await this.#credentials(f, decision);
    } catch (err) {
      const failure = this.#failureOf(f, err);
      if (!failure) throw err;
      return await this.#blocked(f, failure);
    }
    if (!written.state) throw new Error(`key ${f.uid} is missing from the store`);
    const state = await this.#fields.syncFields(f, written.state);
    return await this.#ready(f, state, written);
  }

  #decide(f: KeyFacts): CredentialDecision {
    // Issued again after its user came back: the Secret's old token is revoked, never adopted.
    const reissue = f.revokedWithUser;
    const secret = reissue && f.view.match !== 'none' ? { ...f.view, match: 'missing' as const } : f.view;
    return decideCredentials({
      spec: f.apiKey.spec,
      stored: f.state && !reissue ? storedKey(f.state) : null,
      secret,
      rotateRequest: f.rotateRequest,
      answeredRequests: f.answeredRequests,
      now: f.now,
    });
  }

  async #credentials(f: KeyFacts, decision: CredentialDecision): Promise<Written> {
    const action = decision.action;
    if (action.kind === 'issue') return await this.#act.issue(f, action.request, action.adopt);
    if (action.kind === 'rotate') return await this.#act.rotate(f, decision);
    return await this.#act.repair(f);
  }

  /** The Blocked a failed credential step leaves the key in, or undefined for an error to retry. */
  #failureOf(f: KeyFacts, err: unknown): Blocked | undefined {
    if (err instanceof MaxKeysExceededError)
      return {
        reason: R.MAX_KEYS_EXCEEDED,
        message: err.message,
        stalled: true,
        recheckMs: MAX_KEYS_RECHECK_MS,
      };
    if (err instanceof SecretTakenError) {
      const previous = f.apiKey.status?.conditions?.find((c) => c.type === 'Ready');
      return {
        reason: R.SECRET_CONFLICT,
        message: err.message,
        stalled: false,
        event: previous?.reason !== R.SECRET_CONFLICT,
        recheckMs: SECRET_CONFLICT_RECHECK_MS,
      };
    }
    if (err instanceof SecretRefusedError) {
      this.#gather.memory.failed(f.raw, err.message);
      const previous = f.apiKey.status?.conditions?.find((c) => c.type === 'Ready');
      const message = `the API server refused the Secret: ${err.message}; keyward tries again when the ApiKey changes`;
      return { reason: R.SECRET_WRITE_FAILED, message, stalled: true, event: previous?.message !== message };
    }
    return undefined;
  }

  /**
   * A key the chain stops before (or during) credential work. What makes it stricter is applied
   * first, whatever blocks it: disabled, an earlier expiry, narrower scopes (DESIGN.md §6).
   */
  async #blocked(f: KeyFacts, blocked: Blocked): Promise<HandlerResult | undefined> {
    let state = f.state;
    if (state && !state.revokedAt) {
      const notPermitted = blocked.reason === R.NOT_PERMITTED;
      const from = state.rotatedAt ?? state.issuedAt;
      // NotPermitted keeps only the granted part of the spec in the store.
      const patch = {
        ...reductions(f.apiKey.spec, state, f.grants),
        ...(notPermitted && {
          scopes: f.apiKey.spec.scopes ? permittedScopes(f.grants, f.apiKey.spec.scopes) : null,
          expiresAt: grantedExpiry(desiredExpiry(f.apiKey.spec, from), f.grants, from),
        }),
      };
      if (notPermitted || Object.keys(patch).length > 0)
        state = await this.#fields.reduce(f, patch, notPermitted);
    }
    if (blocked.event)
      this.#d.events.record(f.raw, { type: 'Warning', reason: blocked.reason, message: blocked.message });
    const suspended = f.storedUser?.suspended === true;
    const stored = state && !state.revokedAt ? storedKey(state) : undefined;
    const expired = stored ? readyFailure(stored, suspended, secretNameOf(f.apiKey), f.now).expired : false;
    if (state && expired) await this.#noteExpiry(f, state);
    await writeKeyStatus(this.#status(), f.raw, state, {
      failure: blocked,
      ...(blocked.inFlight && { inFlight: blocked.message }),
      extra: stateFlags(state, expired, suspended),
    });
    return blocked.recheckMs === undefined ? undefined : { requeueAfterMs: blocked.recheckMs };
  }

  async #ready(f: KeyFacts, state: ApiKeyState, written: Written): Promise<HandlerResult | undefined> {
    const { raw, apiKey, now } = f;
    const suspended = f.storedUser?.suspended === true;
    const stored = storedKey(state);
    const ready = readyFailure(stored, suspended, secretNameOf(apiKey), now);
    if (ready.expired) await this.#noteExpiry(f, state);
    const consumers = await reconcileConsumers(
      {
        restarter: this.#d.restarter,
        events: this.#d.events,
        logger: this.#d.logger,
        debounceMs: this.#d.restartDebounceMs,
      },
      { raw, apiKey, tokenVersion: written.tokenVersion, tokenCreatedAt: stored.rotatedAt, now },
    );
    const quota = await fromStore(() => quotaStatus(this.#d.limits, f.uid, apiKey.spec.quota, now));
    await writeKeyStatus(this.#status(), raw, state, {
      failure: ready.failure,
      quota,
      readyMessage: ready.message,
      rotationRequest: written.rotationRequest,
      ...(consumers.lastRestart && { lastRestart: consumers.lastRestart }),
      drop: consumers.drop,
      extra: [...stateFlags(state, ready.expired, suspended), ...consumers.conditions],
    });
    // A use brings the key back through UsageRefresh (usage-refresh.ts); the quota's remaining
    // count also refills with time, so a key with a quota is refreshed on its own as well.
    const refresh =
      ready.failure || !apiKey.spec.quota
        ? null
        : new Date(now.getTime() + (this.#d.lastUsedRefreshMs ?? LAST_USED_REFRESH_MS));
    const wake = [nextWakeup(apiKey.spec, stored, now), consumers.wakeAt ?? null, refresh]
      .filter((d): d is Date => d !== null)
      .sort((a, b) => a.getTime() - b.getTime())[0];
    // A little past the instant, so the reconcile sees the expiry, grace end or debounce as passed.
    return wake ? { requeueAfterMs: Math.max(wake.getTime() - now.getTime(), 0) + 100 } : undefined;
  }

  /**
   * Before the status that records Expired=True: a crash in between repeats this, and the store
   * writes the audit row once per expiry.
   */
  async #noteExpiry(f: KeyFacts, state: ApiKeyState): Promise<void> {
    const wasExpired = (f.raw as { status?: ApiKeyStatus }).status?.conditions?.some(
      (c) => c.type === 'Expired' && c.status === 'True',
    );
    if (wasExpired) return;
    await fromStore(() => this.#d.store.recordExpiry(f.uid));
    const failure: CheckFailure | undefined = readyFailure(storedKey(state), false, '', f.now).failure;
    this.#d.events.record(f.raw, {
      type: 'Warning',
      reason: R.EXPIRED,
      message: failure?.message ?? 'expired',
    });
  }

  #status(): { kube: KubeWriter; now: Date } {
    return { kube: this.#d.kube, now: this.#now() };
  }
}
