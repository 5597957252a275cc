import type { KubernetesObject, V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import {
  type ApiKey,
  type ApiKeyStatus,
  gracePeriodMs,
  ROTATE_ANNOTATION,
  secretNameOf,
} from '../../api/apikey.js';
import { parseDuration } from '../../api/duration.js';
import { quotaDefinition, rateLimitDefinitions } from '../../api/ratelimits.js';
import { uncoveredScopes } from '../../api/scopes.js';
import type { ServiceUser } from '../../api/serviceuser.js';
import { parseApiKey, parseServiceUser } from '../../api/validate.js';
import { generateToken, parseToken, type RandomSource, tokenHash } from '../../credentials/token.js';
import type { ApiKeyState, OperatorStore } from '../../store/operator-store.js';
import type { RateLimitDefinitions } from '../../store/rate-limits.js';
import {
  checkApiKey,
  type Grants,
  grantedExpiry,
  NOT_PERMITTED,
  permittedScopes,
} from '../accesspolicy/grants.js';
import { type ConditionInput, PROGRESSING, setConditions } from '../conditions.js';
import { FAILPOINTS, failpoint } from '../failpoints.js';
import type { EventRecorder } from '../kube/events.js';
import type { SharedInformer } from '../kube/informer.js';
import type { HandlerResult } from '../kube/workqueue.js';
import { FINALIZER, type KubeWriter } from '../objects.js';
import {
  desiredSecret,
  inspectSecret,
  SECRET_CONFLICT,
  type SecretContents,
  secretFieldManager,
  secretMetadataDiffers,
  secretOwnership,
  tokenVersion,
} from '../secret.js';
import {
  addFinalizerInProgress,
  fromStore,
  reportStoreUnavailable,
  StoreUnavailableError,
  statusChanged,
} from '../status.js';
import type { WorkloadRestarter } from '../workloads.js';
import { reconcileConsumers } from './consumers.js';
import {
  type CredentialDecision,
  decideCredentials,
  desiredExpiry,
  nextWakeup,
  readiness,
  rememberRequest,
  type SecretView,
  type StoredKey,
} from './policy.js';
import { quotaStatus } from './quota.js';

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
  /** A Ready key is reconciled again at least this often, so status.lastUsedAt follows the store. */
  lastUsedRefreshMs?: number;
  now?: () => Date;
  random?: RandomSource;
}

/**
 * How often a key in SecretConflict looks again. A tenant's Secret carries no keyward label, so
 * the informer sees neither it nor its deletion; without this the key would wait for the resync.
 */
const SECRET_CONFLICT_RECHECK_MS = 60_000;

/** Default of KEYWARD_LAST_USED_REFRESH_SECONDS: the bound on how far status.lastUsedAt lags the store. */
const LAST_USED_REFRESH_MS = 60_000;

/** Ready reason of a key its user's maxKeys leaves no slot for. */
const MAX_KEYS_EXCEEDED = 'MaxKeysExceeded';

/**
 * How often a key waiting for a maxKeys slot looks again: a slot frees when another key of the
 * user is revoked (a leak report, say), which no informer event of this key announces.
 */
const MAX_KEYS_RECHECK_MS = 60_000;

/** Why the key cannot be issued or used yet; decided before any credential work. */
interface Blocked {
  reason: string;
  message: string;
  /** Permanent until the spec (or another object) changes: kstatus reports it as Stalled. */
  stalled: boolean;
  /** The key as stored after the block was applied to it, if that changed it. */
  state?: ApiKeyState;
  /** Worth a Warning Event (a new NotPermitted finding). */
  event?: boolean;
  /** Look again after this long even if nothing changes. */
  recheckMs?: number;
}

interface StatusInput {
  ready: Omit<ConditionInput, 'type'>;
  stalled: boolean;
  extra?: ConditionInput[];
  /** The rotate request the Secret's token answers; unset keeps what status had. */
  rotationRequest?: string | null;
  /** Unset keeps what status had. */
  lastRestart?: ApiKeyStatus['lastRestart'];
  /** Condition types to remove. */
  drop?: string[];
  /** status.quota; null clears it, unset keeps what status had. */
  quota?: ApiKeyStatus['quota'] | null;
  /** Work still in flight (Reconciling=True with this message); unset removes Reconciling. */
  reconciling?: string;
}

