import type pg from 'pg';
import { generateKeyId } from '../credentials/token.js';
import { StoreError } from './errors.js';
import { type AuditEvent, inTransaction, notifyChange, RetryTransaction, recordAudit } from './tx.js';

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

export type UpsertServiceUserResult =
  | {
      readonly kind: 'ok';
      readonly user: ServiceUserRecord;
      readonly created: boolean;
      /** Spec fields that differed from the store; empty when nothing was written. */
      readonly changed: string[];
    }
  /**
   * Another live ServiceUser holds the username; `holder` names it for the condition message. For
   * a rename, `user` is the row as stored now: every other field applied, the old name in force.
   */
  | {
      readonly kind: 'username_conflict';
      readonly username: string;
      readonly holder: { namespace: string; name: string };
      readonly user?: ServiceUserRecord;
    }
  /** This object was already deleted from the store (a late reconcile must not resurrect it). */
  | { readonly kind: 'deleted' };

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

export interface IssueKeyInput {
  readonly ref: ObjectRef;
  /** The ServiceUser, by name, in the key's own namespace. */
  readonly serviceUserName: string;
  /** SHA-256 of the token already written to the key's Secret. */
  readonly hash: Uint8Array;
  readonly displayPrefix: string;
  readonly description?: string;
  readonly scopes?: readonly string[] | null;
  readonly disabled?: boolean;
  readonly expiresAt?: Date | null;
  /** Lifetime counted from the issue, by the database clock; the earlier of this and expiresAt applies. */
  readonly lifetimeSeconds?: number | null;
  /**
   * The user's maxKeys: the issue is refused when the user already has this many live (not
   * revoked) keys. Checked under a lock on the user row, so concurrent issues cannot overshoot.
   */
  readonly maxKeys?: number;
}

export type IssueKeyResult =
  /** Issued now (`created`), or already issued with this very hash (an idempotent retry). */
  | { readonly kind: 'ok'; readonly key: ApiKeyState; readonly created: boolean }
  /** No live ServiceUser of that name in the namespace. */
  | { readonly kind: 'user_not_found' }
  /** The key exists with another current secret or for another user: rotate, don't issue. */
  | { readonly kind: 'already_issued'; readonly key: ApiKeyState }
  /** This ApiKey object was revoked (deleted); it cannot be issued again. */
  | { readonly kind: 'revoked' }
  /** The hash is already a secret of some other key. */
  | { readonly kind: 'hash_in_use' }
  /** The user already has `maxKeys` live keys. */
  | { readonly kind: 'max_keys_exceeded'; readonly maxKeys: number };

export interface RotateKeyInput {
  readonly uid: string;
  readonly newHash: Uint8Array;
  readonly displayPrefix: string;
  /** How long the secret workloads hold keeps working; 0 ends it at once. */
  readonly graceSeconds: number;
  /** Why, for the audit trail: `annotation`, `schedule`, `SecretLost`… */
  readonly reason: string;
  /**
   * Hash of the token the key's Secret holds now, which becomes the previous secret. Defaults to
   * the current secret. Any other secret is dropped: so after a crash between "new hash stored"
   * and "Secret written", rotating again with the Secret's hash keeps the token workloads hold
   * and drops the one nobody received. A hash that matches none (a lost Secret) keeps nothing.
   */
  readonly heldHash?: Uint8Array;
  /** New fixed expiry; with both this and lifetimeSeconds undefined the current one stays. */
  readonly expiresAt?: Date | null;
  /**
   * Lifetime counted from the rotation by the database clock (the earlier of this and expiresAt
   * applies), so the expiry agrees to the millisecond with one derived from `rotatedAt` later.
   */
  readonly lifetimeSeconds?: number | null;
}

export type RotateKeyResult =
  /** `rotated` is false when newHash was already current (an idempotent retry). */
  | { readonly kind: 'ok'; readonly key: ApiKeyState; readonly rotated: boolean }
  | { readonly kind: 'not_found' }
  | { readonly kind: 'revoked' }
  | { readonly kind: 'hash_in_use' };

export interface KeyPatch {
  readonly description?: string;
  readonly scopes?: readonly string[] | null;
  readonly disabled?: boolean;
  readonly notPermitted?: boolean;
  readonly expiresAt?: Date | null;
}

export type UpdateKeyResult =
  | { readonly kind: 'ok'; readonly key: ApiKeyState; readonly changed: string[] }
  | { readonly kind: 'not_found' }
  | { readonly kind: 'revoked' };

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

export interface OperatorStoreOptions {
  /** Recorded as the actor of every audit event. */
  readonly actor?: string;
  /** Public key id source; injectable for tests. */
  readonly newKeyId?: () => string;
}

