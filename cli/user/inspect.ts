import { type KubeOptions, kubeTarget, listObjects, namespaceOf } from './kube.js';
import { EXIT_OK, emit, fail, type OutputFormat, table } from './output.js';

export interface InspectOptions extends KubeOptions {
  readonly output: OutputFormat;
}

/**
 * `keyward inspect secret NAME`: which key the Secret holds, from the status of the ApiKey that
 * owns it. The Secret itself is never read, so no token reaches this process.
 */
export async function inspectSecretCommand(name: string, options: InspectOptions): Promise<number> {
  const target = kubeTarget(options);
  const namespace = namespaceOf(target);
  const keys = await listObjects(target, 'apikeys');
  // status.secretName is what the operator wrote; spec.secret.name (default: the ApiKey's name) before that.
  const secretOf = (k: (typeof keys)[number]): unknown =>
    k.status?.secretName ?? (k.spec?.secret as { name?: unknown } | undefined)?.name ?? k.metadata?.name;
  const owner = keys.find((k) => secretOf(k) === name);
  if (!owner) return fail(`no ApiKey in namespace ${namespace} writes a Secret named ${name}`);
  const s = owner.status ?? {};
  const data = {
    secret: name,
    namespace,
    apiKey: owner.metadata?.name,
    keyId: s.keyId ?? null,
    tokenPrefix: s.tokenPrefix ?? null,
    expiresAt: s.expiresAt ?? null,
  };
  emit(options.output, data, () =>
    table(
      [data],
      [
        { header: 'SECRET', value: (r) => r.secret },
        { header: 'APIKEY', value: (r) => r.apiKey },
        { header: 'KEY-ID', value: (r) => r.keyId as string | null },
        { header: 'TOKEN-PREFIX', value: (r) => r.tokenPrefix as string | null },
        { header: 'EXPIRES', value: (r) => (r.expiresAt as string | null) ?? 'never' },
      ],
    ),
  );
  return EXIT_OK;
}
