import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { chartDir, helmTemplate, type Manifest, type Rendered, requiredValues } from './render.js';
import { chartTools } from './tools.js';

/** What a user installing the chart would find in the rendered objects, mode by mode. */
const { helm } = chartTools();
const ns = 'keyward';
const render = (...args: string[]): Rendered => helmTemplate(helm, ns, [...requiredValues, ...args]);
const rules = (file: string) => parse(readFileSync(join(chartDir, 'files', file), 'utf8')) as unknown[];
const chartVersion = (parse(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as { appVersion: string })
  .appVersion;

type Pod = { spec: Manifest; owner: Manifest };
function podTemplates(r: Rendered): Pod[] {
  return r.manifests
    .filter((m) => ['Deployment', 'Job'].includes(m.kind))
    .map((m) => ({ spec: m.spec.template.spec, owner: m }));
}
function container(r: Rendered, kind: string, name: string): Manifest {
  return r.get(kind, name).spec.template.spec.containers[0];
}
function env(c: Manifest): Record<string, string | undefined> {
  return Object.fromEntries((c.env as Array<{ name: string; value?: string }>).map((e) => [e.name, e.value]));
}

describe('restricted Pod Security on every pod', () => {
  const modes = {
    default: render(),
    'TLS and credentials': render(
      ...['--set', 'webhook.tls.enabled=true', '--set', 'webhook.tls.existingSecret=tls'],
      ...[
        '--set',
        'webhook.tokenReview.credentialsSecret=tr',
        '--set',
        'webhook.introspect.credentialsSecret=in',
      ],
    ),
  };
  it.each(Object.entries(modes))('%s', (_mode, r) => {
    const pods = podTemplates(r);
    expect(pods.map((p) => p.owner.metadata.name).sort()).toEqual([
      'keyward-migrate',
      'keyward-operator',
      'keyward-webhook',
    ]);
    for (const { spec, owner } of pods) {
      const where = `${owner.kind}/${owner.metadata.name}`;
      expect(spec.securityContext, where).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(spec.enableServiceLinks, where).toBe(false);
      expect(spec.hostNetwork ?? false, where).toBe(false);
      for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
        expect(c.securityContext, `${where} ${c.name}`).toEqual({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          runAsNonRoot: true,
          capabilities: { drop: ['ALL'] },
        });
        expect(c.resources.requests, `${where} ${c.name}`).toBeDefined();
        expect(c.resources.limits.memory, `${where} ${c.name}`).toBeDefined();
      }
      // Only the operator talks to the API server, so only it has a token.
      expect(spec.automountServiceAccountToken, where).toBe(owner.metadata.name === 'keyward-operator');
      // Every mounted Secret is readable by the pod's group only.
      for (const v of spec.volumes ?? [])
        if (v.secret) expect(v.secret.defaultMode, `${where} ${v.name}`).toBe(0o440);
      expect(spec.securityContext.fsGroup, where).toBe(spec.securityContext.runAsGroup);
    }
  });

  it('ServiceAccounts do not mount tokens by default', () => {
    for (const sa of render().all('ServiceAccount')) expect(sa.automountServiceAccountToken).toBe(false);
  });
});