interface UserRow {
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

interface KeyRow {
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

const KEY_STATE_SQL = `
  SELECT k.id, k.key_id, k.namespace, k.name, k.uid, k.service_user_id, u.username, k.description, k.scopes,
         k.disabled, k.not_permitted, k.expires_at, k.issued_at, k.rotated_at, k.revoked_at, k.revoked_reason,
         k.last_used_at,
         (SELECT s.display_prefix FROM api_key_secrets s WHERE s.api_key_id = k.id AND s.not_after IS NULL)
           AS token_prefix,
         (SELECT s.not_after FROM api_key_secrets s WHERE s.api_key_id = k.id AND s.not_after IS NOT NULL)
           AS previous_valid_until
    FROM api_keys k JOIN service_users u ON u.id = k.service_user_id`;

function toUser(row: UserRow): ServiceUserRecord {
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

function toKey(row: KeyRow): ApiKeyState {
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

function sameList(a: readonly string[] | null, b: readonly string[] | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function sameContact(a: Contact | null, b: Contact | null): boolean {
  return (a?.name ?? null) === (b?.name ?? null) && (a?.email ?? null) === (b?.email ?? null);
}

function sameTime(a: Date | null, b: Date | null): boolean {
  return (a?.getTime() ?? null) === (b?.getTime() ?? null);
}

function contactJson(contact: Contact | null): string | null {
  if (!contact) return null;
  const { name, email } = contact;
  return JSON.stringify({ ...(name !== undefined && { name }), ...(email !== undefined && { email }) });
}

function hashBuffer(hash: Uint8Array): Buffer {
  if (hash.length !== 32) throw new StoreError('a secret hash must be 32 bytes (SHA-256)', undefined, false);
  return Buffer.from(hash.buffer, hash.byteOffset, hash.byteLength);
}

/**
 * The operator's side of the credential store. Every write is one transaction that also records
 * its audit events and its NOTIFY, and is idempotent: repeating a call with the same inputs after
 * a crash or a lost reply changes nothing and answers as the first call did.
 */
export class OperatorStore {
  private readonly actor: string;
  private readonly newKeyId: () => string;

  constructor(
    private readonly pool: pg.Pool,
    options: OperatorStoreOptions = {},
  ) {
    this.actor = options.actor ?? 'keyward-operator';
    this.newKeyId = options.newKeyId ?? generateKeyId;
  }

  /** Creates or updates the store's row for a ServiceUser (suspension included). */
  async upsertServiceUser(spec: ServiceUserSpec): Promise<UpsertServiceUserResult> {
    return inTransaction(this.pool, 'upsert service user', async (client) => {
      const existing = await client.query<UserRow>('SELECT * FROM service_users WHERE uid = $1 FOR UPDATE', [
        spec.ref.uid,
      ]);
      const row = existing.rows[0];
      if (row) return this.updateUser(client, row, spec);

      // Kubernetes holds one object per namespace/name: a live row there with another uid belongs
      // to a deleted predecessor whose finalizer never ran.
      const stale = await client.query<UserRow>(
        'SELECT * FROM service_users WHERE namespace = $1 AND name = $2 AND deleted_at IS NULL FOR UPDATE',
        [spec.ref.namespace, spec.ref.name],
      );
      if (stale.rows[0]) await this.retireUser(client, stale.rows[0], 'replaced');

      const inserted = await client.query<UserRow>(
        `INSERT INTO service_users (namespace, name, uid, username, description, contact, groups, scopes, suspended,
                                    kubernetes_authentication, not_permitted)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT DO NOTHING RETURNING *`,
        [
          spec.ref.namespace,
          spec.ref.name,
          spec.ref.uid,
          spec.username,
          spec.description,
          contactJson(spec.contact),
          spec.groups,
          spec.scopes,
          spec.suspended,
          spec.kubernetesAuthentication ?? false,
          spec.notPermitted ?? false,
        ],
      );
      const created = inserted.rows[0];
      if (!created) {
        // Not this very object: a concurrent upsert of it may have inserted the row meanwhile.
        const holder = await client.query<{ namespace: string; name: string }>(
          'SELECT namespace, name FROM service_users WHERE username = $1 AND deleted_at IS NULL AND uid <> $2',
          [spec.username, spec.ref.uid],
        );
        const h = holder.rows[0];
        if (h) return { kind: 'username_conflict', username: spec.username, holder: h };
        // The conflict was on uid (a concurrent upsert of this object): answer from its row.
        throw new RetryTransaction();
      }
      await this.audit(client, {
        action: 'user.created',
        namespace: created.namespace,
        name: created.name,
        serviceUserId: created.id,
        detail: {
          username: created.username,
          groups: created.groups,
          scopes: created.scopes,
          suspended: created.suspended,
          kubernetesAuthentication: created.kubernetes_authentication,
          notPermitted: created.not_permitted,
        },
      });
      return { kind: 'ok', user: toUser(created), created: true, changed: [] };
    });
  }

  private async updateUser(
    client: pg.PoolClient,
    row: UserRow,
    spec: ServiceUserSpec,
  ): Promise<UpsertServiceUserResult> {
    if (row.deleted_at) return { kind: 'deleted' };
    // A rename: the unique index keeps usernames unique, and the old name is free from the commit
    // on. A held name leaves the old one in force; every other field still applies.
    let conflict: { namespace: string; name: string } | undefined;
    if (row.username !== spec.username) {
      const holder = await client.query<{ namespace: string; name: string }>(
        'SELECT namespace, name FROM service_users WHERE username = $1 AND deleted_at IS NULL AND id <> $2',
        [spec.username, row.id],
      );
      conflict = holder.rows[0];
    }
    const username = conflict ? row.username : spec.username;
    const kubernetesAuthentication = spec.kubernetesAuthentication ?? false;
    const notPermitted = spec.notPermitted ?? false;
    const changed = [
      row.username !== username && 'username',
      row.description !== spec.description && 'description',
      !sameContact(row.contact, spec.contact) && 'contact',
      !sameList(row.groups, spec.groups) && 'groups',
      !sameList(row.scopes, spec.scopes) && 'scopes',
      row.suspended !== spec.suspended && 'suspended',
      row.kubernetes_authentication !== kubernetesAuthentication && 'kubernetesAuthentication',
      row.not_permitted !== notPermitted && 'notPermitted',
    ].filter((f): f is string => typeof f === 'string');
    const answer = (user: UserRow): UpsertServiceUserResult =>
      conflict
        ? { kind: 'username_conflict', username: spec.username, holder: conflict, user: toUser(user) }
        : { kind: 'ok', user: toUser(user), created: false, changed };
    if (changed.length === 0) return answer(row);

    // A concurrent claim of the same name fails here with unique_violation; inTransaction retries
    // and the next attempt sees the holder.
    const updated = await client.query<UserRow>(
      `UPDATE service_users
          SET username = $2, description = $3, contact = $4, groups = $5, scopes = $6, suspended = $7,
              kubernetes_authentication = $8, not_permitted = $9, updated_at = now()
        WHERE id = $1 RETURNING *`,
      [
        row.id,
        username,
        spec.description,
        contactJson(spec.contact),
        spec.groups,
        spec.scopes,
        spec.suspended,
        kubernetesAuthentication,
        notPermitted,
      ],
    );
    const user = updated.rows[0]!;
    const subject = { namespace: user.namespace, name: user.name, serviceUserId: user.id };
    if (changed.includes('username')) {
      await this.audit(client, {
        ...subject,
        action: 'user.renamed',
        detail: { from: row.username, to: user.username },
      });
    }
    if (changed.includes('suspended')) {
      await this.audit(client, { ...subject, action: user.suspended ? 'user.suspended' : 'user.resumed' });
    }
    const others = changed.filter((f) => f !== 'suspended' && f !== 'username');
    if (others.length > 0) {
      await this.audit(client, {
        ...subject,
        action: 'user.updated',
        detail: {
          changed: others,
          groups: user.groups,
          scopes: user.scopes,
          kubernetesAuthentication: user.kubernetes_authentication,
          notPermitted: user.not_permitted,
        },
      });
    }
    if (changed.some((f) => f !== 'description' && f !== 'contact')) {
      await notifyChange(client, { entity: 'user', op: 'updated', userId: user.id });
    }
    return answer(user);
  }

  /** Suspends or resumes a user; every key of a suspended user stops verifying at once. */
  async setSuspended(
    uid: string,
    suspended: boolean,
  ): Promise<{ kind: 'ok'; changed: boolean } | { kind: 'not_found' }> {
    return inTransaction(this.pool, 'set suspended', async (client) => {
      const { rows } = await client.query<UserRow>(
        `UPDATE service_users SET suspended = $2, updated_at = now()
          WHERE uid = $1 AND deleted_at IS NULL AND suspended IS DISTINCT FROM $2 RETURNING *`,
        [uid, suspended],
      );
      const user = rows[0];
      if (!user) {
        const found = await client.query(
          'SELECT 1 FROM service_users WHERE uid = $1 AND deleted_at IS NULL',
          [uid],
        );
        return found.rowCount ? { kind: 'ok', changed: false } : { kind: 'not_found' };
      }
      await this.audit(client, {
        action: suspended ? 'user.suspended' : 'user.resumed',
        namespace: user.namespace,
        name: user.name,
        serviceUserId: user.id,
      });
      await notifyChange(client, { entity: 'user', op: 'updated', userId: user.id });
      return { kind: 'ok', changed: true };
    });
  }

  /**
   * Marks the user deleted (its username becomes free) and revokes all its keys. Unknown or
   * already deleted users are fine: the finalizer can proceed.
   */
  async deleteServiceUser(uid: string): Promise<{ deleted: boolean; revokedKeyIds: string[] }> {
    return inTransaction(this.pool, 'delete service user', async (client) => {
      const { rows } = await client.query<UserRow>(
        'SELECT * FROM service_users WHERE uid = $1 AND deleted_at IS NULL FOR UPDATE',
        [uid],
      );
      const user = rows[0];
      if (!user) return { deleted: false, revokedKeyIds: [] };
      const revokedKeyIds = await this.retireUser(client, user, 'deleted');
      return { deleted: true, revokedKeyIds };
    });
  }

  private async retireUser(client: pg.PoolClient, user: UserRow, reason: string): Promise<string[]> {
    await client.query('UPDATE service_users SET deleted_at = now(), updated_at = now() WHERE id = $1', [
      user.id,
    ]);
    const keys = await client.query<{ key_id: string; namespace: string; name: string }>(
      `UPDATE api_keys SET revoked_at = now(), updated_at = now()
        WHERE service_user_id = $1 AND revoked_at IS NULL RETURNING key_id, namespace, name`,
      [user.id],
    );
    const subject = { namespace: user.namespace, name: user.name, serviceUserId: user.id };
    await this.audit(client, {
      ...subject,
      action: 'user.deleted',
      detail: { reason, username: user.username, revokedKeys: keys.rows.map((k) => k.key_id) },
    });
    for (const key of keys.rows) {
      await this.audit(client, {
        action: 'key.revoked',
        namespace: key.namespace,
        name: key.name,
        serviceUserId: user.id,
        keyId: key.key_id,
        detail: { reason: `user_${reason}` },
      });
    }
    // One notification covers the user's keys: the webhook drops entries by user id.
    await notifyChange(client, { entity: 'user', op: 'deleted', userId: user.id });
    return keys.rows.map((k) => k.key_id);
  }

  /**
   * Creates the key with `hash` as its current secret. Call it after the token is in the Secret,
   * so that the store never accepts a token nobody holds beyond a crash-and-retry.
   */
  async issueKey(input: IssueKeyInput): Promise<IssueKeyResult> {
    const hash = hashBuffer(input.hash);
    return inTransaction(this.pool, 'issue key', async (client) => {
      // FOR SHARE waits out a concurrent deleteServiceUser, then sees the user gone. With a key
      // limit, FOR UPDATE also makes concurrent issues for the user count one after the other.
      const users = await client.query<{ id: string }>(
        `SELECT id FROM service_users WHERE namespace = $1 AND name = $2 AND deleted_at IS NULL
           ${input.maxKeys === undefined ? 'FOR SHARE' : 'FOR UPDATE'}`,
        [input.ref.namespace, input.serviceUserName],
      );
      const user = users.rows[0];
      if (!user) return { kind: 'user_not_found' };

      const existing = await this.lockKey(client, input.ref.uid);
      if (existing) {
        if (existing.revoked_at) return { kind: 'revoked' };
        const match = await this.matchSecret(client, existing.id, hash);
        if (match.role === 'current' && existing.service_user_id === user.id) {
          return { kind: 'ok', key: toKey(existing), created: false };
        }
        return { kind: 'already_issued', key: toKey(existing) };
      }
      const owner = await client.query('SELECT 1 FROM api_key_secrets WHERE hash = $1', [hash]);
      if (owner.rowCount) return { kind: 'hash_in_use' };

      const stale = await client.query<{ id: string; uid: string }>(
        'SELECT id, uid FROM api_keys WHERE namespace = $1 AND name = $2 AND revoked_at IS NULL FOR UPDATE',
        [input.ref.namespace, input.ref.name],
      );
      if (stale.rows[0]) await this.revokeLocked(client, stale.rows[0].id, 'replaced');
      if (input.maxKeys !== undefined) {
        // Revoked keys (deleted ApiKeys, leaks, replaced objects) hold no slot.
        const live = await client.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM api_keys WHERE service_user_id = $1 AND revoked_at IS NULL',
          [user.id],
        );
        if ((live.rows[0]?.n ?? 0) >= input.maxKeys)
          return { kind: 'max_keys_exceeded', maxKeys: input.maxKeys };
      }

      const inserted = await client.query<{ id: string }>(
        `INSERT INTO api_keys (key_id, service_user_id, namespace, name, uid, description, scopes, disabled, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                 LEAST($9::timestamptz, now() + make_interval(secs => $10::float8)))
         ON CONFLICT DO NOTHING RETURNING id`,
        [
          this.newKeyId(),
          user.id,
          input.ref.namespace,
          input.ref.name,
          input.ref.uid,
          input.description ?? '',
          input.scopes ?? null,
          input.disabled ?? false,
          input.expiresAt ?? null,
          input.lifetimeSeconds ?? null,
        ],
      );
      // A concurrent issue of the same object, or (rarely) a key id collision: start over.
      if (!inserted.rows[0]) throw new RetryTransaction();
      const id = inserted.rows[0].id;
      await client.query(
        'INSERT INTO api_key_secrets (hash, api_key_id, display_prefix) VALUES ($1, $2, $3)',
        [hash, id, input.displayPrefix],
      );
      const key = (await this.keyState(client, id))!;
      await this.audit(client, {
        action: 'key.issued',
        namespace: key.ref.namespace,
        name: key.ref.name,
        serviceUserId: key.serviceUserId,
        keyId: key.keyId,
        detail: {
          tokenPrefix: key.tokenPrefix,
          username: key.username,
          scopes: key.scopes,
          disabled: key.disabled,
          expiresAt: key.expiresAt,
        },
      });
      await notifyChange(client, {
        entity: 'key',
        op: 'issued',
        keyId: key.keyId,
        userId: key.serviceUserId,
      });
      return { kind: 'ok', key, created: true };
    });
  }

  /**
   * Makes `newHash` the current secret. The secret workloads hold (see `heldHash`) stays valid
   * for the grace period; any other secret is dropped, so a key never has more than two.
   */
  async rotateKey(input: RotateKeyInput): Promise<RotateKeyResult> {
    const newHash = hashBuffer(input.newHash);
    const heldHash = input.heldHash ? hashBuffer(input.heldHash) : undefined;
    if (!Number.isFinite(input.graceSeconds) || input.graceSeconds < 0) {
      throw new StoreError('graceSeconds must be a finite number >= 0', undefined, false);
    }
    return inTransaction(this.pool, 'rotate key', async (client) => {
      const key = await this.lockKey(client, input.uid);
      if (!key) return { kind: 'not_found' };
      if (key.revoked_at) return { kind: 'revoked' };

      const secrets = await client.query<{ hash: Buffer; not_after: Date | null; display_prefix: string }>(
        'SELECT hash, not_after, display_prefix FROM api_key_secrets WHERE api_key_id = $1',
        [key.id],
      );
      const mine = secrets.rows.find((s) => s.hash.equals(newHash));
      if (mine) {
        if (mine.not_after === null) return { kind: 'ok', key: toKey(key), rotated: false };
        return { kind: 'hash_in_use' };
      }
      const owner = await client.query('SELECT 1 FROM api_key_secrets WHERE hash = $1', [newHash]);
      if (owner.rowCount) return { kind: 'hash_in_use' };

      const held = heldHash
        ? secrets.rows.find((s) => s.hash.equals(heldHash))
        : secrets.rows.find((s) => s.not_after === null);
      // Delete before update before insert: each step keeps the one-current/one-previous indexes.
      await client.query('DELETE FROM api_key_secrets WHERE api_key_id = $1 AND hash <> $2', [
        key.id,
        held?.hash ?? newHash,
      ]);
      let previousValidUntil: Date | null = null;
      if (held) {
        // A held secret already past its grace is not revived.
        const { rows } = await client.query<{ not_after: Date }>(
          `UPDATE api_key_secrets
              SET not_after = LEAST(COALESCE(not_after, 'infinity'), now() + make_interval(secs => $2))
            WHERE hash = $1 RETURNING not_after`,
          [held.hash, input.graceSeconds],
        );
        previousValidUntil = rows[0]!.not_after;
      }
      await client.query(
        'INSERT INTO api_key_secrets (hash, api_key_id, display_prefix) VALUES ($1, $2, $3)',
        [newHash, key.id, input.displayPrefix],
      );
      const setExpiry = input.expiresAt !== undefined || input.lifetimeSeconds !== undefined;
      await client.query(
        `UPDATE api_keys SET rotated_at = now(), updated_at = now(),
                expires_at = CASE WHEN $2
                  THEN LEAST($3::timestamptz, now() + make_interval(secs => $4::float8))
                  ELSE expires_at END
          WHERE id = $1`,
        [key.id, setExpiry, input.expiresAt ?? null, input.lifetimeSeconds ?? null],
      );
      const state = (await this.keyState(client, key.id))!;
      await this.audit(client, {
        action: 'key.rotated',
        namespace: state.ref.namespace,
        name: state.ref.name,
        serviceUserId: state.serviceUserId,
        keyId: state.keyId,
        detail: {
          reason: input.reason,
          tokenPrefix: state.tokenPrefix,
          previousTokenPrefix: held?.display_prefix ?? null,
          graceSeconds: input.graceSeconds,
          previousValidUntil,
          droppedSecrets: secrets.rows.length - (held ? 1 : 0),
          ...(setExpiry && { expiresAt: state.expiresAt }),
        },
      });
      await notifyChange(client, {
        entity: 'key',
        op: 'rotated',
        keyId: state.keyId,
        userId: state.serviceUserId,
      });
      return { kind: 'ok', key: state, rotated: true };
    });
  }

  /** Applies the given fields (disabled, expiry, scopes, description); omitted ones stay. */
  async updateKey(uid: string, patch: KeyPatch): Promise<UpdateKeyResult> {
    return inTransaction(this.pool, 'update key', async (client) => {
      const key = await this.lockKey(client, uid);
      if (!key) return { kind: 'not_found' };
      if (key.revoked_at) return { kind: 'revoked' };
      const next = {
        description: patch.description ?? key.description,
        scopes: patch.scopes === undefined ? key.scopes : patch.scopes === null ? null : [...patch.scopes],
        disabled: patch.disabled ?? key.disabled,
        notPermitted: patch.notPermitted ?? key.not_permitted,
        expiresAt: patch.expiresAt === undefined ? key.expires_at : patch.expiresAt,
      };
      const changed = [
        next.description !== key.description && 'description',
        !sameList(next.scopes, key.scopes) && 'scopes',
        next.disabled !== key.disabled && 'disabled',
        next.notPermitted !== key.not_permitted && 'notPermitted',
        !sameTime(next.expiresAt, key.expires_at) && 'expiresAt',
      ].filter((f): f is string => typeof f === 'string');
      if (changed.length === 0) return { kind: 'ok', key: toKey(key), changed };

      await client.query(
        `UPDATE api_keys SET description = $2, scopes = $3, disabled = $4, expires_at = $5, not_permitted = $6,
                updated_at = now()
          WHERE id = $1`,
        [key.id, next.description, next.scopes, next.disabled, next.expiresAt, next.notPermitted],
      );
      const state = (await this.keyState(client, key.id))!;
      const subject = {
        namespace: state.ref.namespace,
        name: state.ref.name,
        serviceUserId: state.serviceUserId,
        keyId: state.keyId,
      };
      if (changed.includes('disabled')) {
        await this.audit(client, { ...subject, action: state.disabled ? 'key.disabled' : 'key.enabled' });
      }
      const others = changed.filter((f) => f !== 'disabled');
      if (others.length > 0) {
        await this.audit(client, {
          ...subject,
          action: 'key.updated',
          detail: {
            changed: others,
            scopes: state.scopes,
            expiresAt: state.expiresAt,
            notPermitted: state.notPermitted,
          },
        });
      }
      if (changed.some((f) => f !== 'description')) {
        await notifyChange(client, {
          entity: 'key',
          op: 'updated',
          keyId: state.keyId,
          userId: state.serviceUserId,
        });
      }
      return { kind: 'ok', key: state, changed };
    });
  }

  /** Revokes the key for good (the ApiKey's finalizer). Unknown or already revoked keys are fine. */
  async revokeKey(uid: string, reason = 'deleted'): Promise<{ revoked: boolean }> {
    return inTransaction(this.pool, 'revoke key', async (client) => {
      const key = await this.lockKey(client, uid);
      if (!key || key.revoked_at) return { revoked: false };
      await this.revokeLocked(client, key.id, reason);
      return { revoked: true };
    });
  }

  /**
   * Works through pending leak reports (POST /leaks on the webhook): revokes each reported key
   * that is live, in `namespaces` (null: all), with reason `leaked`, and records an audit event
   * per report, the token's hash never among its details. Returns the keys it revoked.
   */
  async processLeakReports(
    namespaces: readonly string[] | null,
    limit = 100,
  ): Promise<Array<{ namespace: string; name: string; keyId: string; source: string | null }>> {
    return inTransaction(this.pool, 'process leak reports', async (client) => {
      const { rows } = await client.query<{
        id: string;
        token_type: string;
        url: string | null;
        source: string | null;
        reported_by: string;
        key: string | null;
        key_id: string | null;
        namespace: string | null;
        name: string | null;
        service_user_id: string | null;
        revoked_at: Date | null;
      }>(
        `SELECT r.id, r.token_type, r.url, r.source, r.reported_by,
                k.id AS key, k.key_id, k.namespace, k.name, k.service_user_id, k.revoked_at
           FROM leak_reports r
           LEFT JOIN api_key_secrets s ON s.hash = r.token_hash
           LEFT JOIN api_keys k ON k.id = s.api_key_id
          WHERE r.processed_at IS NULL AND ($1::text[] IS NULL OR k.namespace = ANY($1) OR k.id IS NULL)
          ORDER BY r.id LIMIT $2
          FOR UPDATE OF r SKIP LOCKED`,
        [namespaces, limit],
      );
      const revoked: Array<{ namespace: string; name: string; keyId: string; source: string | null }> = [];
      const revokedNow = new Set<string>();
      for (const row of rows) {
        let outcome: 'revoked' | 'already_revoked' | 'unknown' = 'unknown';
        if (row.key !== null) {
          // The rows were read before this batch revoked anything: the same token twice in it is one revocation.
          outcome = row.revoked_at || revokedNow.has(row.key) ? 'already_revoked' : 'revoked';
          if (outcome === 'revoked') {
            revokedNow.add(row.key);
            await this.revokeLocked(client, row.key, 'leaked');
            revoked.push({
              namespace: row.namespace!,
              name: row.name!,
              keyId: row.key_id!,
              source: row.source,
            });
          }
        }
        await this.audit(client, {
          action: 'key.leak_reported',
          namespace: row.namespace,
          name: row.name,
          serviceUserId: row.service_user_id,
          keyId: row.key_id,
          detail: {
            outcome,
            tokenType: row.token_type,
            url: row.url,
            source: row.source,
            reportedBy: row.reported_by,
          },
        });
        await client.query('UPDATE leak_reports SET processed_at = now(), outcome = $2 WHERE id = $1', [
          row.id,
          outcome,
        ]);
      }
      return revoked;
    });
  }

  private async revokeLocked(client: pg.PoolClient, id: string, reason: string): Promise<void> {
    const { rows } = await client.query<{
      key_id: string;
      namespace: string;
      name: string;
      service_user_id: string;
    }>(
      `UPDATE api_keys SET revoked_at = now(), revoked_reason = $2, updated_at = now() WHERE id = $1
        RETURNING key_id, namespace, name, service_user_id`,
      [id, reason],
    );
    const key = rows[0]!;
    await this.audit(client, {
      action: 'key.revoked',
      namespace: key.namespace,
      name: key.name,
      serviceUserId: key.service_user_id,
      keyId: key.key_id,
      detail: { reason },
    });
    await notifyChange(client, {
      entity: 'key',
      op: 'revoked',
      keyId: key.key_id,
      userId: key.service_user_id,
    });
  }

  /**
   * Records `key.expired` for the key's current expiry, once: a repeat for the same expiresAt
   * writes nothing (a key renewed by a rotation and expired again gets a second row). The caller
   * decides that the key has expired; the store does not compare clocks. Returns whether it wrote.
   */
  async recordExpiry(uid: string): Promise<boolean> {
    return inTransaction(this.pool, 'record expiry', async (client) => {
      const key = await this.lockKey(client, uid);
      if (!key?.expires_at) return false;
      const expiresAt = key.expires_at.toISOString();
      const seen = await client.query(
        `SELECT 1 FROM audit_events WHERE key_id = $1 AND action = 'key.expired' AND detail->>'expiresAt' = $2`,
        [key.key_id, expiresAt],
      );
      if (seen.rowCount) return false;
      await this.audit(client, {
        action: 'key.expired',
        namespace: key.namespace,
        name: key.name,
        serviceUserId: key.service_user_id,
        keyId: key.key_id,
        detail: { expiresAt },
      });
      return true;
    });
  }

  /** Records an event the store cannot see by itself (e.g. `key.expired`, `user.username_conflict`). */
  async recordAuditEvent(event: AuditEvent): Promise<void> {
    await inTransaction(this.pool, 'record audit event', (client) => this.audit(client, event));
  }

  async getServiceUser(uid: string): Promise<ServiceUserRecord | null> {
    const { rows } = await this.read<UserRow>(
      'get service user',
      'SELECT * FROM service_users WHERE uid = $1',
      [uid],
    );
    return rows[0] ? toUser(rows[0]) : null;
  }

  /** The key's store state by ApiKey uid, including revoked keys; null if never issued. */
  async getKey(uid: string): Promise<ApiKeyState | null> {
    const { rows } = await this.read<KeyRow>('get key', `${KEY_STATE_SQL} WHERE k.uid = $1`, [uid]);
    return rows[0] ? toKey(rows[0]) : null;
  }

  /** Whether `hash` (of the token in the key's Secret) is the key's current or previous secret. */
  async secretMatch(uid: string, hash: Uint8Array): Promise<SecretMatch> {
    const { rows } = await this.read<{ not_after: Date | null }>(
      'match secret',
      `SELECT s.not_after FROM api_key_secrets s JOIN api_keys k ON k.id = s.api_key_id
        WHERE k.uid = $1 AND s.hash = $2`,
      [uid, hashBuffer(hash)],
    );
    const row = rows[0];
    if (!row) return { role: 'none' };
    return row.not_after === null ? { role: 'current' } : { role: 'previous', notAfter: row.not_after };
  }

  /** Key counts for a ServiceUser's status (by the ServiceUser's uid). */
  async countKeys(serviceUserUid: string): Promise<KeyCounts> {
    const { rows } = await this.read<{ total: number; active: number }>(
      'count keys',
      `SELECT count(*)::int AS total,
              count(*) FILTER (
                WHERE NOT k.disabled AND (k.expires_at IS NULL OR k.expires_at > now())
                  AND EXISTS (SELECT 1 FROM api_key_secrets s WHERE s.api_key_id = k.id AND s.not_after IS NULL)
              )::int AS active
         FROM api_keys k JOIN service_users u ON u.id = k.service_user_id
        WHERE u.uid = $1 AND k.revoked_at IS NULL`,
      [serviceUserUid],
    );
    return rows[0] ?? { total: 0, active: 0 };
  }

  // ---- Issue 10 (ApiKey reconciler): keys revoked with their ServiceUser, and the 0s-grace hold.
  // ---- Kept together so the split into store/{rows,users,keys,audit}.ts can move it as one.

  /**
   * Whether the key was revoked together with its ServiceUser (the user deleted, or replaced by a
   * re-created object of its name), not on its own (deleted ApiKey, leak report): the user's
   * retirement revokes its keys in the same transaction, so both carry the same instant.
   */
  async revokedWithUser(uid: string): Promise<boolean> {
    const { rows } = await this.read(
      'revoked with user',
      `SELECT 1 FROM api_keys k JOIN service_users u ON u.id = k.service_user_id
        WHERE k.uid = $1 AND k.revoked_reason IS NULL AND k.revoked_at = u.deleted_at`,
      [uid],
    );
    return rows.length > 0;
  }

  /**
   * Issues again, for the live ServiceUser of that name, a key revoked with its previous user
   * (see revokedWithUser): same key id, `hash` as its only secret, the spec's fields and expiry.
   * Like issueKey, call it after the token is in the Secret; repeating it with the same hash after
   * a crash answers ok with created=false.
   */
  async reissueKey(input: IssueKeyInput): Promise<IssueKeyResult> {
    const hash = hashBuffer(input.hash);
    return inTransaction(this.pool, 'reissue key', async (client) => {
      const users = await client.query<{ id: string; username: string }>(
        `SELECT id, username FROM service_users WHERE namespace = $1 AND name = $2 AND deleted_at IS NULL
           FOR UPDATE`,
        [input.ref.namespace, input.serviceUserName],
      );
      const user = users.rows[0];
      if (!user) return { kind: 'user_not_found' };
      const key = await this.lockKey(client, input.ref.uid);
      if (!key) return { kind: 'user_not_found' };
      if (!key.revoked_at) {
        const match = await this.matchSecret(client, key.id, hash);
        return match.role === 'current' && key.service_user_id === user.id
          ? { kind: 'ok', key: toKey(key), created: false }
          : { kind: 'already_issued', key: toKey(key) };
      }
      // Compared in SQL: the instants carry microseconds, a JS Date only milliseconds.
      const withUser = await client.query(
        `SELECT 1 FROM api_keys k JOIN service_users u ON u.id = k.service_user_id
          WHERE k.id = $1 AND k.revoked_reason IS NULL AND k.revoked_at = u.deleted_at`,
        [key.id],
      );
      if (!withUser.rowCount) return { kind: 'revoked' };
      const owner = await client.query('SELECT 1 FROM api_key_secrets WHERE hash = $1', [hash]);
      if (owner.rowCount) return { kind: 'hash_in_use' };
      if (input.maxKeys !== undefined) {
        const live = await client.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM api_keys WHERE service_user_id = $1 AND revoked_at IS NULL',
          [user.id],
        );
        if ((live.rows[0]?.n ?? 0) >= input.maxKeys)
          return { kind: 'max_keys_exceeded', maxKeys: input.maxKeys };
      }
      await client.query('DELETE FROM api_key_secrets WHERE api_key_id = $1', [key.id]);
      await client.query(
        'INSERT INTO api_key_secrets (hash, api_key_id, display_prefix) VALUES ($1, $2, $3)',
        [hash, key.id, input.displayPrefix],
      );
      await client.query(
        `UPDATE api_keys SET service_user_id = $2, revoked_at = NULL, revoked_reason = NULL, rotated_at = now(),
                updated_at = now(), description = $3, scopes = $4, disabled = $5, not_permitted = false,
                expires_at = LEAST($6::timestamptz, now() + make_interval(secs => $7::float8))
          WHERE id = $1`,
        [
          key.id,
          user.id,
          input.description ?? '',
          input.scopes ?? null,
          input.disabled ?? false,
          input.expiresAt ?? null,
          input.lifetimeSeconds ?? null,
        ],
      );
      const state = (await this.keyState(client, key.id))!;
      await this.audit(client, {
        action: 'key.reissued',
        namespace: state.ref.namespace,
        name: state.ref.name,
        serviceUserId: state.serviceUserId,
        keyId: state.keyId,
        detail: {
          reason: 'user_recreated',
          tokenPrefix: state.tokenPrefix,
          username: state.username,
          expiresAt: state.expiresAt,
        },
      });
      await notifyChange(client, {
        entity: 'key',
        op: 'issued',
        keyId: state.keyId,
        userId: state.serviceUserId,
      });
      return { kind: 'ok', key: state, created: true };
    });
  }

  /**
   * Ends the grace of the key's previous secret now, if it is still running: a 0s rotation holds
   * the replaced token only until the Secret holds the new one. Returns the instant it ended, or
   * null when no grace was running.
   */
  async endGrace(uid: string): Promise<Date | null> {
    return inTransaction(this.pool, 'end grace', async (client) => {
      const { rows } = await client.query<{
        key_id: string;
        namespace: string;
        name: string;
        service_user_id: string;
        not_after: Date;
      }>(
        `UPDATE api_key_secrets s SET not_after = now()
           FROM api_keys k
          WHERE k.id = s.api_key_id AND k.uid = $1 AND s.not_after > now()
          RETURNING k.key_id, k.namespace, k.name, k.service_user_id, s.not_after`,
        [uid],
      );
      const key = rows[0];
      if (!key) return null;
      await this.audit(client, {
        action: 'key.grace_ended',
        namespace: key.namespace,
        name: key.name,
        serviceUserId: key.service_user_id,
        keyId: key.key_id,
        detail: { reason: 'secret_written' },
      });
      await notifyChange(client, {
        entity: 'key',
        op: 'updated',
        keyId: key.key_id,
        userId: key.service_user_id,
      });
      return key.not_after;
    });
  }

  // ---- end of the issue 10 block.

  private async read<R extends pg.QueryResultRow>(
    operation: string,
    sql: string,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(sql, values);
    } catch (err) {
      throw StoreError.from(operation, err);
    }
  }

  private async lockKey(client: pg.PoolClient, uid: string): Promise<KeyRow | undefined> {
    const { rows } = await client.query<KeyRow>(`${KEY_STATE_SQL} WHERE k.uid = $1 FOR UPDATE OF k`, [uid]);
    return rows[0];
  }

  private async keyState(client: pg.PoolClient, id: string): Promise<ApiKeyState | undefined> {
    const { rows } = await client.query<KeyRow>(`${KEY_STATE_SQL} WHERE k.id = $1`, [id]);
    return rows[0] ? toKey(rows[0]) : undefined;
  }

  private async matchSecret(client: pg.PoolClient, keyId: string, hash: Buffer): Promise<SecretMatch> {
    const { rows } = await client.query<{ not_after: Date | null }>(
      'SELECT not_after FROM api_key_secrets WHERE api_key_id = $1 AND hash = $2',
      [keyId, hash],
    );
    const row = rows[0];
    if (!row) return { role: 'none' };
    return row.not_after === null ? { role: 'current' } : { role: 'previous', notAfter: row.not_after };
  }

  private async audit(client: pg.PoolClient, event: AuditEvent): Promise<void> {
    await recordAudit(client, this.actor, event);
  }
}
