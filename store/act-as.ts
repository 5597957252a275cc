import type pg from 'pg';
import { recordAudit } from './audit.js';
import { StoreError } from './errors.js';
import { inTransaction, notifyChange } from './tx.js';

/** A user's spec.actAs as stored: username globs and external subject id globs. */
export interface StoredActAs {
  readonly serviceUsers: readonly string[];
  readonly externalSubjects: readonly string[];
}

function same(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * The act-as patterns of ServiceUsers: written beside the user row (its own transaction, after the
 * user's upsert), with an audit event and a NOTIFY so webhooks re-read the user's keys at once.
 * Kept apart from OperatorStore: the columns belong to this feature alone.
 */
export class ActAsStore {
  readonly #pool: pg.Pool;
  readonly #actor: string;

  constructor(pool: pg.Pool, options: { actor?: string } = {}) {
    this.#pool = pool;
    this.#actor = options.actor ?? 'keyward-operator';
  }

  /** Sets the patterns of a live user; returns whether anything changed. A deleted or unknown user: false. */
  async set(userId: string, actAs: StoredActAs): Promise<boolean> {
    // Every reconcile of a user calls this: in the steady state one read, no transaction.
    let current: { act_as_service_users: string[]; act_as_external_subjects: string[] } | undefined;
    try {
      ({
        rows: [current],
      } = await this.#pool.query<{ act_as_service_users: string[]; act_as_external_subjects: string[] }>(
        'SELECT act_as_service_users, act_as_external_subjects FROM service_users WHERE id = $1 AND deleted_at IS NULL',
        [userId],
      ));
    } catch (err) {
      throw StoreError.from('read act-as', err);
    }
    if (
      !current ||
      (same(current.act_as_service_users, actAs.serviceUsers) &&
        same(current.act_as_external_subjects, actAs.externalSubjects))
    ) {
      return false;
    }
    return inTransaction(this.#pool, 'set act-as', async (client) => {
      const { rows } = await client.query<{
        namespace: string;
        name: string;
        act_as_service_users: string[];
        act_as_external_subjects: string[];
      }>(
        `SELECT namespace, name, act_as_service_users, act_as_external_subjects
           FROM service_users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE`,
        [userId],
      );
      const row = rows[0];
      if (!row) return false;
      if (
        same(row.act_as_service_users, actAs.serviceUsers) &&
        same(row.act_as_external_subjects, actAs.externalSubjects)
      ) {
        return false;
      }
      await client.query(
        `UPDATE service_users SET act_as_service_users = $2, act_as_external_subjects = $3, updated_at = now()
          WHERE id = $1`,
        [userId, actAs.serviceUsers, actAs.externalSubjects],
      );
      await recordAudit(client, this.#actor, {
        action: 'user.act_as_changed',
        namespace: row.namespace,
        name: row.name,
        serviceUserId: userId,
        detail: { serviceUsers: actAs.serviceUsers, externalSubjects: actAs.externalSubjects },
      });
      await notifyChange(client, { entity: 'user', op: 'updated', userId });
      return true;
    });
  }
}

/** What the webhook needs about a ServiceUser named as a subject. */
export interface SubjectLookup {
  readonly userId: string;
  readonly username: string;
  readonly groups: string[];
  readonly scopes: string[];
  readonly suspended: boolean;
  /** Its spec asks for more than its AccessPolicies grant: it cannot be acted for either. */
  readonly notPermitted: boolean;
}

interface SubjectRow {
  id: string;
  username: string;
  groups: string[];
  scopes: string[];
  suspended: boolean;
  not_permitted: boolean;
}

const SUBJECT = {
  name: 'keyward_subject_by_username',
  text: `SELECT id, username, groups, scopes, suspended, not_permitted
           FROM service_users WHERE username = $1 AND deleted_at IS NULL`,
};

/** One round trip: the live ServiceUser holding `username`, or null. */
export async function lookupSubject(
  db: pg.Pool | pg.ClientBase,
  username: string,
): Promise<SubjectLookup | null> {
  let rows: SubjectRow[];
  try {
    ({ rows } = await db.query<SubjectRow>({ ...SUBJECT, values: [username] }));
  } catch (err) {
    throw StoreError.from('lookup subject', err);
  }
  const row = rows[0];
  if (!row) return null;
  return {
    userId: row.id,
    username: row.username,
    groups: row.groups,
    scopes: row.scopes,
    suspended: row.suspended,
    notPermitted: row.not_permitted,
  };
}
