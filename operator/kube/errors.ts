/** A non-2xx answer from the API server to a request made outside the generated client. */
export class KubeStatusError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'KubeStatusError';
  }
}

/**
 * The HTTP status of a failed API call, whichever layer raised it: the generated client's
 * ApiException (`code`), client-node's Watch (`statusCode`) or KubeStatusError. undefined for
 * transport errors (connection refused, reset, timeout).
 */
export function statusCodeOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e.statusCode === 'number') return e.statusCode;
  // Node system errors also have `code`, but as a string (ECONNREFUSED).
  if (typeof e.code === 'number') return e.code;
  return undefined;
}

/**
 * Answers to a write that repeating the same write cannot change: the API server refused the
 * object itself (400 bad request, 413 too large, 422 invalid). 403 is left out: RBAC is fixed
 * by the operator's administrator without any change to the object, so it is retried.
 */
const PERMANENT_WRITE_CODES = new Set([400, 413, 422]);

export function isPermanentWriteError(err: unknown): boolean {
  const code = statusCodeOf(err);
  return code !== undefined && PERMANENT_WRITE_CODES.has(code);
}

/** The API server's own message (the Status object's `message`), else the error's. */
export function apiServerMessage(err: unknown): string {
  const body = (err as { body?: unknown } | null)?.body;
  let parsed: unknown = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = undefined;
    }
  }
  const message = (parsed as { message?: unknown } | undefined)?.message;
  if (typeof message === 'string' && message !== '') return message;
  return err instanceof Error ? err.message : String(err);
}
