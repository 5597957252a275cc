import { NOT_PERMITTED } from '../accesspolicy/grants.js';
import { INVALID_SPEC } from '../conditions.js';

/**
 * Every reason a ServiceUser's conditions and Events carry (Stalled/Reconciling reasons common to
 * both kinds are in ../conditions.ts). Tools and runbooks key on these strings: never rename one.
 */
export const REASONS = {
  /** Ready=False, Stalled=True: the spec does not parse (a CRD older than the operator, say). */
  invalidSpec: INVALID_SPEC,
  /** Ready=False, Stalled=True: the spec asks for more than the namespace's AccessPolicies grant. */
  notPermitted: NOT_PERMITTED,
  /** Ready=False: another ServiceUser holds the username; settles when that one lets go of it. */
  usernameConflict: 'UsernameConflict',
  /** Ready=True: the user is in the credential store as its spec says. */
  stored: 'Stored',
  /** Suspended=True / Suspended=False. */
  suspended: 'Suspended',
  active: 'Active',
} as const;

/** Event reasons (Normal); the Warning Events reuse the condition reasons above. */
export const EVENT_REASONS = {
  created: 'Created',
  renamed: 'Renamed',
  suspended: 'Suspended',
  reactivated: 'Reactivated',
  deleted: 'Deleted',
} as const;
