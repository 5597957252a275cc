import type { KubernetesObject } from '@kubernetes/client-node';

/**
 * Which updates one controller's watch of another kind acts on. Every status write of a
 * ServiceUser used to queue all of its keys, and every write to an ApiKey its user: with 1,000 keys
 * per user, issuing them kept both queues busy with passes that found nothing to do (bench/README.md).
 * An update is acted on unless it changed only what the other kind does not decide from; a
 * periodic resync (old === obj) always is.
 */

interface Counted {
  status?: { keys?: number; activeKeys?: number; [field: string]: unknown };
}

/** The user as its keys see it: everything but the key counts its own status reports. */
function userAsKeysSeeIt(user: KubernetesObject): string {
  const { keys: _keys, activeKeys: _active, ...status } = (user as Counted).status ?? {};
  const { managedFields: _fields, resourceVersion: _version, ...metadata } = user.metadata ?? {};
  return JSON.stringify([metadata, (user as { spec?: unknown }).spec, status]);
}

/**
 * Whether a ServiceUser update concerns its ApiKeys. Key counts going up do not (they follow the
 * keys' own issues); going down they do, as a freed slot lets a MaxKeysExceeded key be issued now.
 */
export function userUpdateConcernsKeys(old: KubernetesObject, user: KubernetesObject): boolean {
  if (old === user) return true;
  const before = (old as Counted).status;
  const after = (user as Counted).status;
  const fewer = (a: number | undefined, b: number | undefined): boolean =>
    a !== undefined && b !== undefined && b < a;
  if (fewer(before?.keys, after?.keys) || fewer(before?.activeKeys, after?.activeKeys)) return true;
  return userAsKeysSeeIt(old) !== userAsKeysSeeIt(user);
}

interface KeyStatus {
  spec?: { serviceUserRef?: { name?: string } };
  status?: { keyId?: string; conditions?: Array<{ type: string; status: string; reason?: string }> };
}

/**
 * The key as its user's status counts it: which user, whether it is issued (keyId), being deleted,
 * and its conditions (Ready, Disabled, Expired decide live and active); not messages, times or
 * status.lastUsedAt, which a Ready key refreshes every minute.
 */
function keyAsUserSeesIt(key: KubernetesObject): string {
  const k = key as KeyStatus;
  const conditions = (k.status?.conditions ?? []).map((c) => `${c.type}=${c.status}:${c.reason ?? ''}`);
  return JSON.stringify([
    k.spec?.serviceUserRef?.name,
    key.metadata?.deletionTimestamp !== undefined,
    k.status?.keyId,
    conditions,
  ]);
}

/** Whether an ApiKey update may change its ServiceUser's key counts. */
export function keyUpdateConcernsUser(old: KubernetesObject, key: KubernetesObject): boolean {
  return old === key || keyAsUserSeesIt(old) !== keyAsUserSeesIt(key);
}
