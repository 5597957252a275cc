import { rm } from 'node:fs/promises';
import { type ManagedProcess, waitUntilReady } from '../../devenv/process.js';

/** What the ingress suites ask of a real proxy launcher (Traefik, Caddy): the same shape as nginx's. */
export interface ProxyLocation {
  /** Path prefix clients use, e.g. `/` or `/alpha/`. */
  readonly path: string;
  /** The webhook URL the proxy asks, e.g. `http://127.0.0.1:8080/verify?scope=projects:alpha`. */
  readonly authUrl: string;
}

export interface ProxyOptions {
  readonly locations: readonly ProxyLocation[];
  /** Where allowed requests go (`http://127.0.0.1:<port>`). */
  readonly upstream: string;
  /** Headers copied from a 2xx auth answer onto the upstream request. */
  readonly authResponseHeaders: readonly string[];
}

export interface TestProxy {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** The proxy's own log, for a failing test's message. */
  readonly logFile: string;
  stop(): Promise<void>;
}

/**
 * A started proxy process once `healthPath` answers 200; stop() also removes its temp dir. A proxy
 * that never gets there is stopped and cleaned up before the error is rethrown.
 */
export async function servingProxy(
  proc: ManagedProcess,
  options: { dir: string; port: number; healthPath: string; timeoutMs: number; logFile: string },
): Promise<TestProxy> {
  const url = `http://127.0.0.1:${options.port}`;
  const stop = async (): Promise<void> => {
    await proc.stop();
    await rm(options.dir, { recursive: true, force: true });
  };
  try {
    await waitUntilReady(
      proc,
      async () => (await fetch(`${url}${options.healthPath}`)).status === 200,
      options.timeoutMs,
      'serving',
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, logFile: options.logFile, stop };
}
