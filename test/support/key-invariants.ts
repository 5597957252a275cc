import { CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import type pg from 'pg';
import { type ApiKeySpec, gracePeriodMs } from '../../api/apikey.js';
import { tokenHash } from '../../credentials/token.js';
import { eventually } from '../../devenv/poll.js';
import { condition } from './status.js';
import { tokenVerifies } from './store.js';

/**
 * What a user can check about the keys of one namespace after anything (a crash, a restart): the
 * objects, their Secrets, the store's hashes and the real webhook's answers, and the invariants
 * of crash safety (issue 10) over them:
 *  1. every Ready key's Secret token verifies through the webhook;
 *  2. no Secret of a live key (not revoked, user not deleted) holds a token the store rejects;
 *  3. (converged only) no valid hash is held by no Secret for longer than the key's grace period.
 */
interface KeywardObject {
  metadata: { name: string; uid: string; deletionTimestamp?: string };
  spec: ApiKeySpec & { secret?: { name?: string; tokenKey?: string } };
  status?: Record<string, unknown>;
}

export interface NamespaceView {
  keys: KeywardObject[];
  users: KeywardObject[];
  secrets: V1Secret[];
  /** The token the key's Secret holds, by ApiKey name. */
  token: Map<string, string | undefined>;
}

/** Right after a run's control plane starts, the CRDs' storage may still answer 429 for a while. */
const LIST_RETRY_MS = 15_000;

function decode(value: string | undefined): string | undefined {
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}

export function isReady(obj: { status?: Record<string, unknown> }): boolean {
  return condition(obj, 'Ready')?.status === 'True';
}

export async function namespaceView(kc: KubeConfig, namespace: string): Promise<NamespaceView> {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const list = (plural: string): Promise<KeywardObject[]> =>
    eventually(
      `a list of ${plural}`,
      async () =>
        (
          (await custom.listNamespacedCustomObject({
            group: 'keyward.dev',
            version: 'v1alpha1',
            namespace,
            plural,
          })) as { items: KeywardObject[] }
        ).items,
      LIST_RETRY_MS,
    );
  const [keys, users, secrets] = await Promise.all([
    list('apikeys'),
    list('serviceusers'),
    kc.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace }),
  ]);
  const token = new Map<string, string | undefined>();
  for (const key of keys) {
    const name = key.spec.secret?.name ?? key.metadata.name;
    const secret = secrets.items.find((s) => s.metadata?.name === name);
    token.set(key.metadata.name, decode(secret?.data?.[key.spec.secret?.tokenKey ?? 'token']));
  }
  return { keys, users, secrets: secrets.items, token };
}

/** What the webhook's /verify answers for the token, and the identity it reports. */
export async function verifyThroughWebhook(
  webhookUrl: string,
  token: string,
): Promise<{ status: number; user: string | null }> {
  const res = await fetch(`${webhookUrl}/verify`, { headers: { authorization: `Bearer ${token}` } });
  await res.arrayBuffer();
  return { status: res.status, user: res.headers.get('x-keyward-user') };
}

interface StoredSecret {
  uid: string;
  hash: Buffer;
  not_after: Date | null;
  live: boolean;
}

/** Every secret the store holds for keys of the namespace, and whether its key is live. */
async function storedSecrets(pool: pg.Pool, namespace: string): Promise<StoredSecret[]> {
  const { rows } = await pool.query<StoredSecret>(
    `SELECT k.uid, s.hash, s.not_after, (k.revoked_at IS NULL AND u.deleted_at IS NULL) AS live
       FROM api_key_secrets s
       JOIN api_keys k ON k.id = s.api_key_id
       JOIN service_users u ON u.id = k.service_user_id
      WHERE k.namespace = $1`,
    [namespace],
  );
  return rows;
}

export interface InvariantInput {
  kc: KubeConfig;
  pool: pg.Pool;
  webhookUrl: string;
  namespace: string;
  /**
   * 'crash': the operator is down at a crash point; 'converged': it is back and has answered.
   * At a crash, keys whose ServiceUser is being deleted are left out of 1 and 2 (the revocation
   * the user asked for is under way, their status lags until the operator is back).
   */
  phase: 'crash' | 'converged';
  /** ApiKeys whose Secret the scenario itself broke: at a crash that is its premise, left out. */
  premise?: ReadonlySet<string>;
}

/** Each broken invariant (see the module comment) as a sentence; none: []. */
export async function keyInvariantViolations(input: InvariantInput): Promise<string[]> {
  const found: string[] = [];
  const view = await namespaceView(input.kc, input.namespace);
  const stored = await storedSecrets(input.pool, input.namespace);
  const liveUids = new Set(stored.filter((s) => s.live).map((s) => s.uid));
  const userRevoking = view.users.some((u) => u.metadata.deletionTimestamp) || view.users.length === 0;
  for (const key of view.keys) {
    const name = key.metadata.name;
    if (key.metadata.deletionTimestamp) continue;
    if (input.phase === 'crash' && (input.premise?.has(name) || userRevoking)) continue;
    const token = view.token.get(name);
    if (isReady(key)) {
      if (!token) {
        found.push(`${name} is Ready but its Secret holds no token`);
      } else {
        const res = await verifyThroughWebhook(input.webhookUrl, token);
        if (res.status !== 200 || !res.user)
          found.push(`${name} is Ready but the webhook answers ${res.status} for its Secret's token`);
      }
    }
    if (token && liveUids.has(key.metadata.uid) && !(await tokenVerifies(input.pool, token)))
      found.push(`the Secret of live key ${name} holds a token the store rejects`);
  }
  if (input.phase === 'converged') {
    const held = new Set<string>();
    for (const secret of view.secrets) {
      for (const value of Object.values(secret.data ?? {}))
        held.add(tokenHash(decode(value) ?? '').toString('hex'));
    }
    const graceByUid = new Map(view.keys.map((k) => [k.metadata.uid, gracePeriodMs(k.spec)]));
    const now = Date.now();
    for (const s of stored) {
      const valid = s.live && (s.not_after === null || s.not_after.getTime() > now);
      if (!valid || held.has(s.hash.toString('hex'))) continue;
      // A key whose ApiKey is gone has no grace left to give.
      const grace = graceByUid.get(s.uid) ?? 0;
      if (s.not_after === null || s.not_after.getTime() > now + grace) {
        const until = s.not_after === null ? 'as the current secret' : `until ${s.not_after.toISOString()}`;
        found.push(`key ${s.uid}: a hash no Secret holds stays valid ${until}`);
      }
    }
  }
  return found;
}