/** What the credential step left in the Secret. */
interface Written {
  rotationRequest: string | null;
  /** keyward.dev/token-version of the Secret's token. */
  tokenVersion: string | null;
}

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
 * Reconciles one ApiKey: finalizer, reference and scope checks, issue/rotation/repair of its secret
 * (write order chosen for crash safety, see policy.ts), store fields, status and Events.
 */
export class ApiKeyReconciler {
  readonly #d: ApiKeyReconcilerDeps;
  readonly #now: () => Date;

  constructor(deps: ApiKeyReconcilerDeps) {
    this.#d = deps;
    this.#now = deps.now ?? ((): Date => new Date());
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
      await this.#finalize(raw);
      return undefined;
    }
    const parsed = parseApiKey(raw);
    if (!parsed.ok) {
      const message = parsed.errors.join('; ');
      await this.#writeStatus(raw, undefined, {
        ready: { status: 'False', reason: 'InvalidSpec', message },
        stalled: true,
      });
      return undefined;
    }
    const apiKey = parsed.value;
    if (!apiKey.metadata.finalizers?.includes(FINALIZER)) {
      // The update event this causes brings the key back, finalizer in place, before anything is issued.
      await addFinalizerInProgress({ kube: this.#d.kube, now: this.#now() }, 'apikeys', raw);
      return undefined;
    }
    const uid = apiKey.metadata.uid ?? '';
    const now = this.#now();
    // Before anything is issued: the key never verifies without the limits it asks for.
    await fromStore(() =>
      this.#d.limits.define({
        uid,
        kind: 'ApiKey',
        rateLimits: rateLimitDefinitions(apiKey.spec.rateLimits),
        quota: quotaDefinition(apiKey.spec.quota),
      }),
    );
    const state = await fromStore(() => this.#d.store.getKey(uid));
    const user = this.#serviceUser(apiKey);
    const grants = this.#d.grants(apiKey.metadata.namespace ?? '');
    const blocked = await this.#blocked(apiKey, user, state, grants, now);
    if (blocked) {
      if (blocked.event)
        this.#d.events.record(raw, { type: 'Warning', reason: blocked.reason, message: blocked.message });
      await this.#writeStatus(raw, blocked.state ?? state ?? undefined, {
        ready: { status: 'False', reason: blocked.reason, message: blocked.message },
        stalled: blocked.stalled,
        // Waiting for another object (its ServiceUser): the key is not issued yet.
        ...(!blocked.stalled && { reconciling: blocked.message }),
      });
      return blocked.recheckMs === undefined ? undefined : { requeueAfterMs: blocked.recheckMs };
    }
    const secret = await this.#secretOf(apiKey);
    const ownership = secretOwnership(apiKey, secret);
    if (ownership.kind === 'foreign' && !state?.revokedAt) {
      await this.#reportSecretConflict(raw, state, ownership.message);
      return { requeueAfterMs: SECRET_CONFLICT_RECHECK_MS };
    }
    const contents = inspectSecret(apiKey, secret);
    const decision = decideCredentials({
      spec: apiKey.spec,
      stored: state ? storedKey(state) : null,
      secret: await this.#secretView(uid, state, contents),
      rotateRequest: apiKey.metadata.annotations?.[ROTATE_ANNOTATION] ?? null,
      answeredRequests: answeredRequests(apiKey.status),
      now,
    });
    if (decision.action.kind === 'revoked') {
      await this.#writeStatus(raw, state ?? undefined, {
        ready: { status: 'False', reason: decision.reason, message: decision.message },
        stalled: true,
      });
      return undefined;
    }
    let written: Written;
    try {
      written = await this.#act(raw, apiKey, decision, state, contents, secret, now);
    } catch (err) {
      if (err instanceof MaxKeysExceededError) {
        await this.#writeStatus(raw, undefined, {
          ready: { status: 'False', reason: MAX_KEYS_EXCEEDED, message: err.message },
          stalled: true,
        });
        return { requeueAfterMs: MAX_KEYS_RECHECK_MS };
      }
      if (!(err instanceof SecretTakenError)) throw err;
      await this.#reportSecretConflict(raw, state, err.message);
      return { requeueAfterMs: SECRET_CONFLICT_RECHECK_MS };
    }
    const current = await this.#syncFields(raw, apiKey);
    // What verification sees: the store's record of the user, not a spec its reconciler may not
    // have stored yet (that reconciler's status write brings this key back once it has).
    const storedUser = user
      ? await fromStore(() => this.#d.store.getServiceUser(user.metadata.uid ?? ''))
      : null;
    const suspended = storedUser?.suspended === true;
    const stored = storedKey(current);
    const ready = readiness(stored, suspended, secretNameOf(apiKey), now);
    const wasExpired = (raw as { status?: ApiKeyStatus }).status?.conditions?.some(
      (c) => c.type === 'Expired' && c.status === 'True',
    );
    if (ready.expired && !wasExpired) {
      // Before the status that records Expired=True: a crash in between repeats this, and the
      // store writes the audit row once per expiry.
      await fromStore(() => this.#d.store.recordExpiry(uid));
      this.#d.events.record(raw, { type: 'Warning', reason: 'Expired', message: ready.message });
    }
    const consumers = await reconcileConsumers(
      {
        restarter: this.#d.restarter,
        events: this.#d.events,
        logger: this.#d.logger,
        debounceMs: this.#d.restartDebounceMs,
      },
      { raw, apiKey, tokenVersion: written.tokenVersion, tokenCreatedAt: stored.rotatedAt, now },
    );
    const quota = await fromStore(() => quotaStatus(this.#d.limits, uid, apiKey.spec.quota, now));
    await this.#writeStatus(raw, current, {
      ready: { status: ready.ready ? 'True' : 'False', reason: ready.reason, message: ready.message },
      stalled: false,
      quota,
      rotationRequest: written.rotationRequest,
      ...(consumers.lastRestart && { lastRestart: consumers.lastRestart }),
      drop: consumers.drop,
      extra: [
        flag('Expired', ready.expired, 'Expired', 'NotExpired'),
        flag('Disabled', stored.disabled, 'Disabled', 'Enabled'),
        flag('Suspended', suspended, 'UserSuspended', 'UserActive'),
        ...consumers.conditions,
      ],
    });
    // The webhook records use in the store; only a reconcile brings it to status.lastUsedAt.
    const refresh = ready.ready
      ? new Date(now.getTime() + (this.#d.lastUsedRefreshMs ?? LAST_USED_REFRESH_MS))
      : null;
    const wake = [nextWakeup(apiKey.spec, stored, now), consumers.wakeAt ?? null, refresh]
      .filter((d): d is Date => d !== null)
      .sort((a, b) => a.getTime() - b.getTime())[0];
    // A little past the instant, so the reconcile sees the expiry, grace end or debounce as passed.
    return wake ? { requeueAfterMs: Math.max(wake.getTime() - now.getTime(), 0) + 100 } : undefined;
  }

  /**
   * The key's Secret: from the informer, which sees only Secrets labelled as keyward's, else from
   * the API server, so a tenant's unlabelled Secret of that name (or keyward's own, its labels
   * edited away) is found before anything is written.
   */
  async #secretOf(apiKey: ApiKey): Promise<V1Secret | undefined> {
    const namespace = apiKey.metadata.namespace ?? '';
    const name = secretNameOf(apiKey);
    return this.#d.secrets.get(`${namespace}/${name}`) ?? (await this.#d.kube.readSecret(namespace, name));
  }

  /** Writes the Secret: a create when there was none, else an apply pinned to the version read. */
  async #writeSecret(apiKey: ApiKey, desired: V1Secret, current: V1Secret | undefined): Promise<void> {
    const manager = secretFieldManager(apiKey.metadata.uid ?? '');
    if (current) {
      await this.#d.kube.applyOwnSecret(desired, current, manager);
      return;
    }
    if (!(await this.#d.kube.createSecret(desired, manager))) {
      // Name the holder, as a conflict found by reading does: usually another ApiKey that won a race.
      const taken = secretOwnership(
        apiKey,
        await this.#d.kube.readSecret(apiKey.metadata.namespace ?? '', secretNameOf(apiKey)),
      );
      throw new SecretTakenError(
        taken.kind === 'foreign'
          ? taken.message
          : `Secret ${secretNameOf(apiKey)} was created by someone else just before keyward could create it; ` +
              'keyward leaves it unchanged',
      );
    }
  }

  /** Ready=False SecretConflict, and a Warning Event when the key enters that state (not on every resync). */
  async #reportSecretConflict(
    raw: KubernetesObject,
    state: ApiKeyState | null,
    message: string,
  ): Promise<void> {
    const previous = (raw as { status?: ApiKeyStatus }).status?.conditions?.find((c) => c.type === 'Ready');
    if (previous?.reason !== SECRET_CONFLICT)
      this.#d.events.record(raw, { type: 'Warning', reason: SECRET_CONFLICT, message });
    await this.#writeStatus(raw, state ?? undefined, {
      ready: { status: 'False', reason: SECRET_CONFLICT, message },
      stalled: false,
    });
  }

  #serviceUser(apiKey: ApiKey): ServiceUser | undefined {
    const raw = this.#d.serviceUsers.get(`${apiKey.metadata.namespace}/${apiKey.spec.serviceUserRef.name}`);
    if (!raw || raw.metadata?.deletionTimestamp) return undefined;
    const parsed = parseServiceUser(raw);
    return parsed.ok ? parsed.value : undefined;
  }

  async #blocked(
    apiKey: ApiKey,
    user: ServiceUser | undefined,
    state: ApiKeyState | null,
    grants: Grants,
    now: Date,
  ): Promise<Blocked | undefined> {
    const ref = apiKey.spec.serviceUserRef.name;
    // A revoked key is reported as Revoked by the credential decision, whatever its user.
    if (state?.revokedAt) return undefined;
    const notPermitted = await this.#notPermitted(apiKey, state, grants, now);
    if (notPermitted) return notPermitted;
    if (!user) {
      return {
        reason: 'ServiceUserNotFound',
        message: `ServiceUser ${ref} does not exist in namespace ${apiKey.metadata.namespace}`,
        stalled: false,
      };
    }
    const storedUser = await fromStore(() => this.#d.store.getServiceUser(user.metadata.uid ?? ''));
    const userReady = (
      user as { status?: { conditions?: Array<{ type: string; reason: string }> } }
    ).status?.conditions?.find((c) => c.type === 'Ready');
    if (storedUser?.notPermitted || (!storedUser && userReady?.reason === NOT_PERMITTED)) {
      return {
        reason: 'ServiceUserNotPermitted',
        message: `ServiceUser ${ref} asks for more than its AccessPolicies grant; no key of it verifies`,
        stalled: false,
      };
    }
    if (!storedUser || storedUser.deletedAt) {
      return {
        reason: 'ServiceUserNotReady',
        message: `ServiceUser ${ref} is not in the credential store yet`,
        stalled: false,
      };
    }
    const missing = uncoveredScopes(user.spec.scopes ?? [], apiKey.spec.scopes ?? []);
    if (missing.length > 0) {
      return {
        reason: 'ScopeNotGranted',
        message: `ServiceUser ${ref} does not grant ${missing.join(', ')}; such scopes are never effective for this key`,
        stalled: true,
      };
    }
    const max = user.spec.maxKeys;
    // Saves writing a Secret the store would refuse; the issuing transaction decides (#act).
    if (max !== undefined && !state) {
      const counts = await fromStore(() => this.#d.store.countKeys(user.metadata.uid ?? ''));
      if (counts.total >= max) {
        return {
          reason: MAX_KEYS_EXCEEDED,
          message: maxKeysMessage(ref, max),
          stalled: true,
          recheckMs: MAX_KEYS_RECHECK_MS,
        };
      }
    }
    return undefined;
  }

  /**
   * A key asking for a scope or a lifetime beyond the grants is not issued, or, if issued, stops
   * verifying: the store marks it and keeps only the granted part (scopes, expiry).
   */
  async #notPermitted(
    apiKey: ApiKey,
    state: ApiKeyState | null,
    grants: Grants,
    now: Date,
  ): Promise<Blocked | undefined> {
    const from = state ? (state.rotatedAt ?? state.issuedAt) : now;
    const violation = checkApiKey(apiKey.spec, grants, from);
    if (!violation) return undefined;
    const previous = (apiKey.status?.conditions ?? []).find((c) => c.type === 'Ready');
    const blocked: Blocked = {
      reason: NOT_PERMITTED,
      message: violation.message,
      stalled: true,
      event: previous?.reason !== NOT_PERMITTED || previous.message !== violation.message,
    };
    if (!state) return blocked;
    const result = await fromStore(() =>
      this.#d.store.updateKey(apiKey.metadata.uid ?? '', {
        notPermitted: true,
        scopes: apiKey.spec.scopes ? permittedScopes(grants, apiKey.spec.scopes) : null,
        expiresAt: grantedExpiry(desiredExpiry(apiKey.spec, from), grants, from),
      }),
    );
    return result.kind === 'ok' ? { ...blocked, state: result.key } : blocked;
  }

  async #secretView(uid: string, state: ApiKeyState | null, contents: SecretContents): Promise<SecretView> {
    const base = { ownedByKey: contents.ownedByKey, rotationRequest: contents.rotationRequest };
    if (!contents.hash) return { ...base, match: 'missing' };
    if (!state) return { ...base, match: 'none' };
    const hash = contents.hash;
    const match = await fromStore(() => this.#d.store.secretMatch(uid, hash));
    return { ...base, match: match.role };
  }

  async #act(
    raw: KubernetesObject,
    apiKey: ApiKey,
    decision: CredentialDecision,
    state: ApiKeyState | null,
    contents: SecretContents,
    secret: V1Secret | undefined,
    now: Date,
  ): Promise<Written> {
    const action = decision.action;
    const uid = apiKey.metadata.uid ?? '';
    const secretName = secretNameOf(apiKey);
    const log = this.#d.logger.child({ apiKey: `${apiKey.metadata.namespace}/${apiKey.metadata.name}` });
    if (action.kind === 'issue') {
      // Secret first, hash second: a crash in between leaves a token the store does not accept
      // yet, on a key that was never Ready; the retry adopts it instead of minting another.
      const adoptable = action.adopt && contents.token !== null ? parseToken(contents.token) : undefined;
      const token = adoptable?.ok
        ? { token: adoptable.value.token, displayPrefix: adoptable.value.displayPrefix }
        : generateToken({ prefix: this.#d.tokenPrefix, random: this.#d.random });
      const fresh = tokenVersion(uid, now);
      const maxKeys = this.#serviceUser(apiKey)?.spec.maxKeys;
      if (!adoptable?.ok)
        await this.#writeSecret(
          apiKey,
          desiredSecret(apiKey, { token: token.token, rotationRequest: action.request, tokenVersion: fresh }),
          secret,
        );
      failpoint(FAILPOINTS.issueAfterSecret);
      const result = await fromStore(() =>
        this.#d.store.issueKey({
          ref: { namespace: apiKey.metadata.namespace ?? '', name: apiKey.metadata.name, uid },
          serviceUserName: apiKey.spec.serviceUserRef.name,
          hash: tokenHash(token.token),
          displayPrefix: token.displayPrefix,
          description: apiKey.spec.description ?? '',
          scopes: apiKey.spec.scopes ?? null,
          disabled: apiKey.spec.disabled === true,
          ...this.#expiry(apiKey),
          ...(maxKeys !== undefined && { maxKeys }),
        }),
      );
      if (result.kind === 'max_keys_exceeded') {
        // Another key of the user took the last slot first: the token just written is never accepted.
        if (!adoptable?.ok && !secret)
          await this.#d.kube.deleteSecret(apiKey.metadata.namespace ?? '', secretName, uid);
        throw new MaxKeysExceededError(maxKeysMessage(apiKey.spec.serviceUserRef.name, result.maxKeys));
      }
      if (result.kind !== 'ok')
        throw new Error(
          `issue of ${apiKey.metadata.namespace}/${apiKey.metadata.name} refused by the store: ${result.kind}`,
        );
      failpoint(FAILPOINTS.issueAfterStore);
      log.info({ keyId: result.key.keyId, tokenPrefix: token.displayPrefix }, 'issued key');
      this.#d.events.record(raw, {
        type: 'Normal',
        reason: 'Issued',
        message: `issued key ${result.key.keyId} (${token.displayPrefix}…) into Secret ${secretName}`,
      });
      return {
        rotationRequest: adoptable?.ok ? contents.rotationRequest : action.request,
        tokenVersion: adoptable?.ok ? contents.tokenVersion : fresh,
      };
    }
    if (action.kind === 'rotate' && state) {
      // New hash first (the token the Secret holds stays valid for the grace period), Secret
      // second: a crash in between leaves the Secret with a still-valid token, and the next
      // reconcile sees it as the previous secret and resumes (RotationResumed).
      const generated = generateToken({ prefix: this.#d.tokenPrefix, random: this.#d.random });
      const graceMs = action.keepHeld ? gracePeriodMs(apiKey.spec) : 0;
      const result = await fromStore(() =>
        this.#d.store.rotateKey({
          uid,
          newHash: generated.hash,
          displayPrefix: generated.displayPrefix,
          graceSeconds: graceMs / 1000,
          reason: action.reason,
          ...(contents.hash ? { heldHash: contents.hash } : {}),
          ...this.#expiry(apiKey),
        }),
      );
      if (result.kind !== 'ok')
        throw new Error(
          `rotation of ${apiKey.metadata.namespace}/${apiKey.metadata.name} refused by the store: ${result.kind}`,
        );
      failpoint(FAILPOINTS.rotateAfterStore);
      // New and previous token in one write: the previous one is known only now (the store has
      // its hash alone), and a crash before this write resumes the rotation with the same held token.
      const version = tokenVersion(uid, now);
      await this.#writeSecret(
        apiKey,
        desiredSecret(apiKey, {
          token: generated.token,
          rotationRequest: action.request,
          tokenVersion: version,
          previousToken: graceMs > 0 ? contents.token : null,
        }),
        secret,
      );
      failpoint(FAILPOINTS.rotateAfterSecret);
      log.info(
        { keyId: state.keyId, tokenPrefix: generated.displayPrefix, reason: action.reason },
        'rotated key',
      );
      const grace =
        graceMs > 0 ? `; the previous secret verifies for ${Math.round(graceMs / 1000)}s more` : '';
      this.#d.events.record(raw, {
        type: action.reason === 'SecretLost' ? 'Warning' : 'Normal',
        reason: action.reason === 'SecretLost' ? 'SecretLost' : 'Rotated',
        message: `${decision.message}; key ${state.keyId} now uses ${generated.displayPrefix}…${grace}`,
      });
      return { rotationRequest: action.request, tokenVersion: version };
    }
    if (action.kind === 'none' && contents.token !== null && state) {
      // Same token; labels, annotations or the data keys may still have changed in the spec, the
      // grace period may have ended, or a Secret from before token versions needs one.
      const version = contents.tokenVersion ?? tokenVersion(uid, state.rotatedAt ?? state.issuedAt);
      const desired = desiredSecret(apiKey, {
        token: contents.token,
        rotationRequest: contents.rotationRequest,
        tokenVersion: version,
        previousToken: await this.#keptPreviousToken(uid, state, contents, now),
      });
      if (secretMetadataDiffers(desired, secret, secretFieldManager(uid)))
        await this.#writeSecret(apiKey, desired, secret);
      return { rotationRequest: contents.rotationRequest, tokenVersion: version };
    }
    return { rotationRequest: contents.rotationRequest, tokenVersion: contents.tokenVersion };
  }

  /**
   * The previous token the Secret may go on holding: only within the grace period, and only if the
   * store still accepts it as this key's previous secret (an edited value is dropped, never kept).
   */
  async #keptPreviousToken(
    uid: string,
    state: ApiKeyState,
    contents: SecretContents,
    now: Date,
  ): Promise<string | null> {
    const previous = contents.previousToken;
    if (previous === null || !state.previousValidUntil || state.previousValidUntil <= now) return null;
    const match = await fromStore(() => this.#d.store.secretMatch(uid, tokenHash(previous)));
    return match.role === 'previous' ? previous : null;
  }

  /** Brings the store's mutable fields in line with the spec; returns the key as stored now. */
  async #syncFields(raw: KubernetesObject, apiKey: ApiKey): Promise<ApiKeyState> {
    const uid = apiKey.metadata.uid ?? '';
    const state = await fromStore(() => this.#d.store.getKey(uid));
    if (!state)
      throw new Error(`key ${apiKey.metadata.namespace}/${apiKey.metadata.name} is missing from the store`);
    const from = state.rotatedAt ?? state.issuedAt;
    const result = await fromStore(() =>
      this.#d.store.updateKey(uid, {
        description: apiKey.spec.description ?? '',
        scopes: apiKey.spec.scopes ?? null,
        disabled: apiKey.spec.disabled === true,
        // Only reached when the key fits the grants (see #notPermitted).
        notPermitted: false,
        expiresAt: grantedExpiry(desiredExpiry(apiKey.spec, from), this.#grants(apiKey), from),
      }),
    );
    if (result.kind !== 'ok')
      throw new Error(
        `update of ${apiKey.metadata.namespace}/${apiKey.metadata.name} refused by the store: ${result.kind}`,
      );
    if (result.changed.includes('disabled')) {
      this.#d.events.record(raw, {
        type: 'Normal',
        reason: result.key.disabled ? 'Disabled' : 'Enabled',
        message: `key ${result.key.keyId} ${result.key.disabled ? 'disabled' : 'enabled again'} by spec.disabled`,
      });
    }
    return result.key;
  }

  /**
   * The expiry of a secret created now, for the store to count from its own clock: the same
   * instant #syncFields derives from the stored rotatedAt, so no spurious key.updated follows.
   */
  #expiry(apiKey: ApiKey): { expiresAt: Date | null; lifetimeSeconds: number | null } {
    const lifetimes = [
      apiKey.spec.ttl ? parseDuration(apiKey.spec.ttl) : undefined,
      this.#grants(apiKey).maxKeyLifetimeMs ?? undefined,
    ].filter((ms): ms is number => ms !== undefined);
    return {
      expiresAt: apiKey.spec.expiresAt ? new Date(apiKey.spec.expiresAt) : null,
      lifetimeSeconds: lifetimes.length > 0 ? Math.min(...lifetimes) / 1000 : null,
    };
  }

  #grants(apiKey: ApiKey): Grants {
    return this.#d.grants(apiKey.metadata.namespace ?? '');
  }

  async #finalize(raw: KubernetesObject): Promise<void> {
    if (!raw.metadata?.finalizers?.includes(FINALIZER)) return;
    const uid = raw.metadata.uid ?? '';
    // Revoke before the Secret goes: from this commit on, the token is useless wherever it leaked.
    await fromStore(() => this.#d.store.revokeKey(uid));
    await fromStore(() => this.#d.limits.forget(uid, 'ApiKey'));
    failpoint(FAILPOINTS.revokeAfterStore);
    const spec = (raw as { spec?: { secret?: { name?: string } } }).spec;
    const secretName = spec?.secret?.name ?? raw.metadata.name ?? '';
    const deleted = await this.#d.kube.deleteSecret(raw.metadata.namespace ?? '', secretName, uid);
    failpoint(FAILPOINTS.revokeAfterSecret);
    this.#d.events.record(raw, {
      type: 'Normal',
      reason: 'Revoked',
      message: deleted
        ? `key revoked; Secret ${secretName} was deleted`
        : `key revoked; Secret ${secretName} is not controlled by this ApiKey and was left in place`,
    });
    await this.#d.kube.removeFinalizer('apikeys', raw);
  }

  async #writeStatus(
    raw: KubernetesObject,
    state: ApiKeyState | undefined,
    input: StatusInput,
  ): Promise<void> {
    const existing = (raw as { status?: ApiKeyStatus }).status;
    const generation = raw.metadata?.generation ?? 0;
    const updates: ConditionInput[] = [
      { type: 'Ready', ...input.ready },
      input.stalled
        ? { type: 'Stalled', status: 'True', reason: input.ready.reason, message: input.ready.message }
        : { type: 'Stalled', status: 'False', reason: PROGRESSING, message: '' },
      ...(input.reconciling === undefined
        ? []
        : [
            { type: 'Reconciling', status: 'True' as const, reason: PROGRESSING, message: input.reconciling },
          ]),
      ...(input.extra ?? []),
    ];
    const drop = [...(input.drop ?? []), ...(input.reconciling === undefined ? ['Reconciling'] : [])];
    const kept = (existing?.conditions ?? []).filter(
      (c) => c.type !== 'StoreAvailable' && !drop.includes(c.type),
    );
    const conditions = setConditions(kept, updates, generation, this.#now());
    const issued = state && !state.revokedAt;
    const status: ApiKeyStatus = {
      observedGeneration: generation,
      conditions,
      keyId: state?.keyId,
      tokenPrefix: issued ? (state.tokenPrefix ?? undefined) : undefined,
      secretName: issued ? secretNameOf(raw as ApiKey) : undefined,
      issuedAt: state?.issuedAt.toISOString(),
      rotatedAt: (state?.rotatedAt ?? state?.issuedAt)?.toISOString(),
      expiresAt: state?.expiresAt?.toISOString(),
      previousValidUntil: state?.previousValidUntil?.toISOString(),
      lastUsedAt: state?.lastUsedAt?.toISOString(),
      lastRotationRequest:
        input.rotationRequest === undefined
          ? existing?.lastRotationRequest
          : (input.rotationRequest ?? undefined),
      rotationRequests: nonEmpty(
        input.rotationRequest === undefined
          ? existing?.rotationRequests
          : rememberRequest(answeredRequests(existing), input.rotationRequest),
      ),
      lastRestart: input.lastRestart ?? existing?.lastRestart,
      quota: input.quota === undefined ? existing?.quota : (input.quota ?? undefined),
    };
    if (!statusChanged(existing, status)) return;
    // Merge patch: explicit nulls clear fields that no longer apply (e.g. previousValidUntil).
    await this.#d.kube.patchStatus('apikeys', raw, withNulls(status, existing));
  }
}

