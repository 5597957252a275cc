import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { controlPlaneBinDir } from '../../devenv/controlplane/controlplane.js';
import { createTestNamespace } from '../../devenv/kube.js';
import {
  applyAccessPolicy,
  KeywardObjects,
  type OperatorProcess,
  operatorKubeconfig,
  startOperator,
} from '../../devenv/operator.js';
import { eventually } from '../../devenv/poll.js';
import { freePort } from '../../devenv/process.js';
import { repoRoot } from '../../devenv/repo.js';
import { migrate } from '../../store/migrate.js';
import type { RunningWebhook } from '../../webhook/server.js';
import { testDatabase } from '../harness/database.js';
import { testKubeConfig } from '../harness/kube.js';
import { type CliResult, runCli } from '../support/cli.js';
import { condition } from '../support/status.js';
import { runReadyWebhook, testConfig } from '../support/webhook.js';

/**
 * `keyward` user commands as a platform engineer runs them: the built CLI as a child process,
 * against the run's kube-apiserver (admin kubeconfig), `keyward operator` reconciling the
 * namespace, and a webhook serving /verify and /readyz over HTTP on the same store.
 */
let kc: KubeConfig;
let ns: string;
let objects: KeywardObjects;
let operator: OperatorProcess;
let webhook: RunningWebhook;
let storeUrl: string;
let kubeconfig: string;
let dir: string;

beforeAll(async () => {
  kc = testKubeConfig();
  kubeconfig = inject('kubeconfigPath') ?? '';
  ns = await createTestNamespace(kc, 'cli');
  await applyAccessPolicy(kc, ns, {
    namespaces: [ns],
    usernames: ['*'],
    scopes: ['projects:*'],
    groups: ['deployers'],
  });
  objects = new KeywardObjects(kc, ns);
  storeUrl = await testDatabase();
  await migrate(storeUrl);
  operator = await startOperator({
    kubeconfigPath: await operatorKubeconfig(kc, ns),
    storeUrl,
    namespace: ns,
    watchNamespace: ns,
  });
  webhook = await runReadyWebhook(testConfig(storeUrl));
  dir = mkdtempSync(join(tmpdir(), 'keyward-cli-'));

  await objects.create('serviceusers', {
    kind: 'ServiceUser',
    metadata: { name: 'alpha' },
    spec: { scopes: ['projects:alpha'], groups: ['deployers'] },
  });
  // Applied by Flux: its next sync would undo a change made outside Git.
  await objects.create('serviceusers', {
    kind: 'ServiceUser',
    metadata: { name: 'beta', labels: { 'kustomize.toolkit.fluxcd.io/name': 'apps' } },
    spec: { scopes: ['projects:beta'] },
  });
  for (const [name, user, labels] of [
    ['alpha-ci', 'alpha', { tier: 'ci' }],
    ['alpha-web', 'alpha', { tier: 'web' }],
    ['beta-ci', 'beta', { 'argocd.argoproj.io/instance': 'beta', tier: 'ci' }],
  ] as const) {
    await objects.create('apikeys', {
      kind: 'ApiKey',
      metadata: { name, labels },
      spec: { serviceUserRef: { name: user }, ttl: '90d' },
    });
  }
  for (const name of ['alpha-ci', 'alpha-web', 'beta-ci']) await readyKey(name);
}, 120_000);

afterAll(async () => {
  await webhook?.close();
  await operator?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const logs = (): string => operator.process.logTail(30);

async function readyKey(name: string, reason = 'Issued') {
  return eventually(
    `ApiKey ${name} Ready (${reason})`,
    async () => {
      const key = await objects.get('apikeys', name);
      const current = key.status?.observedGeneration === key.metadata?.generation;
      return current && condition(key, 'Ready')?.reason === reason ? key : undefined;
    },
    30_000,
    logs,
  );
}

async function tokenOf(secret: string): Promise<string> {
  const s = await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ namespace: ns, name: secret });
  return Buffer.from(s.data?.token ?? '', 'base64').toString('utf8');
}

