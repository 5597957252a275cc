// `npm run bench`: every benchmark in turn (one at a time: the machine has two cores), each as
// `node dist/bench/<name>.js --json <file> <size flags>`, gathered into bench/results/<date>.json,
// then rendered (bench/lib/report.ts) into <date>.md and the charts under <date>/.
//
// Usage: npm run bench [-- --only webhook,operator] [--quick] [--out dir]
//   --only   a subset; merged into that day's results file if it exists, replacing those entries
//   --quick  reduced sizes that prove the plumbing in a few minutes (the report says so)
//   --out    where results go (default bench/results)
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { onSignalStop } from '../devenv/process.js';
import { repoRoot } from '../devenv/repo.js';
import { describeMachine, loadAverageNow } from './lib/machine.js';
import { renderReport } from './lib/report.js';
import type { BenchResult } from './lib/results.js';
import type { SuiteEntry, SuiteResult } from './lib/suite.js';

interface Plan {
  readonly name: string;
  /** Size flags for the full run (the committed report) and for --quick. */
  readonly full: readonly string[];
  readonly quick: readonly string[];
  /** Expected minutes on a quiet 2-core machine at full size; the suite must stay under 25. */
  readonly budgetMinutes: number;
}

/**
 * In this order; the sizes are chosen so the whole suite fits in 25 minutes on a quiet 2-core
 * machine (bench/README.md gives the reasoning per benchmark).
 */
const PLANS: readonly Plan[] = [
  {
    name: 'store-lookup',
    full: ['--keys', '1000000', '--lookups', '20000'],
    quick: ['--keys', '20000', '--lookups', '2000'],
    budgetMinutes: 2,
  },
  {
    name: 'webhook',
    full: [
      '--duration',
      '6',
      '--rounds',
      '5',
      '--audit-rounds',
      '11',
      '--miss-rounds',
      '3',
      '--keys',
      '1000000',
      '--entries',
      '100000',
    ],
    quick: [
      '--duration',
      '2',
      '--rounds',
      '2',
      '--audit-rounds',
      '2',
      '--miss-rounds',
      '1',
      '--keys',
      '20000',
      '--entries',
      '20000',
    ],
    budgetMinutes: 13,
  },
  // Owned by another branch; its size flags are its defaults until it says otherwise.
  { name: 'nginx-auth', full: [], quick: [], budgetMinutes: 3 },
  {
    name: 'revocation',
    full: ['--trials', '200', '--e2e-trials', '100', '--duration', '5'],
    quick: ['--trials', '20', '--e2e-trials', '10', '--duration', '2'],
    budgetMinutes: 3,
  },
  { name: 'operator', full: [], quick: ['--keys', '200', '--total', '200'], budgetMinutes: 6 },
  {
    name: 'scan',
    full: ['--mb', '128', '--candidates', '2000000'],
    quick: ['--mb', '8', '--candidates', '100000'],
    budgetMinutes: 0.5,
  },
];
/** A benchmark still running at this multiple of its budget is stopped and recorded as failed. */
const OVERRUN_FACTOR = 3;
/** Lines of a failed benchmark's output kept for the report. */
const ERROR_TAIL_LINES = 12;
/** After SIGTERM, how long a benchmark may take to stop its children before SIGKILL. */
const STOP_GRACE_MS = 30_000;

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: join(repoRoot(), 'bench', 'results') },
  },
});
const only = values.only?.split(',').filter(Boolean);
const unknown = (only ?? []).filter((n) => !PLANS.some((p) => p.name === n));
if (unknown.length > 0) {
  throw new Error(
    `unknown benchmark(s) ${unknown.join(', ')}; known: ${PLANS.map((p) => p.name).join(', ')}`,
  );
}
const plans = PLANS.filter((p) => !only || only.includes(p.name));
const print = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

