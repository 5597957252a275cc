import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crdFiles } from '../api/crd.js';

/** Prints every CRD as one YAML stream, or writes one file per CRD into `outDir`. */
export function crdsCommand(options: { out?: string }): void {
  const files = crdFiles();
  if (!options.out) {
    process.stdout.write(files.map((f) => f.yaml).join('---\n'));
    return;
  }
  mkdirSync(options.out, { recursive: true });
  for (const f of files) writeFileSync(join(options.out, f.file), f.yaml);
}
