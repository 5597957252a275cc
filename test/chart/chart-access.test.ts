import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { chartDir, container, env, renderer } from './render.js';
import { chartTools } from './tools.js';

/** Who can do and reach what once the chart is installed: RBAC, CRDs, TLS, monitoring, NetworkPolicy. */
const { helm } = chartTools();
const ns = 'keyward';
const render = renderer(helm);
const rules = (file: string) => parse(readFileSync(join(chartDir, 'files', file), 'utf8')) as unknown[];

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

  it('credentials for /tokenreview, /introspect and /leaks and the trusted proxies reach the webhook', () => {
    const r = render(
      ...[
        '--set',
        'webhook.tokenReview.credentialsSecret=tr',
        '--set',
        'webhook.introspect.credentialsSecret=intro',
        '--set',
        'webhook.leakReport.credentialsSecret=leaks',
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
      KEYWARD_LEAK_REPORT_CREDENTIALS_FILE: '/etc/keyward/leak-report/credentials',
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
