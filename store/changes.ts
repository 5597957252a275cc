/** The channel every verification-affecting change is announced on, in the same transaction. */
export const CHANGES_CHANNEL = 'keyward_changes';

/**
 * What a NOTIFY on keyward_changes names. The webhook drops cache entries by user id or key id;
 * `unknown` (an unparseable payload, e.g. from a newer keyward) means "drop everything".
 */
export type StoreChange =
  | { readonly entity: 'user'; readonly op: 'updated' | 'deleted'; readonly userId: string }
  | {
      readonly entity: 'key';
      readonly op: 'issued' | 'rotated' | 'updated' | 'revoked';
      readonly keyId: string;
      readonly userId: string;
    }
  | { readonly entity: 'unknown' };

export function encodeChange(change: Exclude<StoreChange, { entity: 'unknown' }>): string {
  return JSON.stringify(change);
}

const USER_OPS = new Set(['updated', 'deleted']);
const KEY_OPS = new Set(['issued', 'rotated', 'updated', 'revoked']);

/** Never throws: anything that is not a payload this version wrote becomes `unknown`. */
export function parseChange(payload: string | undefined): StoreChange {
  let value: unknown;
  try {
    value = JSON.parse(payload ?? '');
  } catch {
    return { entity: 'unknown' };
  }
  if (!value || typeof value !== 'object') return { entity: 'unknown' };
  const v = value as Record<string, unknown>;
  if (typeof v.userId !== 'string' || typeof v.op !== 'string') return { entity: 'unknown' };
  if (v.entity === 'user' && USER_OPS.has(v.op)) {
    return { entity: 'user', op: v.op as 'updated' | 'deleted', userId: v.userId };
  }
  if (v.entity === 'key' && KEY_OPS.has(v.op) && typeof v.keyId === 'string') {
    return {
      entity: 'key',
      op: v.op as 'issued' | 'rotated' | 'updated' | 'revoked',
      keyId: v.keyId,
      userId: v.userId,
    };
  }
  return { entity: 'unknown' };
}

/**
 * The change-log seq a NOTIFY payload carries (store/change-log.ts), or undefined for a payload
 * without one (an older writer, or garbage): the follower then reads the log to be sure.
 */
export function parseSeq(payload: string | undefined): number | undefined {
  try {
    const seq = (JSON.parse(payload ?? '') as { seq?: unknown } | null)?.seq;
    return typeof seq === 'number' && Number.isSafeInteger(seq) && seq > 0 ? seq : undefined;
  } catch {
    return undefined;
  }
}
