/**
 * Starts a local control plane outside vitest and keeps it up until Ctrl+C, for poking at it with
 * kubectl or running a component against it by hand:
 *
 *   npm run build && node dist/devenv/controlplane/start.js [log-dir]
 *
 * Prints shell exports for the admin kubeconfig and the built kubectl.
 */
import { startControlPlane } from './controlplane.js';

const logDir = process.argv[2];
const cp = await startControlPlane(logDir ? { logDir } : {});
process.stdout.write(`export KUBECONFIG=${cp.kubeconfigPath}\nexport PATH=${cp.binDir}:$PATH\n`);
// The components' output pipes keep this process alive; on SIGINT/SIGTERM the exit hook in
// process.ts kills them and removes the temp dir.
