import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { repoRoot } from '../../devenv/repo.js';
import { argoHealthAll, healthScript, type KstatusStatus, kstatusAll } from '../support/status.js';

/**
 * The shipped Argo CD health checks, run as Argo CD runs them (gopher-lua) against every case of
 * their health_test.yaml, and the same fixtures through the real kstatus library, so the two
 * verdicts a GitOps user sees for each lifecycle state are pinned side by side.
 */
const kinds = ['ApiKey', 'ServiceUser'] as const;

/**
 * What kstatus (Flux `wait`) says about each fixture. An object with no status at all is Current
 * to kstatus (it cannot tell "not reconciled yet" from "needs no status"): hence the first pass
 * writes status. Ready=False without Stalled is InProgress to kstatus, so a disabled key, or a
 * user waiting for its username, keeps a Flux `wait` waiting; an expired key is Stalled (only a
 * spec change or a manual rotation brings it back), so `wait` fails at once with its message.
 */
const expectedKstatus: Record<string, KstatusStatus> = {
  progressing_noStatus: 'Current',
  progressing_firstPass: 'InProgress',
  progressing_waitingForServiceUser: 'InProgress',
  progressing_newGeneration: 'InProgress',
  healthy_issued: 'Current',
  healthy_stored: 'Current',
  degraded_notPermitted: 'Failed',
  degraded_expired: 'Failed',
  degraded_usernameConflict: 'InProgress',
  suspended_disabled: 'InProgress',
  suspended_suspended: 'Current',
};

interface HealthTest {
  healthStatus: { status: string; message: string };
  inputPath: string;
}

function casesOf(kind: (typeof kinds)[number]): Array<HealthTest & { object: unknown; name: string }> {
  const dir = join(repoRoot(), 'charts/keyward/health/keyward.dev', kind);
  const { tests } = parse(readFileSync(join(dir, 'health_test.yaml'), 'utf8')) as { tests: HealthTest[] };
  return tests.map((t) => ({
    ...t,
    name: t.inputPath.replace(/^testdata\//, '').replace(/\.yaml$/, ''),
    object: parse(readFileSync(join(dir, t.inputPath), 'utf8')),
  }));
}

describe.each(kinds)('Argo CD health check for %s', (kind) => {
  const cases = casesOf(kind);

  it('has a health_test.yaml case for every testdata file, and one of each health status', () => {
    const files = readdirSync(join(repoRoot(), 'charts/keyward/health/keyward.dev', kind, 'testdata'));
    expect(cases.map((c) => c.inputPath).sort()).toEqual(files.map((f) => `testdata/${f}`).sort());
    expect(new Set(cases.map((c) => c.healthStatus.status))).toEqual(
      new Set(['Progressing', 'Healthy', 'Degraded', 'Suspended']),
    );
    expect(healthScript(kind)).toMatch(/health\.lua$/);
  });

  it('gives every health_test.yaml case its status and message under gopher-lua', async () => {
    const verdicts = await argoHealthAll(
      kind,
      cases.map((c) => c.object),
    );
    expect(verdicts).toEqual(cases.map((c) => c.healthStatus));
  });

  it('agrees with the real kstatus library on every fixture', async () => {
    const verdicts = await kstatusAll(cases.map((c) => c.object as never));
    expect(Object.fromEntries(cases.map((c, i) => [c.name, verdicts[i]?.status]))).toEqual(
      Object.fromEntries(cases.map((c) => [c.name, expectedKstatus[c.name]])),
    );
  });
});
