import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { repoRoot } from '../../devenv/repo.js';
import { testKubeConfig } from '../harness/kube.js';
import { chartTools } from './tools.js';

/**
 * The shell commands of docs/install.md §1–2, run as written against the harness's API server in
 * a fresh namespace (the docs' `keyward`). `helm install` gets `--dry-run=server`: without a node
 * its pods, and so `--wait`, cannot finish (the node test installs for real), and
 * `crds.enabled=false`, because the harness installed the CRDs outside Helm.
 */
const tools = chartTools();
const kubeconfig = inject('kubeconfigPath');
const root = repoRoot();

function shellBlocks(markdown: string, fromHeading: string, toHeading: string): string[] {
  const section = markdown.slice(markdown.indexOf(fromHeading), markdown.indexOf(toHeading));
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
}

describe('docs/install.md', () => {
  const doc = readFileSync(join(root, 'docs', 'install.md'), 'utf8');
  const blocks = shellBlocks(doc, '## 1. The database', '## 3.');

  // The docs create the namespace themselves; a fresh name stands in for `keyward`.
  const namespace = `docs-install-${randomBytes(4).toString('hex')}`;
  afterAll(async () => {
    await testKubeConfig()
      .makeApiClient(CoreV1Api)
      .deleteNamespace({ name: namespace })
      .catch(() => undefined);
  });

  it('has the database and the install commands', () => {
    expect(blocks).toHaveLength(2);
    expect(blocks[1]).toContain('helm install keyward charts/keyward');
  });

  it('runs them: Secrets for each role, then a helm install the API server accepts', () => {
    const script = blocks
      .join('\n')
      .replaceAll('--namespace keyward', `--namespace ${namespace}`)
      .replaceAll('-n keyward', `-n ${namespace}`)
      .replaceAll('kubectl create namespace keyward', `kubectl create namespace ${namespace}`)
      .replace('--wait --timeout 5m', '--wait --timeout 5m --dry-run=server --set crds.enabled=false');
    const result = spawnSync('bash', ['--norc', '--noprofile', '-euo', 'pipefail', '-c', script], {
      cwd: root,
      encoding: 'utf8',
      env: {
        PATH: [dirname(tools.helm), inject('controlPlaneBinDir'), process.env.PATH].join(':'),
        KUBECONFIG: kubeconfig,
        HOME: process.env.HOME,
      },
      timeout: 120_000,
    });
    // The docs' last command lists the pods; a dry run created none.
    expect(result.stderr).toBe(`No resources found in ${namespace} namespace.\n`);
    expect(result.status).toBe(0);
    for (const role of ['owner', 'operator', 'webhook']) {
      expect(result.stdout).toContain(`secret/keyward-postgres-${role} created`);
    }
    expect(result.stdout).toContain('STATUS: pending-install');
    expect(result.stdout).toContain(`deployment/keyward-webhook`);
  });
});
