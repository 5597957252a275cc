import { readFileSync, statSync } from 'node:fs';
import type { SecureContextOptions } from 'node:tls';
import { ConfigError, type WebhookConfig } from './config.js';

export type TlsConfig = NonNullable<WebhookConfig['tls']>;

/** The PEM material of the serving certificate (and the client CA), read from the configured files. */
export function readTlsFiles(tls: TlsConfig): SecureContextOptions {
  const read = (path: string, variable: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new ConfigError(
        `${variable}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  };
  return {
    cert: read(tls.certFile, 'KEYWARD_TLS_CERT_FILE'),
    key: read(tls.keyFile, 'KEYWARD_TLS_KEY_FILE'),
    ...(tls.clientCaFile === null ? {} : { ca: read(tls.clientCaFile, 'KEYWARD_TLS_CLIENT_CA_FILE') }),
  };
}

/**
 * What changes when a file is replaced: a mounted Secret swaps a symlink (new inode), cert-manager
 * or an editor rewrites in place (new mtime or size). Cheap enough to poll: stat only.
 */
export function tlsFilesVersion(tls: TlsConfig): string {
  return [tls.certFile, tls.keyFile, tls.clientCaFile]
    .map((path) => {
      if (path === null) return '-';
      try {
        const s = statSync(path);
        return `${s.ino}:${s.size}:${s.mtimeMs}`;
      } catch {
        return 'missing';
      }
    })
    .join('|');
}
