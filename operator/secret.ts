import { createHash } from 'node:crypto';
import type { KubernetesObject, V1ManagedFieldsEntry, V1Secret } from '@kubernetes/client-node';
import { type ApiKey, DEFAULT_TOKEN_KEY, secretNameOf } from '../api/apikey.js';
import { API_VERSION } from '../api/common.js';
import { tokenHash } from '../credentials/token.js';

const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
const MANAGED_BY_VALUE = 'keyward';
export const API_KEY_LABEL = 'keyward.dev/api-key';
/** The keyward.dev/rotate value that produced the token: written with the token, in one request. */
const ROTATION_REQUEST_ANNOTATION = 'keyward.dev/rotation-request';
/**
 * Changes exactly when the token changes, written with the token in one request: what restarts
 * (and tools that roll pods on a checksum, as Helm's `checksum/secret` pattern does) key on. A hash
 * of the ApiKey's uid and the instant the token was created, not of the token: it tells a reader
 * nothing about the token, not even whether a candidate token is the one in the Secret.
 */
export const TOKEN_VERSION_ANNOTATION = 'keyward.dev/token-version';
/** Hex characters of the version: 64 bits, collision-free for the tokens one key ever has. */
const TOKEN_VERSION_LENGTH = 16;
/** Selects every Secret the operator writes; its Secret informer watches only these. */
export const MANAGED_SECRET_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`;
/** Ready reason of an ApiKey whose Secret exists and is not controlled by it. */
export const SECRET_CONFLICT = 'SecretConflict';
/** The one field manager of every Secret before managers per ApiKey; migrated on the next write. */
const LEGACY_FIELD_MANAGER = 'keyward';

/**
 * The field manager of one ApiKey's Secret writes. Per key, so that two ApiKeys naming one Secret
 * are two owners to the API server, and removing a label from one key's spec removes exactly the
 * fields that key applied. `keyward/` plus a 36-character uid stays far below the 128-character limit.
 */
export function secretFieldManager(apiKeyUid: string): string {
  return `${LEGACY_FIELD_MANAGER}/${apiKeyUid}`;
}

export function tokenVersion(apiKeyUid: string, tokenCreatedAt: Date): string {
  return createHash('sha256')
    .update(`${apiKeyUid}\n${tokenCreatedAt.toISOString()}`)
    .digest('hex')
    .slice(0, TOKEN_VERSION_LENGTH);
}

export interface SecretData {
  token: string;
  /** The keyward.dev/rotate value that produced the token. */
  rotationRequest: string | null;
  tokenVersion: string;
  /** The token the last rotation replaced, written under spec.secret.previousTokenKey during grace. */
  previousToken?: string | null;
}

/**
 * The Secret as the operator server-side applies it. Everything the operator owns is in here, so
 * fields it no longer sets (a renamed tokenKey, a removed label, a previous token after grace) are
 * dropped by the apply.
 */
export function desiredSecret(key: ApiKey, content: SecretData): V1Secret {
  const tokenKey = key.spec.secret?.tokenKey ?? DEFAULT_TOKEN_KEY;
  const previousKey = key.spec.secret?.previousTokenKey;
  const annotations: Record<string, string> = {
    ...key.spec.secret?.annotations,
    [TOKEN_VERSION_ANNOTATION]: content.tokenVersion,
  };
  if (content.rotationRequest !== null) annotations[ROTATION_REQUEST_ANNOTATION] = content.rotationRequest;
  const data: Record<string, string> = { [tokenKey]: base64(content.token) };
  if (previousKey && content.previousToken) data[previousKey] = base64(content.previousToken);
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: {
      name: secretNameOf(key),
      namespace: key.metadata.namespace,
      labels: {
        ...key.spec.secret?.labels,
        [MANAGED_BY_LABEL]: MANAGED_BY_VALUE,
        [API_KEY_LABEL]: key.metadata.name,
      },
      annotations,
      ownerReferences: [
        {
          apiVersion: API_VERSION,
          kind: 'ApiKey',
          name: key.metadata.name,
          uid: key.metadata.uid ?? '',
          controller: true,
        },
      ],
    },
    data,
  };
}

function base64(value: string): string {
  return Buffer.from(value, 'utf8').toString('base64');
}

export interface SecretContents {
  /** The token at the key's tokenKey, or null. Stays in memory; only its hash is compared. */
  token: string | null;
  hash: Buffer | null;
  ownedByKey: boolean;
  rotationRequest: string | null;
  /** keyward.dev/token-version, or null on a Secret written before it existed. */
  tokenVersion: string | null;
  /** The token at spec.secret.previousTokenKey, if that is set and present. */
  previousToken: string | null;
}

export function inspectSecret(key: ApiKey, secret: V1Secret | undefined): SecretContents {
  const empty = { token: null, hash: null, previousToken: null };
  if (!secret) return { ...empty, ownedByKey: false, rotationRequest: null, tokenVersion: null };
  const ownedByKey = (secret.metadata?.ownerReferences ?? []).some(
    (ref) => ref.controller && ref.uid === key.metadata.uid,
  );
  const annotations = secret.metadata?.annotations;
  const meta = {
    ownedByKey,
    rotationRequest: annotations?.[ROTATION_REQUEST_ANNOTATION] ?? null,
    tokenVersion: annotations?.[TOKEN_VERSION_ANNOTATION] ?? null,
  };
  const decode = (dataKey: string | undefined): string | null => {
    const encoded = dataKey === undefined ? undefined : secret.data?.[dataKey];
    return encoded ? Buffer.from(encoded, 'base64').toString('utf8') : null;
  };
  const token = decode(key.spec.secret?.tokenKey ?? DEFAULT_TOKEN_KEY);
  if (token === null) return { ...empty, ...meta };
  return { token, hash: tokenHash(token), previousToken: decode(key.spec.secret?.previousTokenKey), ...meta };
}

/**
 * Whether applying `desired` would change labels, annotations or data keys of `actual`: a value
 * missing or different, or a label or annotation keyward applied earlier (per `manager`'s managed
 * fields) that the spec no longer asks for, which the apply then removes.
 */
export function secretMetadataDiffers(
  desired: V1Secret,
  actual: V1Secret | undefined,
  manager: string,
): boolean {
  if (!actual) return true;
  const subset = (
    want: Record<string, string> | undefined,
    have: Record<string, string> | undefined,
  ): boolean => Object.entries(want ?? {}).every(([k, v]) => have?.[k] === v);
  const dropped = (
    section: 'f:labels' | 'f:annotations',
    want: Record<string, string> | undefined,
  ): boolean => appliedMetadataKeys(actual, manager, section).some((k) => !(k in (want ?? {})));
  const dataKeys = (s: V1Secret | undefined): string =>
    Object.keys(s?.data ?? {})
      .sort()
      .join(',');
  return (
    !subset(desired.metadata?.labels, actual.metadata?.labels) ||
    !subset(desired.metadata?.annotations, actual.metadata?.annotations) ||
    dropped('f:labels', desired.metadata?.labels) ||
    dropped('f:annotations', desired.metadata?.annotations) ||
    dataKeys(desired) !== dataKeys(actual)
  );
}

/** The label or annotation keys `manager` (or what migrates to it) owns on the Secret. */
function appliedMetadataKeys(
  secret: V1Secret,
  manager: string,
  section: 'f:labels' | 'f:annotations',
): string[] {
  return (secret.metadata?.managedFields ?? [])
    .filter((e) => ownedByManager(e, manager) || migratesToManager(e, manager))
    .flatMap((e) => {
      const fields = (e.fieldsV1 as { 'f:metadata'?: Record<string, Record<string, unknown>> } | undefined)?.[
        'f:metadata'
      ]?.[section];
      return Object.keys(fields ?? {})
        .filter((k) => k.startsWith('f:'))
        .map((k) => k.slice(2));
    });
}

function ownedByManager(e: V1ManagedFieldsEntry, manager: string): boolean {
  return !e.subresource && e.manager === manager && e.operation === 'Apply';
}

/** Entries managedFieldsMigration folds into `manager`'s Apply entry. */
function migratesToManager(e: V1ManagedFieldsEntry, manager: string): boolean {
  return (
    !e.subresource &&
    ((e.manager === LEGACY_FIELD_MANAGER && e.operation === 'Apply') ||
      (e.manager === manager && e.operation === 'Update'))
  );
}

/**
 * Whether the ApiKey may write the Secret. Control is the controller ownerReference carrying this
 * ApiKey's uid, nothing else: labels are free for anyone who can edit the Secret to copy, and a
 * Secret whose ownerReference was edited away has been taken out of keyward's hands on purpose
 * (it is no longer garbage-collected with the key either), so keyward leaves it alone too.
 */
export type SecretOwnership = { kind: 'absent' } | { kind: 'own' } | { kind: 'foreign'; message: string };

export function secretOwnership(key: ApiKey, secret: V1Secret | undefined): SecretOwnership {
  if (!secret) return { kind: 'absent' };
  const controller = secret.metadata?.ownerReferences?.find((ref) => ref.controller);
  if (controller?.uid === key.metadata.uid) return { kind: 'own' };
  const name = secretNameOf(key);
  const holder = controller
    ? `is controlled by ${controller.kind} ${controller.name}`
    : 'exists and is not controlled by this ApiKey';
  return {
    kind: 'foreign',
    message:
      `Secret ${name} ${holder}; keyward leaves it unchanged and writes no token into it. ` +
      'Choose another spec.secret.name, or delete that Secret to let keyward create it.',
  };
}

/**
 * JSON patch operations that hand the Secret's fields to `manager` as an Apply owner, or undefined
 * when nothing needs it. Two kinds of entry are folded in: the shared `keyward` manager of earlier
 * releases, and `manager`'s own Update entry left by the create (a create is an Update, and fields
 * an Update owns would survive the next apply that drops them). The test on resourceVersion makes the
 * patch fail rather than rewrite ownership of a Secret that changed since it was read.
 */
export function managedFieldsMigration(secret: V1Secret, manager: string, now: Date): object[] | undefined {
  const entries = secret.metadata?.managedFields ?? [];
  const folded = (e: V1ManagedFieldsEntry): boolean => migratesToManager(e, manager);
  if (!entries.some(folded)) return undefined;
  const own = (e: V1ManagedFieldsEntry): boolean => ownedByManager(e, manager);
  const fields = entries
    .filter((e) => folded(e) || own(e))
    .reduce<object>((acc, e) => unionFields(acc, (e.fieldsV1 ?? {}) as object), {});
  const kept = entries.filter((e) => !folded(e) && !own(e));
  const merged: V1ManagedFieldsEntry = {
    manager,
    operation: 'Apply',
    apiVersion: 'v1',
    time: now,
    fieldsType: 'FieldsV1',
    fieldsV1: fields,
  };
  return [
    { op: 'test', path: '/metadata/resourceVersion', value: secret.metadata?.resourceVersion },
    { op: 'replace', path: '/metadata/managedFields', value: [...kept, merged] },
  ];
}

/** The union of two FieldsV1 sets: nested objects whose keys name fields and `{}` marks a leaf. */
export function unionFields(a: object, b: object): object {
  const out: Record<string, object> = { ...(a as Record<string, object>) };
  for (const [key, value] of Object.entries(b as Record<string, object>)) {
    out[key] = key in out ? unionFields(out[key] as object, value) : value;
  }
  return out;
}

/** Keys ("namespace/name") of the ApiKeys whose spec names this Secret. */
export function keysNamingSecret(apiKeys: readonly KubernetesObject[], secret: V1Secret): string[] {
  const namespace = secret.metadata?.namespace;
  const name = secret.metadata?.name;
  return apiKeys
    .filter((k) => {
      const spec = (k as { spec?: { secret?: { name?: string } } }).spec;
      return k.metadata?.namespace === namespace && (spec?.secret?.name ?? k.metadata?.name) === name;
    })
    .map((k) => `${namespace}/${k.metadata?.name}`);
}