/** The CLI against the test cluster, with the namespace given as a user would. */
function keyward(
  args: string[],
  options: { stdin?: string; env?: Record<string, string> } = {},
): Promise<CliResult> {
  return runCli(args, { ...options, env: { KUBECONFIG: kubeconfig, ...options.env } });
}

function json<T>(res: CliResult): T {
  if (res.code !== 0 && res.code !== 1) throw new Error(`exit ${res.code}: ${res.stderr}`);
  return JSON.parse(res.stdout) as T;
}

describe('keyward status', () => {
  it('lists users and keys with readiness, reason, expiry and key ids', async () => {
    const res = await keyward(['status', '-n', ns, '-o', 'json']);
    expect(res.code).toBe(0);
    const data = json<{
      serviceUsers: Array<{ name: string; ready: string; suspended: boolean }>;
      apiKeys: Array<{
        name: string;
        user: string;
        keyId: string;
        ready: string;
        reason: string;
        expiresAt: string;
      }>;
    }>(res);
    expect(data.serviceUsers.map((u) => [u.name, u.ready, u.suspended]).sort()).toEqual([
      ['alpha', 'True', false],
      ['beta', 'True', false],
    ]);
    const ci = data.apiKeys.find((k) => k.name === 'alpha-ci');
    const key = await objects.get('apikeys', 'alpha-ci');
    expect(ci).toMatchObject({ user: 'alpha', keyId: key.status?.keyId, ready: 'True', reason: 'Issued' });
    expect(Date.parse(ci?.expiresAt ?? '') - Date.now()).toBeGreaterThan(89 * 86_400_000);

    const tableRes = await keyward(['status', '--namespace', ns, '-l', 'tier=ci']);
    expect(tableRes.code).toBe(0);
    expect(tableRes.stdout).toMatch(/^APIKEY +USER +KEY-ID +READY +REASON +EXPIRES +LAST-USED +GRACE-ENDS$/m);
    expect(tableRes.stdout).toMatch(new RegExp(`^alpha-ci +alpha +${key.status?.keyId} +True +Issued `, 'm'));
    expect(tableRes.stdout).not.toContain('alpha-web');
    expect(tableRes.stdout).not.toContain(await tokenOf('alpha-ci'));
  });

  it('with -A shows the namespace column, and as YAML', async () => {
    const res = await keyward(['status', '-A']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(new RegExp(`^${ns} +alpha-ci `, 'm'));
    const yaml = await keyward(['status', '-n', ns, '-o', 'yaml']);
    expect(yaml.stdout).toContain('apiKeys:');
  });

  it('follows --context and fails with exit 1 on an API error, 2 on a usage error', async () => {
    const bad = await keyward(['status', '-n', ns, '--context', 'no-such-context']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('no context no-such-context');
    const usage = await keyward(['status', '--bogus']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("unknown option '--bogus'");
  });
});

describe('keyward inspect secret', () => {
  it('prints key id, token prefix and expiry from the owning ApiKey, never the token', async () => {
    const key = await objects.get('apikeys', 'alpha-ci');
    const res = await keyward(['inspect', 'secret', 'alpha-ci', '-n', ns, '-o', 'json']);
    expect(res.code).toBe(0);
    expect(json(res)).toEqual({
      secret: 'alpha-ci',
      namespace: ns,
      apiKey: 'alpha-ci',
      keyId: key.status?.keyId,
      tokenPrefix: key.status?.tokenPrefix,
      expiresAt: key.status?.expiresAt,
    });
    const table = await keyward(['inspect', 'secret', 'alpha-ci', '-n', ns]);
    expect(table.stdout).not.toContain(await tokenOf('alpha-ci'));
    const missing = await keyward(['inspect', 'secret', 'nope', '-n', ns]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no ApiKey');
  });
});

describe('keyward whoami', () => {
  it('prints the identity the webhook gives the key on stdin, never the key', async () => {
    const token = await tokenOf('alpha-ci');
    const key = await objects.get('apikeys', 'alpha-ci');
    const res = await keyward(['whoami', '--webhook-url', webhook.url, '-o', 'json'], {
      stdin: `${token}\n`,
    });
    expect(res.code).toBe(0);
    expect(json(res)).toEqual({
      username: 'alpha',
      keyId: key.status?.keyId,
      tokenPrefix: key.status?.tokenPrefix,
      scopes: ['projects:alpha'],
      groups: ['deployers'],
    });
    const viaEnv = await keyward(['whoami'], { stdin: token, env: { KEYWARD_WEBHOOK_URL: webhook.url } });
    expect(viaEnv.code).toBe(0);
    expect(viaEnv.stdout).toMatch(/^alpha +key_/m);
    expect(viaEnv.stdout + viaEnv.stderr).not.toContain(token);
  });

  it('exits 1 for a key the webhook refuses and 2 without a key or a webhook', async () => {
    const token = await tokenOf('alpha-ci');
    const wrong = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
    const typo = await keyward(['whoami', '--webhook-url', webhook.url], { stdin: wrong });
    expect(typo.code).toBe(1);
    expect(typo.stderr).toContain('not a keyward key');
    expect(typo.stderr).not.toContain(wrong);
    expect((await keyward(['whoami', '--webhook-url', webhook.url], { stdin: '' })).code).toBe(2);
    expect((await keyward(['whoami'], { stdin: token })).code).toBe(2);
  });
});

describe('keyward rotate', () => {
  it('rotates one key by setting a new keyward.dev/rotate value; the new token verifies', async () => {
    const before = await tokenOf('alpha-ci');
    const res = await keyward(['rotate', 'alpha-ci', '-n', ns, '-o', 'json']);
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    const { rotated } = json<{ rotated: Array<{ name: string; value: string }> }>(res);
    expect(rotated.map((r) => r.name)).toEqual(['alpha-ci']);
    await eventually('alpha-ci rotated', async () => {
      const key = await objects.get('apikeys', 'alpha-ci');
      return key.status?.lastRotationRequest === rotated[0]?.value ? key : undefined;
    });
    const after = await eventually('a new token', async () => {
      const t = await tokenOf('alpha-ci');
      return t !== before ? t : undefined;
    });
    const who = await keyward(['whoami', '--webhook-url', webhook.url], { stdin: after });
    expect(who.code).toBe(0);
  });

  it('rotates by selector and --all, and warns when Argo CD manages the key', async () => {
    const bySelector = await keyward(['rotate', '-n', ns, '-l', 'tier=ci', '-o', 'json']);
    expect(bySelector.code).toBe(0);
    expect(
      json<{ rotated: Array<{ name: string }> }>(bySelector)
        .rotated.map((r) => r.name)
        .sort(),
    ).toEqual(['alpha-ci', 'beta-ci']);
    expect(bySelector.stderr).toMatch(/warning: ApiKey .*\/beta-ci is managed by Argo CD/);
    expect(bySelector.stderr).not.toContain('alpha-ci');
    const all = await keyward(['rotate', '--all', '-n', ns, '-o', 'json']);
    expect(json<{ rotated: unknown[] }>(all).rotated).toHaveLength(3);
    const key = await objects.get('apikeys', 'alpha-web');
    expect(key.metadata?.annotations?.['keyward.dev/rotate']).toBeDefined();
  });

  it('refuses an ambiguous choice with exit 2 and a missing key with exit 1', async () => {
    expect((await keyward(['rotate', 'alpha-ci', '--all', '-n', ns])).code).toBe(2);
    expect((await keyward(['rotate', '-n', ns])).code).toBe(2);
    const missing = await keyward(['rotate', 'nope', '-n', ns]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('not found');
  });
});

describe('keyward suspend / resume', () => {
  it('suspends a user (its keys stop verifying) and resumes it', async () => {
    const token = await tokenOf('alpha-web');
    const res = await keyward(['suspend', 'alpha', '-n', ns]);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`serviceuser ${ns}/alpha suspended`);
    await eventually('alpha suspended', async () => {
      const u = await objects.get('serviceusers', 'alpha');
      return condition(u, 'Suspended')?.status === 'True' ? u : undefined;
    });
    await eventually('key refused', async () => {
      const who = await keyward(['whoami', '--webhook-url', webhook.url], { stdin: token });
      return who.code === 1 ? who : undefined;
    });
    const resumed = await keyward(['resume', 'alpha', '-n', ns, '-o', 'json']);
    expect(json(resumed)).toEqual({ namespace: ns, name: 'alpha', suspended: false });
    await eventually('key verifies again', async () => {
      const who = await keyward(['whoami', '--webhook-url', webhook.url], { stdin: token });
      return who.code === 0 ? who : undefined;
    });
  });

  it('warns when Flux manages the user', async () => {
    const res = await keyward(['suspend', 'beta', '-n', ns]);
    expect(res.code).toBe(0);
    expect(res.stderr).toMatch(
      /warning: ServiceUser .*\/beta is managed by Flux; its next sync may revert spec.suspended/,
    );
    await keyward(['resume', 'beta', '-n', ns]);
  });
});

describe('keyward check', () => {
  it('passes with CRDs, a fresh leader Lease, a ready webhook and a reachable store', async () => {
    const res = await keyward([
      'check',
      '--lease-namespace',
      ns,
      '--webhook-url',
      webhook.url,
      '--store-url',
      storeUrl,
      '-o',
      'json',
    ]);
    const { checks } = json<{ checks: Array<{ check: string; status: string; detail: string }> }>(res);
    expect(
      checks.map((c) => c.status),
      res.stdout,
    ).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
    expect(checks[3]?.detail).toBe(`held by ${operator.identity}`);
    expect(res.code).toBe(0);
  });

  it('fails (exit 1) when the webhook is unreachable or no operator holds the Lease, and skips the store with a note', async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const res = await keyward(['check', '--lease-namespace', `${ns}-none`, '--webhook-url', closed]);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/^operator leader .* +failed +/m);
    expect(res.stdout).toMatch(/^webhook ready +failed +cannot reach/m);
    expect(res.stdout).toMatch(/^store reachable +skipped +no --store-url/m);
  });
});

describe('completion and kubectl plugin', () => {
  it('prints bash, zsh and fish completion from the command tree', async () => {
    const bash = await keyward(['completion', 'bash']);
    expect(bash.code).toBe(0);
    expect(bash.stdout).toContain('"inspect secret"');
    await promisify(execFile)('bash', ['-n', '-c', bash.stdout]);
    const zsh = await keyward(['completion', 'zsh']);
    expect(zsh.stdout).toMatch(/^#compdef keyward/);
    const fish = await keyward(['completion', 'fish']);
    expect(fish.stdout).toContain("complete -c keyward -n '__fish_use_subcommand' -a rotate");
    expect((await keyward(['completion', 'tcsh'])).code).toBe(2);
  });

  it('runs as `kubectl keyward` when installed on PATH as kubectl-keyward', async () => {
    const bin = join(dir, 'bin');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(bin, { recursive: true });
    // What npm's bin link does: kubectl-keyward on PATH runs dist/cli/main.js with node.
    writeFileSync(
      join(bin, 'kubectl-keyward'),
      `#!/bin/sh\nexec "${process.execPath}" "${join(repoRoot(), 'dist', 'cli', 'main.js')}" "$@"\n`,
    );
    chmodSync(join(bin, 'kubectl-keyward'), 0o755);
    const kubectl = join(await controlPlaneBinDir(), 'kubectl');
    const { stdout } = await promisify(execFile)(kubectl, ['keyward', 'status', '-n', ns, '-l', 'tier=web'], {
      env: { PATH: `${bin}:${process.env.PATH}`, KUBECONFIG: kubeconfig, HOME: dir },
    });
    expect(stdout).toMatch(/^alpha-web +alpha +key_/m);
  });
});
