import { parseToken } from '../../credentials/token.js';
import { UsageError } from './errors.js';
import { EXIT_OK, emit, fail, type OutputFormat, table } from './output.js';
import { webhookFetch, webhookUrl } from './webhook-client.js';

export interface WhoamiOptions {
  readonly output: OutputFormat;
  readonly webhookUrl?: string;
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/** More than any token; a longer stdin is not a key and is not read further. */
const MAX_STDIN_BYTES = 4096;

async function readKey(): Promise<string> {
  if (process.stdin.isTTY)
    throw new UsageError('whoami reads the key from stdin (pipe it in); never pass it as an argument');
  let text = '';
  for await (const chunk of process.stdin) {
    text += (chunk as Buffer).toString('utf8');
    if (text.length > MAX_STDIN_BYTES) throw new UsageError('stdin holds more than a key');
  }
  const key = text.trim();
  if (key === '') throw new UsageError('no key on stdin');
  return key;
}

/** `keyward whoami`: asks the webhook's /verify who the key on stdin is; never prints the key. */
export async function whoamiCommand(options: WhoamiOptions): Promise<number> {
  const url = webhookUrl(options.webhookUrl);
  if (url === undefined) throw new UsageError('whoami needs --webhook-url or $KEYWARD_WEBHOOK_URL');
  const target = new URL(url);
  if (target.protocol === 'http:' && !LOOPBACK.has(target.hostname)) {
    process.stderr.write(
      `warning: sending the key to ${target.host} over plain HTTP; use https:// outside a port-forward\n`,
    );
  }
  const key = await readKey();
  const parsed = parseToken(key);
  if (!parsed.ok) return fail(`stdin is not a keyward key (${parsed.reason.replace('_', ' ')})`);
  let res: Response;
  try {
    res = await webhookFetch(`${url}/verify`, { headers: { authorization: `Bearer ${key}` } });
  } catch (err) {
    return fail(`cannot reach the webhook at ${url}: ${(err as Error).message}`);
  }
  if (res.status !== 200) {
    const body = (await res.json().catch(() => ({}))) as { error_description?: string };
    return fail(
      `the webhook refused the key ${parsed.value.displayPrefix}…: HTTP ${res.status}${body.error_description ? ` ${body.error_description}` : ''}`,
    );
  }
  const list = (h: string | null): string[] => (h ? h.split(',').filter((s) => s !== '') : []);
  const identity = {
    username: res.headers.get('x-keyward-user'),
    keyId: res.headers.get('x-keyward-key-id'),
    tokenPrefix: parsed.value.displayPrefix,
    scopes: list(res.headers.get('x-keyward-scopes')),
    // Group names are percent-encoded where they hold the separator.
    groups: list(res.headers.get('x-keyward-groups')).map(decodeURIComponent),
  };
  emit(options.output, identity, () =>
    table(
      [identity],
      [
        { header: 'USERNAME', value: (r) => r.username },
        { header: 'KEY-ID', value: (r) => r.keyId },
        { header: 'TOKEN-PREFIX', value: (r) => r.tokenPrefix },
        { header: 'SCOPES', value: (r) => r.scopes.join(',') },
        { header: 'GROUPS', value: (r) => r.groups.join(',') },
      ],
    ),
  );
  return EXIT_OK;
}
