import type pg from 'pg';
import type { LimitDefinition } from '../api/ratelimits.js';
import { StoreError } from './errors.js';

/**
 * Everything a verify decision needs about the key a token hash belongs to. The store does not
 * decide: the webhook checks validity against its own clock and the request's required scope.
 */
export interface KeyLookup {
  /** Store id of the key (for usage counting). */
  readonly apiKeyId: string;
  /** Public key id (`key_…`), for headers and logs. */
  readonly keyId: string;
  readonly namespace: string;
  readonly name: string;
  readonly userId: string;
  readonly username: string;
  readonly groups: string[];
  readonly userScopes: string[];
  /** null: the key inherits the user's scopes. */
  readonly keyScopes: string[] | null;
  readonly suspended: boolean;
  /** The user's or the key's spec asks for more than its AccessPolicies grant: it does not verify. */
  readonly notPermitted: boolean;
  /** An AccessPolicy lets the user's keys authenticate to the Kubernetes API (TokenReview). */
  readonly kubernetesAuthentication: boolean;
  /** A deleted user's keys are revoked too; both are reported. */
  readonly userDeleted: boolean;
  /** The user's spec.actAs globs as the operator stored them (store/act-as.ts); empty or absent: no acting. */
  readonly actAs?: { readonly serviceUsers: string[]; readonly externalSubjects: string[] };
  readonly disabled: boolean;
  readonly revokedAt: Date | null;
  readonly expiresAt: Date | null;
  readonly issuedAt: Date;
  readonly rotatedAt: Date | null;
  /** The matched secret: current, or the previous one whose grace ends at `notAfter`. */
  readonly secret: { readonly current: true } | { readonly current: false; readonly notAfter: Date };
  /** Display prefix of the matched secret, for logs. */
  readonly tokenPrefix: string;
  /** Rate limits and quota (store/rate-limits.ts): the key's own, and its user's shared by all its keys; unset: none. */
  readonly limits?: KeyLimits;
}

export interface KeyLimits {
  readonly key: readonly LimitDefinition[];
  readonly user: readonly LimitDefinition[];
  readonly quota: LimitDefinition | null;
}

interface LookupRow {
  api_key_id: string;
  key_id: string;
  namespace: string;
  name: string;
  user_id: string;
  username: string;
  groups: string[];
  user_scopes: string[];
  key_scopes: string[] | null;
  suspended: boolean;
  not_permitted: boolean;
  kubernetes_authentication: boolean;
  user_deleted: boolean;
  act_as_service_users: string[];
  act_as_external_subjects: string[];
  disabled: boolean;
  revoked_at: Date | null;
  expires_at: Date | null;
  issued_at: Date;
  rotated_at: Date | null;
  not_after: Date | null;
  display_prefix: string;
  key_rate_limits: LimitDefinition[] | null;
  user_rate_limits: LimitDefinition[] | null;
  quota: LimitDefinition | null;
}

// Named, so each pooled connection parses and plans it once.
const LOOKUP = {
  name: 'keyward_lookup_by_hash',
  text: `
    SELECT k.id AS api_key_id, k.key_id, k.namespace, k.name,
           u.id AS user_id, u.username, u.groups, u.scopes AS user_scopes, k.scopes AS key_scopes,
           u.suspended, u.not_permitted OR k.not_permitted AS not_permitted, u.kubernetes_authentication,
           u.deleted_at IS NOT NULL AS user_deleted, u.act_as_service_users, u.act_as_external_subjects,
           k.disabled, k.revoked_at, k.expires_at, k.issued_at, k.rotated_at,
           s.not_after, s.display_prefix,
           kl.rate_limits AS key_rate_limits, kl.quota, ul.rate_limits AS user_rate_limits
      FROM api_key_secrets s
      JOIN api_keys k ON k.id = s.api_key_id
      JOIN service_users u ON u.id = k.service_user_id
      LEFT JOIN rate_limit_definitions kl ON kl.uid = k.uid
      LEFT JOIN rate_limit_definitions ul ON ul.uid = u.uid
     WHERE s.hash = $1`,
};

/** One round trip: the key behind a SHA-256 token hash, or null if no key has that secret. */
export async function lookupByHash(db: pg.Pool | pg.ClientBase, hash: Uint8Array): Promise<KeyLookup | null> {
  if (hash.length !== 32) return null;
  let rows: LookupRow[];
  try {
    ({ rows } = await db.query<LookupRow>({
      ...LOOKUP,
      values: [Buffer.from(hash.buffer, hash.byteOffset, 32)],
    }));
  } catch (err) {
    throw StoreError.from('lookup by hash', err);
  }
  const row = rows[0];
  if (!row) return null;
  return {
    apiKeyId: row.api_key_id,
    keyId: row.key_id,
    namespace: row.namespace,
    name: row.name,
    userId: row.user_id,
    username: row.username,
    groups: row.groups,
    userScopes: row.user_scopes,
    keyScopes: row.key_scopes,
    suspended: row.suspended,
    notPermitted: row.not_permitted,
    kubernetesAuthentication: row.kubernetes_authentication,
    userDeleted: row.user_deleted,
    actAs: { serviceUsers: row.act_as_service_users, externalSubjects: row.act_as_external_subjects },
    disabled: row.disabled,
    revokedAt: row.revoked_at,
    expiresAt: row.expires_at,
    issuedAt: row.issued_at,
    rotatedAt: row.rotated_at,
    secret: row.not_after === null ? { current: true } : { current: false, notAfter: row.not_after },
    tokenPrefix: row.display_prefix,
    limits: { key: row.key_rate_limits ?? [], user: row.user_rate_limits ?? [], quota: row.quota },
  };
}
