import type { Server as TlsServer } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { safeError } from '../logger.js';
import { readTlsFiles, type TlsConfig, tlsFilesVersion } from '../tls.js';

/** Certificate reloading, when the webhook serves TLS. */
export interface TlsReloader {
  /** Re-reads the files if they changed since the last load; true when a new context is in use. */
  reloadIfChanged(): boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    tlsReloader: TlsReloader | null;
  }
}

/**
 * Polls the TLS files and swaps the server's secure context when they change, so a renewed
 * certificate (cert-manager, a rotated Secret) is served without a restart; connections already
 * open keep the context they started with. A half-written or mismatched pair is logged and the
 * old context stays in use, to be retried on the next change.
 */
async function tlsPlugin(app: FastifyInstance, options: { readonly tls: TlsConfig | null }): Promise<void> {
  const { tls } = options;
  if (tls === null) {
    app.decorate('tlsReloader', null);
    return;
  }
  const server = app.server as unknown as TlsServer;
  let loaded = tlsFilesVersion(tls);
  const reloader: TlsReloader = {
    reloadIfChanged(): boolean {
      const version = tlsFilesVersion(tls);
      if (version === loaded) return false;
      loaded = version;
      try {
        server.setSecureContext(readTlsFiles(tls));
      } catch (err) {
        app.log.error(
          { err: safeError(err) },
          'TLS files changed but cannot be used; keeping the previous certificate',
        );
        return false;
      }
      app.log.info('TLS certificate reloaded');
      return true;
    },
  };
  const timer = setInterval(() => reloader.reloadIfChanged(), tls.reloadIntervalMs);
  timer.unref();
  app.decorate('tlsReloader', reloader);
  app.addHook('onClose', async () => {
    clearInterval(timer);
  });
}

export default fp(tlsPlugin, { name: 'keyward-tls' });
