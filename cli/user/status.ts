import { conditionOf, type KeywardObject, type KubeOptions, kubeTarget, listObjects } from './kube.js';
import { EXIT_OK, emit, type OutputFormat, table } from './output.js';

export interface StatusOptions extends KubeOptions {
  readonly output: OutputFormat;
  readonly selector?: string;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function userRow(u: KeywardObject) {
  const ready = conditionOf(u, 'Ready');
  return {
    namespace: u.metadata?.namespace,
    name: u.metadata?.name,
    username: str(u.status?.username) ?? str(u.spec?.username) ?? u.metadata?.name,
    ready: ready?.status ?? 'Unknown',
    reason: ready?.reason,
    message: ready?.message,
    suspended: u.spec?.suspended === true,
    keys: typeof u.status?.keys === 'number' ? u.status.keys : undefined,
  };
}

function keyRow(k: KeywardObject) {
  const ready = conditionOf(k, 'Ready');
  const graceEnd = str(k.status?.previousValidUntil);
  return {
    namespace: k.metadata?.namespace,
    name: k.metadata?.name,
    user: str((k.spec?.serviceUserRef as { name?: unknown } | undefined)?.name),
    keyId: str(k.status?.keyId),
    tokenPrefix: str(k.status?.tokenPrefix),
    ready: ready?.status ?? 'Unknown',
    reason: ready?.reason,
    message: ready?.message,
    expiresAt: str(k.status?.expiresAt),
    lastUsedAt: str(k.status?.lastUsedAt),
    // A grace end in the past is history, not a state the user needs to watch.
    graceEndsAt: graceEnd !== undefined && Date.parse(graceEnd) > Date.now() ? graceEnd : undefined,
  };
}

/** `keyward status`: ServiceUsers and ApiKeys with readiness, expiry, last use and grace end. */
export async function statusCommand(options: StatusOptions): Promise<number> {
  const target = kubeTarget(options);
  const [users, keys] = await Promise.all([
    listObjects(target, 'serviceusers', options.selector),
    listObjects(target, 'apikeys', options.selector),
  ]);
  const data = { serviceUsers: users.map(userRow), apiKeys: keys.map(keyRow) };
  const all = target.namespace === undefined;
  const ns = all ? [{ header: 'NAMESPACE', value: (r: { namespace?: string }) => r.namespace }] : [];
  emit(options.output, data, () => {
    const userTable =
      data.serviceUsers.length === 0
        ? 'No ServiceUsers found.\n'
        : table(data.serviceUsers, [
            ...ns,
            { header: 'SERVICEUSER', value: (r) => r.name },
            { header: 'USERNAME', value: (r) => r.username },
            { header: 'READY', value: (r) => r.ready },
            { header: 'REASON', value: (r) => r.reason },
            { header: 'SUSPENDED', value: (r) => r.suspended },
            { header: 'KEYS', value: (r) => r.keys },
          ]);
    const keyTable =
      data.apiKeys.length === 0
        ? 'No ApiKeys found.\n'
        : table(data.apiKeys, [
            ...ns,
            { header: 'APIKEY', value: (r) => r.name },
            { header: 'USER', value: (r) => r.user },
            { header: 'KEY-ID', value: (r) => r.keyId },
            { header: 'READY', value: (r) => r.ready },
            { header: 'REASON', value: (r) => r.reason },
            { header: 'EXPIRES', value: (r) => r.expiresAt },
            { header: 'LAST-USED', value: (r) => r.lastUsedAt },
            { header: 'GRACE-ENDS', value: (r) => r.graceEndsAt },
          ]);
    return `${userTable}\n${keyTable}`;
  });
  return EXIT_OK;
}