describe('deployments', () => {
  const r = render();
  it('webhook: 2 replicas, a PodDisruptionBudget over them, spread across nodes, no downtime on rollout', () => {
    const webhook = r.get('Deployment', 'keyward-webhook');
    expect(webhook.spec.replicas).toBe(2);
    expect(webhook.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
    const pdb = r.get('PodDisruptionBudget', 'keyward-webhook');
    expect(pdb.spec.minAvailable).toBe(1);
    expect(pdb.spec.selector.matchLabels).toEqual(webhook.spec.selector.matchLabels);
    expect(webhook.spec.template.spec.topologySpreadConstraints).toEqual([
      {
        maxSkew: 1,
        topologyKey: 'kubernetes.io/hostname',
        whenUnsatisfiable: 'ScheduleAnyway',
        labelSelector: { matchLabels: webhook.spec.selector.matchLabels },
      },
    ]);
  });

  it('maxUnavailable replaces minAvailable; disabled removes the PDB', () => {
    const pdb = render(
      '--set',
      'webhook.podDisruptionBudget.maxUnavailable=1',
      '--set',
      'webhook.podDisruptionBudget.minAvailable=null',
    ).get('PodDisruptionBudget', 'keyward-webhook');
    expect(pdb.spec).toMatchObject({ maxUnavailable: 1 });
    expect(pdb.spec.minAvailable).toBeUndefined();
    expect(render('--set', 'webhook.podDisruptionBudget.enabled=false').all('PodDisruptionBudget')).toEqual(
      [],
    );
  });

  it('probes hit /healthz and /readyz on the ports the processes listen on', () => {
    const webhook = container(r, 'Deployment', 'keyward-webhook');
    const port = (name: string) => webhook.ports.find((p: { name: string }) => p.name === name).containerPort;
    expect(webhook.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http', scheme: 'HTTP' });
    expect(webhook.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http', scheme: 'HTTP' });
    expect(env(webhook).KEYWARD_WEBHOOK_LISTEN).toBe(`0.0.0.0:${port('http')}`);
    expect(env(webhook).KEYWARD_METRICS_LISTEN).toBe(`0.0.0.0:${port('metrics')}`);
    const operator = container(r, 'Deployment', 'keyward-operator');
    expect(operator.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(operator.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(env(operator).KEYWARD_METRICS_LISTEN).toBe(`0.0.0.0:${operator.ports[0].containerPort}`);
  });

  it('the operator elects a leader through a Lease named after the release, in its own namespace', () => {
    const operator = container(r, 'Deployment', 'keyward-operator');
    expect(env(operator).KEYWARD_LEASE_NAME).toBe('keyward-operator');
    expect(operator.env).toContainEqual({
      name: 'KEYWARD_NAMESPACE',
      valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } },
    });
    expect(operator.env).toContainEqual({
      name: 'KEYWARD_IDENTITY',
      valueFrom: { fieldRef: { fieldPath: 'metadata.name' } },
    });
  });

  it('one image for all three commands: tag defaults to appVersion, a digest pins it', () => {
    const images = (x: Rendered) =>
      podTemplates(x).map((p) => [p.spec.containers[0].image, p.spec.containers[0].args]);
    expect(images(r).sort()).toEqual([
      [`ghcr.io/keyward/keyward:${chartVersion}`, ['migrate']],
      [`ghcr.io/keyward/keyward:${chartVersion}`, ['operator']],
      [`ghcr.io/keyward/keyward:${chartVersion}`, ['webhook']],
    ]);
    const digest = `sha256:${'a'.repeat(64)}`;
    const pinned = render(
      '--set',
      'image.repository=registry.example/kw',
      '--set',
      'image.tag=9.9.9',
      '--set',
      `image.digest=${digest}`,
      '--set',
      'image.pullPolicy=Never',
    );
    for (const p of podTemplates(pinned)) {
      expect(p.spec.containers[0].image).toBe(`registry.example/kw@${digest}`);
      expect(p.spec.containers[0].imagePullPolicy).toBe('Never');
    }
  });

  it('scheduling values reach every pod', () => {
    const x = render(
      ...[
        '--set',
        'operator.priorityClassName=system-cluster-critical',
        '--set',
        'webhook.priorityClassName=system-cluster-critical',
      ],
      ...[
        '--set',
        'webhook.nodeSelector.pool=infra',
        '--set-json',
        'webhook.tolerations=[{"key":"infra","operator":"Exists"}]',
      ],
      ...['--set-json', 'imagePullSecrets=[{"name":"regcred"}]'],
    );
    const webhook = x.get('Deployment', 'keyward-webhook').spec.template.spec;
    expect(webhook).toMatchObject({
      priorityClassName: 'system-cluster-critical',
      nodeSelector: { pool: 'infra' },
      tolerations: [{ key: 'infra', operator: 'Exists' }],
    });
    expect(x.get('Deployment', 'keyward-operator').spec.template.spec.priorityClassName).toBe(
      'system-cluster-critical',
    );
    for (const p of podTemplates(x)) expect(p.spec.imagePullSecrets).toEqual([{ name: 'regcred' }]);
  });
});

describe('the store: two roles, URLs only in mounted files', () => {
  it('each component mounts its own role’s Secret; migrate uses the operator’s by default', () => {
    const r = render();
    const secretOf = (kind: string, name: string) =>
      r.get(kind, name).spec.template.spec.volumes.find((v: { name: string }) => v.name === 'store-url')
        .secret;
    expect(secretOf('Deployment', 'keyward-operator')).toMatchObject({
      secretName: 'keyward-postgres-operator',
      items: [{ key: 'url', path: 'url' }],
    });
    expect(secretOf('Deployment', 'keyward-webhook')).toMatchObject({
      secretName: 'keyward-postgres-webhook',
    });
    expect(secretOf('Job', 'keyward-migrate')).toMatchObject({ secretName: 'keyward-postgres-operator' });
    for (const p of podTemplates(r))
      expect(env(p.spec.containers[0]).KEYWARD_STORE_URL_FILE).toBe('/etc/keyward/store/url');
    expect(r.all('Secret')).toEqual([]);
  });

  it('inline URLs become Secrets, and the migrate hook gets its own short-lived copy', () => {
    const url = 'postgres://keyward_operator:s3cret@db:5432/keyward';
    const r = helmTemplate(helm, ns, [
      '--set',
      `postgres.operator.url=${url}`,
      '--set',
      'postgres.webhook.url=postgres://w:x@db/keyward',
    ]);
    expect(r.get('Secret', 'keyward-postgres-operator').stringData).toEqual({ url });
    const hookSecret = r.get('Secret', 'keyward-migrate');
    expect(hookSecret.stringData).toEqual({ url });
    const job = r.get('Job', 'keyward-migrate');
    expect(Number(hookSecret.metadata.annotations['helm.sh/hook-weight'])).toBeLessThan(
      Number(job.metadata.annotations['helm.sh/hook-weight']),
    );
    expect(hookSecret.metadata.annotations['helm.sh/hook-delete-policy']).toContain('hook-succeeded');
    // Never in an environment variable, where `kubectl describe` and crash dumps would show it.
    expect(r.yaml.match(/postgres:\/\//g)).toHaveLength(3);
    for (const p of podTemplates(r))
      for (const e of p.spec.containers[0].env) expect(String(e.value ?? '')).not.toContain('postgres://');
  });

  it('migrate runs as a pre-install/pre-upgrade hook with its own role when given', () => {
    const r = render('--set', 'postgres.migrate.existingSecret=keyward-owner');
    const job = r.get('Job', 'keyward-migrate');
    expect(job.metadata.annotations['helm.sh/hook']).toBe('pre-install,pre-upgrade');
    expect(job.spec.template.spec.volumes[0].secret.secretName).toBe('keyward-owner');
    expect(job.spec.template.spec.restartPolicy).toBe('Never');
    expect(render('--set', 'migrate.enabled=false').all('Job')).toEqual([]);
  });
});

describe('RBAC', () => {
  it('cluster mode: one ClusterRole with exactly the namespace and cluster rule files', () => {
    const r = render();
    expect(r.get('ClusterRole', 'keyward-operator').rules).toEqual([
      ...rules('operator-namespace-rules.yaml'),
      ...rules('operator-cluster-rules.yaml'),
    ]);
    expect(r.get('Role', 'keyward-operator-leader-election').rules).toEqual(
      rules('operator-leader-election-rules.yaml'),
    );
    expect(r.get('Role', 'keyward-operator-leader-election').metadata.namespace).toBe(ns);
    expect(r.all('Role').map((x) => x.metadata.name)).toEqual(['keyward-operator-leader-election']);
    expect(env(container(r, 'Deployment', 'keyward-operator')).KEYWARD_WATCH_NAMESPACES).toBeUndefined();
  });

  it('namespace-list mode: a Role per namespace, and cluster-wide only the read-only cluster rules', () => {
    const r = render('--set-json', 'operator.watchNamespaces=["team-a","team-b"]');
    expect(r.get('ClusterRole', 'keyward-operator').rules).toEqual(rules('operator-cluster-rules.yaml'));
    const roles = r.all('Role').filter((x) => x.metadata.name === 'keyward-operator');
    expect(roles.map((x) => x.metadata.namespace)).toEqual(['team-a', 'team-b']);
    for (const role of roles) expect(role.rules).toEqual(rules('operator-namespace-rules.yaml'));
    const bindings = r.all('RoleBinding').filter((x) => x.metadata.name === 'keyward-operator');
    expect(bindings.map((b) => [b.metadata.namespace, b.subjects])).toEqual(
      ['team-a', 'team-b'].map((n) => [
        n,
        [{ kind: 'ServiceAccount', name: 'keyward-operator', namespace: ns }],
      ]),
    );
    expect(env(container(r, 'Deployment', 'keyward-operator')).KEYWARD_WATCH_NAMESPACES).toBe(
      'team-a,team-b',
    );
    // No Secret access outside the listed namespaces.
    for (const cr of r.all('ClusterRole'))
      for (const rule of cr.rules) expect(rule.resources).not.toContain('secrets');
  });

  it('tenant roles aggregate into admin/edit/view and never grant AccessPolicy', () => {
    const r = render();
    const edit = r.get('ClusterRole', 'keyward-edit');
    const view = r.get('ClusterRole', 'keyward-view');
    expect(edit.metadata.labels).toMatchObject({
      'rbac.authorization.k8s.io/aggregate-to-admin': 'true',
      'rbac.authorization.k8s.io/aggregate-to-edit': 'true',
    });
    expect(view.metadata.labels).toMatchObject({ 'rbac.authorization.k8s.io/aggregate-to-view': 'true' });
    expect(edit.rules.flatMap((x: { verbs: string[] }) => x.verbs)).toEqual(
      expect.arrayContaining(['create', 'update', 'patch', 'delete']),
    );
    expect(view.rules.flatMap((x: { verbs: string[] }) => x.verbs).sort()).toEqual(['get', 'list', 'watch']);
    for (const role of [edit, view]) {
      for (const rule of role.rules) {
        expect(
          rule.resources.filter((res: string) => res.startsWith('accesspolicies') || res === '*'),
        ).toEqual([]);
        expect(rule.apiGroups).toEqual(['keyward.dev']);
      }
    }
    // The operator's own access to AccessPolicies is read-only.
    for (const rule of r.get('ClusterRole', 'keyward-operator').rules) {
      if (rule.resources.includes('accesspolicies')) expect(rule.verbs).toEqual(['get', 'list', 'watch']);
    }
  });
});

describe('CRDs', () => {
  it('kept on uninstall by default; keep=false drops the annotation; enabled=false drops the CRDs', () => {
    const kept = render().all('CustomResourceDefinition');
    expect(kept.length).toBeGreaterThanOrEqual(2);
    for (const crd of kept) {
      expect(crd.metadata.annotations).toEqual({
        'helm.sh/resource-policy': 'keep',
        'argocd.argoproj.io/sync-options': 'Prune=false',
      });
    }
    for (const crd of render('--set', 'crds.keep=false').all('CustomResourceDefinition'))
      expect(crd.metadata.annotations).toBeUndefined();
    expect(render('--set', 'crds.enabled=false').all('CustomResourceDefinition')).toEqual([]);
  });
});

describe('webhook TLS', () => {
  it('an existing Secret: HTTPS probes, files mounted where the variables point', () => {
    const r = render(
      '--set',
      'webhook.tls.enabled=true',
      '--set',
      'webhook.tls.existingSecret=wh-tls',
      '--set',
      'webhook.tls.clientCA.enabled=true',
    );
    const c = container(r, 'Deployment', 'keyward-webhook');
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'https', scheme: 'HTTPS' });
    expect(env(c)).toMatchObject({
      KEYWARD_TLS_CERT_FILE: '/etc/keyward/tls/tls.crt',
      KEYWARD_TLS_KEY_FILE: '/etc/keyward/tls/tls.key',
      KEYWARD_TLS_CLIENT_CA_FILE: '/etc/keyward/client-ca/ca.crt',
    });
    const volumes = r.get('Deployment', 'keyward-webhook').spec.template.spec.volumes;
    expect(volumes.find((v: { name: string }) => v.name === 'tls').secret.secretName).toBe('wh-tls');
    expect(volumes.find((v: { name: string }) => v.name === 'client-ca').secret).toMatchObject({
      secretName: 'wh-tls',
      items: [{ key: 'ca.crt', path: 'ca.crt' }],
    });
    expect(c.volumeMounts.map((m: { mountPath: string }) => m.mountPath)).toEqual([
      '/etc/keyward/store',
      '/etc/keyward/tls',
      '/etc/keyward/client-ca',
    ]);
    expect(r.get('Service', 'keyward-webhook').spec.ports[0]).toMatchObject({
      name: 'https',
      targetPort: 'https',
    });
    expect(r.all('Certificate')).toEqual([]);
  });

  it('cert-manager: a Certificate for the Service names, whose Secret the pods mount', () => {
    const r = render(
      '--set',
      'webhook.tls.enabled=true',
      '--set',
      'webhook.tls.certManager.enabled=true',
      '--set',
      'webhook.tls.certManager.issuerRef.name=ca',
    );
    const cert = r.get('Certificate', 'keyward-webhook');
    expect(cert.spec.dnsNames).toEqual([
      'keyward-webhook',
      `keyward-webhook.${ns}`,
      `keyward-webhook.${ns}.svc`,
      `keyward-webhook.${ns}.svc.cluster.local`,
    ]);
    expect(cert.spec.issuerRef).toEqual({ name: 'ca', kind: 'Issuer', group: 'cert-manager.io' });
    const volumes = r.get('Deployment', 'keyward-webhook').spec.template.spec.volumes;
    expect(volumes.find((v: { name: string }) => v.name === 'tls').secret.secretName).toBe(
      cert.spec.secretName,
    );
  });

  it('credentials for /tokenreview and /introspect and the trusted proxies reach the webhook', () => {
    const r = render(
      ...[
        '--set',
        'webhook.tokenReview.credentialsSecret=tr',
        '--set',
        'webhook.introspect.credentialsSecret=intro',
      ],
      ...[
        '--set-json',
        'webhook.trustedProxies=["10.0.0.0/8","fd00::/8"]',
        '--set',
        'webhook.env.KEYWARD_CACHE_TTL=30s',
      ],
    );
    const c = container(r, 'Deployment', 'keyward-webhook');
    expect(env(c)).toMatchObject({
      KEYWARD_TOKENREVIEW_CREDENTIALS_FILE: '/etc/keyward/tokenreview/credentials',
      KEYWARD_INTROSPECT_CREDENTIALS_FILE: '/etc/keyward/introspect/credentials',
      KEYWARD_TRUSTED_PROXIES: '10.0.0.0/8,fd00::/8',
      KEYWARD_CACHE_TTL: '30s',
      KEYWARD_SHUTDOWN_DELAY: '5s',
    });
  });
});

describe('monitoring, NetworkPolicy, AccessPolicy', () => {
  it('ServiceMonitor/PodMonitor only where the cluster serves monitoring.coreos.com/v1', () => {
    const withApi = ['--api-versions', 'monitoring.coreos.com/v1'];
    expect(render('--set', 'monitoring.serviceMonitor.enabled=true').all('ServiceMonitor')).toEqual([]);
    const sm = render(
      '--set',
      'monitoring.serviceMonitor.enabled=true',
      '--set',
      'monitoring.serviceMonitor.labels.release=prom',
      ...withApi,
    ).all('ServiceMonitor');
    expect(sm.map((m) => [m.metadata.name, m.metadata.labels.release, m.spec.endpoints[0].port])).toEqual([
      ['keyward-operator', 'prom', 'metrics'],
      ['keyward-webhook', 'prom', 'metrics'],
    ]);
    expect(render('--set', 'monitoring.podMonitor.enabled=true', ...withApi).all('PodMonitor')).toHaveLength(
      2,
    );
    expect(
      render(...withApi).manifests.filter((m) => m.apiVersion.startsWith('monitoring.coreos.com')),
    ).toEqual([]);
  });

  it('NetworkPolicy: the webhook port only from ingress namespaces and the API server; egress only to Postgres, DNS, API server', () => {
    const postgres = [{ ipBlock: { cidr: '10.20.0.5/32' } }];
    const r = render(
      ...[
        '--set',
        'networkPolicy.enabled=true',
        '--set-json',
        'networkPolicy.apiServer.cidrs=["10.0.0.10/32"]',
      ],
      ...['--set-json', `networkPolicy.postgres.to=${JSON.stringify(postgres)}`],
    );
    const webhook = r.get('NetworkPolicy', 'keyward-webhook');
    expect(webhook.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(webhook.spec.ingress).toEqual([
      {
        from: [
          { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } } },
          { ipBlock: { cidr: '10.0.0.10/32' } },
        ],
        ports: [{ protocol: 'TCP', port: 8080 }],
      },
    ]);
    const dns = {
      to: [
        {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
          podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
        },
      ],
      ports: [
        { protocol: 'UDP', port: 53 },
        { protocol: 'TCP', port: 53 },
      ],
    };
    const toPostgres = { to: postgres, ports: [{ protocol: 'TCP', port: 5432 }] };
    expect(webhook.spec.egress).toEqual([toPostgres, dns]);
    const operator = r.get('NetworkPolicy', 'keyward-operator');
    expect(operator.spec.ingress).toEqual([]);
    expect(operator.spec.egress).toEqual([
      toPostgres,
      dns,
      {
        to: [{ ipBlock: { cidr: '10.0.0.10/32' } }],
        ports: [
          { protocol: 'TCP', port: 443 },
          { protocol: 'TCP', port: 6443 },
        ],
      },
    ]);
    expect(render().all('NetworkPolicy')).toEqual([]);
  });

  it('a default AccessPolicy only when asked, applied after the CRDs as a hook', () => {
    expect(render().all('AccessPolicy')).toEqual([]);
    const policy = render(
      '--set',
      'accessPolicy.create=true',
      '--set-json',
      'accessPolicy.spec.namespaces=["team-a"]',
    ).get('AccessPolicy', 'default');
    expect(policy.metadata.annotations['helm.sh/hook']).toBe('post-install,post-upgrade');
    expect(policy.spec).toEqual({
      namespaces: ['team-a'],
      usernames: [],
      scopes: [],
      groups: [],
      maxKeyLifetime: '90d',
      kubernetesAuthentication: false,
    });
  });
});
