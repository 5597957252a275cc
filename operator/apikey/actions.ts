import type { V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { type ApiKey, gracePeriodMs, secretNameOf } from '../../api/apikey.js';
import {
  generateToken,
  parseToken,
  type RandomSource,
  TOKEN_CANDIDATE,
  tokenHash,
} from '../../credentials/token.js';
import type { ApiKeyState, IssueKeyResult, OperatorStore } from '../../store/operator-store.js';
import type { Grants } from '../accesspolicy/grants.js';
import { FAILPOINTS, failpoint } from '../failpoints.js';
import { apiServerMessage, isPermanentWriteError } from '../kube/errors.js';
import type { EventRecorder } from '../kube/events.js';
import type { KubeWriter } from '../objects.js';
import {
  desiredSecret,
  secretFieldManager,
  secretMetadataDiffers,
  secretOwnership,
  tokenVersion,
} from '../secret.js';
import { fromStore } from '../status.js';
import { maxKeysMessage } from './checks.js';
import { storeExpiry } from './fields.js';
import type { KeyFacts } from './gather.js';
import type { WriteMemory } from './memory.js';
import type { CredentialDecision } from './policy.js';
import * as R from './reasons.js';

/**
 * How long a rotation with gracePeriod 0s keeps accepting the replaced token while the new one is
 * written to the Secret: the hold ends as soon as that write succeeds (milliseconds later). Only a
 * crash in between lets the old token live on, for at most this long (docs/rotation.md); without
 * the hold, that crash would leave the Secret holding a token the store already rejects.
 */
export const ZERO_GRACE_HOLD_MS = 60_000;

/** What the credential step left in the Secret. */
export interface Written {
  rotationRequest: string | null;
  /** keyward.dev/token-version of the Secret's token. */
  tokenVersion: string | null;
  /** The key as the store holds it after this step. */
  state: ApiKeyState | null;
}

/** The store refused the issue: the user has maxKeys live keys already. */
export class MaxKeysExceededError extends Error {
  override readonly name = 'MaxKeysExceededError';
}

/** The Secret was created by someone else between keyward's read and its create. */
export class SecretTakenError extends Error {
  override readonly name = 'SecretTakenError';
}

/** The API server refused the Secret for good (400/413/422): retrying the same write cannot help. */
export class SecretRefusedError extends Error {
  override readonly name = 'SecretRefusedError';
}

export interface ActionDeps {
  kube: KubeWriter;
  store: OperatorStore;
  events: EventRecorder;
  logger: Logger;
  tokenPrefix: string;
  grants: (namespace: string) => Grants;
  memory: WriteMemory;
  random?: RandomSource;
}

/**
 * Issue, rotate, repair and the store-field updates of one ApiKey, each in the write order that
 * makes a crash at any point safe (policy.ts, operator/failpoints.ts names the points in between).
 */
export class KeyActions {
  constructor(private readonly d: ActionDeps) {}

  /**
   * Secret first, hash second: a crash in between leaves a token the store does not accept yet,
   * on a key that was never Ready; the retry adopts it instead of minting another. A key revoked
   * with its ServiceUser is issued again the same way, for the user that exists now.
   */
  async issue(f: KeyFacts, request: string | null, adopt: boolean): Promise<Written> {
    const { apiKey, uid, contents } = f;
    const adoptable = adopt && contents.token !== null ? parseToken(contents.token) : undefined;
    const token = adoptable?.ok
      ? { token: adoptable.value.token, displayPrefix: adoptable.value.displayPrefix }
      : generateToken({ prefix: this.d.tokenPrefix, random: this.d.random });
    const fresh = tokenVersion(uid, f.now);
    if (!adoptable?.ok)
      await this.#writeSecret(
        apiKey,
        desiredSecret(apiKey, { token: token.token, rotationRequest: request, tokenVersion: fresh }),
        f.secret,
      );
    failpoint(FAILPOINTS.issueAfterSecret);
    const maxKeys = f.user?.spec.maxKeys;
    const input = {
      ref: { namespace: apiKey.metadata.namespace ?? '', name: apiKey.metadata.name, uid },
      serviceUserName: apiKey.spec.serviceUserRef.name,
      hash: tokenHash(token.token),
      displayPrefix: token.displayPrefix,
      description: apiKey.spec.description ?? '',
      scopes: apiKey.spec.scopes ?? null,
      disabled: apiKey.spec.disabled === true,
      ...storeExpiry(apiKey, this.d.grants(apiKey.metadata.namespace ?? '')),
      ...(maxKeys !== undefined && { maxKeys }),
    };
    const reissue = f.revokedWithUser;
    // A key revoked with its user is issued again by the same call (the store decides, key-reissue.ts).
    const result: IssueKeyResult = await fromStore(() => this.d.store.issueKey(input));
    if (result.kind === 'max_keys_exceeded') {
      // Another key of the user took the last slot first: the token just written is never accepted.
      if (!adoptable?.ok && !f.secret)
        await this.d.kube.deleteSecret(apiKey.metadata.namespace ?? '', secretNameOf(apiKey), uid);
      throw new MaxKeysExceededError(maxKeysMessage(apiKey.spec.serviceUserRef.name, result.maxKeys));
    }
    if (result.kind !== 'ok')
      throw new Error(`issue of ${describe(apiKey)} refused by the store: ${result.kind}`);
    failpoint(FAILPOINTS.issueAfterStore);
    this.#log(apiKey).info(
      { keyId: result.key.keyId, tokenPrefix: token.displayPrefix, reissue },
      'issued key',
    );
    const into = `(${token.displayPrefix}…) into Secret ${secretNameOf(apiKey)}`;
    this.d.events.record(f.raw, {
      type: 'Normal',
      reason: reissue ? R.REISSUED : R.ISSUED,
      message: reissue
        ? `ServiceUser ${apiKey.spec.serviceUserRef.name} exists again: key ${result.key.keyId} issued again with a fresh secret ${into}`
        : `issued key ${result.key.keyId} ${into}`,
    });
    return {
      rotationRequest: adoptable?.ok ? contents.rotationRequest : request,
      tokenVersion: adoptable?.ok ? contents.tokenVersion : fresh,
      state: result.key,
    };
  }

  /**
   * New hash first (the token the Secret holds stays valid for the grace period), Secret second: a
   * crash in between leaves the Secret with a still-valid token, and the next reconcile sees it as
   * the previous secret and resumes (RotationResumed). The Secret write is tried as a dry run
   * before the hash is committed, so a Secret the API server refuses never starts a rotation.
   */
  async rotate(f: KeyFacts, decision: CredentialDecision): Promise<Written> {
    const action = decision.action;
    if (action.kind !== 'rotate' || !f.state) throw new Error('rotate called without a rotation');
    const { apiKey, uid, contents } = f;
    const generated = generateToken({ prefix: this.d.tokenPrefix, random: this.d.random });
    const graceMs = action.keepHeld ? gracePeriodMs(apiKey.spec) : 0;
    // A 0s grace still holds the replaced token until the new one is in the Secret (see the constant).
    const hold = action.keepHeld && graceMs === 0 && contents.hash !== null;
    const version = tokenVersion(uid, f.now);
    // New and previous token in one write: the previous one is known only now (the store has its
    // hash alone), and a crash before this write resumes the rotation with the same held token.
    const desired = desiredSecret(apiKey, {
      token: generated.token,
      rotationRequest: action.request,
      tokenVersion: version,
      previousToken: graceMs > 0 ? contents.token : null,
    });
    await this.#writeSecret(apiKey, desired, f.secret, true);
    const result = await fromStore(() =>
      this.d.store.rotateKey({
        uid,
        newHash: generated.hash,
        displayPrefix: generated.displayPrefix,
        graceSeconds: (hold ? ZERO_GRACE_HOLD_MS : graceMs) / 1000,
        reason: action.reason,
        ...(contents.hash ? { heldHash: contents.hash } : {}),
        ...storeExpiry(apiKey, this.d.grants(apiKey.metadata.namespace ?? '')),
      }),
    );
    if (result.kind !== 'ok')
      throw new Error(`rotation of ${describe(apiKey)} refused by the store: ${result.kind}`);
    failpoint(FAILPOINTS.rotateAfterStore);
    await this.#writeSecret(apiKey, desired, f.secret);
    failpoint(FAILPOINTS.rotateAfterSecret);
    let state = result.key;
    if (hold) {
      const ended = await fromStore(() => this.d.store.endGrace(uid));
      if (ended) state = { ...state, previousValidUntil: ended };
    }
    this.#log(apiKey).info(
      { keyId: f.state.keyId, tokenPrefix: generated.displayPrefix, reason: action.reason },
      'rotated key',
    );
    const grace = graceMs > 0 ? `; the previous secret verifies for ${Math.round(graceMs / 1000)}s more` : '';
    const lost = action.reason === R.SECRET_LOST;
    this.d.events.record(f.raw, {
      type: lost ? 'Warning' : 'Normal',
      reason: lost ? R.SECRET_LOST : R.ROTATED,
      message: `${decision.message}; key ${f.state.keyId} now uses ${generated.displayPrefix}…${grace}`,
    });
    return { rotationRequest: action.request, tokenVersion: version, state };
  }

  /**
   * Same token, Secret brought in line: labels, annotations or data keys changed in the spec (a
   * new tokenKey moves the token), the grace period ended, or a Secret from before token versions
   * needs one. Also ends a 0s-grace hold a crash left running (see ZERO_GRACE_HOLD_MS).
   */
  async repair(f: KeyFacts): Promise<Written> {
    const { apiKey, uid, contents, state } = f;
    if (contents.token === null || !state)
      return { rotationRequest: contents.rotationRequest, tokenVersion: contents.tokenVersion, state };
    const version = contents.tokenVersion ?? tokenVersion(uid, state.rotatedAt ?? state.issuedAt);
    const previousToken = await this.#keptPreviousToken(f, state);
    const desired = desiredSecret(apiKey, {
      token: contents.token,
      rotationRequest: contents.rotationRequest,
      tokenVersion: version,
      previousToken,
    });
    if (secretMetadataDiffers(desired, f.secret, secretFieldManager(uid)))
      await this.#writeSecret(apiKey, desired, f.secret);
    let current = state;
    const lingering =
      gracePeriodMs(apiKey.spec) === 0 &&
      state.previousValidUntil !== null &&
      state.previousValidUntil > f.now;
    const ended = lingering ? await fromStore(() => this.d.store.endGrace(uid)) : null;
    if (ended) current = { ...state, previousValidUntil: ended };
    return { rotationRequest: contents.rotationRequest, tokenVersion: version, state: current };
  }

  /** Revoke before the Secret goes: from this commit on, the token is useless wherever it leaked. */
  async revoke(raw: KeyFacts['raw']): Promise<void> {
    const uid = raw.metadata?.uid ?? '';
    await fromStore(() => this.d.store.revokeKey(uid));
    failpoint(FAILPOINTS.revokeAfterStore);
    const spec = (raw as { spec?: { secret?: { name?: string } } }).spec;
    const secretName = spec?.secret?.name ?? raw.metadata?.name ?? '';
    const deleted = await this.d.kube.deleteSecret(raw.metadata?.namespace ?? '', secretName, uid);
    failpoint(FAILPOINTS.revokeAfterSecret);
    this.d.memory.forget(uid);
    this.d.events.record(raw, {
      type: 'Normal',
      reason: R.REVOKED,
      message: deleted
        ? `key revoked; Secret ${secretName} was deleted`
        : `key revoked; Secret ${secretName} is not controlled by this ApiKey and was left in place`,
    });
  }

  /**
   * Writes the Secret: a create when there was none, else an apply pinned to the version read.
   * The answer's resourceVersion is remembered (memory.ts); a permanent refusal becomes
   * SecretRefusedError with the API server's message, never a token.
   */
  async #writeSecret(apiKey: ApiKey, desired: V1Secret, current: V1Secret | undefined, dryRun = false) {
    const uid = apiKey.metadata.uid ?? '';
    const manager = secretFieldManager(uid);
    let written: V1Secret | undefined;
    try {
      written = current
        ? await this.d.kube.applyOwnSecret(desired, current, manager, dryRun)
        : await this.d.kube.createSecret(desired, manager, dryRun);
    } catch (err) {
      if (!isPermanentWriteError(err)) throw err;
      throw new SecretRefusedError(redact(apiServerMessage(err)));
    }
    if (dryRun) return;
    if (written) return this.d.memory.knowSecret(uid, written);
    // Name the holder, as a conflict found by reading does: usually another ApiKey that won a race.
    const existing = await this.d.kube.readSecret(apiKey.metadata.namespace ?? '', secretNameOf(apiKey));
    // The next pass decides from this Secret, read again from the API server (gather.ts secretOf).
    this.d.memory.knowSecret(uid, existing);
    const taken = secretOwnership(apiKey, existing);
    // This key's own Secret, unseen by the informer (its labels edited away): decided again on it.
    if (taken.kind === 'own')
      throw new Error(
        `Secret ${secretNameOf(apiKey)} of ${describe(apiKey)} exists already; deciding again on it`,
      );
    throw new SecretTakenError(
      taken.kind === 'foreign'
        ? taken.message
        : `Secret ${secretNameOf(apiKey)} was created by someone else just before keyward could create it; ` +
            'keyward leaves it unchanged',
    );
  }

  /**
   * The previous token the Secret may go on holding: only within the grace period, and only if the
   * store still accepts it as this key's previous secret (an edited value is dropped, never kept).
   */
  async #keptPreviousToken(f: KeyFacts, state: ApiKeyState): Promise<string | null> {
    const previous = f.contents.previousToken;
    if (previous === null || !state.previousValidUntil || state.previousValidUntil <= f.now) return null;
    const match = await fromStore(() => this.d.store.secretMatch(f.uid, tokenHash(previous)));
    return match.role === 'previous' ? previous : null;
  }

  #log(apiKey: ApiKey): Logger {
    return this.d.logger.child({ apiKey: describe(apiKey) });
  }
}

function describe(apiKey: ApiKey): string {
  return `${apiKey.metadata.namespace}/${apiKey.metadata.name}`;
}

/** The API server's message as status may show it: bounded, and never a token, should one be echoed. */
function redact(message: string): string {
  return message.replace(TOKEN_CANDIDATE, '[redacted]').slice(0, 1024);
}