async function runOne(plan: Plan, work: string): Promise<SuiteEntry> {
  const script = join(repoRoot(), 'dist', 'bench', `${plan.name}.js`);
  const args = values.quick ? plan.quick : plan.full;
  const base = { name: plan.name, args, budgetMinutes: plan.budgetMinutes };
  if (!existsSync(script)) return { ...base, status: 'missing', seconds: 0 };
  const jsonFile = join(work, `${plan.name}.json`);
  const started = Date.now();
  const tail: string[] = [];
  const keep = (chunk: Buffer): void => {
    tail.push(...chunk.toString().split('\n').filter(Boolean));
    tail.splice(0, Math.max(0, tail.length - ERROR_TAIL_LINES));
  };
  // Its own process group, so an overrun can be stopped with everything it started; a Ctrl+C of
  // the runner is passed on, as the group no longer gets the terminal's signals.
  const child = spawn(process.execPath, [script, '--json', jsonFile, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  const unregister = onSignalStop(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  child.stdout.on('data', (chunk: Buffer) => {
    process.stdout.write(chunk);
    keep(chunk);
  });
  child.stderr.on('data', (chunk: Buffer) => {
    process.stderr.write(chunk);
    keep(chunk);
  });
  let overran = false;
  const limitMs = plan.budgetMinutes * OVERRUN_FACTOR * 60_000;
  const watchdog = setTimeout(() => {
    overran = true;
    child.kill('SIGTERM');
    setTimeout(() => {
      if (child.pid !== undefined && child.exitCode === null) process.kill(-child.pid, 'SIGKILL');
    }, STOP_GRACE_MS).unref();
  }, limitMs);
  const code = await exited;
  unregister();
  clearTimeout(watchdog);
  const seconds = Math.round((Date.now() - started) / 1000);
  if (code === 0 && existsSync(jsonFile)) {
    const result = JSON.parse(await readFile(jsonFile, 'utf8')) as BenchResult;
    return { ...base, status: 'ok', seconds, result };
  }
  const why = overran
    ? `stopped after ${OVERRUN_FACTOR}× its budget`
    : code === 0
      ? `exited 0 but wrote no \`--json\` file (does it take \`--json\`?)`
      : `exit code ${code}`;
  return { ...base, status: 'failed', seconds, error: `${why}; last lines: ${tail.join(' ⏎ ')}` };
}

const date = new Date().toISOString().slice(0, 10);
const jsonPath = join(values.out, `${date}.json`);
const budget = plans.reduce((sum, p) => sum + p.budgetMinutes, 0);
print(`bench suite ${values.quick ? '(quick sizes) ' : ''}→ ${jsonPath}`);
for (const p of plans) {
  print(
    `  ${p.name.padEnd(14)} budget ${String(p.budgetMinutes).padStart(4)} min  ${(values.quick ? p.quick : p.full).join(' ')}`,
  );
}
print(`  ${'total'.padEnd(14)} budget ${String(budget).padStart(4)} min (the suite must finish in under 25)`);

const loadAtStart = loadAverageNow();
const startedAt = new Date();
const work = await mkdtemp(join(tmpdir(), 'keyward-suite-'));
const entries: SuiteEntry[] = [];
for (const plan of plans) {
  print(`\n=== ${plan.name} ===`);
  const entry = await runOne(plan, work);
  entries.push(entry);
  print(`=== ${plan.name}: ${entry.status} in ${entry.seconds} s (budget ${plan.budgetMinutes * 60} s) ===`);
}

// A subset run replaces its benchmarks in that day's file (of the same sizes) and keeps the others.
let benchmarks: SuiteEntry[] = entries;
const previous =
  only && existsSync(jsonPath) ? (JSON.parse(await readFile(jsonPath, 'utf8')) as SuiteResult) : undefined;
if (previous && previous.preset === (values.quick ? 'quick' : 'full')) {
  benchmarks = PLANS.flatMap((p) => {
    const entry =
      entries.find((e) => e.name === p.name) ?? previous.benchmarks.find((e) => e.name === p.name);
    return entry ? [entry] : [];
  });
}
const suite: SuiteResult = {
  date,
  startedAt: startedAt.toISOString(),
  seconds: benchmarks.reduce((sum, e) => sum + e.seconds, 0),
  preset: values.quick ? 'quick' : 'full',
  machine: await describeMachine(loadAtStart),
  benchmarks,
};
await mkdir(values.out, { recursive: true });
await writeFile(jsonPath, `${JSON.stringify(suite, null, 2)}\n`);
const md = await renderReport(jsonPath);
print(`\nwrote ${jsonPath} and ${md}`);
for (const e of entries) {
  const over = e.status === 'ok' && e.seconds > e.budgetMinutes * 60 ? ' OVER BUDGET' : '';
  print(
    `  ${e.name.padEnd(14)} ${e.status.padEnd(8)} ${String(e.seconds).padStart(5)} s of ${e.budgetMinutes * 60} s${over}`,
  );
}
const total = (Date.now() - startedAt.getTime()) / 60_000;
print(`  ${'total'.padEnd(14)} ${total.toFixed(1)} min${total > 25 ? ' — OVER the 25-minute limit' : ''}`);
if (entries.some((e) => e.status === 'failed')) process.exitCode = 1;
