import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseParts } from '../node/binaries.js';
import { runBuildScript } from '../process.js';

export interface ImageArchive {
  /** docker-archive file (what `ctr images import` and `docker load` read). */
  archive: string;
  /** The reference recorded in the archive, e.g. `localhost/keyward:0.1.0-<hash>`. */
  image: string;
}

/**
 * The keyward image, built without a container engine by devenv/image/build.sh from the
 * Dockerfile's steps, cached by a hash of its inputs (a no-op when nothing changed).
 */
export async function buildKeywardImage(): Promise<ImageArchive> {
  let dir = dirname(fileURLToPath(import.meta.url));
  if (dir.includes('/dist/')) dir = dir.replace(/\/dist\//, '/');
  const script = join(dir, 'build.sh');
  const parts = parseParts((await runBuildScript(script)).stdout);
  if (!parts.archive || !parts.image) throw new Error(`${script} printed no archive=/image= lines`);
  return { archive: parts.archive, image: parts.image };
}
