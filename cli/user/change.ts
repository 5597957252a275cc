import { randomBytes } from 'node:crypto';
import { ROTATE_ANNOTATION } from '../../api/apikey.js';
import { UsageError } from './errors.js';
import { warnIfGitOps } from './gitops.js';
import {
  getObject,
  type KeywardObject,
  type KubeOptions,
  kubeTarget,
  listObjects,
  mergePatch,
} from './kube.js';
import { EXIT_OK, emit, type OutputFormat, table } from './output.js';

export interface RotateOptions extends KubeOptions {
  readonly output: OutputFormat;
  readonly selector?: string;
  readonly all?: boolean;
}

/** A value no earlier rotation used: the time for humans, random bits so two runs never collide. */
function rotationValue(): string {
  return `${new Date().toISOString()}-${randomBytes(3).toString('hex')}`;
}

/** `keyward rotate NAME | -l SELECTOR | --all`: sets keyward.dev/rotate to a new value. */
export async function rotateCommand(name: string | undefined, options: RotateOptions): Promise<number> {
  const chosen = [name !== undefined, options.selector !== undefined, options.all === true].filter(Boolean);
  if (chosen.length !== 1) throw new UsageError('rotate takes exactly one of NAME, -l SELECTOR or --all');
  const target = kubeTarget(options);
  if (name !== undefined && target.namespace === undefined)
    throw new UsageError('rotate NAME needs a namespace, not -A');
  const keys =
    name !== undefined
      ? [await getObject(target, 'apikeys', name)]
      : await listObjects(target, 'apikeys', options.selector);
  const rotated: Array<{ namespace?: string; name?: string; value: string }> = [];
  for (const key of keys) {
    const value = rotationValue();
    warnIfGitOps(
      key,
      'ApiKey',
      `the ${ROTATE_ANNOTATION} annotation (the key stays rotated)`,
      `set ${ROTATE_ANNOTATION} in the manifest`,
    );
    await mergePatch(target, key, 'apikeys', { metadata: { annotations: { [ROTATE_ANNOTATION]: value } } });
    rotated.push({ namespace: key.metadata?.namespace, name: key.metadata?.name, value });
  }
  emit(options.output, { rotated }, () =>
    rotated.length === 0
      ? 'No ApiKeys matched.\n'
      : table(rotated, [
          { header: 'NAMESPACE', value: (r) => r.namespace },
          { header: 'APIKEY', value: (r) => r.name },
          { header: 'ROTATE', value: (r) => r.value },
        ]),
  );
  return EXIT_OK;
}

export interface SuspendOptions extends KubeOptions {
  readonly output: OutputFormat;
}

/** `keyward suspend|resume NAME`: ServiceUser spec.suspended, by merge patch. */
export async function setSuspendedCommand(
  name: string,
  suspended: boolean,
  options: SuspendOptions,
): Promise<number> {
  const target = kubeTarget(options);
  const user: KeywardObject = await getObject(target, 'serviceusers', name);
  warnIfGitOps(user, 'ServiceUser', 'spec.suspended', `set spec.suspended: ${suspended} in the manifest`);
  await mergePatch(target, user, 'serviceusers', { spec: { suspended } });
  const data = { namespace: user.metadata?.namespace, name, suspended };
  emit(
    options.output,
    data,
    () => `serviceuser ${data.namespace}/${name} ${suspended ? 'suspended' : 'resumed'}\n`,
  );
  return EXIT_OK;
}
