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
