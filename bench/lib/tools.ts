// The external tools the HTTP benchmarks drive, resolved once with the command that installs each,
// so a missing tool stops a run at its start instead of surfacing as a start-up timeout.
import { requireTool } from '../../devenv/process.js';

export const taskset = (): string => requireTool('taskset', 'apt-get install -y util-linux');
export const wrkBin = (): string => requireTool('wrk', 'apt-get install -y wrk');
export const nginxBin = (): string => requireTool('nginx', 'apt-get install -y nginx-light', ['/usr/sbin']);

/**
 * Servers under test run on this CPU and the load generator on the other, so the generator never
 * competes with the server it measures (the machine has two cores).
 */
export const SERVER_CPU = 0;
export const GENERATOR_CPU = 1;
