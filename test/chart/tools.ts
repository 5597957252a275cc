import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../devenv/repo.js';

/**
 * Paths of the chart-check tools and peer CRD directories, from test/tools/build.sh (which builds
 * what is missing into ~/.cache/keyward/tools and prints `name=path` lines).
 */
export function chartTools(): {
  helm: string;
  kubeconform: string;
  certManagerCrds: string;
  prometheusOperatorCrds: string;
} {
  const get = builtTools(['helm', 'kubeconform', 'cert-manager-crds', 'prometheus-operator-crds']);
  return {
    helm: get('helm'),
    kubeconform: get('kubeconform'),
    certManagerCrds: get('cert-manager-crds'),
    prometheusOperatorCrds: get('prometheus-operator-crds'),
  };
}

/** The real `helm` CLI alone (what the in-cluster install test runs). */
export function helmBinary(): string {
  return builtTools(['helm'])('helm');
}

function builtTools(names: string[]): (name: string) => string {
  const out = execFileSync('bash', [join(repoRoot(), 'test', 'tools', 'build.sh'), ...names], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 900_000,
  });
  const paths = new Map(
    out
      .trim()
      .split('\n')
      .map((line) => line.split('=', 2) as [string, string]),
  );
  return (name) => {
    const path = paths.get(name);
    if (!path) throw new Error(`test/tools/build.sh printed no ${name}=… line:\n${out}`);
    return path;
  };
}
