/**
 * Named points in the operator's write sequences where a test can kill the process, the way
 * etcd's gofail does: the crash-point tests start the operator with KEYWARD_FAILPOINTS naming one
 * point, wait for the process to die there, start it again and check what a user would observe.
 * Unarmed (every production start), a failpoint is one Set lookup.
 */
export const FAILPOINTS = {
  /** Issue: the Secret holds the new token, the store has no hash for it yet. */
  issueAfterSecret: 'apikey.issue.after-secret',
  /** Issue: the hash is committed, the status does not say Ready yet. */
  issueAfterStore: 'apikey.issue.after-store',
  /** Rotation or repair: the new hash is committed (the old one held for the grace), the Secret still holds the old token. */
  rotateAfterStore: 'apikey.rotate.after-store',
  /** Rotation or repair: the Secret holds the new token, the status still describes the old one. */
  rotateAfterSecret: 'apikey.rotate.after-secret',
  /** Deletion: the key is revoked in the store, its Secret and finalizer are still there. */
  revokeAfterStore: 'apikey.revoke.after-store',
  /** Deletion: the Secret is deleted, the finalizer is still on the ApiKey. */
  revokeAfterSecret: 'apikey.revoke.after-secret',
  /** ServiceUser deletion: the user and its keys are revoked, the finalizer is still on it. */
  userRevokeAfterStore: 'serviceuser.revoke.after-store',
} as const;

export type FailpointName = (typeof FAILPOINTS)[keyof typeof FAILPOINTS];

const KNOWN = new Set<string>(Object.values(FAILPOINTS));
let armed: ReadonlySet<string> = new Set();

/** Arms the named points (from KEYWARD_FAILPOINTS); an unknown name is a typo and refused. */
export function armFailpoints(names: readonly string[]): void {
  const unknown = names.filter((n) => !KNOWN.has(n));
  if (unknown.length > 0)
    throw new Error(
      `invalid operator configuration: KEYWARD_FAILPOINTS: unknown failpoint ${unknown.join(', ')} (known: ${[...KNOWN].join(', ')})`,
    );
  armed = new Set(names);
}

/** Kills the process here, with no chance to clean up, if this point is armed. */
export function failpoint(name: FailpointName): void {
  if (!armed.has(name)) return;
  process.stderr.write(`failpoint ${name}: killing the operator\n`);
  process.kill(process.pid, 'SIGKILL');
}
