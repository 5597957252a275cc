/**
 * Starts a local node outside vitest and keeps it up until Ctrl+C (which tears it down fully),
 * for `helm install`, kubectl or a component run by hand:
 *
 *   npm run build && node dist/devenv/node/start.js [image-archive …]
 *
 * Without arguments it builds and loads the keyward image. Prints shell exports.
 */
import { buildKeywardImage } from '../image/image.js';
import { startNodeCluster } from './node.js';

const archives = process.argv.slice(2);
const image = archives.length === 0 ? await buildKeywardImage() : undefined;
const node = await startNodeCluster({ images: image ? [image.archive] : archives });
process.stdout.write(
  [
    `export KUBECONFIG=${node.kubeconfigPath}`,
    `export PATH=${node.binDir}:$PATH`,
    `export KEYWARD_NODE_HOST_ADDRESS=${node.hostAddress}`,
    ...(image ? [`export KEYWARD_IMAGE=${image.image}`] : []),
    '',
  ].join('\n'),
);
// The components' output pipes keep this process alive until a signal starts the teardown.
