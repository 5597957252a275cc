import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const LOCK_TIMEOUT_MS = 20 * 60_000;
/** kube-proxy's iptables chains and the kubelet's are host-global: one node per machine at a time. */
const LOCK_FILE = join(tmpdir(), 'keyward-node.lock');

/**
 * Waits until no other live process runs a local node, then takes the machine-wide lock (a file
 * holding our pid; a dead owner's lock is taken over). Resolves with the release function.
 */
export async function acquireLock(): Promise<() => void> {
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  for (;;) {
    try {
      mkdirSync(tmpdir(), { recursive: true });
      writeFileSync(LOCK_FILE, String(process.pid), { flag: 'wx' });
      let released = false;
      return () => {
        if (released) return;
        released = true;
        rmSync(LOCK_FILE, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner = 0;
    try {
      owner = Number.parseInt(readFileSync(LOCK_FILE, 'utf8').trim(), 10) || 0;
    } catch {
      continue; // released meanwhile: try again
    }
    if (!owner || !isAlive(owner)) {
      rmSync(LOCK_FILE, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `another local node (pid ${owner}) has been running for ${LOCK_TIMEOUT_MS / 60_000} min`,
      );
    }
    await sleep(1000);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
