/** A mistake in the command line found after parsing (exit 2). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * A Kubernetes API error as one line (the status message), without the request's details.
 * Kept apart from kube.ts so that cli/main.ts can report errors without loading the Kubernetes
 * client: `keyward webhook` never talks to the API server, and the client is ~40 MiB of RSS.
 */
export function apiErrorMessage(err: unknown): string {
  const e = err as { code?: number; body?: unknown; message?: string };
  if (typeof e.code === 'number') {
    let message: string | undefined;
    try {
      const body = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
      message = (body as { message?: string } | undefined)?.message;
    } catch {
      // not a Status body
    }
    return `${message ?? 'request failed'} (HTTP ${e.code})`;
  }
  return e.message ?? String(err);
}
