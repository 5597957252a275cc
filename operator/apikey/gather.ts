import type { KubernetesObject, V1Secret } from '@kubernetes/client-node';
import { type ApiKey, ROTATE_ANNOTATION, secretNameOf } from '../../api/apikey.js';
import type { ServiceUser } from '../../api/serviceuser.js';
import { parseServiceUser } from '../../api/validate.js';
import { parseToken, tokenHash } from '../../credentials/token.js';
import {
  type ApiKeyState,
  type OperatorStore,
  revokedWithUser as revokedWithUserOf,
  type ServiceUserRecord,
} from '../../store/operator-store.js';
import type { Grants } from '../accesspolicy/grants.js';
import type { SharedInformer } from '../kube/informer.js';
import type { KubeWriter } from '../objects.js';
import { inspectSecret, type SecretContents, type SecretOwnership, secretOwnership } from '../secret.js';
import { fromStore } from '../status.js';
import type { WriteMemory } from './memory.js';
import { rememberRequest, type SecretView } from './policy.js';

/** Everything one reconcile of an ApiKey decides from, read in one pass (the store's key once). */
export interface KeyFacts {
  raw: KubernetesObject;
  apiKey: ApiKey;
  uid: string;
  now: Date;
  /** The store's record of the key; null if never issued. */
  state: ApiKeyState | null;
  /** Revoked together with its ServiceUser, not on its own: issued again when the user is back. */
  revokedWithUser: boolean;
  /** The ServiceUser the key names, parsed; undefined if missing, unparsable or being deleted. */
  user: ServiceUser | undefined;
  /** The store's record of that user (what verification sees). */
  storedUser: ServiceUserRecord | null;
  /** The user's own Ready reason, for a user the store does not hold yet. */
  userReadyReason: string | undefined;
  grants: Grants;
  secret: V1Secret | undefined;
  ownership: SecretOwnership;
  contents: SecretContents;
  view: SecretView;
  /** The user's live keys, when a new issue must fit its maxKeys. */
  liveKeys: number | undefined;
  /** A permanent refusal of this version's Secret write, if one was seen. */
  writeFailure: string | undefined;
  rotateRequest: string | null;
  answeredRequests: string[];
}

export interface GatherDeps {
  serviceUsers: SharedInformer<KubernetesObject>;
  secrets: SharedInformer<V1Secret>;
  kube: KubeWriter;
  store: OperatorStore;
  grants: (namespace: string) => Grants;
  memory: WriteMemory;
}

export async function gather(
  deps: GatherDeps,
  raw: KubernetesObject,
  apiKey: ApiKey,
  now: Date,
): Promise<KeyFacts> {
  const uid = apiKey.metadata.uid ?? '';
  const namespace = apiKey.metadata.namespace ?? '';
  const state = await fromStore(() => deps.store.getKey(uid));
  const revokedWithUser = state !== null && revokedWithUserOf(state);
  const userRaw = deps.serviceUsers.get(`${namespace}/${apiKey.spec.serviceUserRef.name}`);
  const parsedUser = userRaw && !userRaw.metadata?.deletionTimestamp ? parseServiceUser(userRaw) : undefined;
  const user = parsedUser?.ok ? parsedUser.value : undefined;
  const storedUser = user ? await fromStore(() => deps.store.getServiceUser(user.metadata.uid ?? '')) : null;
  const userReadyReason = (
    userRaw as { status?: { conditions?: Array<{ type: string; reason: string }> } } | undefined
  )?.status?.conditions?.find((c) => c.type === 'Ready')?.reason;
  const max = user?.spec.maxKeys;
  const issuing = !state || revokedWithUser;
  const liveKeys =
    issuing && user && max !== undefined
      ? (await fromStore(() => deps.store.countKeys(user.metadata.uid ?? ''))).total
      : undefined;
  const facts = {
    raw,
    apiKey,
    uid,
    now,
    state,
    revokedWithUser,
    user,
    storedUser,
    userReadyReason,
    grants: deps.grants(namespace),
    liveKeys,
    writeFailure: deps.memory.failure(raw),
    rotateRequest: apiKey.metadata.annotations?.[ROTATE_ANNOTATION] ?? null,
    answeredRequests: answeredRequests(apiKey.status),
  };
  return { ...facts, ...(await secretFacts(deps, apiKey, state, await secretOf(deps, apiKey, state))) };
}

