import { createServer as createHttpServer, type Server, type ServerOptions } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { FastifyServerFactory } from 'fastify';
import type { WebhookConfig } from './config.js';
import { readTlsFiles } from './tls.js';

/** Node checks header and request deadlines on this period; its default (30 s) would let them run late. */
const MAX_CHECK_INTERVAL_MS = 1_000;

/**
 * Reads the peer's address as a connection opens. Node's sockets learn it on first use and keep
 * it in a property they did not have before: read on a socket's first request (the request log
 * and the failed-attempt limit need it), that change of shape reached Node's HTTP functions
 * already optimised for sockets without it, which were deoptimised ("wrong map") and recompiled
 * to handle both shapes. Read here, every socket has one shape before Node's HTTP code first
 * sees it (2026-12-03, --trace-deopt: ten such deoptimisations of HTTP functions in a webhook
 * with the request log, none with it off or with this).
 */
function notePeer(socket: Socket): void {
  void socket.remoteAddress;
}

/**
 * The verification port's server: HTTP, or HTTPS with the configured certificate. Headers must
 * arrive within headersTimeout and the whole request within requestTimeout (slow clients are cut
 * off with 408), idle keep-alive connections close after keepAliveTimeout, a TLS handshake gets
 * as long as the headers, and at most maxConnections are open at once (more are refused).
 * With a client CA, client certificates are requested but not required: /tokenreview checks
 * them, /verify callers (ingress controllers) present none.
 */
export function serverFactory(config: WebhookConfig): FastifyServerFactory {
  const { http } = config;
  const options: ServerOptions = {
    maxHeaderSize: config.maxHeaderBytes,
    headersTimeout: http.headersTimeoutMs,
    requestTimeout: http.requestTimeoutMs,
    keepAliveTimeout: http.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.min(MAX_CHECK_INTERVAL_MS, Math.ceil(http.headersTimeoutMs / 4)),
  };
  return (handler) => {
    let server: Server;
    if (config.tls === null) {
      server = createHttpServer(options, handler);
    } else {
      const material = readTlsFiles(config.tls);
      server = createHttpsServer(
        {
          ...options,
          ...material,
          minVersion: 'TLSv1.2',
          handshakeTimeout: http.headersTimeoutMs,
          requestCert: material.ca !== undefined,
          rejectUnauthorized: false,
        },
        handler,
      );
    }
    server.keepAliveTimeout = http.keepAliveTimeoutMs;
    server.maxConnections = http.maxConnections;
    // Before Node's own listener sees the connection (prepended), so that every socket has the
    // same hidden class from its start (notePeer says why).
    server.prependListener(config.tls === null ? 'connection' : 'secureConnection', notePeer);
    return server;
  };
}
