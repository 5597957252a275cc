import type pg from 'pg';
import { StoreError } from './errors.js';

// The store's shapes: what callers see (records and states), the rows they are read from, the
// one SELECT every key state comes from, and the mappers and comparisons between them.

/** A Kubernetes object's identity. The uid tells a re-created object from its predecessor. */
export interface ObjectRef {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
}

export interface Contact {
  readonly name?: string;
  readonly email?: string;
}

/** What the operator derives from a ServiceUser's spec. */
export interface ServiceUserSpec {
  readonly ref: ObjectRef;
  readonly username: string;
  readonly description: string;
  readonly contact: Contact | null;
  readonly groups: readonly string[];
  readonly scopes: readonly string[];
  readonly suspended: boolean;
  /** From the namespace's AccessPolicies: whether its keys authenticate to Kubernetes. Default false. */
  readonly kubernetesAuthentication?: boolean;
  /** The spec asks for more than the grants: no key of the user verifies. Default false. */
  readonly notPermitted?: boolean;
}

export interface ServiceUserRecord {
  /** Store id: status.userId and the TokenReview uid. */
  readonly id: string;
  readonly ref: ObjectRef;
  readonly username: string;
  readonly description: string;
  readonly contact: Contact | null;
  readonly groups: string[];
  readonly scopes: string[];
  readonly suspended: boolean;
  readonly kubernetesAuthentication: boolean;
  readonly notPermitted: boolean;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly deletedAt: Date | null;
}

export interface ApiKeyState {
  /** Store id of the key (what usage rows and lookups carry). */
  readonly id: string;
  /** Public key id, stable across rotations: status.keyId. */
  readonly keyId: string;
  readonly ref: ObjectRef;
  readonly serviceUserId: string;
  readonly username: string;
  readonly description: string;
  /** null: inherits the user's scopes. */
  readonly scopes: string[] | null;
  readonly disabled: boolean;
  /** The spec asks for more than the grants: the key does not verify. */
  readonly notPermitted: boolean;
  readonly expiresAt: Date | null;
  readonly issuedAt: Date;
  readonly rotatedAt: Date | null;
  readonly revokedAt: Date | null;
  /** Why it was revoked (`leaked`, `deleted`…); null when not revoked or not recorded. */
  readonly revokedReason: string | null;
  readonly lastUsedAt: Date | null;
  /** Display prefix of the current secret (status.tokenPrefix); null if it has none. */
  readonly tokenPrefix: string | null;
  /** Grace end of the previous secret, if one is kept (possibly already past). */
  readonly previousValidUntil: Date | null;
}

/** Where a hash stands for a key: what the operator checks its Secret's token against. */
export type SecretMatch =
  | { readonly role: 'current' }
  /** The rotated-away secret; `notAfter` may already be past. */
  | { readonly role: 'previous'; readonly notAfter: Date }
  | { readonly role: 'none' };

export interface KeyCounts {
  /** Keys not revoked. */
  readonly total: number;
  /** Keys not revoked, not disabled, not expired, with a current secret (suspension aside). */
  readonly active: number;
}

/** What every store function works with: the pool, the audit actor, the key id source. */
export interface StoreContext {
  readonly pool: pg.Pool;
  readonly actor: string;
  readonly newKeyId: () => string;
}

export interface UserRow {
  id: string;
  namespace: string;
  name: string;
  uid: string;
  username: string;
  description: string;
  contact: Contact | null;
  groups: string[];
  scopes: string[];
  suspended: boolean;
  kubernetes_authentication: boolean;
  not_permitted: boolean;
  created_at: Date;
  updated_at: Date;
  deleted_at: Date | null;
}

export interface KeyRow {
  id: string;
  key_id: string;
  namespace: string;
  name: string;
  uid: string;
  service_user_id: string;
  username: string;
  description: string;
  scopes: string[] | null;
  disabled: boolean;
  not_permitted: boolean;
  expires_at: Date | null;
  issued_at: Date;
  rotated_at: Date | null;
  revoked_at: Date | null;
  revoked_reason: string | null;
  last_used_at: Date | null;
  token_prefix: string | null;
  previous_valid_until: Date | null;
}