/**
 * The facts again with the Secret as the API server has it now: taken before any action that
 * would replace a token workloads may hold (RotationResumed, SecretLost), however fresh the
 * informer looked.
 */
export async function withSecretFromApiServer(deps: GatherDeps, facts: KeyFacts): Promise<KeyFacts> {
  const secret = await deps.kube.readSecret(
    facts.apiKey.metadata.namespace ?? '',
    secretNameOf(facts.apiKey),
  );
  deps.memory.knowSecret(facts.uid, secret);
  return { ...facts, ...(await secretFacts(deps, facts.apiKey, facts.state, secret)) };
}

/**
 * The key's Secret: from the informer unless it may be older than what this process last wrote or
 * read, else from the API server. The informer sees only Secrets labelled as keyward's, so a
 * tenant's unlabelled Secret of that name (or keyward's own, its labels edited away) is read too;
 * except for a key the store has never issued and this process has never written a Secret for:
 * its first write is a create, which the API server refuses (409) if any Secret of that name
 * exists, and that refusal reads it (actions.ts). That saves every new key a GET answered 404.
 */
async function secretOf(
  deps: GatherDeps,
  apiKey: ApiKey,
  state: ApiKeyState | null,
): Promise<V1Secret | undefined> {
  const namespace = apiKey.metadata.namespace ?? '';
  const name = secretNameOf(apiKey);
  const uid = apiKey.metadata.uid ?? '';
  const cached = deps.secrets.get(`${namespace}/${name}`);
  if (cached && !deps.memory.mayBeStale(uid, cached)) return cached;
  if (!cached && state === null && !deps.memory.knowsSecretOf(uid)) return undefined;
  const read = await deps.kube.readSecret(namespace, name);
  // Once the informer has this version too, it is trusted again (no read on every pass).
  deps.memory.knowSecret(uid, read);
  return read;
}

async function secretFacts(
  deps: GatherDeps,
  apiKey: ApiKey,
  state: ApiKeyState | null,
  secret: V1Secret | undefined,
): Promise<Pick<KeyFacts, 'secret' | 'ownership' | 'contents' | 'view'>> {
  const uid = apiKey.metadata.uid ?? '';
  const ownership = secretOwnership(apiKey, secret);
  let contents = inspectSecret(apiKey, secret);
  if (contents.token === null && ownership.kind === 'own' && state && !state.revokedAt)
    contents = (await relocated(deps, apiKey, secret, contents)) ?? contents;
  const base = { ownedByKey: contents.ownedByKey, rotationRequest: contents.rotationRequest };
  let view: SecretView;
  if (!contents.hash) view = { ...base, match: 'missing' };
  else if (!state) view = { ...base, match: 'none' };
  else {
    const hash = contents.hash;
    view = { ...base, match: (await fromStore(() => deps.store.secretMatch(uid, hash))).role };
  }
  return { secret, ownership, contents, view };
}

/**
 * The key's current token under another data key of its own Secret: spec.secret.tokenKey was
 * changed. Found, it is moved to the new key by the next write instead of being replaced.
 */
async function relocated(
  deps: GatherDeps,
  apiKey: ApiKey,
  secret: V1Secret | undefined,
  contents: SecretContents,
): Promise<SecretContents | undefined> {
  const skip = new Set([apiKey.spec.secret?.tokenKey, apiKey.spec.secret?.previousTokenKey]);
  for (const [dataKey, encoded] of Object.entries(secret?.data ?? {})) {
    if (skip.has(dataKey)) continue;
    const token = Buffer.from(encoded, 'base64').toString('utf8');
    if (!parseToken(token).ok) continue;
    const hash = tokenHash(token);
    const match = await fromStore(() => deps.store.secretMatch(apiKey.metadata.uid ?? '', hash));
    if (match.role === 'current') return { ...contents, token, hash };
  }
  return undefined;
}

/** The rotate requests answered so far; a key from before the history has only its last one. */
function answeredRequests(status: ApiKey['status']): string[] {
  if (status?.rotationRequests) return status.rotationRequests;
  return rememberRequest([], status?.lastRotationRequest ?? null);
}
