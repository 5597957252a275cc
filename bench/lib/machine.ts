// What the report states about the machine: cores, CPU model, memory, kernel and the versions of
// everything the benchmarks drive.
import { execFile } from 'node:child_process';
import { cpus, loadavg, release, totalmem, version } from 'node:os';
import { promisify } from 'node:util';
import { postgresTool } from '../../devenv/postgres.js';
import { repoRoot } from '../../devenv/repo.js';
import type { Machine } from './suite.js';
import { nginxBin, wrkBin } from './tools.js';

const run = promisify(execFile);

/** stdout and stderr of a command that may exit non-zero (wrk -v exits 1), or why it could not run. */
async function output(command: () => string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run(command(), args);
    return `${stdout}${stderr}`;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return e.stdout || e.stderr ? `${e.stdout ?? ''}${e.stderr ?? ''}` : `unavailable (${e.message})`;
  }
}

const firstLine = (text: string): string => text.trim().split('\n')[0] ?? '';

async function commit(): Promise<string> {
  const cwd = repoRoot();
  try {
    const head = (await run('git', ['rev-parse', '--short=12', 'HEAD'], { cwd })).stdout.trim();
    const dirty = (await run('git', ['status', '--porcelain'], { cwd })).stdout.trim() !== '';
    return dirty ? `${head}+dirty` : head;
  } catch {
    return 'unknown';
  }
}

export async function describeMachine(loadAtStart: number): Promise<Machine> {
  const wrk = firstLine(await output(wrkBin, ['-v'])).replace(/\s+Copyright.*$/, '');
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${release()} ${version()}`.trim(),
    node: process.version,
    postgres: firstLine(await output(() => postgresTool('postgres'), ['--version'])),
    nginx: firstLine(await output(nginxBin, ['-v'])),
    wrk,
    loadAverage: { start: loadAtStart, end: Math.round(loadavg()[0]! * 100) / 100 },
    commit: await commit(),
  };
}

export const loadAverageNow = (): number => Math.round(loadavg()[0]! * 100) / 100;
