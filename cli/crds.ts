import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { crdFiles } from '../api/crd.js';
import { crdTemplate } from './chart-crds.js';

/**
 * Prints every CRD as one YAML stream, or writes one file per CRD into `outDir`; with
 * `chartTemplates`, also the chart's CRD templates (stale ones removed).
 */
export function crdsCommand(options: { out?: string; chartTemplates?: string }): void {
  const files = crdFiles();
  if (!options.out && !options.chartTemplates) {
    process.stdout.write(files.map((f) => f.yaml).join('---\n'));
    return;
  }
  if (options.out) {
    mkdirSync(options.out, { recursive: true });
    for (const f of files) writeFileSync(join(options.out, f.file), f.yaml);
  }
  if (options.chartTemplates) {
    const dir = options.chartTemplates;
    mkdirSync(dir, { recursive: true });
    for (const old of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) rmSync(join(dir, old));
    for (const f of files) writeFileSync(join(dir, f.file), crdTemplate(parse(f.yaml), f.file));
  }
}
