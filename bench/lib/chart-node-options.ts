// The V8 flags and malloc setting the chart gives a component (values.yaml), so that a benchmark
// measures the process as it runs in a cluster rather than with Node's defaults, which on a large
// machine let the heap grow to gigabytes before collecting.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { repoRoot } from '../../devenv/repo.js';

type ComponentValues = { nodeOptions?: unknown; nodeFlags?: unknown; mallocArenaMax?: unknown } | undefined;

function componentValues(component: 'webhook' | 'operator'): ComponentValues {
  const values = parse(readFileSync(join(repoRoot(), 'charts', 'keyward', 'values.yaml'), 'utf8')) as Record<
    string,
    ComponentValues
  >;
  return values[component];
}

/** `<component>.nodeOptions`: what the chart puts in NODE_OPTIONS. */
export function chartNodeOptions(component: 'webhook' | 'operator'): string {
  const options = componentValues(component)?.nodeOptions;
  return typeof options === 'string' ? options : '';
}

/** The flags the chart puts on the operator's `node` command line (`operator.nodeFlags`). */
export function chartNodeFlags(): string[] {
  const flags = componentValues('operator')?.nodeFlags;
  return typeof flags === 'string' ? flags.split(' ').filter(Boolean) : [];
}

/** MALLOC_ARENA_MAX as the chart sets it for a component (`<component>.mallocArenaMax`), or undefined. */
export function chartMallocArenaMax(component: 'webhook' | 'operator'): string | undefined {
  const arenas = componentValues(component)?.mallocArenaMax;
  return typeof arenas === 'number' ? String(arenas) : undefined;
}
