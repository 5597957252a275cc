import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { repoRoot } from '../../devenv/repo.js';

export const chartDir = join(repoRoot(), 'charts', 'keyward');

/** Rendered YAML has no static shape: the assertions walk into whatever the chart wrote. */
// biome-ignore lint/suspicious/noExplicitAny: see above
type Loose = any;

export type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; [k: string]: Loose };
  [k: string]: Loose;
};

export interface Rendered {
  readonly yaml: string;
  readonly manifests: Manifest[];
  /** The one manifest of this kind and name; throws listing what was rendered otherwise. */
  get(kind: string, name: string): Manifest;
  all(kind: string): Manifest[];
}

/** The values every install must give: where the two database roles' URLs are. */
export const requiredValues = [
  '--set',
  'postgres.operator.existingSecret=keyward-postgres-operator',
  '--set',
  'postgres.webhook.existingSecret=keyward-postgres-webhook',
];

export function runHelm(helm: string, args: string[]): { status: number; stdout: string; stderr: string } {
  const result = spawnSync(helm, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 120_000 });
  if (result.error) throw result.error;
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** `helm template keyward charts/keyward -n <namespace> <args>`; throws with helm's message on failure. */
export function helmTemplate(helm: string, namespace: string, args: string[] = []): Rendered {
  const result = runHelm(helm, ['template', 'keyward', chartDir, '--namespace', namespace, ...args]);
  if (result.status !== 0) throw new Error(`helm template failed (${result.status}): ${result.stderr}`);
  const manifests = parseAllDocuments(result.stdout)
    .map((doc) => {
      if (doc.errors.length > 0)
        throw new Error(`helm template rendered invalid YAML: ${doc.errors[0]?.message}`);
      return doc.toJS() as Manifest | null;
    })
    .filter((m): m is Manifest => m !== null);
  return {
    yaml: result.stdout,
    manifests,
    all: (kind) => manifests.filter((m) => m.kind === kind),
    get(kind, name) {
      const found = manifests.filter((m) => m.kind === kind && m.metadata.name === name);
      if (found.length !== 1) {
        const names = manifests.map((m) => `${m.kind}/${m.metadata.name}`).join(', ');
        throw new Error(`expected one ${kind}/${name}, found ${found.length}; rendered: ${names}`);
      }
      return found[0]!;
    },
  };
}

/** The pod templates of the Deployments and Jobs, with the object each belongs to. */
export function podTemplates(r: Rendered): Array<{ spec: Manifest; owner: Manifest }> {
  return r.manifests
    .filter((m) => ['Deployment', 'Job'].includes(m.kind))
    .map((m) => ({ spec: m.spec.template.spec, owner: m }));
}

/** The first container of a workload. */
export function container(r: Rendered, kind: string, name: string): Manifest {
  return r.get(kind, name).spec.template.spec.containers[0];
}

/** A container's plain environment variables (valueFrom ones map to undefined). */
export function env(c: Manifest): Record<string, string | undefined> {
  return Object.fromEntries((c.env as Array<{ name: string; value?: string }>).map((e) => [e.name, e.value]));
}

/** `helm template` in namespace `keyward` with the required values and `args`. */
export function renderer(helm: string): (...args: string[]) => Rendered {
  return (...args) => helmTemplate(helm, 'keyward', [...requiredValues, ...args]);
}
