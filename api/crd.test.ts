import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';
import { z } from 'zod';
import { createTestNamespace } from '../devenv/kube.js';
import { testKubeConfig } from '../test/harness/kube.js';
import { GROUP, VERSION } from './common.js';
import { crdFiles, structuralSchema } from './crd.js';
import { parseAccessPolicy, parseApiKey, parseServiceUser } from './validate.js';

const root = join(import.meta.dirname, '..');
const exampleFiles = [
  'accesspolicy.yaml',
  'serviceuser-ci.yaml',
  'serviceuser-suspended.yaml',
  'apikey-expiring.yaml',
  'apikey-rotating.yaml',
];
const run = promisify(execFile);

describe('generated CRDs', () => {
  it('crds/ is what the generator writes (run `npm run crds` after changing api/)', () => {
    for (const { file, yaml } of crdFiles()) {
      expect(readFileSync(join(root, 'crds', file), 'utf8'), file).toBe(yaml);
    }
  });

  it('refuses a schema the API server would not accept as structural', () => {
    expect(() => structuralSchema(z.object({ a: z.union([z.string(), z.number()]) }))).toThrow(
      /not structural/,
    );
  });

  it('generates the cluster-scoped AccessPolicy CRD', () => {
    const file = crdFiles().find((f) => f.file === 'keyward.dev_accesspolicies.yaml');
    const crd = parse(file?.yaml ?? '');
    expect(crd.spec.scope).toBe('Cluster');
    expect(crd.spec.versions[0].subresources).toBeUndefined();
    expect(
      Object.keys(crd.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties).sort(),
    ).toEqual([
      'actAs',
      'groups',
      'kubernetesAuthentication',
      'maxKeyLifetime',
      'namespaceSelector',
      'namespaces',
      'scopes',
      'usernames',
    ]);
  });

  it('every field under spec carries a description', () => {
    const missing: string[] = [];
    const walk = (node: Record<string, unknown>, path: string): void => {
      if (path && typeof node.description !== 'string') missing.push(path);
      for (const [name, child] of Object.entries(
        (node.properties as Record<string, Record<string, unknown>>) ?? {},
      )) {
        walk(child, `${path}.${name}`);
      }
    };
    for (const { file, yaml } of crdFiles()) {
      const crd = parse(yaml);
      walk(crd.spec.versions[0].schema.openAPIV3Schema.properties.spec, `${file}:spec`);
    }
    expect(missing).toEqual([]);
  });
});

describe('examples', () => {
  it.each(exampleFiles)('%s parses with the zod schema', (file) => {
    const manifest = parse(readFileSync(join(root, 'examples', file), 'utf8'));
    const parseManifest =
      manifest.kind === 'ServiceUser'
        ? parseServiceUser
        : manifest.kind === 'AccessPolicy'
          ? parseAccessPolicy
          : parseApiKey;
    const parsed = parseManifest(manifest);
    expect(parsed.ok ? [] : parsed.errors).toEqual([]);
  });

  describe('against the API server', () => {
    let kc: KubeConfig;
    let namespace: string;
    beforeAll(async () => {
      kc = testKubeConfig();
      namespace = await createTestNamespace(kc, 'examples');
    });

    it.each(exampleFiles)('%s is accepted (server-side dry run, strict field validation)', async (file) => {
      const manifest = parse(readFileSync(join(root, 'examples', file), 'utf8'));
      const api = kc.makeApiClient(CustomObjectsApi);
      const options = {
        group: GROUP,
        version: VERSION,
        body: manifest,
        dryRun: 'All',
        fieldValidation: 'Strict',
      };
      const created =
        manifest.kind === 'AccessPolicy'
          ? await api.createClusterCustomObject({ ...options, plural: 'accesspolicies' })
          : await api.createNamespacedCustomObject({
              ...options,
              namespace,
              plural: manifest.kind === 'ServiceUser' ? 'serviceusers' : 'apikeys',
            });
      expect(created.metadata.name).toBe(manifest.metadata.name);
    });

    it('kubectl explain apikey.spec.rotation prints the field descriptions', async () => {
      const kubectl = join(inject('controlPlaneBinDir'), 'kubectl');
      const { stdout } = await run(kubectl, [
        '--kubeconfig',
        inject('kubeconfigPath'),
        'explain',
        'apikey.spec.rotation',
      ]);
      expect(stdout).toContain('gracePeriod');
      expect(stdout).toContain('How long the previous secret keeps working after a rotation');
      expect(stdout).toContain('Rotate automatically this long after the current secret was issued');
    });

    it('kubectl get ak -o wide shows the printer columns from status', async () => {
      const api = kc.makeApiClient(CustomObjectsApi);
      const body = parse(readFileSync(join(root, 'examples', 'apikey-expiring.yaml'), 'utf8'));
      await api.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: 'apikeys',
        body,
      });
      const now = new Date().toISOString();
      await api.patchNamespacedCustomObjectStatus({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: 'apikeys',
        name: body.metadata.name,
        body: [
          {
            op: 'add',
            path: '/status',
            value: {
              keyId: 'key_0123456789abcdef',
              tokenPrefix: 'kw_5Jq4',
              secretName: 'ci-alpha-token',
              issuedAt: now,
              rotatedAt: now,
              expiresAt: new Date(Date.now() + 90 * 86_400_000).toISOString(),
              conditions: [
                {
                  type: 'Ready',
                  status: 'True',
                  reason: 'Issued',
                  message: 'ok',
                  lastTransitionTime: now,
                  observedGeneration: 1,
                },
              ],
            },
          },
        ],
      });
      const kubectl = join(inject('controlPlaneBinDir'), 'kubectl');
      const { stdout } = await run(kubectl, [
        '--kubeconfig',
        inject('kubeconfigPath'),
        '-n',
        namespace,
        'get',
        'ak',
        '-o',
        'wide',
      ]);
      const [header, row] = stdout.trim().split('\n');
      expect(header?.split(/\s{2,}/)).toEqual([
        'NAME',
        'USER',
        'KEY-ID',
        'READY',
        'EXPIRES',
        'LAST-USED',
        'KEY-AGE',
        'PREFIX',
        'SECRET',
        'AGE',
      ]);
      // LAST-USED is empty until the webhook records a use.
      expect(row).toMatch(
        /^ci-alpha\s+ci-deployer\s+key_0123456789abcdef\s+True\s+\d{4}-\d\d-\d\dT[\d:.]+Z\s+\d+s\s+kw_5Jq4\s+ci-alpha-token\s+\d+s$/,
      );
    });
  });
});
