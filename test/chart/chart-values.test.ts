import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';
import { repoRoot } from '../../devenv/repo.js';
import { chartDir, helmTemplate, type Manifest, requiredValues, runHelm } from './render.js';
import { chartTools } from './tools.js';

/** The chart's values contract: lint, the schema's and the templates' messages, CRDs equal to crds/. */
const tools = chartTools();
const kubeconfig = inject('kubeconfigPath');
const namespace = 'default';
const crdDir = join(repoRoot(), 'crds');

describe('helm lint', () => {
  it('passes --strict with the required values', () => {
    const result = runHelm(tools.helm, ['lint', chartDir, '--strict', ...requiredValues]);
    expect(result.stdout + result.stderr).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(result.status).toBe(0);
  });
});

describe('a wrong value fails with the schema’s message', () => {
  it.each([
    [['--set', 'webhook.replicas=two'], "at '/webhook/replicas': got string, want integer"],
    [
      ['--set-json', 'operator.watchNamespaces="team-a"'],
      "at '/operator/watchNamespaces': got string, want array",
    ],
    [['--set', 'webhook.tls.enable=true'], "at '/webhook/tls': additional properties 'enable' not allowed"],
    [['--set', 'image.pullPolicy=Sometimes'], "at '/image/pullPolicy'"],
    [['--set', 'tokenPrefix=KW'], "at '/tokenPrefix'"],
    [['--set', 'operator.env.LOG_LEVEL=debug'], "'LOG_LEVEL' does not match pattern '^KEYWARD_[A-Z0-9_]+$'"],
  ])('helm template %j', (args, message) => {
    const result = runHelm(tools.helm, ['template', 'keyward', chartDir, ...requiredValues, ...args]);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("values don't meet the specifications of the schema(s)");
    expect(result.stderr).toContain(message);
  });

  it('helm install fails with the message and leaves no release', () => {
    const result = runHelm(tools.helm, [
      ...['install', 'keyward', chartDir, '--kubeconfig', kubeconfig, '--namespace', namespace],
      ...requiredValues,
      ...['--set', 'webhook.replicas=two'],
    ]);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('INSTALLATION FAILED');
    expect(result.stderr).toContain("at '/webhook/replicas': got string, want integer");
    const status = runHelm(tools.helm, [
      'status',
      'keyward',
      '--kubeconfig',
      kubeconfig,
      '--namespace',
      namespace,
    ]);
    expect(status.stderr).toContain('release: not found');
  });

  it.each([
    [
      ['--set', 'postgres.webhook.existingSecret=x'],
      'postgres.operator: set postgres.operator.existingSecret',
    ],
    [
      ['--set', 'postgres.operator.existingSecret=x'],
      'postgres.webhook: set postgres.webhook.existingSecret',
    ],
    [
      [...requiredValues, '--set', 'postgres.webhook.url=postgres://w@db/k'],
      'postgres.webhook: set existingSecret or url, not both',
    ],
    [
      [
        ...requiredValues,
        '--set',
        'postgres.webhookWrite.existingSecret=p',
        '--set',
        'postgres.webhookWrite.url=postgres://w@primary/k',
      ],
      'postgres.webhookWrite: set existingSecret or url, not both',
    ],
    [
      [...requiredValues, '--set', 'webhook.tls.enabled=true'],
      'webhook.tls.enabled: set webhook.tls.existingSecret',
    ],
    [
      [...requiredValues, '--set', 'networkPolicy.enabled=true'],
      'networkPolicy.postgres.to: say where Postgres is',
    ],
    [
      [
        ...requiredValues,
        '--set',
        'monitoring.serviceMonitor.enabled=true',
        '--set',
        'monitoring.podMonitor.enabled=true',
      ],
      'enable serviceMonitor or podMonitor, not both',
    ],
  ])('a missing or contradictory setting names the value to set: %j', (args, message) => {
    const result = runHelm(tools.helm, ['template', 'keyward', chartDir, ...args]);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain(message);
  });
});

describe('CRD templates', () => {
  /** A rendered CRD without what the chart adds: its release labels and the keep annotations. */
  function asCommitted(crd: Manifest): Manifest {
    const {
      metadata: { annotations: chartAnnotations, ...metadata },
      ...rest
    } = structuredClone(crd);
    const labels = Object.fromEntries(
      Object.entries(metadata.labels as Record<string, string>).filter(
        ([k]) =>
          ![
            'helm.sh/chart',
            'app.kubernetes.io/instance',
            'app.kubernetes.io/version',
            'app.kubernetes.io/managed-by',
          ].includes(k),
      ),
    );
    const annotations = { ...(chartAnnotations ?? {}) };
    delete annotations['helm.sh/resource-policy'];
    delete annotations['argocd.argoproj.io/sync-options'];
    return {
      ...rest,
      metadata: { ...metadata, labels, ...(Object.keys(annotations).length > 0 ? { annotations } : {}) },
    } as Manifest;
  }

  it('render exactly the CRDs in crds/, object for object', () => {
    const rendered = helmTemplate(tools.helm, namespace, requiredValues).all('CustomResourceDefinition');
    const committed = readdirSync(crdDir)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => parse(readFileSync(join(crdDir, f), 'utf8')) as Manifest);
    const byName = (list: Manifest[]) => Object.fromEntries(list.map((m) => [m.metadata.name, m]));
    expect(byName(rendered.map(asCommitted))).toEqual(byName(committed));
  });
});