/** The rotate requests answered so far; a key from before the history has only its last one. */
function answeredRequests(status: ApiKeyStatus | undefined): string[] {
  if (status?.rotationRequests) return status.rotationRequests;
  return rememberRequest([], status?.lastRotationRequest ?? null);
}

function nonEmpty<T>(list: T[] | undefined): T[] | undefined {
  return list && list.length > 0 ? list : undefined;
}

function maxKeysMessage(userName: string, max: number): string {
  return `ServiceUser ${userName} allows at most ${max} ApiKeys`;
}

/** The store refused the issue: the user has maxKeys live keys already. */
class MaxKeysExceededError extends Error {
  override readonly name = 'MaxKeysExceededError';
}

/** The Secret was created by someone else between keyward's read and its create. */
class SecretTakenError extends Error {
  override readonly name = 'SecretTakenError';
}

function flag(type: string, on: boolean, onReason: string, offReason: string): ConditionInput {
  return { type, status: on ? 'True' : 'False', reason: on ? onReason : offReason, message: '' };
}

/** `next`, plus null for every top-level field `previous` had and `next` lacks (merge-patch deletion). */
function withNulls(next: object, previous: object | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = JSON.parse(JSON.stringify(next));
  for (const key of Object.keys(previous ?? {})) {
    if (!(key in out)) out[key] = null;
  }
  return out;
}
