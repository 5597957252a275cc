import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createTestNamespace } from '../../devenv/kube.js';
import { eventually } from '../../devenv/poll.js';
import { repoRoot } from '../../devenv/repo.js';
import { testKubeConfig } from '../harness/kube.js';
import { kubeconformLocation, writeKubeconformSchemas } from './openapi-schemas.js';
import { chartDir, helmTemplate, requiredValues, runHelm } from './render.js';
import { chartTools } from './tools.js';

/**
 * The chart checked with the real tools: `helm lint`, every mode rendered by `helm template` and
 * validated by kubeconform -strict against the schemas the harness's kube-apiserver publishes
 * (with keyward's, cert-manager's and the Prometheus Operator's CRDs installed), then applied to
 * that API server with `kubectl apply --dry-run=server`.
 */
const tools = chartTools();
const kubeconfig = inject('kubeconfigPath');
const kubectl = join(inject('controlPlaneBinDir'), 'kubectl');
const schemaDir = mkdtempSync(join(tmpdir(), 'keyward-kubeconform-'));
const crdDir = join(repoRoot(), 'crds');
const hasAccessPolicyCrd = readdirSync(crdDir).includes('keyward.dev_accesspolicies.yaml');

let namespace = '';
let watched: string[] = [];

function run(
  command: string,
  args: string[],
  input?: string,
): { status: number; stdout: string; stderr: string } {
  const result = spawnSync(command, args, {
    encoding: 'utf8',
    input,
    maxBuffer: 64 * 1024 * 1024,
    timeout: 120_000,
  });
  if (result.error) throw result.error;
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

beforeAll(async () => {
  const kc = testKubeConfig();
  namespace = await createTestNamespace(kc, 'chart');
  // The API server's PodSecurity admission then reports any pod template short of `restricted`.
  await kc.makeApiClient(CoreV1Api).patchNamespace(
    {
      name: namespace,
      body: {
        metadata: {
          labels: {
            'pod-security.kubernetes.io/warn': 'restricted',
            'pod-security.kubernetes.io/enforce': 'restricted',
          },
        },
      },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  watched = [await createTestNamespace(kc, 'chart-team-a'), await createTestNamespace(kc, 'chart-team-b')];
  // The optional peers' CRDs, as their projects publish them, so their objects validate for real.
  for (const dir of [tools.certManagerCrds, tools.prometheusOperatorCrds]) {
    const applied = run(kubectl, [
      '--kubeconfig',
      kubeconfig,
      'apply',
      '--server-side',
      '--force-conflicts',
      '-f',
      dir,
    ]);
    expect(applied.stderr).toBe('');
  }
  // The API server publishes a new CRD's OpenAPI a moment after it is established.
  const wanted = ['Certificate', 'ServiceMonitor', 'PodMonitor', 'ServiceUser', 'ApiKey'];
  await eventually(
    'the API server to publish OpenAPI for every CRD',
    async () => {
      rmSync(schemaDir, { recursive: true, force: true });
      const kinds = new Set(writeKubeconformSchemas(kubectl, kubeconfig, schemaDir).map((g) => g.kind));
      return wanted.every((k) => kinds.has(k)) ? true : undefined;
    },
    60_000,
  );
}, 900_000);

afterAll(() => rmSync(schemaDir, { recursive: true, force: true }));

/** Every mode the chart has, as `helm template` arguments. */
function modes(): Record<string, string[]> {
  return {
    default: requiredValues,
    'inline URLs': [
      '--set',
      'postgres.operator.url=postgres://op:pw@db:5432/keyward',
      '--set',
      'postgres.webhook.url=postgres://wh:pw@db:5432/keyward',
    ],
    'namespace list': [
      ...requiredValues,
      '--set-json',
      `operator.watchNamespaces=${JSON.stringify(watched)}`,
    ],
    'TLS from a Secret': [
      ...requiredValues,
      ...['--set', 'webhook.tls.enabled=true', '--set', 'webhook.tls.existingSecret=keyward-webhook-tls'],
      ...[
        '--set',
        'webhook.tls.clientCA.enabled=true',
        '--set',
        'webhook.tokenReview.credentialsSecret=tokenreview',
      ],
      ...[
        '--set',
        'webhook.introspect.credentialsSecret=introspect',
        '--set-json',
        'webhook.trustedProxies=["10.0.0.0/8"]',
      ],
    ],
    'TLS from cert-manager': [
      ...requiredValues,
      ...['--set', 'webhook.tls.enabled=true', '--set', 'webhook.tls.certManager.enabled=true'],
      ...[
        '--set',
        'webhook.tls.certManager.issuerRef.name=cluster-ca',
        '--set',
        'webhook.tls.certManager.issuerRef.kind=ClusterIssuer',
      ],
    ],
    ServiceMonitor: [
      ...requiredValues,
      '--set',
      'monitoring.serviceMonitor.enabled=true',
      '--api-versions',
      'monitoring.coreos.com/v1',
    ],
    PodMonitor: [
      ...requiredValues,
      '--set',
      'monitoring.podMonitor.enabled=true',
      '--api-versions',
      'monitoring.coreos.com/v1',
    ],
    'monitoring without the Prometheus Operator': [
      ...requiredValues,
      '--set',
      'monitoring.serviceMonitor.enabled=true',
    ],
    'CRDs off': [...requiredValues, '--set', 'crds.enabled=false'],
    NetworkPolicy: [
      ...requiredValues,
      ...[
        '--set',
        'networkPolicy.enabled=true',
        '--set-json',
        'networkPolicy.apiServer.cidrs=["10.0.0.10/32"]',
      ],
      ...['--set-json', 'networkPolicy.postgres.to=[{"ipBlock":{"cidr":"10.20.0.5/32"}}]'],
      ...[
        '--set-json',
        'networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]',
      ],
    ],
    ...(hasAccessPolicyCrd ? { AccessPolicy: [...requiredValues, '--set', 'accessPolicy.create=true'] } : {}),
  };
}

function kubeconform(yaml: string) {
  const result = run(
    tools.kubeconform,
    ['-strict', '-summary', '-output', 'json', '-schema-location', kubeconformLocation(schemaDir), '-'],
    yaml,
  );
  return {
    status: result.status,
    ...(JSON.parse(result.stdout) as {
      resources: Array<{ kind: string; name: string; status: string; msg: string }>;
      summary: { valid: number; invalid: number; errors: number; skipped: number };
    }),
  };
}

it('kubeconform with these schemas rejects an unknown field and a wrong type (the checks below can fail)', () => {
  const yaml = helmTemplate(tools.helm, namespace, [
    ...requiredValues,
    '-s',
    'templates/webhook-service.yaml',
  ]).yaml;
  const unknownField = kubeconform(
    yaml.replace('  type: ClusterIP', '  type: ClusterIP\n  sessionAfinity: None'),
  );
  expect(unknownField.resources[0]?.msg).toContain("additional properties 'sessionAfinity' not allowed");
  const wrongType = kubeconform(yaml.replace('port: 8080', 'port: eighty'));
  expect(wrongType.resources[0]?.msg).toContain('got string, want integer');
  expect(wrongType.status).not.toBe(0);
});

it('PodSecurity admission would report a pod template short of restricted (the check below can fail)', () => {
  const rendered = helmTemplate(tools.helm, namespace, [
    ...[...requiredValues, '--set', 'securityContext.allowPrivilegeEscalation=true'],
    ...['-s', 'templates/webhook-deployment.yaml'],
  ]);
  const result = run(
    kubectl,
    ['--kubeconfig', kubeconfig, 'apply', '--dry-run=server', '-f', '-'],
    rendered.yaml,
  );
  expect(result.stderr).toContain(
    'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false',
  );
});

describe.each(Object.entries(modes()))('mode: %s', (_mode, args) => {
  it('validates with kubeconform -strict against the API server’s OpenAPI', () => {
    const rendered = helmTemplate(tools.helm, namespace, args);
    const report = kubeconform(rendered.yaml);
    expect(report.resources.filter((r) => r.status !== 'statusValid')).toEqual([]);
    // Nothing skipped for lack of a schema: every rendered object was checked.
    expect(report.summary).toEqual({ valid: rendered.manifests.length, invalid: 0, errors: 0, skipped: 0 });
    expect(report.status).toBe(0);
  });

  it('is accepted by the API server (kubectl apply --dry-run=server)', () => {
    const rendered = helmTemplate(tools.helm, namespace, args);
    const result = run(
      kubectl,
      ['--kubeconfig', kubeconfig, 'apply', '--dry-run=server', '-f', '-'],
      rendered.yaml,
    );
    // No warning but one: PodSecurity `restricted` holds (see beforeAll), no deprecated API or field.
    // The harness installed the CRDs by server-side apply, so client-side apply notes they lack its annotation.
    const foreign =
      /^Warning: resource customresourcedefinitions\/\S+ is missing the kubectl.kubernetes.io\/last-applied-configuration annotation/;
    expect(result.stderr.split('\n').filter((l) => l && !foreign.test(l))).toEqual([]);
    expect(result.status).toBe(0);
    // One line per object, each "(server dry run)".
    expect(result.stdout.trim().split('\n')).toHaveLength(rendered.manifests.length);
  });
});

describe('helm install --dry-run=server against the API server', () => {
  // The harness installed keyward's CRDs without Helm: a release may not adopt them.
  const install = (...args: string[]) =>
    runHelm(tools.helm, [
      ...[
        'install',
        'keyward',
        chartDir,
        '--kubeconfig',
        kubeconfig,
        '--namespace',
        namespace,
        '--dry-run=server',
      ],
      ...[...requiredValues, '--set', 'crds.enabled=false', ...args],
    ]);

  it('renders with the cluster’s capabilities and prints NOTES that say what was installed', () => {
    const result = install('--set-json', `operator.watchNamespaces=${JSON.stringify(watched)}`);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const notes = result.stdout.slice(result.stdout.indexOf('NOTES:'));
    expect(notes).toContain(`reconciling only: ${watched.join(', ')}`);
    expect(notes).toContain(`http://keyward-webhook.${namespace}.svc:8080/verify`);
    expect(notes).toContain('No AccessPolicy was created');
    expect(notes).toContain('crds.enabled=false: install the CRDs yourself');
  });

  it('creates a ServiceMonitor because this API server serves monitoring.coreos.com/v1', () => {
    const result = install('--set', 'monitoring.serviceMonitor.enabled=true');
    expect(result.status).toBe(0);
    expect(result.stdout.match(/^kind: ServiceMonitor$/gm)).toHaveLength(2);
    expect(result.stdout).not.toContain('WARNING: monitoring is enabled');
  });
});
