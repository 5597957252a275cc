import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadOperatorConfig } from './config.js';
import { armFailpoints, FAILPOINTS, failpoint } from './failpoints.js';

const MODULE = fileURLToPath(new URL('./failpoints.ts', import.meta.url));

/**
 * Runs `script` in a fresh Node process with the failpoints module imported as `fp` (Node strips
 * the types): the only way to watch a failpoint do what it is for, end the process.
 */
function inChild(script: string): { status: number | null; signal: NodeJS.Signals | null; output: string } {
  const source = `const fp = await import(${JSON.stringify(MODULE)});\n${script}`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', source], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  return { status: run.status, signal: run.signal, output: `${run.stdout}${run.stderr}` };
}

describe('failpoints', () => {
  it('refuse an unknown name, naming it and the known points', () => {
    expect(() => armFailpoints(['apikey.rotate.after-stor', FAILPOINTS.issueAfterStore])).toThrow(
      /KEYWARD_FAILPOINTS: unknown failpoint apikey\.rotate\.after-stor \(known: .*apikey\.rotate\.after-store/,
    );
  });

  it('do nothing where they are not armed', () => {
    armFailpoints([]);
    // Reaching every point unarmed returns: this test process is still here to finish.
    for (const name of Object.values(FAILPOINTS)) failpoint(name);
    const child = inChild(
      `fp.armFailpoints([${JSON.stringify(FAILPOINTS.revokeAfterStore)}]);
       fp.failpoint(${JSON.stringify(FAILPOINTS.rotateAfterStore)});
       fp.failpoint(${JSON.stringify(FAILPOINTS.issueAfterSecret)});
       console.log('passed two unarmed points');`,
    );
    expect(child).toMatchObject({ status: 0, signal: null });
    expect(child.output).toContain('passed two unarmed points');
  });

  it('kill the process with SIGKILL at an armed point, before the next statement', () => {
    const child = inChild(
      `fp.armFailpoints([${JSON.stringify(FAILPOINTS.rotateAfterStore)}]);
       console.log('reached the point');
       fp.failpoint(${JSON.stringify(FAILPOINTS.rotateAfterStore)});
       console.log('ran past the point');`,
    );
    expect(child.signal).toBe('SIGKILL');
    expect(child.output).toContain('reached the point');
    expect(child.output).toContain(`failpoint ${FAILPOINTS.rotateAfterStore}: killing the operator`);
    expect(child.output).not.toContain('ran past the point');
  });

  it('have distinct names', () => {
    const names = Object.values(FAILPOINTS);
    expect(new Set(names).size).toBe(names.length);
  });
});

describe('KEYWARD_FAILPOINTS', () => {
  const base = { KEYWARD_STORE_URL: 'postgres://keyward@db/keyward' };

  it('arms nothing when unset or empty', () => {
    expect(loadOperatorConfig(base).failpoints).toEqual([]);
    expect(loadOperatorConfig({ ...base, KEYWARD_FAILPOINTS: ' , ' }).failpoints).toEqual([]);
  });

  it('is a comma-separated list, trimmed', () => {
    const config = loadOperatorConfig({
      ...base,
      KEYWARD_FAILPOINTS: ` ${FAILPOINTS.issueAfterSecret} ,,${FAILPOINTS.userRevokeAfterStore}`,
    });
    expect(config.failpoints).toEqual([FAILPOINTS.issueAfterSecret, FAILPOINTS.userRevokeAfterStore]);
    expect(() => armFailpoints(config.failpoints)).not.toThrow();
    armFailpoints([]);
  });
});
