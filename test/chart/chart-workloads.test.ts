import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { chartDir, container, env, helmTemplate, podTemplates, type Rendered, renderer } from './render.js';
import { chartTools } from './tools.js';

/** The chart's pods as a user installing it would find them: security, scheduling, probes, store. */
const { helm } = chartTools();
const ns = 'keyward';
const render = renderer(helm);
const chartVersion = (parse(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as { appVersion: string })
  .appVersion;

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

  it('both processes run with bounded heaps and two malloc arenas; null leaves glibc its default', () => {
    for (const name of ['keyward-webhook', 'keyward-operator']) {
      const c = env(container(r, 'Deployment', name));
      expect(c.MALLOC_ARENA_MAX, name).toBe('2');
      expect(c.NODE_OPTIONS, name).toMatch(/--max-semi-space-size=\d+/);
    }
    const unset = render('--set', 'webhook.mallocArenaMax=null', '--set', 'operator.mallocArenaMax=null');
    for (const name of ['keyward-webhook', 'keyward-operator'])
      expect(env(container(unset, 'Deployment', name)).MALLOC_ARENA_MAX, name).toBeUndefined();
    expect(() => render('--set', 'webhook.mallocArenaMax=0')).toThrow(/mallocArenaMax/);
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

  it('a webhook on a read replica gets the primary for its writes only when asked, from a mounted file', () => {
    const volumeOf = (r: Rendered, name: string) =>
      r
        .get('Deployment', 'keyward-webhook')
        .spec.template.spec.volumes.find((v: { name: string }) => v.name === name);
    const plain = render();
    expect(
      env(container(plain, 'Deployment', 'keyward-webhook')).KEYWARD_STORE_WRITE_URL_FILE,
    ).toBeUndefined();
    expect(volumeOf(plain, 'store-write-url')).toBeUndefined();

    const existing = render('--set', 'postgres.webhookWrite.existingSecret=primary-url');
    const webhook = container(existing, 'Deployment', 'keyward-webhook');
    expect(env(webhook).KEYWARD_STORE_WRITE_URL_FILE).toBe('/etc/keyward/store-write/url');
    expect(webhook.volumeMounts).toContainEqual({
      name: 'store-write-url',
      mountPath: '/etc/keyward/store-write',
      readOnly: true,
    });
    expect(volumeOf(existing, 'store-write-url').secret).toMatchObject({
      secretName: 'primary-url',
      items: [{ key: 'url', path: 'url' }],
    });
    // The operator never gets it: it always talks to the primary through its own role.
    expect(
      env(container(existing, 'Deployment', 'keyward-operator')).KEYWARD_STORE_WRITE_URL_FILE,
    ).toBeUndefined();

    const inline = render('--set', 'postgres.webhookWrite.url=postgres://w:x@primary/keyward');
    expect(inline.get('Secret', 'keyward-postgres-webhook-write').stringData).toEqual({
      url: 'postgres://w:x@primary/keyward',
    });
    expect(volumeOf(inline, 'store-write-url').secret.secretName).toBe('keyward-postgres-webhook-write');
    for (const e of container(inline, 'Deployment', 'keyward-webhook').env)
      expect(String(e.value ?? '')).not.toContain('postgres://');
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
