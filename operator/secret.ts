import type { V1Secret } from '@kubernetes/client-node';
import { type ApiKey, DEFAULT_TOKEN_KEY, secretNameOf } from '../api/apikey.js';
import { API_VERSION } from '../api/common.js';
import { tokenHash } from '../credentials/token.js';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY_VALUE = 'keyward';
export const API_KEY_LABEL = 'keyward.dev/api-key';
/** The keyward.dev/rotate value that produced the token: written with the token, in one request. */
export const ROTATION_REQUEST_ANNOTATION = 'keyward.dev/rotation-request';
/** Selects every Secret the operator writes; its Secret informer watches only these. */
export const MANAGED_SECRET_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`;

/**
 * The Secret as the operator server-side applies it. Everything the operator owns is in here, so
 * fields it no longer sets (a renamed tokenKey, a removed label) are dropped by the apply.
 */
export function desiredSecret(key: ApiKey, token: string, rotationRequest: string | null): V1Secret {
  const tokenKey = key.spec.secret?.tokenKey ?? DEFAULT_TOKEN_KEY;
  const annotations: Record<string, string> = { ...key.spec.secret?.annotations };
  if (rotationRequest !== null) annotations[ROTATION_REQUEST_ANNOTATION] = rotationRequest;
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
    data: { [tokenKey]: Buffer.from(token, 'utf8').toString('base64') },
  };
}

export interface SecretContents {
  /** The token at the key's tokenKey, or null. Stays in memory; only its hash is compared. */
  token: string | null;
  hash: Buffer | null;
  ownedByKey: boolean;
  rotationRequest: string | null;
}

export function inspectSecret(key: ApiKey, secret: V1Secret | undefined): SecretContents {
  if (!secret) return { token: null, hash: null, ownedByKey: false, rotationRequest: null };
  const ownedByKey = (secret.metadata?.ownerReferences ?? []).some(
    (ref) => ref.controller && ref.uid === key.metadata.uid,
  );
  const rotationRequest = secret.metadata?.annotations?.[ROTATION_REQUEST_ANNOTATION] ?? null;
  const encoded = secret.data?.[key.spec.secret?.tokenKey ?? DEFAULT_TOKEN_KEY];
  if (!encoded) return { token: null, hash: null, ownedByKey, rotationRequest };
  const token = Buffer.from(encoded, 'base64').toString('utf8');
  return { token, hash: tokenHash(token), ownedByKey, rotationRequest };
}

/** Whether applying `desired` would change labels, annotations or data keys of `actual`. */
export function secretMetadataDiffers(desired: V1Secret, actual: V1Secret | undefined): boolean {
  if (!actual) return true;
  const subset = (
    want: Record<string, string> | undefined,
    have: Record<string, string> | undefined,
  ): boolean => Object.entries(want ?? {}).every(([k, v]) => have?.[k] === v);
  const dataKeys = (s: V1Secret | undefined): string =>
    Object.keys(s?.data ?? {})
      .sort()
      .join(',');
  return (
    !subset(desired.metadata?.labels, actual.metadata?.labels) ||
    !subset(desired.metadata?.annotations, actual.metadata?.annotations) ||
    dataKeys(desired) !== dataKeys(actual)
  );
}
