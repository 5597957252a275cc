import type pg from 'pg';
import type { LimitDefinition } from '../api/ratelimits.js';
import { StoreError } from './errors.js';
import { FAST_TEXT_ARRAYS } from './text-array.js';

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

/**
 * The lookup's columns, in the order the queries select them. Rows come back as arrays
 * (rowMode 'array'): no object with 25 named properties per row, and timestamps as epoch ms
 * (float8, floored to the ms a Date holds), so the driver parses a number instead of a
 * timestamp string into a Date for each of them. On the webhook's miss path every allocation
 * counts: garbage collection is a third of its CPU there (bench/results/2026-12-01.md).
 */
const COLUMN_LIST = [
  'k.id',
  'k.key_id',
  'k.namespace',
  'k.name',
  'u.id',
  'u.username',
  'u.groups',
  'u.scopes',
  'k.scopes',
  'u.suspended',
  'u.not_permitted OR k.not_permitted',
  'u.kubernetes_authentication',
  'u.deleted_at IS NOT NULL',
  'u.act_as_service_users',
  'u.act_as_external_subjects',
  'k.disabled',
  epochMs('k.revoked_at'),
  epochMs('k.expires_at'),
  epochMs('k.issued_at'),
  epochMs('k.rotated_at'),
  epochMs('s.not_after'),
  's.display_prefix',
  'kl.rate_limits',
  'kl.quota',
  'ul.rate_limits',
] as const;

/** A lookup row as the driver returns it: COLUMN_LIST's values by position. */
type LookupRow = [
  apiKeyId: string,
  keyId: string,
  namespace: string,
  name: string,
  userId: string,
  username: string,
  groups: string[],
  userScopes: string[],
  keyScopes: string[] | null,
  suspended: boolean,
  notPermitted: boolean,
  kubernetesAuthentication: boolean,
  userDeleted: boolean,
  actAsServiceUsers: string[],
  actAsExternalSubjects: string[],
  disabled: boolean,
  revokedAt: number | null,
  expiresAt: number | null,
  issuedAt: number,
  rotatedAt: number | null,
  notAfter: number | null,
  displayPrefix: string,
  keyRateLimits: LimitDefinition[] | null,
  quota: LimitDefinition | null,
  userRateLimits: LimitDefinition[] | null,
];

function epochMs(column: string): string {
  return `floor(extract(epoch FROM ${column}) * 1000)::float8`;
}

const COLUMNS = COLUMN_LIST.join(', ');

const JOINS = `
      JOIN api_keys k ON k.id = s.api_key_id
      JOIN service_users u ON u.id = k.service_user_id
      LEFT JOIN rate_limit_definitions kl ON kl.uid = k.uid
      LEFT JOIN rate_limit_definitions ul ON ul.uid = u.uid`;

// Named, so each pooled connection parses and plans it once.
const LOOKUP = {
  name: 'keyward_lookup_by_hash',
  text: `SELECT ${COLUMNS} FROM api_key_secrets s ${JOINS} WHERE s.hash = $1`,
  rowMode: 'array',
  types: FAST_TEXT_ARRAYS,
} as const;

// Each row names the position of the hash it matched (1-based), so rows are matched to their
// callers by hash whatever order the plan returns them in, and a duplicate gets its own row.
// The position comes last, after the columns fromRow() reads.
const LOOKUP_MANY = {
  name: 'keyward_lookup_by_hashes',
  text: `SELECT ${COLUMNS}, q.ord::int
      FROM unnest($1::bytea[]) WITH ORDINALITY AS q(hash, ord)
      JOIN api_key_secrets s ON s.hash = q.hash ${JOINS}`,
  rowMode: 'array',
  types: FAST_TEXT_ARRAYS,
} as const;

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
  let rows: [...LookupRow, number][];
  try {
    ({ rows } = await db.query<[...LookupRow, number]>({ ...LOOKUP_MANY, values: [values] }));
  } catch (err) {
    throw StoreError.from('lookup by hashes', err);
  }
  for (const row of rows) {
    const at = sent[row[COLUMN_LIST.length]! - 1];
    if (at !== undefined) found[at] = fromRow(row);
  }
  return found;
}

function asBuffer(hash: Uint8Array): Buffer {
  // The webhook passes Buffers already: no second object per hash.
  return Buffer.isBuffer(hash) ? hash : Buffer.from(hash.buffer, hash.byteOffset, HASH_BYTES);
}

/** Most keys have no rate limits: they share this instead of three new objects per row. */
const NO_LIMITS: KeyLimits = Object.freeze({ key: Object.freeze([]), user: Object.freeze([]), quota: null });
const CURRENT: KeyLookup['secret'] = Object.freeze({ current: true });

/** By position (COLUMN_LIST): array destructuring would step the row's iterator, an object per column. */
function fromRow(row: LookupRow | [...LookupRow, number]): KeyLookup {
  const notAfter = row[20];
  const keyRateLimits = row[22];
  const quota = row[23];
  const userRateLimits = row[24];
  return {
    apiKeyId: row[0],
    keyId: row[1],
    namespace: row[2],
    name: row[3],
    userId: row[4],
    username: row[5],
    groups: row[6],
    userScopes: row[7],
    keyScopes: row[8],
    suspended: row[9],
    notPermitted: row[10],
    kubernetesAuthentication: row[11],
    userDeleted: row[12],
    actAs: { serviceUsers: row[13], externalSubjects: row[14] },
    disabled: row[15],
    revokedAt: dateOrNull(row[16]),
    expiresAt: dateOrNull(row[17]),
    issuedAt: new Date(row[18]),
    rotatedAt: dateOrNull(row[19]),
    secret: notAfter === null ? CURRENT : { current: false, notAfter: new Date(notAfter) },
    tokenPrefix: row[21],
    limits:
      keyRateLimits === null && userRateLimits === null && quota === null
        ? NO_LIMITS
        : { key: keyRateLimits ?? [], user: userRateLimits ?? [], quota },
  };
}

function dateOrNull(ms: number | null): Date | null {
  return ms === null ? null : new Date(ms);
}
