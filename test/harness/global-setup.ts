import type { TestProject } from 'vitest/node';
import { startControlPlane } from '../../devenv/controlplane/controlplane.js';
import { installCrds } from '../../devenv/crds.js';
import { startPostgres } from '../../devenv/postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the run's private Postgres; tests take their own database from it. */
    pgAdminUrl: string;
    /** Admin kubeconfig of the run's control plane, or '' when KEYWARD_TEST_KUBE=0. */
    kubeconfigPath: string;
    /** Directory with the control plane's binaries (kubectl among them), or ''. */
    controlPlaneBinDir: string;
  }
}

/**
 * Starts one private Postgres and one control plane (with keyward's CRDs installed) for the whole
 * run and tears both down at the end. KEYWARD_TEST_KUBE=0 skips the control plane (for store-only
 * work); suites that need it then fail with a message saying so.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started: Array<{ stop(): Promise<void> }> = [];
  const stopAll = async (): Promise<void> => {
    await Promise.allSettled(started.reverse().map((item) => item.stop()));
  };
  try {
    const pgStart = startPostgres().then((pg) => {
      started.push(pg);
      return pg;
    });
    const cpStart =
      process.env.KEYWARD_TEST_KUBE === '0'
        ? Promise.resolve(undefined)
        : startControlPlane().then(async (cp) => {
            started.push(cp);
            await installCrds(cp.kubeConfig());
            return cp;
          });
    // allSettled: when one start fails, the other still finishes and is then stopped below.
    const [pgResult, cpResult] = await Promise.allSettled([pgStart, cpStart]);
    if (pgResult.status === 'rejected') throw pgResult.reason;
    if (cpResult.status === 'rejected') throw cpResult.reason;
    const pg = pgResult.value;
    const cp = cpResult.value;
    project.provide('pgAdminUrl', pg.adminUrl);
    project.provide('kubeconfigPath', cp?.kubeconfigPath ?? '');
    project.provide('controlPlaneBinDir', cp?.binDir ?? '');
    return stopAll;
  } catch (err) {
    await stopAll();
    throw err;
  }
}
