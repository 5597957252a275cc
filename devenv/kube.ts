import { randomBytes } from 'node:crypto';
import {
  AuthorizationV1Api,
  CoreV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1PolicyRule,
  type V1SubjectAccessReviewSpec,
} from '@kubernetes/client-node';
import { eventually } from './poll.js';

/** How long the API server's authorization cache may take to see new RBAC grants. */
const RBAC_PROPAGATION_TIMEOUT_MS = 10_000;

/** Label on every namespace the tests create, so a run's leftovers can be found and listed. */
const testNamespaceLabel = 'keyward.dev/test';

/** Creates a namespace `<prefix>-<random>` labelled as a test namespace; returns its name. */
export async function createTestNamespace(kc: KubeConfig, prefix: string): Promise<string> {
  const suffix = randomBytes(4).toString('hex');
  // A DNS label that is also a valid label value: ≤63 chars, alphanumeric at both ends.
  const stem =
    prefix
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .slice(0, 63 - suffix.length - 1)
      .replace(/^-+|-+$/g, '') || 'test';
  const name = `${stem}-${suffix}`;
  await kc.makeApiClient(CoreV1Api).createNamespace({
    body: { metadata: { name, labels: { [testNamespaceLabel]: stem } } },
  });
  return name;
}

export interface RestrictedIdentity {
  /** Namespace of the ServiceAccount and of the Role, if `rules` are given. */
  namespace: string;
  /** Name of the ServiceAccount, Role and RoleBinding. */
  name: string;
  /** Granted cluster-wide through a ClusterRole `<namespace>-<name>` and its binding. */
  clusterRules?: V1PolicyRule[];
  /** Granted in `namespace` through a Role and RoleBinding. */
  rules?: V1PolicyRule[];
  /** Granted in other namespaces, each through a Role and RoleBinding named `name` there. */
  namespaceRules?: ReadonlyArray<{ namespace: string; rules: V1PolicyRule[] }>;
}

/**
 * A KubeConfig that authenticates only as a new ServiceAccount holding exactly the given rules,
 * with a token from the TokenRequest API. Resolves once RBAC enforces the grants, so the first
 * request does not race the API server's authorization cache.
 */
export async function restrictedKubeConfig(
  kc: KubeConfig,
  identity: RestrictedIdentity,
): Promise<KubeConfig> {
  const { namespace, name } = identity;
  const core = kc.makeApiClient(CoreV1Api);
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  const subjects = [{ kind: 'ServiceAccount', name, namespace }];
  const username = `system:serviceaccount:${namespace}:${name}`;

  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
  const probes: V1SubjectAccessReviewSpec[] = [];
  const roles = [
    ...(identity.rules?.length ? [{ namespace, rules: identity.rules }] : []),
    ...(identity.namespaceRules ?? []).filter((r) => r.rules.length > 0),
  ];
  for (const role of roles) {
    await rbac.createNamespacedRole({
      namespace: role.namespace,
      body: { metadata: { name }, rules: role.rules },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: role.namespace,
      body: {
        metadata: { name },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
        subjects,
      },
    });
    probes.push(accessProbe(username, role.rules[0]!, role.namespace));
  }
  if (identity.clusterRules?.length) {
    const clusterName = `${namespace}-${name}`;
    await rbac.createClusterRole({ body: { metadata: { name: clusterName }, rules: identity.clusterRules } });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: clusterName },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: clusterName },
        subjects,
      },
    });
    probes.push(accessProbe(username, identity.clusterRules[0]!, undefined));
  }

  const tokenRequest = await core.createNamespacedServiceAccountToken({
    namespace,
    name,
    body: { spec: { audiences: [], expirationSeconds: 24 * 3600 } },
  });
  const token = tokenRequest.status?.token;
  if (!token) throw new Error(`TokenRequest for ${username} returned no token`);

  const authz = kc.makeApiClient(AuthorizationV1Api);
  for (const spec of probes) {
    await eventually(
      `RBAC to grant ${username} ${JSON.stringify(spec.resourceAttributes ?? spec.nonResourceAttributes)}`,
      async () => {
        const review = await authz.createSubjectAccessReview({ body: { spec } });
        return review.status?.allowed === true;
      },
      RBAC_PROPAGATION_TIMEOUT_MS,
    );
  }

  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the admin KubeConfig has no current cluster');
  const restricted = new KubeConfig();
  restricted.loadFromOptions({
    clusters: [{ ...cluster, name: 'keyward-test' }],
    users: [{ name: username, token }],
    contexts: [{ name: username, cluster: 'keyward-test', user: username, namespace }],
    currentContext: username,
  });
  return restricted;
}

/** A SubjectAccessReview that succeeds once `rule` is in effect for `user`. */
function accessProbe(
  user: string,
  rule: V1PolicyRule,
  namespace: string | undefined,
): V1SubjectAccessReviewSpec {
  const verb = rule.verbs[0] ?? 'get';
  const path = rule.nonResourceURLs?.[0];
  if (path) return { user, nonResourceAttributes: { path: path.replace(/\*$/, ''), verb } };
  const [resource, subresource] = (rule.resources?.[0] ?? '*').split('/');
  return {
    user,
    resourceAttributes: {
      namespace,
      verb,
      group: rule.apiGroups?.[0] ?? '',
      resource,
      subresource,
      name: rule.resourceNames?.[0],
    },
  };
}
