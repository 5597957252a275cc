import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../devenv/repo.js';

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Peak resident set of the CLI process, bytes (only with `measureRss`). */
  readonly maxRssBytes?: number;
}

const MAIN = join(repoRoot(), 'dist', 'cli', 'main.js');
/** Preloaded into the child: reports its peak RSS on exit, on a line the harness strips. */
const RSS_REPORTER =
  'data:text/javascript,process.on("exit",()=>process.stderr.write("\\n@@maxrss="+process.resourceUsage().maxRSS+"\\n"))';

/** Runs the built `keyward` as a user would: a child process, args, stdin, env; nothing shared. */
export async function runCli(
  args: readonly string[],
  options: { stdin?: string | Buffer; env?: Record<string, string | undefined>; measureRss?: boolean } = {},
): Promise<CliResult> {
  const nodeArgs = options.measureRss ? ['--import', RSS_REPORTER, MAIN, ...args] : [MAIN, ...args];
  const child = spawn(process.execPath, nodeArgs, {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString('utf8');
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString('utf8');
  });
  child.stdin.on('error', () => undefined);
  child.stdin.end(options.stdin ?? '');
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const rss = /\n@@maxrss=(\d+)\n/.exec(stderr);
  return {
    code,
    stdout,
    stderr: stderr.replace(/\n@@maxrss=\d+\n/, ''),
    ...(rss ? { maxRssBytes: Number(rss[1]) * 1024 } : {}),
  };
}
