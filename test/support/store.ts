import pg from 'pg';
import { tokenHash } from '../../credentials/token.js';
import { type KeyLookup, lookupByHash } from '../../store/lookup.js';

/**
 * Whether the store would let this token through right now, applying the validity rules of
 * DESIGN.md §5 to the store's own lookup (secret current or in grace, key live, user active, both
 * within their AccessPolicies).
 */
export async function tokenVerifies(
  pool: pg.Pool,
  token: string,
  now = new Date(),
): Promise<KeyLookup | undefined> {
  const found = await lookupByHash(pool, tokenHash(token));
  if (!found) return undefined;
  const secretValid = found.secret.current || found.secret.notAfter > now;
  const live =
    !found.revokedAt && !found.disabled && !found.suspended && !found.userDeleted && !found.notPermitted;
  const unexpired = !found.expiresAt || found.expiresAt > now;
  return secretValid && live && unexpired ? found : undefined;
}

export function poolFor(url: string): pg.Pool {
  return new pg.Pool({ connectionString: url, max: 4 });
}
