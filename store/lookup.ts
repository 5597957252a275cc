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

const COLUMNS = `
    k.id AS api_key_id, k.key_id, k.namespace, k.name,
    u.id AS user_id, u.username, u.groups, u.scopes AS user_scopes, k.scopes AS key_scopes,
    u.suspended, u.not_permitted OR k.not_permitted AS not_permitted, u.kubernetes_authentication,
    u.deleted_at IS NOT NULL AS user_deleted, u.act_as_service_users, u.act_as_external_subjects,
    k.disabled, k.revoked_at, k.expires_at, k.issued_at, k.rotated_at,
    s.not_after, s.display_prefix,
    kl.rate_limits AS key_rate_limits, kl.quota, ul.rate_limits AS user_rate_limits`;

const JOINS = `
      JOIN api_keys k ON k.id = s.api_key_id
      JOIN service_users u ON u.id = k.service_user_id
      LEFT JOIN rate_limit_definitions kl ON kl.uid = k.uid
      LEFT JOIN rate_limit_definitions ul ON ul.uid = u.uid`;

// Named, so each pooled connection parses and plans it once.
const LOOKUP = {
  name: 'keyward_lookup_by_hash',
  text: `SELECT ${COLUMNS} FROM api_key_secrets s ${JOINS} WHERE s.hash = $1`,
};

// Each row names the position of the hash it matched (1-based), so rows are matched to their
// callers by hash whatever order the plan returns them in, and a duplicate gets its own row.
const LOOKUP_MANY = {
  name: 'keyward_lookup_by_hashes',
  text: `SELECT q.ord::int AS ord, ${COLUMNS}
      FROM unnest($1::bytea[]) WITH ORDINALITY AS q(hash, ord)
      JOIN api_key_secrets s ON s.hash = q.hash ${JOINS}`,
};

/** The SHA-256 length; any other value matches no key. */
const HASH_BYTES = 32;

/** One round trip: the key behind a SHA-256 token hash, or null if no key has that secret. */
export async function lookupByHash(db: pg.Pool | pg.ClientBase, hash: Uint8Array): Promise<KeyLookup | null> {
  if (hash.length !== HASH_BYTES) return null;
  let rows: LookupRow[];
  try {
    ({ rows } = await db.query<LookupRow>({ ...LOOKUP, values: [asBuffer(hash)] }));
  } catch (err) {
    throw StoreError.from('lookup by hash', err);
  }
  const row = rows[0];
  return row ? fromRow(row) : null;
}

/**
 * One round trip for many hashes (the webhook's coalesced cache misses): the key behind each, in
 * the order given, null where no key has that secret. A hash of the wrong length matches nothing
 * and is not sent; the others are answered all the same.
 */
export async function lookupByHashes(
  db: pg.Pool | pg.ClientBase,
  hashes: readonly Uint8Array[],
): Promise<(KeyLookup | null)[]> {
  const found: (KeyLookup | null)[] = hashes.map(() => null);
  // Positions in the query's array → positions in `hashes`.
  const sent: number[] = [];
  const values: Buffer[] = [];
  for (const [i, hash] of hashes.entries()) {
    if (hash.length !== HASH_BYTES) continue;
    sent.push(i);
    values.push(asBuffer(hash));
  }
  if (values.length === 0) return found;
  let rows: (LookupRow & { ord: number })[];
  try {
    ({ rows } = await db.query<LookupRow & { ord: number }>({ ...LOOKUP_MANY, values: [values] }));
  } catch (err) {
    throw StoreError.from('lookup by hashes', err);
  }
  for (const row of rows) {
    const at = sent[row.ord - 1];
    if (at !== undefined) found[at] = fromRow(row);
  }
  return found;
}

function asBuffer(hash: Uint8Array): Buffer {
  return Buffer.from(hash.buffer, hash.byteOffset, HASH_BYTES);
}

function fromRow(row: LookupRow): KeyLookup {
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
