/**
 * Every reason an ApiKey's conditions and Events carry. The Argo CD health check
 * (charts/keyward/health/keyward.dev/ApiKey/health.lua) and the docs key on these names: renaming one
 * is a breaking change. Stalled/Reconciling reasons are shared with ServiceUser (../conditions.ts).
 */
export { NOT_PERMITTED } from '../accesspolicy/grants.js';
export { SECRET_CONFLICT } from '../secret.js';

// Ready=True
export const ISSUED = 'Issued';

// Ready=False, decided before any credential work (checks.ts, in chain order)
export const INVALID_SPEC = 'InvalidSpec';
export const REVOKED = 'Revoked';
/** Revoked because a secret scanner reported its token in public (docs/secret-scanning.md). */
export const LEAKED = 'Leaked';
/** Revoked with its ServiceUser; issued again with a fresh secret when the user exists again. */
export const SERVICE_USER_DELETED = 'ServiceUserDeleted';
export const SERVICE_USER_NOT_FOUND = 'ServiceUserNotFound';
export const SERVICE_USER_NOT_PERMITTED = 'ServiceUserNotPermitted';
export const SERVICE_USER_NOT_READY = 'ServiceUserNotReady';
export const SCOPE_NOT_GRANTED = 'ScopeNotGranted';
export const MAX_KEYS_EXCEEDED = 'MaxKeysExceeded';
/** The API server refused the Secret write for good (400/413/422); its message is the condition's. */
export const SECRET_WRITE_FAILED = 'SecretWriteFailed';

// Ready=False once the credentials are in place (readiness, in chain order)
export const EXPIRED = 'Expired';
export const DISABLED = 'Disabled';
export const SUSPENDED = 'Suspended';

// Events
export const ROTATED = 'Rotated';
export const SECRET_LOST = 'SecretLost';
export const REISSUED = 'Reissued';
export const ENABLED = 'Enabled';
