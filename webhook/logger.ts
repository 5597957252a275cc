import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * The webhook's one logger. Redaction is the safety net, not the mechanism: request logging is
 * off and no code logs a header or a token. The net catches a future `log.info({ req })` or an
 * error that carries the request: credential headers (both standard ones and the configured
 * token header) and any `token` field are censored wherever they appear one level down.
 */
export function createLogger(
  options: { level?: string; tokenHeader?: string | null } = {},
  destination?: DestinationStream,
): Logger {
  const headers = ['authorization', 'x-api-key', 'cookie', 'proxy-authorization'];
  if (options.tokenHeader && !headers.includes(options.tokenHeader)) headers.push(options.tokenHeader);
  const paths = [
    ...headers.flatMap((h) => [`req.headers["${h}"]`, `headers["${h}"]`, `*.headers["${h}"]`]),
    'token',
    '*.token',
    'spec.token',
    '*.spec.token',
  ];
  return pino(
    {
      level: options.level ?? 'info',
      redact: { paths, censor: '[redacted]' },
      serializers: {
        // The query string of a proxied URL is where API keys end up when clients misuse them.
        req: (req: { method?: string; url?: string; id?: string }) => ({
          id: req.id,
          method: req.method,
          path: req.url?.split('?')[0],
        }),
      },
    },
    destination,
  );
}

/** Errors reach logs as name, code and message only: a driver error's other fields may quote values. */
export function safeError(err: unknown): { name: string; message: string; code?: string } {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { name: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}) };
  }
  return { name: 'Error', message: String(err) };
}
