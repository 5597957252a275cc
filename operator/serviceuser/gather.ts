import type { KubernetesObject } from '@kubernetes/client-node';
import { parseServiceUser } from '../../api/validate.js';
import type { OperatorStore } from '../../store/operator-store.js';
import type { Grants } from '../accesspolicy/grants.js';
import { fromStore } from '../status.js';
import type { ServiceUserFacts } from './checks.js';

/**
 * The one read pass of a reconcile: the object, its parse, the grants of its namespace and the
 * store's row. Everything after decides from these facts only; a deletion needs none of the rest.
 */
export async function gatherServiceUser(
  d: { store: OperatorStore; grants: (namespace: string) => Grants },
  object: KubernetesObject,
): Promise<ServiceUserFacts> {
  const parsed = parseServiceUser(object);
  if (object.metadata?.deletionTimestamp) return { object, parsed, grants: undefined, stored: null };
  const uid = object.metadata?.uid ?? '';
  const stored = await fromStore(() => d.store.getServiceUser(uid));
  const grants = parsed.ok ? d.grants(object.metadata?.namespace ?? '') : undefined;
  return { object, parsed, grants, stored };
}
