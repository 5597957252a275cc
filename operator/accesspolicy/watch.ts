import type { KubeConfig, KubernetesObject, V1Namespace } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { AccessPolicy } from '../../api/accesspolicy.js';
import { GROUP, VERSION } from '../../api/common.js';
import { parseAccessPolicy } from '../../api/validate.js';
import { Informer, type InformerOptions } from '../kube/informer.js';
import { kubeListWatch } from '../kube/listwatch.js';
import { type Grants, grantsFor, type NamespaceInfo, policySelects } from './grants.js';

/** Thrown when a namespace's labels are not known yet: deciding without them could deny wrongly. */
class NamespaceNotCachedError extends Error {
  constructor(namespace: string) {
    super(`namespace ${namespace} is not in the informer cache yet`);
  }
}

/**
 * The AccessPolicies (cluster-scoped) and the labels of the namespaces they may select, kept by
 * informers; answers "what is namespace X granted now" and reports which namespaces a change
 * affects, so their ServiceUsers and ApiKeys are re-evaluated at once.
 */
export class AccessPolicyWatch {
  readonly #policies: Informer<KubernetesObject>;
  readonly #namespaces: Informer<V1Namespace>;
  readonly #logger: Logger;
  readonly #parsed = new Map<string, { resourceVersion: string; policy: AccessPolicy | undefined }>();

  constructor(
    kc: KubeConfig,
    options: {
      /** Only this namespace's labels are needed when the operator watches one namespace. */
      watchNamespace: string | undefined;
      logger: Logger;
      informerOptions: (name: string) => InformerOptions;
      /** Called with the namespaces whose grants may have changed. */
      onChange: (namespaces: ReadonlySet<string>) => void;
    },
  ) {
    this.#logger = options.logger;
    this.#policies = new Informer<KubernetesObject>(
      kubeListWatch(kc, { group: GROUP, version: VERSION, plural: 'accesspolicies' }),
      options.informerOptions('accesspolicies'),
    );
    this.#namespaces = new Informer<V1Namespace>(
      kubeListWatch(kc, {
        group: '',
        version: 'v1',
        plural: 'namespaces',
        ...(options.watchNamespace !== undefined && {
          fieldSelector: `metadata.name=${options.watchNamespace}`,
        }),
      }),
      options.informerOptions('namespaces'),
    );
    // `current`: the object now in the cache (parsed once and kept); otherwise a replaced version.
    const selected = (policy: KubernetesObject, current: boolean): Set<string> => {
      const parsed = current ? this.#parse(policy) : parseOrUndefined(policy);
      const out = new Set<string>();
      if (!parsed) return out;
      for (const ns of this.#namespaces.list()) {
        const info = namespaceInfo(ns);
        if (policySelects(parsed, info)) out.add(info.name);
      }
      return out;
    };
    const onPolicy = (old: KubernetesObject | undefined, obj: KubernetesObject): void => {
      // Periodic resyncs replay every object unchanged; the ServiceUsers' own resync covers those.
      if (old && old.metadata?.resourceVersion === obj.metadata?.resourceVersion) return;
      const affected = selected(obj, true);
      if (old) for (const ns of selected(old, false)) affected.add(ns);
      if (affected.size > 0) options.onChange(affected);
    };
    this.#policies.addEventHandler({
      onAdd: (obj) => onPolicy(undefined, obj),
      onUpdate: onPolicy,
      onDelete: (obj) => {
        const affected = selected(obj, false);
        this.#parsed.delete(obj.metadata?.uid ?? '');
        if (affected.size > 0) options.onChange(affected);
      },
    });
    const onNamespace = (old: V1Namespace | undefined, obj: V1Namespace): void => {
      if (old && sameLabels(old, obj)) return;
      options.onChange(new Set([obj.metadata?.name ?? '']));
    };
    this.#namespaces.addEventHandler({ onAdd: (obj) => onNamespace(undefined, obj), onUpdate: onNamespace });
  }

  start(): void {
    this.#policies.start();
    this.#namespaces.start();
  }

  async waitForSync(): Promise<void> {
    await Promise.all([this.#policies.waitForSync(), this.#namespaces.waitForSync()]);
  }

  hasSynced(): boolean {
    return this.#policies.hasSynced() && this.#namespaces.hasSynced();
  }

  async stop(): Promise<void> {
    await Promise.all([this.#policies.stop(), this.#namespaces.stop()]);
  }

  /** The grants of `namespace` now. Throws NamespaceNotCachedError while its labels are unknown. */
  grants(namespace: string): Grants {
    const ns = this.#namespaces.get(namespace);
    if (!ns) throw new NamespaceNotCachedError(namespace);
    const policies = this.#policies
      .list()
      .map((p) => this.#parse(p))
      .filter((p): p is AccessPolicy => p !== undefined);
    return grantsFor(policies, namespaceInfo(ns));
  }

  /** Parsed once per resourceVersion; a policy that fails the schema grants nothing. */
  #parse(obj: KubernetesObject): AccessPolicy | undefined {
    const uid = obj.metadata?.uid ?? obj.metadata?.name ?? '';
    const resourceVersion = obj.metadata?.resourceVersion ?? '';
    const cached = this.#parsed.get(uid);
    if (cached && cached.resourceVersion === resourceVersion) return cached.policy;
    const parsed = parseAccessPolicy(obj);
    if (!parsed.ok) {
      this.#logger.warn(
        { accessPolicy: obj.metadata?.name, errors: parsed.errors },
        'AccessPolicy does not match the schema; it grants nothing',
      );
    }
    const policy = parsed.ok ? parsed.value : undefined;
    this.#parsed.set(uid, { resourceVersion, policy });
    return policy;
  }
}

function parseOrUndefined(obj: KubernetesObject): AccessPolicy | undefined {
  const parsed = parseAccessPolicy(obj);
  return parsed.ok ? parsed.value : undefined;
}

function namespaceInfo(ns: V1Namespace): NamespaceInfo {
  return { name: ns.metadata?.name ?? '', labels: ns.metadata?.labels ?? {} };
}

function sameLabels(a: V1Namespace, b: V1Namespace): boolean {
  const la = a.metadata?.labels ?? {};
  const lb = b.metadata?.labels ?? {};
  const keys = Object.keys(la);
  return keys.length === Object.keys(lb).length && keys.every((k) => la[k] === lb[k]);
}