export const KEY_STATE_SQL = `
  SELECT k.id, k.key_id, k.namespace, k.name, k.uid, k.service_user_id, u.username, k.description, k.scopes,
         k.disabled, k.not_permitted, k.expires_at, k.issued_at, k.rotated_at, k.revoked_at, k.revoked_reason,
         k.last_used_at,
         (SELECT s.display_prefix FROM api_key_secrets s WHERE s.api_key_id = k.id AND s.not_after IS NULL)
           AS token_prefix,
         (SELECT s.not_after FROM api_key_secrets s WHERE s.api_key_id = k.id AND s.not_after IS NOT NULL)
           AS previous_valid_until
    FROM api_keys k JOIN service_users u ON u.id = k.service_user_id`;

export function toUser(row: UserRow): ServiceUserRecord {
  return {
    id: row.id,
    ref: { namespace: row.namespace, name: row.name, uid: row.uid },
    username: row.username,
    description: row.description,
    contact: row.contact,
    groups: row.groups,
    scopes: row.scopes,
    suspended: row.suspended,
    kubernetesAuthentication: row.kubernetes_authentication,
    notPermitted: row.not_permitted,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    deletedAt: row.deleted_at,
  };
}

export function toKey(row: KeyRow): ApiKeyState {
  return {
    id: row.id,
    keyId: row.key_id,
    ref: { namespace: row.namespace, name: row.name, uid: row.uid },
    serviceUserId: row.service_user_id,
    username: row.username,
    description: row.description,
    scopes: row.scopes,
    disabled: row.disabled,
    notPermitted: row.not_permitted,
    expiresAt: row.expires_at,
    issuedAt: row.issued_at,
    rotatedAt: row.rotated_at,
    revokedAt: row.revoked_at,
    revokedReason: row.revoked_reason,
    lastUsedAt: row.last_used_at,
    tokenPrefix: row.token_prefix,
    previousValidUntil: row.previous_valid_until,
  };
}

export function sameList(a: readonly string[] | null, b: readonly string[] | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export function sameContact(a: Contact | null, b: Contact | null): boolean {
  return (a?.name ?? null) === (b?.name ?? null) && (a?.email ?? null) === (b?.email ?? null);
}

export function sameTime(a: Date | null, b: Date | null): boolean {
  return (a?.getTime() ?? null) === (b?.getTime() ?? null);
}

export function contactJson(contact: Contact | null): string | null {
  if (!contact) return null;
  const { name, email } = contact;
  return JSON.stringify({ ...(name !== undefined && { name }), ...(email !== undefined && { email }) });
}

export function hashBuffer(hash: Uint8Array): Buffer {
  if (hash.length !== 32) throw new StoreError('a secret hash must be 32 bytes (SHA-256)', undefined, false);
  return Buffer.from(hash.buffer, hash.byteOffset, hash.byteLength);
}

/** A read outside any transaction; failures become StoreErrors like every other call's. */
export async function read<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  operation: string,
  sql: string,
  values: unknown[],
): Promise<pg.QueryResult<R>> {
  try {
    return await pool.query<R>(sql, values);
  } catch (err) {
    throw StoreError.from(operation, err);
  }
}

/** The key's row by ApiKey uid, locked for the rest of the transaction. */
export async function lockKey(client: pg.PoolClient, uid: string): Promise<KeyRow | undefined> {
  const { rows } = await client.query<KeyRow>(`${KEY_STATE_SQL} WHERE k.uid = $1 FOR UPDATE OF k`, [uid]);
  return rows[0];
}

export async function keyState(client: pg.PoolClient, id: string): Promise<ApiKeyState | undefined> {
  const { rows } = await client.query<KeyRow>(`${KEY_STATE_SQL} WHERE k.id = $1`, [id]);
  return rows[0] ? toKey(rows[0]) : undefined;
}

export async function matchSecret(client: pg.PoolClient, keyId: string, hash: Buffer): Promise<SecretMatch> {
  const { rows } = await client.query<{ not_after: Date | null }>(
    'SELECT not_after FROM api_key_secrets WHERE api_key_id = $1 AND hash = $2',
    [keyId, hash],
  );
  return secretRole(rows[0]);
}

export function secretRole(row: { not_after: Date | null } | undefined): SecretMatch {
  if (!row) return { role: 'none' };
  return row.not_after === null ? { role: 'current' } : { role: 'previous', notAfter: row.not_after };
}
