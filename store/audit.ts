import type pg from 'pg';
import { parseToken, TOKEN_CANDIDATE } from '../credentials/token.js';
import { lockKey, type StoreContext } from './rows.js';
import { inTransaction } from './tx.js';

export interface AuditEvent {
  readonly action: string;
  readonly namespace?: string | null;
  readonly name?: string | null;
  readonly serviceUserId?: string | null;
  readonly keyId?: string | null;
  readonly detail?: Record<string, unknown>;
}

// Audit rows are kept forever and shown to humans: a bug that put a token or a hash there must
// fail loudly instead. A token is a candidate with a valid checksum (so a long scope or group name
// of the same shape passes); a hash is a scalar that is exactly 64 hex digits, what
// `hash.toString('hex')` gives. Lists in audit details hold user-given names (scopes, groups),
// which may be anything the schema allows, so they get only the token check.
const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;

function holdsToken(text: string): boolean {
  return [...text.matchAll(TOKEN_CANDIDATE)].some((m) => parseToken(m[0]).ok);
}

function refuse(what: string): never {
  throw new AuditRefused(`audit detail looks like it holds ${what}; refusing to store it`);
}

class AuditRefused extends Error {
  override readonly name = 'AuditRefused';
}

function guard(this: unknown, key: string, value: unknown): unknown {
  // Buffers serialise as {type: 'Buffer', data: [...]}: raw bytes (a hash) have no place in audit.
  if (
    value instanceof Uint8Array ||
    (value && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer')
  ) {
    throw new Error('audit detail holds raw bytes; refusing to store it');
  }
  if (holdsToken(key)) refuse('a token');
  if (typeof value === 'string') {
    if (holdsToken(value)) refuse('a token');
    if (!Array.isArray(this) && HEX_SHA256.test(value)) refuse('a hash');
  }
  return value;
}

export async function recordAudit(
  client: Pick<pg.ClientBase, 'query'>,
  actor: string,
  event: AuditEvent,
): Promise<void> {
  let detail: string;
  try {
    detail = JSON.stringify(event.detail ?? {}, guard);
  } catch (err) {
    if (err instanceof AuditRefused) throw new Error(`${event.action}: ${err.message}`);
    throw err;
  }
  await client.query(
    `INSERT INTO audit_events (actor, action, namespace, name, service_user_id, key_id, detail)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [
      actor,
      event.action,
      event.namespace ?? null,
      event.name ?? null,
      event.serviceUserId ?? null,
      event.keyId ?? null,
      detail,
    ],
  );
}

/**
 * Records `key.expired` for the key's current expiry, once: a repeat for the same expiresAt
 * writes nothing (a key renewed by a rotation and expired again gets a second row). The caller
 * decides that the key has expired; the store does not compare clocks. Returns whether it wrote.
 */
export async function recordExpiry(ctx: StoreContext, uid: string): Promise<boolean> {
  return inTransaction(ctx.pool, 'record expiry', async (client) => {
    const key = await lockKey(client, uid);
    if (!key?.expires_at) return false;
    const expiresAt = key.expires_at.toISOString();
    const seen = await client.query(
      `SELECT 1 FROM audit_events WHERE key_id = $1 AND action = 'key.expired' AND detail->>'expiresAt' = $2`,
      [key.key_id, expiresAt],
    );
    if (seen.rowCount) return false;
    await recordAudit(client, ctx.actor, {
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
