import { readFileSync } from 'node:fs';

/**
 * The store URL from KEYWARD_STORE_URL, or else from the file KEYWARD_STORE_URL_FILE names (a
 * mounted Secret: the chart never puts the URL, which carries a password, into the environment).
 * Throws naming the variable and path, never the content, when the file cannot be read.
 */
export function storeUrlFromEnv(env: NodeJS.ProcessEnv): string | undefined {
  const direct = env.KEYWARD_STORE_URL?.trim();
  if (direct) return direct;
  const file = env.KEYWARD_STORE_URL_FILE?.trim();
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch (err) {
    throw new Error(
      `KEYWARD_STORE_URL_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
}
